import numpy as np
import pytest

from leo.core.domain import make_box
from leo.errors import LeoInputError


def test_scalar_broadcast_and_npy(tmp_path):
    box = make_box("0", "1", 3)
    assert box.lower.tolist() == [0, 0, 0] and box.upper.tolist() == [1, 1, 1]
    np.save(tmp_path / "lo.npy", np.array([-1.0, 0.0, 0.5]))
    box = make_box(str(tmp_path / "lo.npy"), "1", 3)
    assert box.lower.tolist() == [-1.0, 0.0, 0.5]


def test_bad_domains():
    with pytest.raises(LeoInputError, match="lower > upper"):
        make_box("1", "0", 2)
    with pytest.raises(LeoInputError, match="number or a .npy"):
        make_box("abc", "1", 2)
    with pytest.raises(LeoInputError, match="2 entries but the network has 3"):
        make_box(np.zeros(2), np.ones(2), 3)
    with pytest.raises(LeoInputError, match="no such file"):
        make_box("missing.npy", "1", 2)


def test_corners():
    box = make_box(np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 3.0]), 3)
    c = box.corners(limit=16)
    assert c.shape == (4, 3)
    assert {tuple(r) for r in c} == {(0, 1, 2), (1, 1, 2), (0, 1, 3), (1, 1, 3)}
    assert make_box(0, 1, 40).corners(limit=1024) is None
