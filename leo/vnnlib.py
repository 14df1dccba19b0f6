"""VNN-LIB in: the input box and the output property of a verification query.

A VNN-LIB file is SMT-LIB: ``(declare-const X_i Real)`` for inputs, ``Y_j`` for
outputs, and ``(assert ...)`` formulas that together describe a counterexample. Bounds
on single inputs make the box; linear atoms on outputs, under ``and``/``or``, make
the property (the unsafe set, see ``leo.property``). Strict comparisons are read as
non-strict (the closure of the unsafe set), as VNN-COMP tools do.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from leo.domain import Box
from leo.errors import LeoInputError
from leo.property import Inequality, OutputProperty

#: Refuse properties whose disjunctive normal form grows beyond this many disjuncts.
MAX_DISJUNCTS = 100_000

_VAR = re.compile(r"^([XY])_(\d+)$")
_IGNORED = {"set-logic", "set-info", "set-option", "check-sat", "get-model", "exit"}


@dataclass(frozen=True)
class _Atom:
    text: str
    line: int


@dataclass(frozen=True)
class _List:
    items: tuple[_Atom | _List, ...]
    line: int

    def head(self) -> str:
        first = self.items[0] if self.items else None
        return first.text if isinstance(first, _Atom) else ""


_Expr = _Atom | _List


@dataclass(frozen=True)
class _Linear:
    """``sum coeffs[v] * v + const <= 0``, the one atom form everything is reduced to."""

    coeffs: dict[str, float]
    const: float
    line: int


def _error(line: int, why: str) -> LeoInputError:
    return LeoInputError(f"VNN-LIB line {line}: {why}")


# -- s-expressions -----------------------------------------------------------------

def _tokens(text: str) -> list[_Atom]:
    out: list[_Atom] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        code = raw.split(";", 1)[0]
        out.extend(_Atom(t, n) for t in code.replace("(", " ( ").replace(")", " ) ").split())
    return out


def _parse(tokens: list[_Atom]) -> list[_Expr]:
    stack: list[tuple[int, list[_Expr]]] = [(0, [])]
    for tok in tokens:
        if tok.text == "(":
            stack.append((tok.line, []))
        elif tok.text == ")":
            if len(stack) == 1:
                raise _error(tok.line, "unbalanced ')'")
            line, items = stack.pop()
            stack[-1][1].append(_List(tuple(items), line))
        else:
            stack[-1][1].append(tok)
    if len(stack) > 1:
        raise _error(stack[-1][0], "unbalanced '(' (never closed)")
    return stack[0][1]


# -- linear terms and formulas --------------------------------------------------------

def _number(atom: _Atom) -> float | None:
    try:
        return float(atom.text)
    except ValueError:
        return None


def _term(e: _Expr, known: set[str]) -> tuple[dict[str, float], float]:
    """A linear term as (coefficients, constant)."""
    if isinstance(e, _Atom):
        value = _number(e)
        if value is not None:
            return {}, value
        if e.text not in known:
            raise _error(e.line, f"'{e.text}' is not a declared variable (declare it with declare-const)")
        return {e.text: 1.0}, 0.0
    op, args = e.head(), [_term(a, known) for a in e.items[1:]]
    if op == "+" and args:
        return _sum(args, [1.0] * len(args))
    if op == "-" and len(args) == 1:
        return _sum(args, [-1.0])
    if op == "-" and args:
        return _sum(args, [1.0] + [-1.0] * (len(args) - 1))
    if op == "*" and args:
        variable = [a for a in args if a[0]]
        if len(variable) > 1:
            raise _error(e.line, "a product of variables is not linear")
        factor = float(np.prod([a[1] for a in args if not a[0]]))
        return _sum(variable or [({}, 1.0)], [factor])
    if op == "/" and len(args) == 2 and not args[1][0] and args[1][1] != 0:
        return _sum(args[:1], [1.0 / args[1][1]])
    raise _error(e.line, f"unsupported term ({op} ...): expected a linear expression of +, -, * and numbers")


def _sum(terms: list[tuple[dict[str, float], float]], signs: list[float]) -> tuple[dict[str, float], float]:
    coeffs: dict[str, float] = {}
    const = 0.0
    for (c, k), s in zip(terms, signs):
        for v, a in c.items():
            coeffs[v] = coeffs.get(v, 0.0) + s * a
        const += s * k
    return coeffs, const


def _comparison(e: _List, known: set[str]) -> list[_Linear]:
    """``(<= a b)`` and friends as atoms ``a - b <= 0``; ``=`` gives two."""
    op = e.head()
    if len(e.items) != 3:
        raise _error(e.line, f"({op} ...) needs exactly two operands")
    (ca, ka), (cb, kb) = _term(e.items[1], known), _term(e.items[2], known)
    less = _Linear(_sum([(ca, ka), (cb, kb)], [1.0, -1.0])[0], ka - kb, e.line)  # a - b <= 0
    more = _Linear({v: -a for v, a in less.coeffs.items()}, -less.const, e.line)  # b - a <= 0
    return {"<=": [less], "<": [less], ">=": [more], ">": [more], "=": [less, more]}[op]


def _dnf(e: _Expr, known: set[str]) -> list[list[_Linear]]:
    """A formula as a disjunction of conjunctions of atoms."""
    if not isinstance(e, _List) or not e.items:
        raise _error(e.line, "expected a formula such as (<= Y_0 1.5), (and ...) or (or ...)")
    op = e.head()
    if op in ("<=", "<", ">=", ">", "="):
        return [_comparison(e, known)]
    if op == "and":
        return _conjoin([_dnf(a, known) for a in e.items[1:]], e.line)
    if op == "or":
        return [conj for a in e.items[1:] for conj in _dnf(a, known)]
    raise _error(e.line, f"unsupported formula ({op} ...): expected <=, >=, <, >, =, and, or")


def _conjoin(parts: list[list[list[_Linear]]], line: int) -> list[list[_Linear]]:
    out: list[list[_Linear]] = [[]]
    for dnf in parts:
        if len(out) * len(dnf) > MAX_DISJUNCTS:
            raise _error(line, f"the property has more than {MAX_DISJUNCTS} disjuncts in normal form")
        out = [a + b for a in out for b in dnf]
    return out


# -- commands --------------------------------------------------------------------------

class _Query:
    """What the commands so far declare and assert."""

    def __init__(self) -> None:
        self.declared: dict[str, int] = {}  # name -> line
        self.asserts: list[tuple[list[list[_Linear]], int]] = []

    def declare(self, e: _List) -> None:
        if len(e.items) != 3 or not all(isinstance(a, _Atom) for a in e.items[1:]):
            raise _error(e.line, "expected (declare-const NAME Real)")
        name, sort = e.items[1].text, e.items[2].text  # type: ignore[union-attr]
        if sort != "Real":
            raise _error(e.line, f"variable {name} has sort {sort}; only Real is supported")
        if not _VAR.match(name):
            raise _error(e.line, f"variable {name}: expected X_<i> for inputs or Y_<j> for outputs")
        if name in self.declared:
            raise _error(e.line, f"variable {name} is declared twice (first on line {self.declared[name]})")
        self.declared[name] = e.line

    def assert_(self, e: _List) -> None:
        if len(e.items) != 2:
            raise _error(e.line, "expected (assert FORMULA)")
        self.asserts.append((_dnf(e.items[1], set(self.declared)), e.line))


_COMMANDS: dict[str, Callable[[_Query, _List], None]] = {
    "declare-const": _Query.declare,
    "assert": _Query.assert_,
}


def _kind(atom: _Linear) -> str:
    """'X' (input bound), 'Y' (output constraint), or 'const' (no variable)."""
    kinds = {v[0] for v, a in atom.coeffs.items() if a != 0.0}
    if len(kinds) > 1:
        raise _error(atom.line, "a constraint mixing inputs X and outputs Y is not supported")
    return kinds.pop() if kinds else "const"


def _index(name: str) -> int:
    m = _VAR.match(name)
    assert m is not None
    return int(m.group(2))


def _input_bound(atom: _Linear, lower: np.ndarray, upper: np.ndarray) -> None:
    """Tighten the box by ``a * X_i + k <= 0``."""
    live = {v: a for v, a in atom.coeffs.items() if a != 0.0}
    if len(live) != 1:
        raise _error(atom.line, "only bounds on single inputs, like (<= X_0 0.5), are supported for X")
    (name, a), = live.items()
    i, value = _index(name), -atom.const / a
    if a > 0:
        upper[i] = min(upper[i], value)
    else:
        lower[i] = max(lower[i], value)


def read_vnnlib(path: str | Path, input_dim: int) -> tuple[Box, OutputProperty | None]:
    """The input box and the output property (None when no Y is constrained)."""
    box, prop = read_query(path, input_dim, box_optional=False)
    assert box is not None
    return box, prop


def read_query(path: str | Path, input_dim: int, box_optional: bool = True) -> tuple[Box | None, OutputProperty | None]:
    """The input box (None, with ``box_optional``, when the file bounds no input: it may
    then declare no X at all, for a box given by other means such as ``--center/--eps``)
    and the output property (None when no Y is constrained). A box that bounds some
    inputs but not all is refused either way."""
    p = Path(path)
    if not p.is_file():
        raise LeoInputError(f"no such VNN-LIB file: {p}")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise LeoInputError(f"cannot read {p} as a VNN-LIB text file ({exc})") from None
    query = _Query()
    for e in _parse(_tokens(text)):
        if not isinstance(e, _List) or not e.items:
            raise _error(e.line, "expected a command such as (declare-const ...) or (assert ...)")
        command = _COMMANDS.get(e.head())
        if command is not None:
            command(query, e)
        elif e.head() not in _IGNORED:
            raise _error(e.line, f"unsupported command ({e.head()} ...)")
    xs = sorted((_index(n), line) for n, line in query.declared.items() if n[0] == "X")
    ys = sorted(_index(n) for n in query.declared if n[0] == "Y")
    if [i for i, _ in xs] != list(range(input_dim)) and not (box_optional and not xs):
        raise LeoInputError(f"{p}: the file declares inputs {[f'X_{i}' for i, _ in xs][:8]}... "
                            f"({len(xs)} in all) but the network takes {input_dim}: X_0..X_{input_dim - 1}")
    if ys != list(range(len(ys))):
        raise LeoInputError(f"{p}: the outputs declared are not Y_0..Y_{len(ys) - 1}")
    lower, upper = np.full(input_dim, -np.inf), np.full(input_dim, np.inf)
    disjuncts: list[list[_Linear]] = [[]]
    for dnf, line in query.asserts:
        split = [[a for a in conj if _kind(a) != "X"] for conj in dnf]
        has_x = [any(_kind(a) == "X" for a in conj) for conj in dnf]
        if len(dnf) == 1:
            for atom in dnf[0]:
                if _kind(atom) == "X":
                    _input_bound(atom, lower, upper)
        elif any(has_x):
            raise _error(line, "input constraints inside an 'or' (several input regions) are not "
                               "supported; write one file per input region")
        disjuncts = _conjoin([disjuncts, split], line)
    prop = None if disjuncts == [[]] else _property(disjuncts, len(ys))  # None: nothing asserted about the outputs
    if box_optional and not (np.isfinite(lower).any() or np.isfinite(upper).any()):
        return None, prop
    for (i, line) in xs:
        if not (np.isfinite(lower[i]) and np.isfinite(upper[i])):
            side = "lower" if not np.isfinite(lower[i]) else "upper"
            raise _error(line, f"input X_{i} has no {side} bound; add (assert (>= X_{i} ...)) "
                               f"and (assert (<= X_{i} ...))")
        if lower[i] > upper[i]:
            raise _error(line, f"input X_{i} has lower bound {lower[i]} above its upper bound {upper[i]}")
    return Box(lower, upper), prop


def _property(disjuncts: list[list[_Linear]], outputs: int) -> OutputProperty:
    """Output atoms as rows over Y; constant atoms decide their disjunct outright."""
    out: list[tuple[Inequality, ...]] = []
    for conj in disjuncts:
        rows: list[Inequality] = []
        feasible = True
        for atom in conj:
            coeffs = np.zeros(outputs)
            for v, a in atom.coeffs.items():
                coeffs[_index(v)] += a
            if not coeffs.any():
                feasible = feasible and atom.const <= 0.0
                continue
            rows.append(Inequality(coeffs, -atom.const))
        if feasible:
            out.append(tuple(rows))
    return OutputProperty(outputs, tuple(out))
