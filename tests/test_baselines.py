"""The baselines of the speed benchmark find exactly leo's stable units."""

import numpy as np
import pytest

from benchmarks.baselines import naive, omlt
from leo.core.domain import make_box
from leo.stability.analysis import StabilityOptions, analyse
from tests.conftest import random_mlp


def _omlt_available() -> bool:
    try:
        import omlt.neuralnet  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means: skip
        return False
    return True


def _case(seed):
    rng = np.random.default_rng(seed)
    net = random_mlp(rng, [4, 6, 5, 2], bias_shift=float([-0.6, -0.2, 0.0, 0.4][seed % 4]))
    return net, make_box(0, 1, 4)


def _leo_sets(net, box):
    report = analyse(net, box, StabilityOptions(samples=64))
    return [lr.active for lr in report.layers], [lr.inactive for lr in report.layers]


def _check(result, net, box):
    active, inactive = _leo_sets(net, box)
    assert result["capped"] is False
    assert result["active"] == active
    assert result["inactive"] == inactive
    assert result["stable"] == sum(map(len, active)) + sum(map(len, inactive))
    assert result["seconds"] > 0
    assert isinstance(result["solves"], int)


@pytest.mark.parametrize("seed", range(4))
def test_naive_matches_leo(seed):
    net, box = _case(seed)
    _check(naive(net, box, cap=60), net, box)


@pytest.mark.skipif(not _omlt_available(), reason="omlt is not importable (pip install leo[bench])")
@pytest.mark.parametrize("seed", range(4))
def test_omlt_matches_leo(seed):
    net, box = _case(seed)
    _check(omlt(net, box, cap=60), net, box)


def test_naive_counts_two_solves_per_open_unit():
    net, box = _case(0)
    result = naive(net, box, cap=60)
    assert result["solves"] % 2 == 0 and result["solves"] > 0


def test_cap_stops_the_baselines():
    net, box = _case(1)
    out = naive(net, box, cap=1e-9)
    assert out["capped"] is True and out["solves"] == 0
    if _omlt_available():
        out = omlt(net, box, cap=1e-9)
        assert out["capped"] is True and out["solves"] == 0
