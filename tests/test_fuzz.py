"""A slice of the bad-input fuzz (benchmarks/fuzz.py): corrupted checkpoints, TorchScript,
ONNX and VNN-LIB files, empty files, directories, JSON and text given as models, and
marker-writing pickles through ``leo verify`` and ``leo property``."""

import pytest

from benchmarks import fuzz


@pytest.fixture(scope="module")
def result():
    return fuzz.fuzz(variants=1, seed=0, subprocess_cases=1, commands=["verify", "property", "verify-vnnlib"])


def test_slice_runs_every_kind_of_bad_input(result):
    """The slice is not empty: every format and special case went through, and most were refused."""
    assert result["cases_in_process"] >= 50
    assert result["cases_subprocess"] >= 1
    assert result["exit_codes"].get("2", 0) >= 35


def test_no_pickle_runs_and_the_marker_check_can_fire(result):
    """No pickle is unpickled without --allow-pickle; with it (the control) the marker appears,
    so the check is not blind."""
    assert result["pickle_executions"] == 0
    assert all(c["marker_written"] for c in result["control"])


def test_bad_input_is_one_line_exit_2_and_leaves_nothing(result):
    """Exit 2 with one stderr line, or 0/1/3 on an input that still loads; no traceback,
    no exit 4, no output or temp file left, no input changed."""
    assert result["failing_cases"] == 0, "\n".join(
        f"{d['cases']} x {d['command']}: {d['problems']} ({d['stderr']}); e.g. {d['example']}"
        for d in result["defects"])
