"""One input's shape, as the user gives it (``--input-shape 1,28,28``, ``input_shape=(1, 28, 28)``)
and as a file records it: parsed once, and a given shape checked against a recorded one."""

from __future__ import annotations

import operator
from collections.abc import Sequence

from leo.errors import LeoInputError
from leo.core.network import INPUT_SHAPE, Network, shape_text

#: How to give the input shape, for messages that need one (the CLI and the API read the same).
HOW_TO_GIVE_SHAPE = "give one input's shape with --input-shape C,H,W (input_shape=(C, H, W) in Python)"


def parse_input_shape(value: object) -> tuple[int, ...] | None:
    """A per-sample input shape from ``"1,28,28"``, ``784``, ``(1, 28, 28)`` or a ``torch.Size``;
    None stays None. Bad values are one line naming both ways to give a shape."""
    if value is None:
        return None
    if isinstance(value, str):
        parts: Sequence[object] = value.replace("x", ",").split(",")
    elif isinstance(value, int):
        parts = [value]
    else:
        try:
            parts = list(value)  # type: ignore[call-overload]
        except TypeError:
            parts = [value]
    try:
        dims = tuple(_dimension(p) for p in parts)
    except (TypeError, ValueError):
        dims = ()
    if not dims or min(dims) <= 0:
        raise LeoInputError(f"--input-shape / input_shape= must be positive integers such as 1,28,28 (one input's "
                            f"shape, without the batch dimension), got {value!r}")
    return dims


def _dimension(part: object) -> int:
    """An integer dimension: digits in text, or an integer type (``operator.index`` refuses floats)."""
    if isinstance(part, bool):
        raise TypeError(part)
    return int(part.strip()) if isinstance(part, str) else operator.index(part)  # type: ignore[arg-type]


def check_recorded(recorded: tuple[int, ...] | None, given: tuple[int, ...] | None, what: object) -> None:
    """Refuse a given shape that disagrees with the one ``what`` records."""
    if given is None or recorded is None or tuple(given) == tuple(recorded):
        return
    hint = " (give one input's shape, without the batch dimension)" if tuple(given) == (1, *recorded) else ""
    raise LeoInputError(f"--input-shape / input_shape= {shape_text(given)} disagrees with the input shape "
                        f"{shape_text(recorded)} that {what} records{hint}")


def with_input_shape(network: Network, given: tuple[int, ...] | None, what: object) -> Network:
    """``network`` with the given shape recorded: it must agree with a recorded one, and with
    the number of inputs when none is recorded (a state_dict's flat chain, say)."""
    if given is None:
        return network
    check_recorded(network.input_shape, given, what)
    size = 1
    for d in given:
        size *= d
    if size != network.input_dim:
        raise LeoInputError(f"--input-shape / input_shape= {shape_text(given)} holds {size} values but {what} "
                            f"takes {network.input_dim} inputs")
    return network.with_metadata(**{INPUT_SHAPE: shape_text(given)})
