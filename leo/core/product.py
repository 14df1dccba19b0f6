"""Several networks as one: the product network that two-network queries are checked on.

``parallel`` lays the networks side by side in one ``Network``, so that every stage that
reads one network (bounds, stability analysis, attacks, region walks, input splitting,
MILPs, ``check_property``) answers questions about several: ε-closeness of f and g is an
output property of ``parallel([f, g], [0, 0])``. It is exact by construction (each
network's weights are copied into its own rows and columns; no unit mixes networks) and
plain data, so a proof on the product is a proof on the networks.

Layers are aligned at the END (network i's layer j sits at product layer
``D - K_i + j``, D the greatest depth): the output layers share the last product layer
and a shorter network's first layer reads the input through a skip connection. When that
alignment would put a ReLU and a linear layer in one product layer (a network with a linear
hidden layer, or output layers that differ in their ReLU), the networks are laid one after
another instead and a final linear layer gathers their outputs.

``leo.queries.closeness`` asks ε-closeness of two networks on it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from leo.errors import LeoInputError
from leo.core.network import ARCHITECTURE_SOURCE, INPUT_SHAPE, Layer, Network, shape_text

#: Metadata key holding the product's layout (JSON: per network its input group, input and
#: output slices and where it came from), so a product says what it is.
PRODUCT = "product"


@dataclass(frozen=True)
class Layout:
    """Where each network's inputs and outputs sit in the product's flat input and output."""

    input_slices: tuple[slice, ...]  # per network: its columns of the product input
    output_slices: tuple[slice, ...]  # per network: its entries of the product output
    group_slices: tuple[slice, ...]  # per input group

    def split_input(self, x: np.ndarray) -> list[np.ndarray]:
        """Each network's input, from product inputs ``x`` (n, input_dim) or one flat point."""
        return [np.asarray(x)[..., s] for s in self.input_slices]

    def split_output(self, y: np.ndarray) -> list[np.ndarray]:
        """Each network's output, from product outputs ``y``."""
        return [np.asarray(y)[..., s] for s in self.output_slices]


def layout(networks: Sequence[Network], input_groups: Sequence[int]) -> Layout:
    """The product's input and output layout; validates the groups (LeoInputError)."""
    if not networks:
        raise LeoInputError("a product needs at least one network")
    if len(input_groups) != len(networks):
        raise LeoInputError(f"{len(input_groups)} input groups for {len(networks)} networks: give one per network")
    groups = [int(g) for g in input_groups]
    used = sorted(set(groups))
    if used != list(range(len(used))):
        raise LeoInputError(f"input groups {used} must be numbered 0, 1, ... with none left out")
    dims: dict[int, int] = {}
    for i, (net, g) in enumerate(zip(networks, groups)):
        if dims.setdefault(g, net.input_dim) != net.input_dim:
            raise LeoInputError(f"network {i} has {net.input_dim} inputs but shares input group {g} "
                                f"with a network of {dims[g]} inputs: tied inputs need the same size")
    starts = np.concatenate([[0], np.cumsum([dims[g] for g in used])]).astype(int)
    group_slices = tuple(slice(int(starts[g]), int(starts[g + 1])) for g in used)
    ends = np.cumsum([net.output_dim for net in networks]).astype(int)
    outputs = tuple(slice(int(e - net.output_dim), int(e)) for e, net in zip(ends, networks))
    return Layout(tuple(group_slices[g] for g in groups), outputs, group_slices)


def _end_aligned(networks: Sequence[Network]) -> list[list[int]] | None:
    """Product layer of each network's layer j (index j-1), outputs in the last product layer;
    None when a product layer would mix ReLU and linear layers."""
    depth = max(len(net.layers) for net in networks)
    slots = [[depth - len(net.layers) + j for j in range(1, len(net.layers) + 1)] for net in networks]
    relu: dict[int, bool] = {}
    for net, where in zip(networks, slots):
        for layer, t in zip(net.layers, where):
            if relu.setdefault(t, layer.relu) != layer.relu:
                return None
    return slots


def _one_after_another(networks: Sequence[Network]) -> list[list[int]]:
    """Each network's layers in product layers of their own, network after network."""
    slots, first = [], 1
    for net in networks:
        slots.append(list(range(first, first + len(net.layers))))
        first += len(net.layers)
    return slots


@dataclass(frozen=True)
class _Block:
    """Network ``net``'s layer ``j`` (1-based) placed in a product layer at row ``row``."""

    net: int
    j: int
    row: int


def _blocks(networks: Sequence[Network],
            slots: list[list[int]]) -> tuple[dict[int, list[_Block]], dict[tuple[int, int], int]]:
    """Per product layer its blocks in network order, and the row offset of every (net, j)."""
    per: dict[int, list[_Block]] = {}
    offset: dict[tuple[int, int], int] = {}
    for i, (net, where) in enumerate(zip(networks, slots)):
        for j, t in enumerate(where, start=1):
            row = sum(networks[b.net].layers[b.j - 1].width for b in per.get(t, []))
            per.setdefault(t, []).append(_Block(i, j, row))
            offset[(i, j)] = row
    return per, offset


def _product_layer(networks: Sequence[Network], blocks: list[_Block], slots: list[list[int]],
                   offset: dict[tuple[int, int], int], widths: list[int], lay: Layout) -> Layer:
    """One product layer: each block's weights copied into its rows and its sources' columns."""
    width = sum(networks[b.net].layers[b.j - 1].width for b in blocks)
    weights: dict[int, np.ndarray] = {}
    bias = np.zeros(width)
    for b in blocks:
        layer = networks[b.net].layers[b.j - 1]
        rows = slice(b.row, b.row + layer.width)
        bias[rows] = layer.bias
        for s, w in layer.weights.items():
            src, col = (0, lay.input_slices[b.net].start) if s == 0 else (slots[b.net][s - 1], offset[(b.net, s)])
            weights.setdefault(src, np.zeros((width, widths[src])))[rows, col:col + w.shape[1]] += w
    first = networks[blocks[0].net].layers[blocks[0].j - 1]
    # a conv's shape and structure describe its matrix only while the product layer is that layer
    # alone and each source is that network's source alone (same width, nothing else in it)
    alone = len(blocks) == 1 and all(widths[src] == w.shape[1] for src, w in zip(weights, first.weights.values()))
    return Layer(weights, bias, first.relu, first.shape if alone else None, first.structure if alone else None)


def _gather(networks: Sequence[Network], slots: list[list[int]], widths: list[int]) -> Layer:
    """A linear layer copying each network's output into the product's output."""
    total = sum(net.output_dim for net in networks)
    weights: dict[int, np.ndarray] = {}
    row = 0
    for net, where in zip(networks, slots):
        w = np.zeros((total, widths[where[-1]]))
        w[row:row + net.output_dim, :] = np.eye(net.output_dim)
        weights[where[-1]] = w
        row += net.output_dim
    return Layer(weights, np.zeros(total), False)


def _metadata(networks: Sequence[Network], groups: Sequence[int], lay: Layout, aligned: bool) -> dict[str, str]:
    described = [{"input_group": int(g), "inputs": [s.start, s.stop], "outputs": [o.start, o.stop],
                  "architecture_source": net.metadata.get(ARCHITECTURE_SOURCE, ""),
                  "input_shape": net.metadata.get(INPUT_SHAPE, "")}
                 for net, g, s, o in zip(networks, groups, lay.input_slices, lay.output_slices)]
    meta = {ARCHITECTURE_SOURCE: f"product of {len(networks)} networks side by side (leo.core.product.parallel, "
                                 f"{'layers aligned at the end' if aligned else 'one after another'})",
            PRODUCT: json.dumps(described)}
    shapes = {net.metadata.get(INPUT_SHAPE) for net in networks}
    if len(lay.group_slices) == 1 and len(shapes) == 1 and None not in shapes:
        meta[INPUT_SHAPE] = shapes.pop()
    else:
        meta[INPUT_SHAPE] = shape_text((lay.group_slices[-1].stop,))
    return meta


def parallel(networks: Sequence[Network], input_groups: Sequence[int]) -> Network:
    """One network computing all ``networks`` side by side.

    Network i reads input group ``input_groups[i]``: networks in one group share their
    input (tied, ``equal-to`` inputs), groups are concatenated in group order. The output
    is the concatenation of the networks' flat outputs, in order. Exact: every unit of the
    product is a unit of one network with that network's weights.
    """
    lay = layout(networks, input_groups)
    slots = _end_aligned(networks)
    aligned = slots is not None
    if slots is None:
        slots = _one_after_another(networks)
    per, offset = _blocks(networks, slots)
    widths = [lay.group_slices[-1].stop]
    layers: list[Layer] = []
    for t in range(1, max(per) + 1):
        layer = _product_layer(networks, per[t], slots, offset, widths, lay)
        layers.append(layer)
        widths.append(layer.width)
    if not aligned:
        layers.append(_gather(networks, slots, widths))
    return Network(widths[0], tuple(layers), _metadata(networks, input_groups, lay, aligned))
