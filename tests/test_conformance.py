"""A fixed part of the third-party VNN-LIB 2.0 conformance suite (vnnlib-satisfactory, in the
test extra) against leo-vnnlib: its compliance checks, and its hand-written cases of a few
categories, each judged by the suite's own expected answer. The suite has no random draws, so
the part is the same every run. The whole suite: ``python -m benchmarks.conformance``."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("vnntest")
HAVE_ENGINE = (importlib.util.find_spec("leo.io.vnnlib") is not None
               and importlib.util.find_spec("leo.queries.check") is not None)

#: Categories of dense ReLU networks and the arithmetic leo claims, about 20 cases.
CATEGORIES = ("relu", "gemm", "add", "arithmetic_bnd", "arithmetic_outc", "arithmetic_lin", "network_single")
#: Seconds per case, as the suite gives them to ``verify --timeout``.
TIMEOUT = 30


def _solver() -> str:
    here = Path(sys.executable).parent / "leo-vnnlib"
    found = str(here) if here.exists() else shutil.which("leo-vnnlib")
    if not found:
        pytest.skip("the leo-vnnlib console script is not installed (pip install -e .)")
    return found


@pytest.mark.parametrize("check", ["check_opset_versions", "check_vnnlib_versions", "check_serialise_assignments"])
def test_compliance(check):
    from vnntest.core import compliance

    passed, message = getattr(compliance, check)(_solver(), 60)
    assert passed, message


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_ENGINE, reason="leo.io.vnnlib / leo.queries.check not there yet")
def test_suite_cases_of_fixed_categories(tmp_path, monkeypatch):
    from vnntest.core.evaluator import Outcome, evaluate, partition_by_support
    from vnntest.core.generator import generate_all_tests
    from vnntest.core.runner import (get_supported_arithmetic_complexity_theories, get_supported_network_theories,
                                     get_supported_ops, run_solver_on_test)
    from vnntest.models.test_case import TestCase

    solver = _solver()
    monkeypatch.chdir(tmp_path)  # the suite writes its cases under ./.vnnlib-satisfactory
    entries = [e for cat in CATEGORIES for e in generate_all_tests(node_type=cat)]
    cases = [TestCase.from_manifest_entry(e, Path(".vnnlib-satisfactory") / "tests" / e["category"]) for e in entries]
    # as the suite does: a case runs when leo-vnnlib claims its op or theory
    runnable, skipped = partition_by_support(cases, get_supported_ops(solver), get_supported_network_theories(solver),
                                             supported_arithmetic_complexity_theories=(
                                                 get_supported_arithmetic_complexity_theories(solver)))
    # LIN is claimed only once leo answers its probes (an empty input polytope must be unsat)
    assert {s.missing_op for s in skipped} <= {"LIN"}
    assert len(runnable) >= 15
    bad = []
    for case in runnable:
        result = evaluate(run_solver_on_test(solver, case, timeout=TIMEOUT))
        if result.outcome is not Outcome.PASS:
            bad.append(f"{case.id}: {result.outcome.value}, expected {case.expected.value}, got "
                       f"{result.actual.value}; stderr {result.run_result.stderr.strip()[-300:]!r}")
    assert not bad, "\n".join(bad)
