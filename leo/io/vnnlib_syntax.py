"""VNN-LIB's SMT-LIB surface: s-expressions, linear terms, and formulas in disjunctive
normal form over linear atoms ``sum coeffs[v] * v + const <= 0``.

Shared by the 1.0 and 2.0 readers (``leo.io.vnnlib``); variable names are resolved by
the caller, so that ``X_3`` (1.0) and ``X[0,3]`` (2.0) reach the same atoms.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from leo.errors import LeoInputError

#: Refuse properties whose disjunctive normal form grows beyond this many disjuncts.
MAX_DISJUNCTS = 100_000
#: Integer element types a declared output may have: exact where the network computes it as a
#: constant (``Shape(X)``, a cast of a constant); leo computes over the reals otherwise.
INTEGER_TYPES = frozenset({"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool"})

#: Whitespace inside ``[...]`` (2.0 shapes ``[1, 5]`` and indices ``X[0, 3]``) is dropped,
#: so that a bracketed index stays one token with its name.
_BRACKETS = re.compile(r"\[[^\]\[]*\]")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Atom:
    text: str
    line: int


@dataclass(frozen=True)
class SList:
    items: tuple[Atom | SList, ...]
    line: int

    def head(self) -> str:
        first = self.items[0] if self.items else None
        return first.text if isinstance(first, Atom) else ""


Expr = Atom | SList


@dataclass(frozen=True)
class Linear:
    """``sum coeffs[v] * v + const <= 0``, the one atom form everything is reduced to."""

    coeffs: dict[str, float]
    const: float
    line: int


#: Resolves a variable's token to the name its coefficients are kept under (raises when undeclared).
Resolve = Callable[[Atom], str]


def error(line: int, why: str) -> LeoInputError:
    return LeoInputError(f"VNN-LIB line {line}: {why}")


# -- s-expressions -----------------------------------------------------------------

def tokens(text: str) -> list[Atom]:
    out: list[Atom] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        code = _BRACKETS.sub(lambda m: _SPACE.sub("", m.group()), raw.split(";", 1)[0])
        out.extend(Atom(t, n) for t in code.replace("(", " ( ").replace(")", " ) ").split())
    return out


def parse(toks: list[Atom]) -> list[Expr]:
    stack: list[tuple[int, list[Expr]]] = [(0, [])]
    for tok in toks:
        if tok.text == "(":
            stack.append((tok.line, []))
        elif tok.text == ")":
            if len(stack) == 1:
                raise error(tok.line, "unbalanced ')'")
            line, items = stack.pop()
            stack[-1][1].append(SList(tuple(items), line))
        else:
            stack[-1][1].append(tok)
    if len(stack) > 1:
        raise error(stack[-1][0], "unbalanced '(' (never closed)")
    return stack[0][1]


# -- linear terms and formulas --------------------------------------------------------

def number(atom: Atom) -> float | None:
    try:
        value = float(atom.text)
    except ValueError:
        return None
    return value if np.isfinite(value) else None


def _term(e: Expr, resolve: Resolve) -> tuple[dict[str, float], float]:
    """A linear term as (coefficients, constant)."""
    if isinstance(e, Atom):
        value = number(e)
        if value is not None:
            return {}, value
        return {resolve(e): 1.0}, 0.0
    op, args = e.head(), [_term(a, resolve) for a in e.items[1:]]
    if op == "+" and args:
        return _sum(args, [1.0] * len(args))
    if op == "-" and len(args) == 1:
        return _sum(args, [-1.0])
    if op == "-" and args:
        return _sum(args, [1.0] + [-1.0] * (len(args) - 1))
    if op == "*" and args:
        variable = [a for a in args if a[0]]
        if len(variable) > 1:
            raise error(e.line, "a product of variables is not linear")
        factor = float(np.prod([a[1] for a in args if not a[0]]))
        return _sum(variable or [({}, 1.0)], [factor])
    if op == "/" and len(args) == 2 and not args[1][0] and args[1][1] != 0:
        return _sum(args[:1], [1.0 / args[1][1]])
    raise error(e.line, f"unsupported term ({op} ...): expected a linear expression of +, -, * and numbers")


def _sum(terms: list[tuple[dict[str, float], float]], signs: list[float]) -> tuple[dict[str, float], float]:
    coeffs: dict[str, float] = {}
    const = 0.0
    for (c, k), s in zip(terms, signs):
        for v, a in c.items():
            coeffs[v] = coeffs.get(v, 0.0) + s * a
        const += s * k
    return coeffs, const


_COMPARISONS = ("<=", "<", ">=", ">", "=", "==")


def _comparison(e: SList, resolve: Resolve) -> list[Linear]:
    """``(<= a b)`` and friends as atoms ``a - b <= 0``; ``=`` (1.0) and ``==`` (2.0) give two.
    Strict comparisons are read as non-strict (the closure of the unsafe set), as VNN-COMP tools do."""
    op = e.head()
    if len(e.items) != 3:
        raise error(e.line, f"({op} ...) needs exactly two operands")
    (ca, ka), (cb, kb) = _term(e.items[1], resolve), _term(e.items[2], resolve)
    less = Linear(_sum([(ca, ka), (cb, kb)], [1.0, -1.0])[0], ka - kb, e.line)  # a - b <= 0
    more = Linear({v: -a for v, a in less.coeffs.items()}, -less.const, e.line)  # b - a <= 0
    return {"<=": [less], "<": [less], ">=": [more], ">": [more], "=": [less, more], "==": [less, more]}[op]


def dnf(e: Expr, resolve: Resolve) -> list[list[Linear]]:
    """A formula as a disjunction of conjunctions of atoms."""
    if not isinstance(e, SList) or not e.items:
        raise error(e.line, "expected a formula such as (<= Y_0 1.5), (and ...) or (or ...)")
    op = e.head()
    if op in _COMPARISONS:
        return [_comparison(e, resolve)]
    if op == "and":
        return conjoin([dnf(a, resolve) for a in e.items[1:]], e.line)
    if op == "or":
        return [conj for a in e.items[1:] for conj in dnf(a, resolve)]
    if op == "!=":
        raise error(e.line, "(!= ...) is not supported: its set is not closed (write it as an 'or' of < and >)")
    raise error(e.line, f"unsupported formula ({op} ...): expected <=, >=, <, >, =, ==, and, or")


def conjoin(parts: list[list[list[Linear]]], line: int) -> list[list[Linear]]:
    out: list[list[Linear]] = [[]]
    for part in parts:
        if len(out) * len(part) > MAX_DISJUNCTS:
            raise error(line, f"the property has more than {MAX_DISJUNCTS} disjuncts in normal form")
        out = [a + b for a in out for b in part]
    return out
