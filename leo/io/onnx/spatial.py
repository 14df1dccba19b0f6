"""Ops over (batch, channels, *spatial) tensors: Conv, ConvTranspose, AveragePool,
GlobalAveragePool, MaxPool.

Each is a matrix on the flat (C, *spatial) vector (``leo.io.conv``); a transposed
convolution is the transpose of the convolution it inverts the shape of; a MaxPool is
exact with ReLU layers, max(a, b) = a + relu(b - a), paired in a tree.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from leo.io.conv import Window, average_matrix, conv_matrix, conv_transpose_matrix, distinct, max_candidates, same_pads
from leo.io.onnx.values import Affine, Graph, Node, Value, as_batched, linear, negate, stack, to_float


def _spatial_input(node: Node) -> Affine:
    x = node.inputs[0]
    if not isinstance(x, Affine):
        raise node.fail("the input must depend on the network input (a constant input is not supported)")
    x = as_batched(node, x)
    if len(x.shape) < 2:
        raise node.fail(f"needs a (channels, spatial...) input per sample, got shape {list(x.shape)}")
    return x


def _ints(node: Node, name: str, default: list[int]) -> tuple[int, ...]:
    return tuple(int(v) for v in node.attrs.get(name, default))


def _ceil_extra(n: int, k: int, s: int, b: int, e: int, d: int) -> int:
    """End padding that ``ceil_mode=1`` adds: one more window when one starts inside the
    input or its begin padding (a window starting in the end padding is dropped)."""
    span = n + b + e - (d * (k - 1) + 1)
    out = -(-span // s) + 1
    if (out - 1) * s >= n + b:
        out -= 1
    return max((out - 1) * s - span, 0)


def _window(node: Node, x: Affine, kernel: tuple[int, ...]) -> tuple[Window, bool]:
    """The window geometry from ONNX attributes (strides, pads, dilations, auto_pad,
    ceil_mode), and whether ``ceil_mode`` widened the end padding."""
    spatial = tuple(x.shape[1:])
    n = len(spatial)
    if len(kernel) != n:
        raise node.fail(f"a kernel of {len(kernel)} dimensions on an input of spatial shape {spatial}")
    strides, dilations = _ints(node, "strides", [1] * n), _ints(node, "dilations", [1] * n)
    pads = list(_ints(node, "pads", [0] * (2 * n)))
    auto = node.text("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = same_pads(spatial, kernel, strides, dilations, upper=auto == "SAME_UPPER")
        pads = begin + end
    elif auto == "VALID":
        pads = [0] * (2 * n)
    elif auto != "NOTSET":
        raise node.fail(f"unknown auto_pad {auto!r}")
    if len(strides) != n or len(dilations) != n or len(pads) != 2 * n:
        raise node.fail("strides, dilations or pads do not match the kernel's dimensions")
    if min(strides + dilations) < 1 or min(pads) < 0:
        raise node.fail("strides and dilations must be positive and pads not negative")
    extra = [0] * n
    if int(node.attrs.get("ceil_mode", 0)):
        extra = [_ceil_extra(*args) for args in zip(spatial, kernel, strides, pads[:n], pads[n:], dilations)]
    end = tuple(p + e for p, e in zip(pads[n:], extra))
    window = Window(spatial, kernel, strides, tuple(pads[:n]), end, dilations)
    if min(window.out_spatial) < 1:
        raise node.fail(f"the kernel {kernel} does not fit the input of spatial shape {spatial}")
    return window, any(extra)


def conv(g: Graph, node: Node) -> list[Value]:
    x = _spatial_input(node)
    w = to_float(node.const(1, "weight (second input)"))
    group = int(node.attrs.get("group", 1))
    channels = x.shape[0]
    if w.ndim != len(x.shape) + 1 or group < 1 or channels % group or w.shape[0] % group \
            or w.shape[1] * group != channels:
        raise node.fail(f"a weight of shape {w.shape} with group={group} does not fit an input of shape {x.shape}")
    kernel = _ints(node, "kernel_shape", list(w.shape[2:]))
    if kernel != tuple(w.shape[2:]):
        raise node.fail(f"kernel_shape {kernel} differs from the weight's {tuple(w.shape[2:])}")
    window, _ = _window(node, x, kernel)
    out_shape = (int(w.shape[0]), *window.out_spatial)
    out = linear(g, node, x, conv_matrix(w, channels, window, group), _bias(node, w.shape[0], window), out_shape)
    structure = {"op": "Conv", "kernel": list(kernel), "strides": list(window.strides),
                 "pads": list(window.pads_begin + window.pads_end), "dilations": list(window.dilations),
                 "group": group, "in_shape": list(x.shape), "out_shape": list(out_shape),
                 "node": node.name}  # the ONNX node: leo.io.graph finds the module from its scope
    return [replace(out, structure=structure)]


def _bias(node: Node, channels: int, window: Window) -> np.ndarray:
    bias = node.input(2)
    if isinstance(bias, Affine):
        raise node.fail("the bias (third input) depends on the network input")
    per = int(np.prod(window.out_spatial))
    if bias is None:
        return np.zeros(channels * per)
    if np.size(bias) != channels:
        raise node.fail(f"a bias of {np.size(bias)} values for {channels} output channels")
    return np.repeat(to_float(bias).reshape(-1), per)


def _transposed_pads(node: Node, natural: list[int], n: int) -> tuple[list[int], list[int]]:
    """ConvTranspose's pads: given, or split from the total that ``output_shape`` or a
    SAME ``auto_pad`` implies (the odd one at the end for SAME_UPPER, else at the start)."""
    auto = node.text("auto_pad", "NOTSET")
    if auto == "VALID":
        return [0] * n, [0] * n
    wanted = _ints(node, "output_shape", [])[-n:] if "output_shape" in node.attrs else None
    if wanted is None and auto in ("SAME_UPPER", "SAME_LOWER"):
        raise node.fail("auto_pad SAME without output_shape is not supported (give pads or output_shape)")
    if wanted is None:
        pads = list(_ints(node, "pads", [0] * (2 * n)))
        if len(pads) != 2 * n or min(pads) < 0:
            raise node.fail(f"pads {pads} do not fit {n} spatial dimensions")
        return pads[:n], pads[n:]
    total = [a - b for a, b in zip(natural, wanted)]
    if len(wanted) != n or min(total) < 0:
        raise node.fail(f"output_shape {list(wanted)} is larger than the transposed convolution's {natural}")
    if auto == "SAME_UPPER":
        return [t // 2 for t in total], [t - t // 2 for t in total]
    return [t - t // 2 for t in total], [t // 2 for t in total]


def conv_transpose(g: Graph, node: Node) -> list[Value]:
    """A transposed convolution, lowered to its matrix like a Conv (it is linear)."""
    x = _spatial_input(node)
    w = to_float(node.const(1, "weight (second input)"))
    group = int(node.attrs.get("group", 1))
    channels, spatial, n = x.shape[0], tuple(x.shape[1:]), len(x.shape) - 1
    if w.ndim != n + 2 or w.shape[0] != channels or group < 1 or channels % group:
        raise node.fail(f"a weight of shape {w.shape} with group={group} does not fit an input of shape {x.shape}")
    kernel = _ints(node, "kernel_shape", list(w.shape[2:]))
    if kernel != tuple(w.shape[2:]):
        raise node.fail(f"kernel_shape {kernel} differs from the weight's {tuple(w.shape[2:])}")
    strides, dilations = _ints(node, "strides", [1] * n), _ints(node, "dilations", [1] * n)
    extra = _ints(node, "output_padding", [0] * n)
    if len(strides) != n or len(dilations) != n or len(extra) != n or min(strides + dilations) < 1 or min(extra) < 0:
        raise node.fail("strides, dilations or output_padding do not fit the kernel's dimensions")
    natural = [s * (i - 1) + p + (k - 1) * d + 1 for s, i, p, k, d in zip(strides, spatial, extra, kernel, dilations)]
    begin, end = _transposed_pads(node, natural, n)
    out_spatial = tuple(a - b - e for a, b, e in zip(natural, begin, end))
    window = Window(out_spatial, kernel, strides, tuple(begin), tuple(end), dilations)
    if min(out_spatial) < 1 or window.out_spatial != spatial:
        raise node.fail(f"pads {begin + end} and output_padding {list(extra)} do not fit strides {list(strides)} "
                        f"on an input of spatial shape {list(spatial)}")
    m = int(w.shape[1]) * group
    matrix = conv_transpose_matrix(w, m, window, group)
    return [linear(g, node, x, matrix, _bias(node, m, _positions(out_spatial)), (m, *out_spatial))]


def _positions(spatial: tuple[int, ...]) -> Window:
    """A window whose output has ``spatial`` positions (for a per-channel bias)."""
    n = len(spatial)
    return Window(spatial, (1,) * n, (1,) * n, (0,) * n, (0,) * n, (1,) * n)


def _pool_kernel(node: Node) -> tuple[int, ...]:
    if "kernel_shape" not in node.attrs:
        raise node.fail("has no kernel_shape")
    return tuple(int(k) for k in node.attrs["kernel_shape"])


def average_pool(g: Graph, node: Node) -> list[Value]:
    x = _spatial_input(node)
    window, widened = _window(node, x, _pool_kernel(node))
    include_pad = bool(node.attrs.get("count_include_pad", 0))
    if include_pad and widened:
        raise node.fail("ceil_mode=1 with count_include_pad=1 is not supported when a window overhangs the padding")
    matrix = average_matrix(x.shape[0], window, include_pad)
    return [linear(g, node, x, matrix, np.zeros(matrix.shape[0]), (x.shape[0], *window.out_spatial))]


def global_average_pool(g: Graph, node: Node) -> list[Value]:
    x = _spatial_input(node)
    spatial = tuple(x.shape[1:])
    n = len(spatial)
    window = Window(spatial, spatial, (1,) * n, (0,) * n, (0,) * n, (1,) * n)
    matrix = average_matrix(x.shape[0], window, False)
    return [linear(g, node, x, matrix, np.zeros(matrix.shape[0]), (x.shape[0], *window.out_spatial))]


def _geometry(window: Window, x: Affine) -> dict[str, list[int]]:
    """A MaxPool's window as its ReLU layers record it (names apart from a conv's ``kernel``)."""
    return {"pool_kernel": list(window.kernel), "pool_strides": list(window.strides),
            "pool_pads": list(window.pads_begin + window.pads_end), "pool_dilations": list(window.dilations),
            "pool_in_shape": [int(d) for d in x.shape]}


def max_pool(g: Graph, node: Node) -> list[Value]:
    """max over the window, exactly: candidates paired level by level, each level one ReLU
    layer of differences, max(a, b) = a + relu(b - a)."""
    if len([o for o in node.outputs if o]) > 1:
        raise node.fail("the indices output is not supported")
    if int(node.attrs.get("storage_order", 0)):
        raise node.fail("storage_order=1 is not supported")
    x = _spatial_input(node)
    window, _ = _window(node, x, _pool_kernel(node))
    shape = (x.shape[0], *window.out_spatial)
    try:
        selections = distinct(max_candidates(x.shape[0], window))
    except ValueError as exc:
        raise node.fail(str(exc)) from None
    candidates = [x.matmul(sel, np.zeros(sel.shape[0]), shape) for sel in selections]
    while len(candidates) > 1:
        pairs = [(candidates[i], candidates[i + 1]) for i in range(0, len(candidates) - 1, 2)]
        diffs = stack([b.plus(negate(a)) for a, b in pairs], (len(pairs) * pairs[0][0].size,))  # type: ignore[misc]
        r = g.emit(diffs, relu=True)
        # marked so reports tell these ReLU layers from the user's hidden layers (leo.stability.report.internal_op),
        # with the pool's geometry, so writers can write the pool again (leo.io.pool_export)
        g.layers[-1] = replace(g.layers[-1], structure={"op": "MaxPool", "node": node.name, **_geometry(window, x)})
        n = pairs[0][0].size
        merged = [a.plus(r.rows(np.arange(i * n, (i + 1) * n), shape)) for i, (a, _) in enumerate(pairs)]
        candidates = merged + candidates[2 * len(pairs):]
    return [replace(candidates[0], shape=shape)]
