"""A mutable working copy of a Network: the one editable-network type of the exact
reduction and the approximate methods (``leo.approx.editing`` specialises it).

Layers are numbered as in :mod:`leo.core.network`: layer ``k`` (1-based) is source ``k``
of the layers that read it; source 0 is the input. Each layer remembers its original
index (``name``), each unit its original index (``origin``) and what is proven about it
(``state``), so an edit can be logged against the original network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from leo.core.network import Layer, Network
from leo.core.verdicts import Verdict


@dataclass
class EditLayer:
    weights: dict[int, np.ndarray]
    bias: np.ndarray
    relu: bool
    origin: list[int]  # index of each unit in the starting network
    name: int  # 1-based index of this layer in the starting network
    state: list[Verdict] = field(default_factory=list)  # per unit; empty when nothing is proven
    shape: tuple[int, ...] | None = None  # a conv layer's (C, H, W), while its units are whole channels
    structure: dict[str, Any] | None = None  # the conv the weights rebuild exactly, while they do

    @property
    def width(self) -> int:
        return int(self.bias.shape[0])

    def units(self, state: Verdict) -> np.ndarray:
        """Positions of the units in ``state``."""
        return np.array([i for i, s in enumerate(self.state) if s == state], dtype=int)

    def positions(self, units: tuple[int, ...] | list[int]) -> np.ndarray:
        """Positions of original units (all present)."""
        where = {o: i for i, o in enumerate(self.origin)}
        return np.array([where[int(u)] for u in units], dtype=int)


class Editable:
    """Working copy: delete units, fold or bypass them into readers, merge linear layers."""

    def __init__(self, network: Network, states: dict[int, list[Verdict]] | None = None) -> None:
        """``states``: per 1-based layer, what is proven about each unit."""
        self.input_dim = network.input_dim
        self.metadata = dict(network.metadata)
        self.original = network.layers  # what ``network()`` compares a layer against
        states = states or {}
        self.layers: list[EditLayer] = [
            EditLayer({s: np.array(w, dtype=np.float64) for s, w in ly.weights.items()},
                      np.array(ly.bias, dtype=np.float64), ly.relu, list(range(ly.width)), k,
                      list(states.get(k, [])), ly.shape,
                      None if ly.structure is None else dict(ly.structure))
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

    def unchanged(self, ly: EditLayer) -> bool:
        """Whether ``ly`` computes, from the same original sources, exactly the affine map
        its original layer did (same units, weights and bias, value for value): only then
        do the original's ``shape`` and conv/pool ``structure`` still describe it."""
        before = self.original[ly.name - 1]
        if ly.width != before.width or not np.array_equal(ly.bias, before.bias):
            return False
        sources = {(0 if s == 0 else self.layers[s - 1].name): w for s, w in ly.weights.items()}
        return (sources.keys() == before.weights.keys()
                and all(np.array_equal(w, before.weights[s]) for s, w in sources.items()))

    def network(self) -> Network:
        """The working copy as a Network; a layer keeps its original ``shape`` and ``structure``
        only while ``unchanged`` (the writers then write it as a Conv or MaxPool again)."""
        def written(ly: EditLayer) -> Layer:
            before = self.original[ly.name - 1]
            if (before.shape is None and before.structure is None) or not self.unchanged(ly):
                return Layer(ly.weights, ly.bias, ly.relu)
            return Layer(ly.weights, ly.bias, ly.relu, before.shape, before.structure)

        return Network(self.input_dim, tuple(written(ly) for ly in self.layers), self.metadata)

    # -- edits ---------------------------------------------------------------------
    def delete_units(self, k: int, units: np.ndarray | list[int]) -> None:
        """Remove units (positions in the current layer) and the columns that read them."""
        ly = self.layer(k)
        drop = np.unique(np.asarray(units, dtype=int))
        if drop.size == 0:
            return
        keep = np.setdiff1d(np.arange(ly.width), drop)
        ly.weights = {s: w[keep] for s, w in ly.weights.items()}
        ly.bias = ly.bias[keep]
        ly.origin = [ly.origin[i] for i in keep]
        if ly.state:
            ly.state = [ly.state[i] for i in keep]
        for r in self.readers(k):
            reader = self.layer(r)
            reader.weights[k] = reader.weights[k][:, keep]

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

    def fold(self, k: int, units: np.ndarray, basis: np.ndarray, alpha: np.ndarray) -> None:
        """Readers of layer ``k`` take ``h_units = alpha.T h_basis + offset`` (exact where
        the units are linear and their rows are those combinations); then the units go."""
        ly = self.layer(k)
        offset = ly.bias[units] - alpha.T @ ly.bias[basis]
        for r in self.readers(k):
            reader = self.layer(r)
            w = reader.weights[k].copy()
            wd = w[:, units]
            w[:, basis] += wd @ alpha.T
            reader.bias = reader.bias + wd @ offset
            reader.weights[k] = w
        self.delete_units(k, units)

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

    def merge(self, k: int) -> None:
        """Multiply linear layer ``k`` into every layer that reads it, then drop it."""
        ly = self.layer(k)
        for r in self.readers(k):
            reader = self.layer(r)
            w = reader.weights.pop(k)
            reader.bias = reader.bias + w @ ly.bias
            for s, ws in ly.weights.items():
                contrib = w @ ws
                reader.weights[s] = reader.weights[s] + contrib if s in reader.weights else contrib
        self._remove(k)

    def drop_layer(self, k: int) -> None:
        """Remove the (empty) layer ``k``; readers lose that source (one left with none is
        fed an all-zero map of layer ``k - 1``)."""
        for r in self.readers(k):
            reader = self.layer(r)
            w = reader.weights.pop(k)
            if w.shape[1] != 0:
                raise ValueError(f"layer {k} is not empty")
            if not reader.weights:
                reader.weights[k - 1] = np.zeros((reader.width, self.width(k - 1)))
        self._remove(k)

    def _remove(self, k: int) -> None:
        """Delete layer ``k`` from the list; later layers' sources shift down by one."""
        del self.layers[k - 1]
        for later in self.layers[k - 1:]:
            later.weights = {(s - 1 if s > k else s): w for s, w in later.weights.items()}
