"""The op table: which reader reads each ONNX op in each opset.

An op's form changes only at the opsets where ONNX published a new version of it
(``onnx.defs.get_schema(op, opset).since_version``); the table lists every version of
every op it reads, up to ``REVIEWED_OPSET``, checked against the operator changelog, so
a model's node finds its reader by (op type, the version its opset resolves to). A
version not listed (an op changed after ``REVIEWED_OPSET``) is refused by name rather
than read with an older form's rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import leo.io.onnx.arithmetic as ar
import leo.io.onnx.layout as lay
import leo.io.onnx.reduce as rd
import leo.io.onnx.spatial as sp
import leo.io.onnx.tensors as ts
from leo.io.onnx.values import Handler

#: The newest opset whose changelog the table was checked against (onnx 1.23).
REVIEWED_OPSET = 28


def _versions(op: str, forms: dict[tuple[int, ...], Handler]) -> dict[tuple[str, int], Handler]:
    return {(op, v): handler for versions, handler in forms.items() for v in versions}


_TABLE: dict[tuple[str, int], Handler] = {
    **_versions("Gemm", {(1, 6, 7, 9, 11, 13): ar.gemm}),  # broadcast attr (< 7): C then has the output's shape
    **_versions("MatMul", {(1, 9, 13): ar.matmul}),
    **{k: v for op, fn in (("Add", ar.add), ("Sub", ar.sub), ("Mul", ar.mul), ("Div", ar.div))
       for k, v in _versions(op, {(1, 6): ar.legacy_broadcast(fn), (7, 13, 14): fn}).items()},
    **_versions("Neg", {(1, 6, 13): ar.neg}),
    **_versions("Relu", {(1, 6, 13, 14): ar.relu}),
    **_versions("Clip", {(1, 6): ar.clip_attributes, (11, 12, 13): ar.clip_inputs}),
    **_versions("BatchNormalization", {(1, 6, 7, 9, 14, 15): ar.batchnorm}),
    **_versions("Flatten", {(1, 9, 11, 13, 21, 23, 24, 25): lay.flatten}),
    **_versions("Reshape", {(1,): lay.reshape_attribute, (5, 13, 14, 19, 21, 23, 24, 25): lay.reshape_input}),
    **_versions("Identity", {(1, 13, 14, 16, 19, 21, 23, 24, 25): ts.identity}),
    **_versions("Dropout", {(1, 6, 7, 10, 12, 13, 22): ts.dropout}),
    **_versions("Constant", {(1, 9, 11, 12, 13, 19, 21, 23, 24, 25): ts.constant}),
    **_versions("Shape", {(1, 13, 15, 19, 21, 23, 24, 25): ts.shape}),
    **_versions("ConstantOfShape", {(9, 20, 21, 23, 24, 25): ts.constant_only(ts.constant_of_shape)}),
    **_versions("Cast", {(1, 6, 9, 13, 19, 21, 23, 24, 25, 28): ts.cast}),
    **_versions("Gather", {(1, 11, 13): lay.rearranging(lay.one(lay.gather))}),
    **_versions("Transpose", {(1, 13, 21, 23, 24, 25): lay.rearranging(lay.one(lay.transpose))}),
    **_versions("Unsqueeze", {(1, 11): lay.rearranging(lay.one(lay.unsqueeze_attribute)),
                              (13, 21, 23, 24, 25): lay.rearranging(lay.one(lay.unsqueeze_input))}),
    **_versions("Squeeze", {(1, 11): lay.rearranging(lay.one(lay.squeeze_attribute)),
                            (13, 21, 23, 24, 25): lay.rearranging(lay.one(lay.squeeze_input))}),
    **_versions("Slice", {(1,): lay.rearranging(lay.one(lay.slice_attributes)),
                          (10, 11, 13): lay.rearranging(lay.one(lay.slice_inputs))}),
    **_versions("Split", {(1, 2, 11): lay.rearranging(lay.split_attribute),
                          (13, 18): lay.rearranging(lay.split_input)}),
    **_versions("Concat", {(1, 4, 11, 13): lay.concat}),
    **_versions("Pad", {(1,): lay.pad_paddings, (2,): lay.pad_attributes,
                        (11, 13, 18, 19, 21, 23, 24, 25): lay.pad_inputs}),
    **_versions("Conv", {(1, 11, 22): sp.conv}),
    **_versions("ConvTranspose", {(1, 11, 22): sp.conv_transpose}),
    **_versions("AveragePool", {(1, 7, 10, 11, 19, 22): sp.average_pool}),
    **_versions("GlobalAveragePool", {(1, 22): sp.global_average_pool}),
    **_versions("MaxPool", {(1, 8, 10, 11, 12, 22): sp.max_pool}),
    **_versions("Expand", {(8, 13): rd.expand}),
    **_versions("ReduceSum", {(1, 11): rd.reduce_sum_attribute, (13,): rd.reduce_sum_input}),
    **_versions("ReduceMean", {(1, 11, 13): rd.reduce_mean_attribute, (18,): rd.reduce_mean_input}),
}

#: Ops leo cannot read exactly: they are not piecewise linear (named in the refusal).
NOT_PIECEWISE_LINEAR = frozenset({
    "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "Exp", "Log", "Sqrt", "Pow", "Erf", "Gelu", "Softplus",
    "Softsign", "Elu", "Selu", "Celu", "HardSigmoid", "HardSwish", "Mish", "Sin", "Cos", "Reciprocal",
})


@dataclass(frozen=True)
class OpsetRange:
    """The opsets (inclusive) in which leo reads an op."""

    first: int
    last: int


def table() -> Mapping[tuple[str, int], Handler]:
    """(op type, op version) -> reader."""
    return MappingProxyType(_TABLE)


def versions(op: str) -> tuple[int, ...]:
    """The versions of ``op`` the table reads, oldest first."""
    return tuple(sorted(v for o, v in _TABLE if o == op))


def supported_ops() -> Mapping[str, OpsetRange]:
    """Op type -> the opsets leo reads it in (from its first listed version to the newest
    reviewed opset): a function of the table, so a reader added there shows here."""
    ops = sorted({op for op, _ in _TABLE})
    return MappingProxyType({op: OpsetRange(versions(op)[0], REVIEWED_OPSET) for op in ops})


class UnknownVersion(LookupError):
    """The op exists, but not in a version the table lists."""


def handler_for(op: str, opset: int) -> Handler | None:
    """The reader of ``op`` in a model of default-domain ``opset``; None for an op the table
    does not hold; UnknownVersion for a version of it that it does not."""
    import onnx.defs

    if op not in {o for o, _ in _TABLE}:
        return None
    if opset > onnx.defs.onnx_opset_version():  # onnx would answer with the newest version it knows
        raise UnknownVersion(f"opset {opset} is newer than the installed onnx package knows "
                             f"({onnx.defs.onnx_opset_version()}); upgrade onnx")
    try:
        version = onnx.defs.get_schema(op, opset, "").since_version
    except Exception:  # noqa: BLE001 - onnx raises SchemaError for an op newer than the opset
        raise UnknownVersion(f"{op} does not exist in opset {opset}") from None
    handler = _TABLE.get((op, version))
    if handler is None:
        raise UnknownVersion(f"{op} version {version} (opset {opset}) is newer than the versions leo reads "
                             f"({', '.join(map(str, versions(op)))})")
    return handler
