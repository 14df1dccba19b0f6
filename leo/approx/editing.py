"""The working copy the approximate methods edit: the reduction's editable network
(``leo.reduction.editable``), with one rule of their own.

Layers are numbered as in :mod:`leo.core.network`: layer ``k`` (1-based) is source ``k``
of the layers that read it; source 0 is the input. ``origin[k]`` remembers, per live
unit, its index in the network the copy was made from, so reports can name units.

The rule: the approximate methods delete units without proofs, and a layer they empty
goes (its readers lose that input), where the exact reduction merges a layer left with
no unit as a linear one, as its step log says.
"""

from __future__ import annotations

import numpy as np

from leo.reduction.editable import EditLayer
from leo.reduction.editable import Editable as _Editable


class Editable(_Editable):
    """Working copy: delete units, fuse linear units into readers, drop empty layers."""

    def delete_units(self, k: int, units: np.ndarray | list[int]) -> None:
        """Remove units (indices into the current layer) and the columns that read them;
        a layer left empty goes."""
        if np.asarray(units).size == 0:
            return
        super().delete_units(k, units)
        if self.layer(k).width == 0:
            self.drop_layer(k)


__all__ = ["EditLayer", "Editable"]
