"""Probe queries behind ``leo-vnnlib supports``: a theory is claimed only when leo answers it.

Each VNN-LIB theory (the standard's names: SNET/MNET/MENET/MINET for several networks, NH/H
for hidden nodes, SIO/MIO for several inputs and outputs, SNC/MNC for comparisons between
several nodes, BND/OUTC/LIN/POLY for arithmetic) has a small query that needs it, one sat and
one unsat, on a tiny ONNX model whose answer is known by hand. ``supports`` runs ``verify`` on
them (the same code path as a user's query, reader and checker included) and reports a theory
only if every one of its probes gets the right answer; a refusal (bad input), a wrong answer or
a crash all mean "not supported". So the reply follows the code, not a hand-kept list.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Seconds each probe may take (tiny networks: a correct answer takes well under a second).
PROBE_SECONDS = 10.0

#: ``verify(query, {network name: onnx file}, seconds) -> first line of its output``.
Verify = Callable[[Path, Mapping[str, Path], float], str]


@dataclass(frozen=True)
class Probe:
    """A query, the model each network name maps to, and the answer leo must give."""

    query: str
    models: Mapping[str, str]  # network name -> key of _MODELS
    expected: str  # "sat" or "unsat"


def _relu2() -> Any:
    """Y = relu(X) over [1, 2]."""
    from onnx import TensorProto, helper

    node = helper.make_node("Relu", ["X"], ["Y"])
    graph = helper.make_graph([node], "relu2", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 2])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _sub() -> Any:
    """Y = X1 - X2, two graph inputs of shape [1, 1]: swapping them changes the answer."""
    from onnx import TensorProto, helper

    node = helper.make_node("Sub", ["X1", "X2"], ["Y"])
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 1]) for n in ("X1", "X2")]
    graph = helper.make_graph([node], "sub", inputs, [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 1])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _hidden() -> Any:
    """Y = relu(H), H = 2 X: the node ``hidden_out`` is H."""
    from onnx import TensorProto, helper

    two = helper.make_tensor("two", TensorProto.FLOAT, [1], [2.0])
    nodes = [helper.make_node("Mul", ["X", "two"], ["hidden_out"]), helper.make_node("Relu", ["hidden_out"], ["Y"])]
    graph = helper.make_graph(nodes, "hidden", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 1])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 1])], initializer=[two])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


_MODELS: dict[str, Callable[[], Any]] = {"relu2": _relu2, "sub": _sub, "hidden": _hidden}

_HEAD = "(vnnlib-version <2.0>)\n"
_ONE = "(declare-network N (declare-input X float32 [1,2]) (declare-output Y float32 [1,2]))\n"
_BOX = "(assert (and (>= X[0,0] 0.0) (<= X[0,0] 1.0) (>= X[0,1] 0.0) (<= X[0,1] 1.0)))\n"
_TWO = ("(declare-network N1 (declare-input X float32 [1,2]) (declare-output Y float32 [1,2]))\n"
        "(declare-network N2 {relation}(declare-input X2 float32 [1,2]) (declare-output Y2 float32 [1,2]))\n"
        "(assert (and (>= X[0,0] 0.0) (<= X[0,0] 1.0) (>= X[0,1] 0.0) (<= X[0,1] 1.0)))\n"
        "(assert (and (>= X2[0,0] 2.0) (<= X2[0,0] 3.0) (>= X2[0,1] 2.0) (<= X2[0,1] 3.0)))\n")


def _single(body: str, expected: str) -> Probe:
    return Probe(_HEAD + _ONE + body, {"N": "relu2"}, expected)


def _pair(relation: str, body: str, expected: str) -> Probe:
    models = {"N1": "relu2"} if relation.startswith("(equal-to") else {"N1": "relu2", "N2": "relu2"}
    return Probe(_HEAD + _TWO.format(relation=relation) + body, models, expected)


_BND = (_single(_BOX + "(assert (>= Y[0,0] 2.0))\n", "unsat"), _single(_BOX + "(assert (>= Y[0,0] 0.5))\n", "sat"))
_OUTC_BOX = "(assert (and (>= X[0,0] {a}) (<= X[0,0] {b}) (>= X[0,1] {c}) (<= X[0,1] {d})))\n"
_OUTC = (_single(_OUTC_BOX.format(a=0.0, b=1.0, c=2.0, d=3.0) + "(assert (>= Y[0,0] Y[0,1]))\n", "unsat"),
         _single(_OUTC_BOX.format(a=2.0, b=3.0, c=0.0, d=1.0) + "(assert (>= Y[0,0] Y[0,1]))\n", "sat"))
_LIN = (_single(_BOX + "(assert (>= (+ X[0,0] X[0,1]) 2.5))\n", "unsat"),
        _single(_BOX + "(assert (>= (+ (* 0.5 X[0,0]) X[0,1]) 1.25))\n(assert (<= (- Y[0,0] Y[0,1]) 0.5))\n", "sat"))
_POLY = (_single(_BOX + "(assert (>= (* X[0,0] X[0,1]) 2.0))\n", "unsat"),
         _single(_BOX + "(assert (>= (* X[0,0] X[0,1]) 0.25))\n", "sat"))
_MIO_HEAD = (_HEAD + "(declare-network N (declare-input X1 float32 [1,1]) (declare-input X2 float32 [1,1]) "
             "(declare-output Y float32 [1,1]))\n(assert (and (>= X1[0,0] 0.0) (<= X1[0,0] 1.0) "
             "(>= X2[0,0] 10.0) (<= X2[0,0] 11.0)))\n")
_MIO = (Probe(_MIO_HEAD + "(assert (>= Y[0,0] -8.0))\n", {"N": "sub"}, "unsat"),
        Probe(_MIO_HEAD + "(assert (>= Y[0,0] -10.5))\n", {"N": "sub"}, "sat"))
_H_HEAD = (_HEAD + "(declare-network N (declare-input X float32 [1,1]) (declare-hidden H float32 [1,1] "
           "\"hidden_out\") (declare-output Y float32 [1,1]))\n(assert (and (>= X[0,0] 0.0) (<= X[0,0] 2.0)))\n")
_H = (Probe(_H_HEAD + "(assert (>= H[0,0] 5.0))\n", {"N": "hidden"}, "unsat"),
      Probe(_H_HEAD + "(assert (<= H[0,0] 3.0))\n(assert (>= Y[0,0] 1.0))\n", {"N": "hidden"}, "sat"))


def _networks(relation: str) -> tuple[Probe, ...]:
    return (_pair(relation, "(assert (>= Y[0,0] Y2[0,0]))\n", "unsat"),
            _pair(relation, "(assert (<= Y[0,0] Y2[0,0]))\n", "sat"))


#: Per ``supports`` flag, each theory in the standard's order with the probes that need it.
THEORIES: dict[str, dict[str, tuple[Probe, ...]]] = {
    "--hidden-node-theories": {"NH": _BND, "H": _H},
    "--multiple-input-output-theories": {"SIO": _BND, "MIO": _MIO},
    "--multiple-network-theories": {"SNET": _BND, "MNET": _networks(""), "MENET": _networks("(equal-to N1) "),
                                    "MINET": _networks("(isomorphic-to N1) ")},
    "--multiple-node-comparison-theories": {"SNC": _BND, "MNC": _OUTC + _networks("")},
    "--arithmetic-complexity-theories": {"BND": _BND, "OUTC": _OUTC, "LIN": _LIN, "POLY": _POLY},
}

_V1 = ("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
       "(assert (>= X_0 0.0))\n(assert (<= X_0 1.0))\n(assert (>= X_1 0.0))\n(assert (<= X_1 1.0))\n")
#: Per VNN-LIB version, probes written in it.
VERSIONS: dict[str, tuple[Probe, ...]] = {
    "1.0": (Probe(_V1 + "(assert (>= Y_0 2.0))\n", {"N": "relu2"}, "unsat"),
            Probe(_V1 + "(assert (>= Y_0 0.5))\n", {"N": "relu2"}, "sat")),
    "2.0": _BND,
}


def _failure(probe: Probe, verify: Verify, folder: Path) -> str | None:
    """Why ``verify`` does not give the probe's expected answer (None when it does)."""
    import onnx

    files: dict[str, Path] = {}
    for name, key in probe.models.items():
        files[name] = folder / f"{key}.onnx"
        if not files[name].exists():
            onnx.save(_MODELS[key](), str(files[name]))
    query = folder / "probe.vnnlib"
    query.write_text(probe.query)
    try:
        got = verify(query, files, PROBE_SECONDS)
    except Exception as exc:  # noqa: BLE001 - a refusal or a crash both mean "not supported"
        return f"{type(exc).__name__}: {exc}".replace(str(folder) + "/", "")
    return None if got == probe.expected else f"answered {got} where the answer is {probe.expected}"


def probe(groups: Mapping[str, tuple[Probe, ...]], verify: Verify) -> dict[str, str | None]:
    """Per theory (or version) of ``groups``: None when ``verify`` answers all its probes
    correctly, else why not (the first probe that fails)."""
    out: dict[str, str | None] = {}
    with tempfile.TemporaryDirectory(prefix="leo-vnnlib-probe-") as tmp:
        for name, probes in groups.items():
            out[name] = next((why for p in probes if (why := _failure(p, verify, Path(tmp))) is not None), None)
    return out
