"""ONNX output built node by node (Gemm, MatMul/Add for skips, Relu), so it needs
no exporter and keeps the network exactly as leo sees it. The model takes the input
shape the original took (``Network.input_shape``), flattened by a Flatten node in
front; with no recorded shape it takes (batch, input_dim)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from leo.network import Network

OPSET = 17


def to_onnx(network: Network, dtype: type = np.float32):  # noqa: ANN201 - onnx.ModelProto, imported lazily
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    nodes, inits = [], []
    names = ["input"]  # names[s] is the tensor holding the output of source s
    shape = network.input_shape or (network.input_dim,)
    if len(shape) > 1:
        nodes.append(helper.make_node("Flatten", ["input"], ["flat_input"], name="flatten", axis=1))
        names = ["flat_input"]
    for k, layer in enumerate(network.layers, start=1):
        terms = []
        for s, w in layer.weights.items():
            wname = f"W{k}_{s}"
            inits.append(numpy_helper.from_array(np.ascontiguousarray(w.T).astype(dtype), wname))
            out = f"mm{k}_{s}"
            nodes.append(helper.make_node("MatMul", [names[s], wname], [out], name=f"matmul{k}_{s}"))
            terms.append(out)
        bname = f"b{k}"
        inits.append(numpy_helper.from_array(layer.bias.astype(dtype), bname))
        acc = terms[0]
        for i, t in enumerate(terms[1:], start=1):
            nodes.append(helper.make_node("Add", [acc, t], [f"sum{k}_{i}"], name=f"sum{k}_{i}"))
            acc = f"sum{k}_{i}"
        z = f"z{k}"
        nodes.append(helper.make_node("Add", [acc, bname], [z], name=f"bias{k}"))
        if layer.relu:
            nodes.append(helper.make_node("Relu", [z], [f"h{k}"], name=f"relu{k}"))
            names.append(f"h{k}")
        else:
            names.append(z)
    nodes.append(helper.make_node("Identity", [names[-1]], ["output"], name="output"))
    graph = helper.make_graph(
        nodes, "leo",
        [helper.make_tensor_value_info("input", elem, ["batch", *shape])],
        [helper.make_tensor_value_info("output", elem, ["batch", network.output_dim])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="leo")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def save_onnx(network: Network, path: Path, dtype: type = np.float32) -> None:
    import onnx

    onnx.save(to_onnx(network, dtype), str(path))
