"""Start-up: ``import leo.cli.main`` and ``leo property`` on ONNX + VNN-LIB do not import torch
(4-14 s on the shared machine) unless a step needs it, each checked in a fresh interpreter;
the lazy public names of ``leo`` still resolve; the numpy gradient that replaced torch in
the counterexample search agrees with finite differences; --compress-first runs one full
analysis, not two."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import leo.queries.property as property_module
from leo.core.domain import make_box
from leo.io.onnx_export import save_onnx
from leo.core.network import Layer, Network
from leo.core.network import excess_and_gradient
from leo.queries.property import Inequality, OutputProperty, check_property
from tests.conftest import random_mlp

ROOT = Path(__file__).resolve().parents[1]


def _fresh(code: str) -> str:
    """stdout of ``code`` in a new interpreter (nothing imported yet), from the repository root."""
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=ROOT,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_import_leo_cli_and_help_do_not_import_torch() -> None:
    out = _fresh("""
        import sys
        import leo.cli.main
        print('after import', 'torch' in sys.modules)
        leo.cli.main.main(['--help'])
        print('after help', 'torch' in sys.modules)
    """)
    assert "after import False" in out and "after help False" in out
    assert "train" in out  # the lazy command is still listed


def test_property_decided_by_sampling_never_imports_torch(tmp_path: Path) -> None:
    """A violated property found by sampling, with a results file: ONNX read, VNN-LIB read, the
    answer written, and torch never imported."""
    net = random_mlp(np.random.default_rng(3), [3, 8, 2])
    model = tmp_path / "net.onnx"
    save_onnx(net, model, dtype=np.float64)
    y = net(make_box(-1, 1, 3).sample(1000, np.random.default_rng(0)))[:, 0]
    spec = tmp_path / "p.vnnlib"
    spec.write_text("".join(f"(declare-const X_{i} Real)\n(assert (>= X_{i} -1))\n(assert (<= X_{i} 1))\n"
                            for i in range(3))
                    + "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
                    + f"(assert (>= Y_0 {float(np.median(y))!r}))\n")
    out = _fresh(f"""
        import sys
        from leo.cli.main import main
        code = main(['property', {str(model)!r}, {str(spec)!r}, '--results', {str(tmp_path / 'r.txt')!r}, '-q'])
        print('code', code, 'torch', 'torch' in sys.modules)
    """)
    assert "code 1 torch False" in out, out
    assert (tmp_path / "r.txt").read_text().startswith("sat\n")


def test_lazy_public_names_resolve() -> None:
    out = _fresh("""
        import sys
        import leo.reduction.reduce  # the submodule first: the package's name must stay the function
        import leo
        print('torch', 'torch' in sys.modules)
        print(callable(leo.reduce), leo.reduce.__module__, leo.Box.__name__, leo.set_threads.__name__)
        print(sorted(leo.__all__) == sorted(n for n in leo.__all__ if getattr(leo, n) is not None))
        print('torch', 'torch' in sys.modules)  # leo.verify and the analysis import it
    """)
    assert out.split("\n")[:4] == ["torch False", "True leo.reduction.reduce Box set_threads", "True", "torch True"], out
    with pytest.raises(AttributeError, match="no attribute 'nonesuch'"):
        import leo

        leo.nonesuch  # noqa: B018


def _dag() -> Network:
    """3 inputs, two ReLU layers, and an output that also reads the input (a skip connection)."""
    rng = np.random.default_rng(1)
    return Network(3, (Layer({0: rng.normal(size=(5, 3))}, rng.normal(size=5), True),
                       Layer({1: rng.normal(size=(4, 5))}, rng.normal(size=4), True),
                       Layer({2: rng.normal(size=(2, 4)), 0: rng.normal(size=(2, 3))}, rng.normal(size=2), False)))


def test_numpy_gradient_matches_finite_differences() -> None:
    net = _dag()
    a = np.array([[1.0, -2.0], [-0.5, 1.0]])
    c = np.array([0.3, -0.1])
    x = np.random.default_rng(2).uniform(-1, 1, size=(20, 3))
    value, grad = excess_and_gradient(net, x, a, c)
    np.testing.assert_allclose(value, (net(x) @ a.T - c).max(axis=1))
    h = 1e-6
    for i in range(3):
        step = np.zeros(3)
        step[i] = h
        central = ((net(x + step) @ a.T - c).max(axis=1) - (net(x - step) @ a.T - c).max(axis=1)) / (2 * h)
        np.testing.assert_allclose(grad[:, i], central, atol=1e-4)  # random points: no kink within h


def test_compress_first_runs_one_full_analysis(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, --compress-first analysed the original AND the compressed network with
    ANALYSIS_SHARE of the time each; now the compressed one gets RECHECK_SHARE."""
    import leo.stability.analysis

    budgets: list[float] = []
    real = leo.stability.analysis.analyse

    def spy(network, box, options, **kw):  # noqa: ANN001, ANN202
        budgets.append(options.time_budget)
        return real(network, box, options, **kw)

    monkeypatch.setattr(leo.stability.analysis, "analyse", spy)
    net = random_mlp(np.random.default_rng(7), [3, 5, 4, 1], bias_shift=0.8)
    box = make_box(0, 1, 3)
    prop = OutputProperty(1, ((Inequality(np.array([-1.0]), -1e6),),))  # Y_0 >= 1e6: holds
    result = check_property(net, box, prop, 20.0, samples=0, compress_first=True)
    assert result.answer.value == "unsat" and result.hidden_units[1] < result.hidden_units[0]
    full = [b for b in budgets if b > property_module.RECHECK_SHARE * 20.0]
    assert len(full) == 1 and len(budgets) == 2, budgets
