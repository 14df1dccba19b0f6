"""ONNX output built node by node (MatMul/Add, Relu), so it needs no exporter and keeps
the network exactly as leo sees it. A layer that is a convolution (its ``structure``
rebuilds its weights exactly, ``leo.io.conv.conv_kernels``) becomes Conv nodes on a
(batch, C, H, W) tensor, Reshape before and Flatten after only where a neighbour is
dense; the ReLU layers leo made of a MaxPool become a MaxPool node again while they are
still exactly that pool (``leo.io.pool_export``); every other layer MatMul/Add, its
matrix a sparse initializer when its nonzeros take fewer bytes (``leo.io.sparse``:
MaxPool selections and bypasses are mostly zeros). Float64 models keep MatMul and the
pools' ReLU layers: onnxruntime's CPU provider has no float64 Conv, and a file it cannot
run helps no one. The model takes the input shape the original took
(``Network.input_shape``); with no recorded shape it takes (batch, input_dim). Read back
by leo, a written file gives the same layers (``leo audit`` compares them)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from leo.core.network import Layer, Network
from leo.io.conv import channel_bias, conv_geometries, conv_kernels, source_kernel
from leo.io.pool_export import PoolRun, pool_runs
from leo.io.sparse import smaller_sparse

OPSET = 17


class _Tensors:
    """The ONNX tensor holding each source's output, flat (batch, n) or shaped (batch, C, ...),
    each made on first use (a Reshape or Flatten node) so consecutive convs stay 4-D."""

    def __init__(self, nodes: list, shape: tuple[int, ...]) -> None:  # noqa: ANN001 - onnx NodeProto
        self.nodes = nodes
        self.flat: dict[int, str] = {}
        self.shaped: dict[int, tuple[str, tuple[int, ...]]] = {}
        if len(shape) > 1:
            self.shaped[0] = ("input", shape)
        else:
            self.flat[0] = "input"
        self.inits: list = []
        self.sparse: list = []

    def weight(self, name: str, matrix: np.ndarray) -> None:
        """``matrix`` as the initializer ``name``: sparse (flat int64 indices) when smaller."""
        from onnx import helper, numpy_helper

        if not smaller_sparse(matrix, matrix.itemsize, 8):
            self.inits.append(numpy_helper.from_array(matrix, name))
            return
        flat = np.flatnonzero(matrix)
        values = numpy_helper.from_array(matrix.reshape(-1)[flat], name)
        self.sparse.append(helper.make_sparse_tensor(values, numpy_helper.from_array(flat.astype(np.int64),
                                                                                     f"{name}_index"),
                                                     list(matrix.shape)))

    def get_flat(self, s: int) -> str:
        from onnx import helper

        if s not in self.flat:
            name = f"flat{s}" if s else "flat_input"
            self.nodes.append(helper.make_node("Flatten", [self.shaped[s][0]], [name], name=name, axis=1))
            self.flat[s] = name
        return self.flat[s]

    def get_shaped(self, s: int, shape: tuple[int, ...]) -> str:
        from onnx import helper, numpy_helper

        if s in self.shaped and self.shaped[s][1] == shape:
            return self.shaped[s][0]
        name, target = f"shaped{s}_{len(self.nodes)}", f"shape{s}_{len(self.nodes)}"
        self.inits.append(numpy_helper.from_array(np.array([-1, *shape], dtype=np.int64), target))
        self.nodes.append(helper.make_node("Reshape", [self.get_flat(s), target], [name], name=name))
        return name


def _conv_layer(k: int, layer: Layer, kernels: dict[int, np.ndarray], tensors: _Tensors, dtype: type) -> str:
    """Conv nodes (one per source, summed) for a layer that is a conv; returns the pre-activation."""
    from onnx import helper, numpy_helper

    st = layer.structure
    bias = channel_bias(layer)
    single = len(kernels) == 1 and bias is not None
    terms = []
    for s, kernel in kernels.items():
        wname = f"K{k}_{s}"
        tensors.inits.append(numpy_helper.from_array(kernel.astype(dtype), wname))
        inputs = [tensors.get_shaped(s, tuple(int(d) for d in st["in_shape"])), wname]
        if single:
            tensors.inits.append(numpy_helper.from_array(bias.astype(dtype), f"b{k}"))
            inputs.append(f"b{k}")
        out = f"conv{k}_{s}"
        tensors.nodes.append(helper.make_node(
            "Conv", inputs, [out], name=out, kernel_shape=list(kernel.shape[2:]), strides=list(st["strides"]),
            pads=list(st["pads"]), dilations=list(st["dilations"]), group=int(st["group"])))
        terms.append(out)
    acc = terms[0]
    for i, t in enumerate(terms[1:], start=1):
        tensors.nodes.append(helper.make_node("Add", [acc, t], [f"sum{k}_{i}"], name=f"sum{k}_{i}"))
        acc = f"sum{k}_{i}"
    if single:
        return acc
    bname = f"b{k}"
    tensors.inits.append(numpy_helper.from_array(layer.bias.reshape(layer.shape).astype(dtype), bname))
    tensors.nodes.append(helper.make_node("Add", [acc, bname], [f"z{k}"], name=f"bias{k}"))
    return f"z{k}"


def _conv_term(k: int, s: int, found: tuple[np.ndarray, Mapping[str, Any]], tensors: _Tensors, dtype: type) -> str:
    """One source of a layer that is not all convs, written as the conv it is, flattened."""
    from onnx import helper, numpy_helper

    kernel, st = found
    wname, out = f"K{k}_{s}", f"conv{k}_{s}"
    tensors.inits.append(numpy_helper.from_array(kernel.astype(dtype), wname))
    tensors.nodes.append(helper.make_node(
        "Conv", [tensors.get_shaped(s, tuple(int(d) for d in st["in_shape"])), wname], [out], name=out,
        kernel_shape=list(kernel.shape[2:]), strides=list(st["strides"]), pads=list(st["pads"]),
        dilations=list(st["dilations"]), group=int(st["group"])))
    tensors.nodes.append(helper.make_node("Flatten", [out], [f"{out}_flat"], name=f"{out}_flat", axis=1))
    return f"{out}_flat"


def _dense_layer(k: int, layer: Layer, tensors: _Tensors, dtype: type, geometries: list[Mapping[str, Any]]) -> str:
    """MatMul nodes (a source whose matrix is exactly a conv of ``geometries``: a Conv node)."""
    from onnx import helper, numpy_helper

    terms = []
    for s, w in layer.weights.items():
        found = source_kernel(w, geometries) if geometries else None
        if found is not None:
            terms.append(_conv_term(k, s, found, tensors, dtype))
            continue
        wname = f"W{k}_{s}"
        tensors.weight(wname, np.ascontiguousarray(w.T).astype(dtype))
        out = f"mm{k}_{s}"
        tensors.nodes.append(helper.make_node("MatMul", [tensors.get_flat(s), wname], [out], name=f"matmul{k}_{s}"))
        terms.append(out)
    bname = f"b{k}"
    tensors.inits.append(numpy_helper.from_array(layer.bias.astype(dtype), bname))
    acc = terms[0]
    for i, t in enumerate(terms[1:], start=1):
        tensors.nodes.append(helper.make_node("Add", [acc, t], [f"sum{k}_{i}"], name=f"sum{k}_{i}"))
        acc = f"sum{k}_{i}"
    tensors.nodes.append(helper.make_node("Add", [acc, bname], [f"z{k}"], name=f"bias{k}"))
    return f"z{k}"


def _max_pool(run: PoolRun, tensors: _Tensors) -> int:
    """One MaxPool node for the layers of ``run``; returns the last of them."""
    from onnx import helper

    out = f"pool{run.first}"
    source = tensors.get_shaped(run.source, run.in_shape)
    tensors.nodes.append(helper.make_node("MaxPool", [source], [out], name=out, **run.attributes))
    tensors.shaped[run.output] = (out, run.out_shape)
    return run.output


def to_onnx(network: Network, dtype: type = np.float32):  # noqa: ANN201 - onnx.ModelProto, imported lazily
    import onnx
    from onnx import TensorProto, helper

    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    nodes: list = []
    shape = network.input_shape or (network.input_dim,)
    tensors = _Tensors(nodes, shape)
    runs = pool_runs(network) if dtype == np.float32 else {}
    geometries = conv_geometries(network.layers) if dtype == np.float32 else []
    written = 0  # the last layer a MaxPool node stands for
    for k, layer in enumerate(network.layers, start=1):
        if k in runs:
            written = _max_pool(runs[k], tensors)
        if k <= written:
            continue
        kernels = conv_kernels(layer) if dtype == np.float32 else None  # onnxruntime has no float64 Conv
        if kernels:
            z = _conv_layer(k, layer, kernels, tensors, dtype)
        else:
            z = _dense_layer(k, layer, tensors, dtype, geometries)
        h = z
        if layer.relu:
            h = f"h{k}"
            nodes.append(helper.make_node("Relu", [z], [h], name=f"relu{k}"))
        if kernels:
            tensors.shaped[k] = (h, tuple(int(d) for d in layer.shape))
        else:
            tensors.flat[k] = h
    nodes.append(helper.make_node("Identity", [tensors.get_flat(len(network.layers))], ["output"], name="output"))
    graph = helper.make_graph(
        nodes, "leo",
        [helper.make_tensor_value_info("input", elem, ["batch", *shape])],
        [helper.make_tensor_value_info("output", elem, ["batch", network.output_dim])],
        initializer=tensors.inits,
        sparse_initializer=tensors.sparse,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="leo")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def save_onnx(network: Network, path: Path, dtype: type = np.float32) -> None:
    import onnx

    onnx.save(to_onnx(network, dtype), str(path))
