"""VNN-LIB reading: hand-written files with known boxes and properties, and the errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from leo.errors import LeoInputError
from leo.io.vnnlib import read_vnnlib

QUERY = """; a small query, in the style of VNN-COMP
(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const X_2 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(declare-const Y_2 Real)

; input box, written every way the format allows
(assert (<= X_0 0.5))
(assert (>= X_0 -0.5))
(assert (>= 1.0 X_1))   ; reversed: X_1 <= 1
(assert (<= 0.25 X_1))  ; reversed: X_1 >= 0.25
(assert (and (>= X_2 -1e-1) (<= X_2 2)))
(assert (<= X_0 0.4))   ; a second, tighter bound wins

; the unsafe set
(assert (<= Y_0 3.0))
(assert (or
    (and (<= Y_0 Y_1) (>= Y_2 0.5))
    (and (<= (+ (* 2 Y_1) (- Y_2)) -1))
))
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "q.vnnlib"
    path.write_text(text)
    return path


def test_box_and_disjuncts(tmp_path: Path) -> None:
    box, prop = read_vnnlib(_write(tmp_path, QUERY), 3)
    np.testing.assert_array_equal(box.lower, [-0.5, 0.25, -0.1])
    np.testing.assert_array_equal(box.upper, [0.4, 1.0, 2.0])
    assert prop is not None and prop.output_dim == 3
    assert len(prop.disjuncts) == 2  # the top-level Y_0 <= 3 is conjoined with each
    a0, c0 = prop.rows(0)
    rows0 = sorted(zip(map(tuple, a0), c0))
    assert rows0 == sorted([((1, 0, 0), 3.0), ((1, -1, 0), 0.0), ((0, 0, -1), -0.5)])
    a1, c1 = prop.rows(1)
    rows1 = sorted(zip(map(tuple, a1), c1))
    assert rows1 == sorted([((1, 0, 0), 3.0), ((0, 2, -1), -1.0)])


def test_property_semantics_on_points(tmp_path: Path) -> None:
    _, prop = read_vnnlib(_write(tmp_path, QUERY), 3)
    assert prop is not None
    rng = np.random.default_rng(0)
    y = rng.uniform(-4, 4, size=(2000, 3))
    truth = (y[:, 0] <= 3.0) & (((y[:, 0] <= y[:, 1]) & (y[:, 2] >= 0.5)) | (2 * y[:, 1] - y[:, 2] <= -1))
    inside = np.zeros(len(y), dtype=bool)
    for i in range(len(prop.disjuncts)):
        inside |= prop.excess(y, i) <= 0
    np.testing.assert_array_equal(inside, truth)
    assert truth.any() and not truth.all()


def test_acas_style_conjunction_and_no_output(tmp_path: Path) -> None:
    text = "\n".join(["(declare-const X_0 Real)", "(declare-const Y_0 Real)", "(declare-const Y_1 Real)",
                      "(declare-const Y_2 Real)", "(assert (<= X_0 1))", "(assert (>= X_0 0))",
                      "(assert (<= Y_0 Y_1))", "(assert (<= Y_0 Y_2))"])
    _, prop = read_vnnlib(_write(tmp_path, text), 1)
    assert prop is not None and len(prop.disjuncts) == 1
    a, c = prop.rows(0)
    np.testing.assert_array_equal(a, [[1, -1, 0], [1, 0, -1]])
    np.testing.assert_array_equal(c, [0, 0])
    box, none = read_vnnlib(_write(tmp_path, "(declare-const X_0 Real)(assert (<= X_0 1))(assert (>= X_0 0))"), 1)
    assert none is None and box.dim == 1


@pytest.mark.parametrize("text, match", [
    ("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(assert (<= X_0 1))\n(assert (>= X_0 0))\n"
     "(assert (<= X_1 1))", r"line 2: input X_1 has no lower bound"),
    ("(declare-const X_0 Real)\n(assert (<= X_0 1)\n", r"line 2: unbalanced '\('"),
    ("(declare-const X_0 Real)\n(assert (<= X_0 1)))\n", r"line 2: unbalanced '\)'"),
    ("(declare-const X_0 Real)\n(assert (>= X_0 0))\n(assert (<= X_7 1))", r"line 3: 'X_7' is not a declared"),
    ("(declare-const X_0 Real)\n(assert (>= X_0 0))\n(assert (<= (+ X_0 X_0 ) 1))\n(assert (foo X_0 1))",
     r"line 4: unsupported formula \(foo"),
    ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (>= X_0 0))\n"
     "(assert (or (and (<= X_0 1) (<= Y_0 0)) (and (<= X_0 2) (<= Y_0 1))))", r"line 4: input constraints inside"),
    ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (>= X_0 0))\n(assert (<= X_0 1))\n"
     "(assert (<= (* Y_0 Y_0) 1))", r"line 5: a product of variables"),
    ("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const X_2 Real)\n(assert (<= X_0 1))",
     r"declares inputs .* takes 2"),
    ("(declare-const X_0 Real)\n(assert (<= X_0 1))\n(assert (>= X_0 2))", r"line 1: input X_0 has lower bound"),
])
def test_malformed_files(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(LeoInputError, match=match):
        read_vnnlib(_write(tmp_path, text), 2 if "X_1" in text else 1)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LeoInputError, match="no such VNN-LIB file"):
        read_vnnlib(tmp_path / "nope.vnnlib", 1)
