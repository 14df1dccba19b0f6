"""ONNX output built node by node (MatMul/Add, Relu), so it needs no exporter and keeps
the network exactly as leo sees it. A layer that is a convolution (its ``structure``
rebuilds its weights exactly, ``leo.reduction.structured.conv_kernels``) becomes Conv nodes on a
(batch, C, H, W) tensor, Reshape before and Flatten after only where a neighbour is
dense; every other layer MatMul/Add. Float64 models keep MatMul everywhere: onnxruntime's
CPU provider has no float64 Conv, and a file it cannot run helps no one. The model takes the input shape the original took
(``Network.input_shape``); with no recorded shape it takes (batch, input_dim)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from leo.core.network import Layer, Network
from leo.reduction.structured import channel_bias, conv_kernels

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


def _dense_layer(k: int, layer: Layer, tensors: _Tensors, dtype: type) -> str:
    from onnx import helper, numpy_helper

    terms = []
    for s, w in layer.weights.items():
        wname = f"W{k}_{s}"
        tensors.inits.append(numpy_helper.from_array(np.ascontiguousarray(w.T).astype(dtype), wname))
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


def to_onnx(network: Network, dtype: type = np.float32):  # noqa: ANN201 - onnx.ModelProto, imported lazily
    import onnx
    from onnx import TensorProto, helper

    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    nodes: list = []
    shape = network.input_shape or (network.input_dim,)
    tensors = _Tensors(nodes, shape)
    for k, layer in enumerate(network.layers, start=1):
        kernels = conv_kernels(layer) if dtype == np.float32 else None  # onnxruntime has no float64 Conv
        z = _conv_layer(k, layer, kernels, tensors, dtype) if kernels else _dense_layer(k, layer, tensors, dtype)
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
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="leo")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def save_onnx(network: Network, path: Path, dtype: type = np.float32) -> None:
    import onnx

    onnx.save(to_onnx(network, dtype), str(path))
