"""VNN-LIB in: 1.0 (``declare-const X_i Real``) and 2.0 (``declare-network`` with typed,
shaped tensors, indexed names ``X[0,3]``, several networks), plain or gzipped.

The ``assert`` formulas together describe a counterexample. Each is brought to
disjunctive normal form over linear atoms (``leo.io.vnnlib_syntax``); atoms on inputs
make each case's input region (bounds on single inputs a box, other linear atoms a
polytope), atoms on outputs its unsafe rows. ``read_vnnlib_query`` gives the one query
type (``leo.core.spec.Query``); ``read_vnnlib``/``read_query`` give the single box and
output property older callers use, and refuse what that cannot hold.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from leo.core.spec import (BOX_MARGIN, Case, InputRegion, Inequality, NetworkDecl, OutputProperty, Query, TensorDecl,
                           bounding_box)
from leo.core.domain import Box
from leo.errors import LeoInputError
from leo.io.vnnlib_syntax import INTEGER_TYPES, Atom, Linear, SList, conjoin, dnf, error, number, parse, tokens

#: The name of the one network a VNN-LIB 1.0 file speaks of (it declares none).
V1_NETWORK = "N"
#: Element types a declared tensor may have: leo computes over the reals.
FLOAT_TYPES = frozenset({"float16", "float32", "float64", "bfloat16", "Real", "real"})

_VAR = re.compile(r"^([XY])_(\d+)$")
_INDEXED = re.compile(r"^([^\[\]\"]+)(?:\[([0-9,]*)\])?$")
_IGNORED = {"set-logic", "set-info", "set-option", "check-sat", "get-model", "exit"}


@dataclass(frozen=True)
class _Tensor:
    kind: str  # "X" (input) or "Y" (output)
    offset: int  # of its first element among all inputs (or outputs), flat
    shape: tuple[int, ...]
    line: int


class _Reader:
    """What the commands so far declare and assert."""

    def __init__(self) -> None:
        self.declared: dict[str, int] = {}  # 1.0: name -> line
        self.tensors: dict[str, _Tensor] = {}  # 2.0: name -> tensor
        self.networks: list[NetworkDecl] = []
        self.sizes = {"X": 0, "Y": 0}
        self.shown: dict[str, str] = {}  # 2.0: internal name X_k -> the file's X[0,3]
        self.input_lines: list[int] = []  # 2.0: per input, its declaration's line
        self.asserts: list[tuple[list[list[Linear]], int]] = []

    # -- 1.0 ------------------------------------------------------------------------
    def declare(self, e: SList) -> None:
        if self.networks:
            raise error(e.line, "declare-const (VNN-LIB 1.0) cannot follow declare-network (2.0)")
        if len(e.items) != 3 or not all(isinstance(a, Atom) for a in e.items[1:]):
            raise error(e.line, "expected (declare-const NAME Real)")
        name, sort = e.items[1].text, e.items[2].text  # type: ignore[union-attr]
        if sort != "Real":
            raise error(e.line, f"variable {name} has sort {sort}; only Real is supported")
        if not _VAR.match(name):
            raise error(e.line, f"variable {name}: expected X_<i> for inputs or Y_<j> for outputs")
        if name in self.declared:
            raise error(e.line, f"variable {name} is declared twice (first on line {self.declared[name]})")
        self.declared[name] = e.line

    # -- 2.0 ------------------------------------------------------------------------
    def version(self, e: SList) -> None:
        if len(e.items) != 2 or not isinstance(e.items[1], Atom) or e.items[1].text.strip("<>") not in ("2.0", "1.0"):
            raise error(e.line, "expected (vnnlib-version <2.0>)")

    def network(self, e: SList) -> None:
        if self.declared:
            raise error(e.line, "declare-network (VNN-LIB 2.0) cannot follow declare-const (1.0)")
        if len(e.items) < 2 or not isinstance(e.items[1], Atom):
            raise error(e.line, "expected (declare-network NAME (declare-input ...) (declare-output ...))")
        name = e.items[1].text
        if any(n.name == name for n in self.networks):
            raise error(e.line, f"network {name} is declared twice")
        links: dict[str, str] = {}
        parts: dict[str, list[TensorDecl]] = {"declare-input": [], "declare-output": []}
        for sub in e.items[2:]:
            head = sub.head() if isinstance(sub, SList) else ""
            if head in ("equal-to", "isomorphic-to"):
                links[head] = self._link(sub, head)  # type: ignore[arg-type]
            elif head in parts:
                parts[head].append(self._tensor(sub, "X" if head == "declare-input" else "Y"))  # type: ignore[arg-type]
            elif head == "declare-hidden":
                raise error(sub.line, f"network {name}: constraints on hidden nodes (declare-hidden) are not supported")
            else:
                raise error(sub.line, f"network {name}: unsupported declaration ({head or sub} ...)")
        if not parts["declare-input"] or not parts["declare-output"]:
            raise error(e.line, f"network {name} needs at least one declare-input and one declare-output")
        self.networks.append(NetworkDecl(name, tuple(parts["declare-input"]), tuple(parts["declare-output"]),
                                         links.get("equal-to"), links.get("isomorphic-to")))

    def _link(self, e: SList, head: str) -> str:
        if len(e.items) != 2 or not isinstance(e.items[1], Atom):
            raise error(e.line, f"expected ({head} NETWORK)")
        other = e.items[1].text
        if not any(n.name == other for n in self.networks):
            raise error(e.line, f"({head} {other}): network {other} is not declared before")
        return other

    def _tensor(self, e: SList, kind: str) -> TensorDecl:
        items = e.items
        if not 4 <= len(items) <= 5 or not all(isinstance(a, Atom) for a in items[1:]):
            raise error(e.line, f"expected ({e.head()} NAME TYPE [SHAPE] [\"onnx-name\"])")
        name, dtype, dims = (a.text for a in items[1:4])  # type: ignore[union-attr]
        onnx = items[4].text.strip('"') if len(items) == 5 else None  # type: ignore[union-attr]
        if dtype not in FLOAT_TYPES and not (kind == "Y" and dtype in INTEGER_TYPES):
            raise error(e.line, f"{name} has type {dtype}; only floating-point tensors are supported "
                                "(and integer outputs that the network computes as constants)")
        if not re.fullmatch(r"\[(\d+(,\d+)*)?\]", dims):
            raise error(e.line, f"{name}: expected a shape such as [1,5], got {dims}")
        shape = tuple(int(d) for d in dims[1:-1].split(",") if d)
        if name in self.tensors or not _INDEXED.match(name) or "[" in name:
            raise error(e.line, f"{name} is declared twice or is not a valid name")
        self.tensors[name] = _Tensor(kind, self.sizes[kind], shape, e.line)
        size = int(np.prod(shape, dtype=np.int64))
        if kind == "X":
            self.input_lines += [e.line] * size
        for k, index in enumerate(np.ndindex(*shape)):
            self.shown[f"{kind}_{self.sizes[kind] + k}"] = f"{name}[{','.join(map(str, index))}]" if shape else name
        self.sizes[kind] += size
        return TensorDecl(name, shape, dtype, onnx)

    # -- both -----------------------------------------------------------------------
    def resolve(self, atom: Atom) -> str:
        """The internal name (``X_k``/``Y_k`` over all inputs/outputs) of a variable token."""
        if not self.networks:
            if atom.text not in self.declared:
                raise error(atom.line, f"'{atom.text}' is not a declared variable (declare it with declare-const)")
            return atom.text
        m = _INDEXED.match(atom.text)
        tensor = self.tensors.get(m.group(1)) if m else None
        if m is None or tensor is None:
            raise error(atom.line, f"'{atom.text}' is not a declared variable (declare it in declare-network)")
        index = tuple(int(i) for i in m.group(2).split(",") if i) if m.group(2) is not None else ()
        if len(index) != len(tensor.shape) or any(i >= d for i, d in zip(index, tensor.shape)):
            raise error(atom.line, f"'{atom.text}': {m.group(1)} has shape {list(tensor.shape)}; "
                                   f"give one index per dimension, each within it")
        flat = int(np.ravel_multi_index(index, tensor.shape)) if index else 0
        return f"{tensor.kind}_{tensor.offset + flat}"

    def assert_(self, e: SList) -> None:
        if len(e.items) != 2:
            raise error(e.line, "expected (assert FORMULA)")
        self.asserts.append((dnf(e.items[1], self.resolve), e.line))

    def show(self, name: str) -> str:
        return self.shown.get(name, name)


_COMMANDS: dict[str, Callable[[_Reader, SList], None]] = {
    "declare-const": _Reader.declare,
    "declare-network": _Reader.network,
    "vnnlib-version": _Reader.version,
    "assert": _Reader.assert_,
}


def _text(p: Path) -> str:
    if not p.is_file():
        raise LeoInputError(f"no such VNN-LIB file: {p}")
    try:
        raw = p.read_bytes()
        if raw[:2] == b"\x1f\x8b":  # gzip's magic number: .vnnlib.gz
            raw = gzip.decompress(raw)
        return raw.decode()
    except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile) as exc:
        raise LeoInputError(f"cannot read {p} as a VNN-LIB text file ({exc})") from None


def _read(path: str | Path) -> _Reader:
    p = Path(path)
    text = _text(p)
    reader = _Reader()
    try:
        for e in parse(tokens(text)):
            if not isinstance(e, SList) or not e.items:
                raise error(e.line, "expected a command such as (declare-const ...) or (assert ...)")
            command = _COMMANDS.get(e.head())
            if command is not None:
                command(reader, e)
            elif e.head() not in _IGNORED:
                raise error(e.line, f"unsupported command ({e.head()} ...)")
    except LeoInputError as exc:
        raise LeoInputError(f"{p}: {exc}") from None
    return reader


def _kind(atom: Linear) -> str:
    """'X' (input), 'Y' (output), or 'const' (no variable)."""
    kinds = {v[0] for v, a in atom.coeffs.items() if a != 0.0}
    if len(kinds) > 1:
        raise error(atom.line, "a constraint mixing inputs and outputs is not supported")
    return kinds.pop() if kinds else "const"


def _index(name: str) -> int:
    m = _VAR.match(name)
    assert m is not None
    return int(m.group(2))


def _input_bound(atom: Linear, lower: np.ndarray, upper: np.ndarray) -> bool:
    """Tighten the box by ``a * X_i + k <= 0``; False (nothing done) for an atom on several inputs."""
    live = {v: a for v, a in atom.coeffs.items() if a != 0.0}
    if len(live) != 1:
        return False
    (name, a), = live.items()
    i, value = _index(name), -atom.const / a
    if a > 0:
        upper[i] = min(upper[i], value)
    else:
        lower[i] = max(lower[i], value)
    return True


# -- the single box and property (1.0 callers) ------------------------------------------

def read_vnnlib(path: str | Path, input_dim: int) -> tuple[Box, OutputProperty | None]:
    """The input box and the output property (None when no Y is constrained)."""
    box, prop = read_query(path, input_dim, box_optional=False)
    assert box is not None
    return box, prop


def read_query(path: str | Path, input_dim: int, box_optional: bool = True) -> tuple[Box | None, OutputProperty | None]:
    """The input box (None, with ``box_optional``, when the file bounds no input: it may
    then declare no X at all, for a box given by other means such as ``--center/--eps``)
    and the output property (None when no Y is constrained). A box that bounds some
    inputs but not all is refused either way, and so is a file with several input regions
    or linear input constraints (``read_vnnlib_query`` reads those)."""
    p = Path(path)
    reader = _read(p)
    if len(reader.networks) > 1:
        raise LeoInputError(f"{p} declares {len(reader.networks)} networks; read it with read_vnnlib_query")
    try:
        return _single_box(reader, p, input_dim, box_optional)
    except LeoInputError as exc:
        raise LeoInputError(exc.args[0] if str(exc).startswith(str(p)) else f"{p}: {exc}") from None


def _declared(reader: _Reader, p: Path, input_dim: int | None, box_optional: bool) -> tuple[list[tuple[int, int]], int]:
    """(input index, its declaration's line) for every input, and the number of outputs."""
    if reader.networks:
        xs = list(enumerate(reader.input_lines))
        ys = reader.sizes["Y"]
    else:
        xs = sorted((_index(n), line) for n, line in reader.declared.items() if n[0] == "X")
        y_index = sorted(_index(n) for n in reader.declared if n[0] == "Y")
        if y_index != list(range(len(y_index))):
            raise LeoInputError(f"{p}: the outputs declared are not Y_0..Y_{len(y_index) - 1}")
        ys = len(y_index)
    if input_dim is not None and [i for i, _ in xs] != list(range(input_dim)) and not (box_optional and not xs):
        names = [reader.show(f"X_{i}") for i, _ in xs]
        raise LeoInputError(f"{p}: the file declares inputs {names[:8]}... ({len(xs)} in all) but the network "
                            f"takes {input_dim}: {reader.show('X_0')}..{reader.show(f'X_{input_dim - 1}')}")
    if input_dim is None and [i for i, _ in xs] != list(range(len(xs))):
        raise LeoInputError(f"{p}: the inputs declared are not X_0..X_{len(xs) - 1}")
    return xs, ys


def _single_box(reader: _Reader, p: Path, input_dim: int,
                box_optional: bool) -> tuple[Box | None, OutputProperty | None]:
    xs, ys = _declared(reader, p, input_dim, box_optional)
    lower, upper = np.full(input_dim, -np.inf), np.full(input_dim, np.inf)
    disjuncts: list[list[Linear]] = [[]]
    for form, line in reader.asserts:
        split = [[a for a in conj if _kind(a) != "X"] for conj in form]
        has_x = [any(_kind(a) == "X" for a in conj) for conj in form]
        if len(form) == 1:
            for atom in form[0]:
                if _kind(atom) == "X" and not _input_bound(atom, lower, upper):
                    raise error(atom.line, "only bounds on single inputs, like (<= X_0 0.5), are supported "
                                           "here; read the file with read_vnnlib_query for linear input constraints")
        elif any(has_x):
            raise error(line, "input constraints inside an 'or' (several input regions) are not "
                              "supported; write one file per input region")
        disjuncts = conjoin([disjuncts, split], line)
    prop = None if disjuncts == [[]] else _property(disjuncts, ys)  # None: nothing asserted about the outputs
    if box_optional and not (np.isfinite(lower).any() or np.isfinite(upper).any()):
        return None, prop
    _check_box(reader, xs, lower, upper)
    return Box(lower, upper), prop


def _check_box(reader: _Reader, xs: list[tuple[int, int]], lower: np.ndarray, upper: np.ndarray) -> None:
    for (i, line) in xs:
        name = reader.show(f"X_{i}")
        if not (np.isfinite(lower[i]) and np.isfinite(upper[i])):
            side = "lower" if not np.isfinite(lower[i]) else "upper"
            raise error(line, f"input {name} has no {side} bound; add (assert (>= {name} ...)) "
                              f"and (assert (<= {name} ...))")
        if lower[i] > upper[i]:
            raise error(line, f"input {name} has lower bound {lower[i]} above its upper bound {upper[i]}")


def _rows(atoms: list[Linear], dim: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Atoms as ``A v <= c`` over ``dim`` variables, and whether every constant atom holds."""
    a, c, holds = [], [], True
    for atom in atoms:
        coeffs = np.zeros(dim)
        for v, k in atom.coeffs.items():
            coeffs[_index(v)] += k
        if not coeffs.any():
            holds = holds and atom.const <= 0.0
            continue
        a.append(coeffs)
        c.append(-atom.const)
    return np.array(a, dtype=np.float64).reshape(len(a), dim), np.array(c, dtype=np.float64), holds


def _property(disjuncts: list[list[Linear]], outputs: int) -> OutputProperty:
    """Output atoms as rows over Y; constant atoms decide their disjunct outright."""
    out: list[tuple[Inequality, ...]] = []
    for conj in disjuncts:
        a, c, holds = _rows(conj, outputs)
        if holds:
            out.append(tuple(Inequality(r, float(v)) for r, v in zip(a, c)))
    return OutputProperty(outputs, tuple(out))


# -- the query (every file) --------------------------------------------------------------

@dataclass(frozen=True)
class VnnlibFile:
    """A VNN-LIB file read, before its regions are settled: ``bounds_inputs`` says whether
    any assertion speaks of the inputs (if none, the box must come from elsewhere)."""

    path: Path
    bounds_inputs: bool
    constrains_outputs: bool
    _reader: _Reader

    @property
    def networks(self) -> int:
        """How many networks the file declares (a 1.0 file: one)."""
        return max(len(self._reader.networks), 1)

    @property
    def one_box(self) -> bool:
        """Whether the file is one network over one input box, as ``read_query`` reads it
        (no input constraint inside an 'or', none over several inputs)."""
        if self.networks > 1:
            return False
        for form, _ in self._reader.asserts:
            inputs = [a for conj in form for a in conj if _kind(a) == "X"]
            if inputs and (len(form) > 1 or any(sum(k != 0.0 for k in a.coeffs.values()) > 1 for a in inputs)):
                return False
        return True

    def query(self, box: Box | None = None) -> Query:
        """The query; ``box`` is the input box of a file that bounds no input."""
        try:
            return _query(self._reader, box)
        except LeoInputError as exc:
            raise LeoInputError(exc.args[0] if str(exc).startswith(str(self.path)) else f"{self.path}: {exc}") from None


def parse_vnnlib(path: str | Path) -> VnnlibFile:
    """Read a VNN-LIB 1.0 or 2.0 file (plain or gzipped)."""
    p = Path(path)
    reader = _read(p)
    try:
        kinds = {_kind(a) for form, _ in reader.asserts for conj in form for a in conj}
    except LeoInputError as exc:
        raise LeoInputError(f"{p}: {exc}") from None
    return VnnlibFile(p, "X" in kinds, "Y" in kinds, reader)


def read_vnnlib_query(path: str | Path, box: Box | None = None) -> Query:
    """The query of a VNN-LIB 1.0 or 2.0 file (plain or ``.gz``): one case per disjunct of
    the assertions' normal form, each with its own input region (a box, or a polytope for
    linear input constraints) and output rows. ``box`` gives the inputs of a 1.0 file that
    bounds none (it may then declare no X at all)."""
    return parse_vnnlib(path).query(box)


def _query(reader: _Reader, box: Box | None) -> Query:
    xs, n_out = _declared(reader, Path("."), None, True)
    n_in = len(xs) if xs or box is None else box.dim
    glob: list[Linear] = []
    split: list[list[list[Linear]]] = []
    for form, _ in reader.asserts:
        if len(form) == 1:
            glob += form[0]
        else:
            split.append(form)
    disjuncts = conjoin(split, reader.asserts[-1][1] if reader.asserts else 0)
    bounded = any(_kind(a) == "X" for a in glob) or any(_kind(a) == "X" for d in disjuncts for a in d)
    if box is not None and bounded:
        raise LeoInputError("the file bounds the inputs already; give no other box")
    if box is not None and box.dim != n_in:
        raise LeoInputError(f"the box has {box.dim} inputs but the file declares {n_in}")
    if box is None and not bounded:
        raise LeoInputError("the file bounds no input; give the input box another way")
    lower = np.array(box.lower) if box is not None else np.full(n_in, -np.inf)
    upper = np.array(box.upper) if box is not None else np.full(n_in, np.inf)
    base = _Region(reader, xs or [(i, 0) for i in range(n_in)], lower, upper, [a for a in glob if _kind(a) == "X"])
    regions: dict[tuple[int, ...], InputRegion | None] = {}
    cases = []
    for conj in disjuncts if not base.empty() else ():  # no input at all: no counterexample
        local = [a for a in conj if _kind(a) == "X"]
        key = tuple(id(a) for a in local)
        if key not in regions:
            regions[key] = base.tightened(local).region()
        a, c, holds = _rows([x for x in glob + conj if _kind(x) != "X"], n_out)
        if holds and regions[key] is not None:
            cases.append(Case(regions[key], a, c))
    networks = tuple(reader.networks) or (NetworkDecl(V1_NETWORK, (TensorDecl("X", (n_in,), "Real"),),
                                                     (TensorDecl("Y", (n_out,), "Real"),), flat=True),)
    return Query(networks, tuple(cases))


class _Region:
    """Input bounds and polytope rows gathered from atoms, before they become a region."""

    def __init__(self, reader: _Reader, xs: list[tuple[int, int]], lower: np.ndarray, upper: np.ndarray,
                 atoms: list[Linear]) -> None:
        self.reader, self.xs, self.lower, self.upper = reader, xs, lower.copy(), upper.copy()
        self.rows: list[Linear] = []
        for atom in atoms:
            if not _input_bound(atom, self.lower, self.upper):
                self.rows.append(atom)

    def tightened(self, atoms: list[Linear]) -> _Region:
        out = _Region(self.reader, self.xs, self.lower, self.upper, atoms)
        out.rows = self.rows + out.rows
        return out

    def empty(self) -> bool:
        return bool((self.lower > self.upper).any())

    def region(self) -> InputRegion | None:
        """The region; None when it is empty: the case can never hold (an empty input set
        makes a query unsatisfiable, as the standard reads it, rather than malformed)."""
        if self.empty():
            return None
        if not self.rows:
            _check_box(self.reader, self.xs, self.lower, self.upper)
            return InputRegion(self.lower, self.upper)
        a, b, holds = _rows(self.rows, self.lower.size)
        if not holds:
            return None
        try:
            box = bounding_box(self.lower, self.upper, a, b, [self.reader.show(f"X_{i}") for i in range(a.shape[1])])
        except LeoInputError as exc:
            raise error(self.rows[0].line, str(exc)) from None
        return None if box is None else InputRegion(*box, a, b, margin=BOX_MARGIN)
