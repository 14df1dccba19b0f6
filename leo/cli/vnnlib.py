"""``leo-vnnlib``: the VNN-LIB 2.0 solver interface (the standard's command-line chapter).

``leo-vnnlib verify QUERY --network NAME=FILE.onnx [--network ...] [--timeout S]`` prints the
result as the first line of stdout (``sat``, ``unsat``, ``unknown`` or ``timed-out``); after
``sat`` comes the assignment: every declared variable in declaration order, across every
network, as a header ``NAME TYPE [d1,d2]`` and then its values row-major, one per line. The
values are the counterexample that each network's own forward pass confirmed.

``leo-vnnlib supports --CAPABILITY`` answers one capability from the code that implements it:
ONNX operators and opsets from the ONNX reader's op table, VNN-LIB versions and theories by
running this command's own ``verify`` on a small probe query per theory (``leo.cli.vnnlib_probes``),
so a theory is claimed only when leo answers its probe correctly.

Exit codes: the standard defines none, so leo's own are kept (``leo/exitcodes.py``): 0 when a
result was printed (whichever: the result is stdout's first line), 2 for bad input (one line on
stderr, nothing on stdout), 4 for a bug in leo.
"""

from __future__ import annotations

import argparse
import enum
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from leo.errors import LeoInputError
from leo.exitcodes import ExitCode

if TYPE_CHECKING:
    from leo.core.spec import Query
    from leo.core.network import Network
    from leo.queries.property import Answer

PROGRAM = "leo-vnnlib"

#: Seconds a ``verify`` without ``--timeout`` may take in all.
DEFAULT_TIMEOUT = 300.0
#: Seconds kept back from ``--timeout`` for printing the result and leaving the process.
EXIT_RESERVE = 0.5
#: The shortest time the checker is ever given, even when start-up ate the rest.
MIN_CHECK_SECONDS = 0.5

#: ONNX element types the ONNX reader reads: it computes in float64 whatever the float type,
#: and refuses a cast to any other kind (``leo.io.onnx_import``).
ONNX_ELEMENT_TYPES = ("float16", "float32", "float64")


class Result(enum.Enum):
    """The result line of ``verify``, in the standard's words."""

    SAT = "sat"
    UNSAT = "unsat"
    UNKNOWN = "unknown"
    TIMED_OUT = "timed-out"


def _result_of(answer: Answer) -> Result:
    """leo's answer as the standard's result."""
    from leo.queries.property import Answer

    return {Answer.SAT: Result.SAT, Answer.UNSAT: Result.UNSAT, Answer.TIMEOUT: Result.TIMED_OUT}.get(
        answer, Result.UNKNOWN)


@dataclass(frozen=True)
class VerifyRequest:
    """One ``verify`` invocation: the query, the model file of each named network, the time."""

    query: Path
    networks: Mapping[str, Path]
    timeout: float


@dataclass(frozen=True)
class Variable:
    """One declared variable as the assignment prints it."""

    name: str
    element_type: str
    shape: tuple[int, ...]


# -- verify ----------------------------------------------------------------------------------

def _network_pairs(tokens: Sequence[str]) -> dict[str, Path]:
    """``NAME=FILE`` pairs; a name given twice or a token that is not a pair is bad input."""
    pairs: dict[str, Path] = {}
    for token in tokens:
        name, sep, path = token.partition("=")
        if not sep or not name or not path:
            raise LeoInputError(f"--network takes NAME=FILE.onnx; {token!r} is not a name and a file "
                                "separated by '='")
        if name in pairs:
            raise LeoInputError(f"--network names {name!r} twice; give each declared network one model file")
        pairs[name] = Path(path)
    return pairs


def _declared_networks(query: Query) -> list[tuple[str, str | None]]:
    """(name, equal-to name or None) of every declared network, in declaration order."""
    return [(d.name, d.equal_to) for d in query.networks]


def _check_mapping(query: Query, request: VerifyRequest) -> None:
    """One model file per declared network except those declared ``equal-to`` another."""
    declared = dict(_declared_networks(query))
    for name in request.networks:
        if name not in declared:
            raise LeoInputError(f"--network names {name!r}, which {request.query} does not declare "
                                f"(it declares {', '.join(declared) or 'no network'})")
        if declared[name] is not None:
            raise LeoInputError(f"--network names {name!r}, which {request.query} declares equal-to "
                                f"{declared[name]!r}; it takes no model file of its own")
    missing = [n for n, same in declared.items() if same is None and n not in request.networks]
    if missing:
        raise LeoInputError(f"no model file for network {missing[0]!r}, which {request.query} declares; "
                            f"give --network {missing[0]}=FILE.onnx")


def _load_networks(query: Query, request: VerifyRequest) -> dict[str, Network]:
    """The network of every declared name; an ``equal-to`` network is the one it copies."""
    from leo.io.load import load_network

    loaded = {name: load_network(path) for name, path in request.networks.items()}
    for name, same in _declared_networks(query):
        if same is not None:
            if same not in loaded:
                raise LeoInputError(f"{request.query}: network {name!r} is declared equal-to {same!r}, "
                                    "which has no model file")
            loaded[name] = loaded[same]
    return loaded


def _variables(query: Query) -> list[Variable]:
    """Every declared variable in declaration order, across every network."""
    return [Variable(t.name, t.dtype, tuple(int(d) for d in t.shape))
            for decl in query.networks for t in (*decl.inputs, *decl.outputs)]


def _number(v: float, element_type: str = "float64") -> str:
    """The shortest text that reads back as exactly ``v``, never ``-0.0``; an integer-typed
    variable's value (a constant output, exact) as an integer."""
    from leo.io.vnnlib_syntax import INTEGER_TYPES

    if element_type in INTEGER_TYPES and float(v).is_integer():
        return str(int(v))
    return repr(float(v) + 0.0)


def assignment_text(variables: Sequence[Variable], values: Mapping[str, np.ndarray]) -> str:
    """The assignment block: a ``NAME TYPE [d1,d2]`` header per variable, then its values
    row-major one per line. A variable without a value is a bug, never a shorter block."""
    lines: list[str] = []
    for var in variables:
        if var.name not in values:
            raise RuntimeError(f"the counterexample has no value for the declared variable {var.name}")
        v = np.asarray(values[var.name], dtype=np.float64).reshape(-1)
        if v.size != int(np.prod(var.shape, dtype=np.int64)):
            raise RuntimeError(f"the counterexample gives {v.size} values for {var.name}, declared {list(var.shape)}")
        lines.append(f"{var.name} {var.element_type} [{','.join(str(d) for d in var.shape)}]")
        lines += [_number(x, var.element_type) for x in v]
    return "".join(line + "\n" for line in lines)


def check_output_types(query: Query, networks: Mapping[str, Network]) -> None:
    """An output declared with an integer type is exact only where the network's output is a
    constant (its last layer has no ReLU and zero weights): leo computes over the reals, and a
    cast of input-dependent values to an integer is a step function it does not read."""
    from leo.io.vnnlib_syntax import INTEGER_TYPES

    for decl in query.networks:
        ints = [t for t in decl.outputs if t.dtype in INTEGER_TYPES]
        net = networks.get(decl.name)
        if net is None or not ints:
            continue
        last = net.layers[-1]
        if last.relu or any(np.any(w) for w in last.weights.values()):
            raise LeoInputError(f"network '{decl.name}': output {ints[0].name} has type {ints[0].dtype}, but the "
                                "network's output depends on its input; leo reads integer outputs only where "
                                "they are constants")


def verify(request: VerifyRequest, started: float) -> str:
    """The text ``verify`` prints: the result line, and after ``sat`` the assignment."""
    from leo.io.vnnlib import read_vnnlib_query
    from leo.queries.check import check_query

    query = read_vnnlib_query(request.query)
    _check_mapping(query, request)
    networks = _load_networks(query, request)
    check_output_types(query, networks)
    variables = _variables(query)
    left = request.timeout - (time.perf_counter() - started) - EXIT_RESERVE
    result = check_query(query, networks, time_limit=max(left, MIN_CHECK_SECONDS))
    verdict = _result_of(result.answer)
    text = verdict.value + "\n"
    if verdict is Result.SAT:
        text += assignment_text(variables, {**(result.inputs or {}), **(result.outputs or {})})
    return text


# -- supports --------------------------------------------------------------------------------

class Capability(enum.Enum):
    """The standard's capabilities, each its ``supports`` flag."""

    OPSET_VERSIONS = "--onnx-opset-versions"
    ELEMENT_TYPES = "--onnx-element-types"
    OPERATORS = "--onnx-operators"
    VNNLIB_VERSIONS = "--vnnlib-versions"
    HIDDEN_NODE = "--hidden-node-theories"
    MULTIPLE_INPUT_OUTPUT = "--multiple-input-output-theories"
    MULTIPLE_NETWORK = "--multiple-network-theories"
    MULTIPLE_NODE_COMPARISON = "--multiple-node-comparison-theories"
    ARITHMETIC_COMPLEXITY = "--arithmetic-complexity-theories"
    OPTIMISED_DISJUNCTIVE_REASONING = "--optimised-disjunctive-reasoning"
    SERIALISE_ASSIGNMENTS = "--serialise-assignments"


def _lines(values: Sequence[str]) -> str:
    return "".join(f"{v}\n" for v in values)


def _op_ranges() -> list[tuple[str, int | None, int | None]]:
    """(op type, first opset read, last opset read) from the ONNX reader's op table (a mapping
    op -> range); None where the table gives no range (a plain list of op types)."""
    from leo.io.onnx_import import supported_ops

    ops = supported_ops()
    if isinstance(ops, Mapping):
        return [(str(op), getattr(r, "first", None), getattr(r, "last", None)) for op, r in ops.items()]
    return [(str(op), None, None) for op in ops]


def _operators() -> str:
    return _lines(sorted({op for op, _, _ in _op_ranges()}))


def _opset_versions() -> str:
    """The opsets every op of the table is read in: the latest first opset to the earliest last."""
    import onnx.defs

    ranges = _op_ranges()
    first = max((f for _, f, _ in ranges if f is not None), default=1)
    last = min((t for _, _, t in ranges if t is not None), default=onnx.defs.onnx_opset_version())
    return _lines([str(first), str(last)])


def _probe_verify(query: Path, files: Mapping[str, Path], seconds: float) -> str:
    """The result line ``verify`` gives a probe query."""
    return verify(VerifyRequest(query, dict(files), seconds), time.perf_counter()).split("\n", 1)[0]


def _claimed(groups: Mapping[str, Any]) -> list[str]:
    """The names of ``groups`` whose probes leo answers; why the others fail goes to stderr."""
    from leo.cli.vnnlib_probes import probe

    found = probe(groups, _probe_verify)
    for name, why in found.items():
        if why is not None:
            print(f"{PROGRAM}: {name} is not claimed: its probe query {why}", file=sys.stderr)
    return [name for name, why in found.items() if why is None]


def _theories(capability: Capability) -> Callable[[], str]:
    def answer() -> str:
        from leo.cli.vnnlib_probes import THEORIES

        return _lines(_claimed(THEORIES[capability.value]))
    return answer


def _vnnlib_versions() -> str:
    from leo.cli.vnnlib_probes import VERSIONS

    versions = _claimed(VERSIONS)
    if not versions:
        raise RuntimeError("leo answers the probe queries of no VNN-LIB version")
    return _lines([versions[0], versions[-1]])


_SUPPORTS: dict[Capability, Callable[[], str]] = {
    Capability.OPSET_VERSIONS: _opset_versions,
    Capability.ELEMENT_TYPES: lambda: _lines(ONNX_ELEMENT_TYPES),
    Capability.OPERATORS: _operators,
    Capability.VNNLIB_VERSIONS: _vnnlib_versions,
    Capability.HIDDEN_NODE: _theories(Capability.HIDDEN_NODE),
    Capability.MULTIPLE_INPUT_OUTPUT: _theories(Capability.MULTIPLE_INPUT_OUTPUT),
    Capability.MULTIPLE_NETWORK: _theories(Capability.MULTIPLE_NETWORK),
    Capability.MULTIPLE_NODE_COMPARISON: _theories(Capability.MULTIPLE_NODE_COMPARISON),
    Capability.ARITHMETIC_COMPLEXITY: _theories(Capability.ARITHMETIC_COMPLEXITY),
    # leo splits a disjunction into cases and checks them one after another, without sharing
    # work between them (leo.queries.check), which is what the capability asks about.
    Capability.OPTIMISED_DISJUNCTIVE_REASONING: lambda: "false\n",
    # Assignments go to stdout only; leo writes no assignment files.
    Capability.SERIALISE_ASSIGNMENTS: lambda: "false\n",
}


# -- the command line ------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """Usage mistakes are bad input: one line, exit 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise LeoInputError(f"{message} (see '{PROGRAM} --help')")


def _parser() -> argparse.ArgumentParser:
    from leo.io.vnnlib import V1_NETWORK

    parser = _Parser(prog=PROGRAM, description="leo's VNN-LIB 2.0 solver interface: verify a query, "
                     "or report a capability. A result printed: exit 0; bad input: exit 2.")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--name", action="store_true", help="print the solver's name")
    which.add_argument("--version", action="store_true", help="print the solver's version")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    v = commands.add_parser("verify", help="answer a VNN-LIB query: sat, unsat, unknown or timed-out")
    v.add_argument("query", metavar="QUERY", help="the VNN-LIB file (1.0 or 2.0; .vnnlib.gz too)")
    v.add_argument("--network", action="append", default=[], metavar="NAME=FILE",
                   help="the ONNX model of a declared network (once per network not declared equal-to another; "
                   f"a VNN-LIB 1.0 file declares none: its network is called {V1_NETWORK})")
    v.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help=f"wall-clock seconds for the whole run, start-up included (default {DEFAULT_TIMEOUT:g})")
    v.add_argument("--serialise-assignments", dest="serialise", default=None, metavar="FOLDER",
                   help="not supported: leo prints the assignment on stdout (supports says false)")
    for alias in ("supports", "capabilities"):
        s = commands.add_parser(alias, help="report one capability" if alias == "supports" else argparse.SUPPRESS)
        flags = s.add_mutually_exclusive_group(required=True)
        for cap in Capability:
            flags.add_argument(cap.value, dest="capability", action="store_const", const=cap)
    return parser


def _request(args: argparse.Namespace) -> VerifyRequest:
    if args.serialise is not None:
        raise LeoInputError("--serialise-assignments is not supported: leo prints the assignment on stdout "
                            f"('{PROGRAM} supports --serialise-assignments' says false)")
    if not (args.timeout > 0 and np.isfinite(args.timeout)):
        raise LeoInputError(f"--timeout must be a positive number of seconds, not {args.timeout}")
    return VerifyRequest(Path(args.query), _network_pairs(args.network), float(args.timeout))


def _dispatch(argv: Sequence[str] | None, started: float) -> str:
    args = _parser().parse_args(argv)
    if args.name:
        return "leo\n"
    if args.version:
        from importlib.metadata import version

        return version("leo") + "\n"
    if args.command == "verify":
        return verify(_request(args), started)
    if args.command in ("supports", "capabilities"):
        return _SUPPORTS[args.capability]()
    raise LeoInputError("give a command (verify or supports) or --name/--version")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the answer goes to stdout only once it is complete."""
    started = time.perf_counter()
    try:
        text = _dispatch(argv, started)
    except LeoInputError as exc:
        print(f"{PROGRAM}: error: {exc}", file=sys.stderr)
        return int(ExitCode.BAD_INPUT)
    except OSError as exc:
        print(f"{PROGRAM}: error: {exc}", file=sys.stderr)
        return int(ExitCode.BAD_INPUT)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, not a traceback
        if os.environ.get("LEO_DEBUG"):
            raise
        print(f"{PROGRAM}: internal error: {type(exc).__name__}: {exc} (set LEO_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return int(ExitCode.INTERNAL)
    sys.stdout.write(text)
    sys.stdout.flush()
    return int(ExitCode.OK)


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
