"""A mutable working copy of a Network for the approximate methods.

Layers are numbered as in :mod:`leo.core.network`: layer ``k`` (1-based) is source ``k``
of the layers that read it; source 0 is the input. ``origin[k]`` remembers, per live
unit, its index in the network the copy was made from, so reports can name units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leo.core.network import Layer, Network


@dataclass
class EditLayer:
    weights: dict[int, np.ndarray]
    bias: np.ndarray
    relu: bool
    origin: list[int]  # index of each unit in the starting network
    name: int  # 1-based index of this layer in the starting network

    @property
    def width(self) -> int:
        return int(self.bias.shape[0])


class Editable:
    """Working copy: delete units, fuse linear units into readers, drop empty layers."""

    def __init__(self, network: Network) -> None:
        self.input_dim = network.input_dim
        self.metadata = dict(network.metadata)
        self.layers: list[EditLayer] = [
            EditLayer({s: np.array(w, dtype=np.float64) for s, w in ly.weights.items()},
                      np.array(ly.bias, dtype=np.float64), ly.relu, list(range(ly.width)), k)
            for k, ly in enumerate(network.layers, start=1)
        ]

    # -- shape ---------------------------------------------------------------------
    def layer(self, k: int) -> EditLayer:
        """Layer ``k`` (1-based)."""
        return self.layers[k - 1]

    def width(self, source: int) -> int:
        return self.input_dim if source == 0 else self.layers[source - 1].width

    def readers(self, k: int) -> list[int]:
        """1-based indices of the layers that read the output of layer ``k``."""
        return [r for r, ly in enumerate(self.layers, start=1) if k in ly.weights]

    def num_parameters(self) -> int:
        return int(sum(ly.bias.size + sum(w.size for w in ly.weights.values()) for ly in self.layers))

    def network(self) -> Network:
        return Network(self.input_dim, tuple(Layer(ly.weights, ly.bias, ly.relu) for ly in self.layers),
                       self.metadata)

    # -- edits ---------------------------------------------------------------------
    def delete_units(self, k: int, units: np.ndarray | list[int]) -> None:
        """Remove units (indices into the current layer) and the columns that read them."""
        ly = self.layer(k)
        drop = np.unique(np.asarray(units, dtype=int))
        if drop.size == 0:
            return
        keep = np.setdiff1d(np.arange(ly.width), drop)
        ly.weights = {s: w[keep] for s, w in ly.weights.items()}
        ly.bias = ly.bias[keep]
        ly.origin = [ly.origin[i] for i in keep]
        for r in self.readers(k):
            reader = self.layer(r)
            reader.weights[k] = reader.weights[k][:, keep]
        if ly.width == 0:
            self._drop_layer(k)

    def redistribute(self, k: int, unit: int, alpha: np.ndarray, others: np.ndarray, offset: float) -> None:
        """Readers of layer ``k`` take ``h_unit = alpha . h_others + offset``:
        ``W[:, others] += W[:, unit] alpha^T`` and ``b += W[:, unit] offset``.
        The unit itself is not deleted here."""
        for r in self.readers(k):
            reader = self.layer(r)
            w = reader.weights[k].copy()
            col = w[:, unit]
            w[:, others] += np.outer(col, alpha)
            reader.bias = reader.bias + col * offset
            reader.weights[k] = w

    def fuse_linear(self, k: int, units: np.ndarray | list[int]) -> None:
        """Treat ``units`` of layer ``k`` as linear (h = z) and fold them into every reader:
        for each source s of layer k, ``W_{r,s} += W_{r,k}[:, L] W_{k,s}[L]`` (a skip
        connection when r did not read s), ``b_r += W_{r,k}[:, L] b_k[L]``; then delete them.
        Exact wherever those units are active."""
        ly = self.layer(k)
        sel = np.unique(np.asarray(units, dtype=int))
        if sel.size == 0:
            return
        for r in self.readers(k):
            reader = self.layer(r)
            wl = reader.weights[k][:, sel]
            reader.bias = reader.bias + wl @ ly.bias[sel]
            for s, ws in ly.weights.items():
                contrib = wl @ ws[sel]
                reader.weights[s] = reader.weights[s] + contrib if s in reader.weights else contrib
            reader.weights = dict(sorted(reader.weights.items()))
        self.delete_units(k, sel)

    def _drop_layer(self, k: int) -> None:
        """Remove the (empty) layer ``k``; readers lose that source; renumber later sources."""
        for r in self.readers(k):
            reader = self.layer(r)
            w = reader.weights.pop(k)
            assert w.shape[1] == 0
            if not reader.weights:  # nothing else feeds it: keep it fed by an all-zero map
                reader.weights[k - 1] = np.zeros((reader.width, self.width(k - 1)))
        del self.layers[k - 1]
        for later in self.layers[k - 1:]:
            later.weights = {(s - 1 if s > k else s): w for s, w in later.weights.items()}
