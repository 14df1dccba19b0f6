"""One thread policy (leo.core.threads): the CLI's --threads, StabilityOptions.threads and the
benchmarks set torch, BLAS and HiGHS threads through the same function, default 1."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from leo.core.domain import make_box
from leo.errors import LeoInputError
from leo.stability.analysis import StabilityOptions, analyse
from leo.core.threads import DEFAULT_THREADS, highs_threads, set_threads, using_threads
from tests.conftest import random_mlp

SIZES = [6, 16, 16, 16, 2]


@pytest.fixture(autouse=True)
def _restore_threads():
    saved = torch.get_num_threads()
    yield
    set_threads(DEFAULT_THREADS)
    torch.set_num_threads(saved)


def _net():
    return random_mlp(np.random.default_rng(7), SIZES, bias_shift=-0.2)


def _spy(monkeypatch) -> dict[str, list[int]]:
    """Record torch's threads inside each local search (which it replaces) and the
    threads of each HiGHS model."""
    import leo.stability.run_state
    from solvers.highs_backend import HighsModel

    seen: dict[str, list[int]] = {"torch": [], "highs": []}
    init = HighsModel.__init__

    def spy_search(network, box, layer, units, starts, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        # the starts themselves, not a search: two torch threads on a loaded 2-core machine made the
        # local search of this tiny net take 20 s instead of 0.5 s (the reason for the default of 1)
        seen["torch"].append(torch.get_num_threads())
        return np.asarray(starts)

    def spy_init(self, formulation, relax=False, threads=1, **kwargs):  # noqa: ANN001, ANN003, ANN202
        seen["highs"].append(threads)
        init(self, formulation, relax, threads, **kwargs)

    monkeypatch.setattr(leo.stability.run_state, "local_search", spy_search)
    monkeypatch.setattr(HighsModel, "__init__", spy_init)
    return seen


def test_set_threads_sets_torch_and_highs():
    assert set_threads(1) == 1 and torch.get_num_threads() == 1 and highs_threads() == 1
    cores = os.cpu_count() or 1
    assert set_threads(0) == cores and torch.get_num_threads() == cores and highs_threads() == cores
    with pytest.raises(LeoInputError, match="threads"):
        set_threads(-1)


def test_using_threads_restores_torch_and_blas():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    torch.set_num_threads(2)
    before = [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    with using_threads(1):
        assert torch.get_num_threads() == 1 and highs_threads() == 1
        assert all(i["num_threads"] == 1 for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas")
    assert torch.get_num_threads() == 2
    assert [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"] == before


@pytest.mark.parametrize("threads", [1, 2])
def test_analysis_runs_with_its_threads_and_puts_them_back(threads, monkeypatch):
    seen = _spy(monkeypatch)
    torch.set_num_threads(3)
    report = analyse(_net(), make_box(0, 1, SIZES[0]), StabilityOptions(threads=threads, samples=64, branch=False))
    assert report.solves > 0 and seen["torch"] and seen["highs"]
    assert set(seen["torch"]) == {threads} and set(seen["highs"]) == {threads}
    assert report.settings["threads"] == threads
    assert torch.get_num_threads() == 3  # a notebook's torch is left as it was


def test_default_is_one_thread():
    assert StabilityOptions().threads == DEFAULT_THREADS == 1
    with pytest.raises(LeoInputError, match="threads"):
        StabilityOptions(threads=-1)


@pytest.mark.parametrize("flag, expected", [([], 1), (["--threads", "2"], 2)])
def test_cli_threads_option(flag, expected, tmp_path, monkeypatch):
    from leo.cli.main import main
    from leo.io.save import save_network

    path = save_network(_net(), tmp_path / "net.pt", float64=True)
    seen = _spy(monkeypatch)
    torch.set_num_threads(3)  # what torch would pick by itself on a bigger machine
    out = tmp_path / "report.json"
    rc = main(["verify", str(path), "--lower", "0", "--upper", "1", "--samples", "64", "-q", "--json", str(out),
               "--no-branch", *flag])
    assert rc == 0
    assert json.loads(out.read_text())["settings"]["threads"] == expected
    assert set(seen["torch"]) == {expected} and set(seen["highs"]) == {expected}


def test_cli_rejects_negative_threads(tmp_path, capsys):
    from leo.cli.main import main
    from leo.io.save import save_network

    path = save_network(_net(), tmp_path / "net.pt")
    assert main(["verify", str(path), "--lower", "0", "--upper", "1", "--threads", "-1"]) == 2
    err = capsys.readouterr().err
    assert "threads" in err and "Traceback" not in err


def test_threads_set_before_torch_is_imported_reach_torch() -> None:
    """set_threads must not import torch (a property on an ONNX file never needs it), yet the
    count must hold once torch is imported later in the same process."""
    import subprocess
    import sys

    code = ("import sys; from leo.core.threads import set_threads; set_threads(2); "
            "assert 'torch' not in sys.modules; import torch; print(torch.get_num_threads())")
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "2"


def test_highs_runs_after_the_thread_count_changes_in_one_process():
    """HiGHS starts one scheduler per process; a model asking for another thread count than the
    first run's ended "Not Set" without running, so an analysis with threads=2 after one with 1
    proved nothing by MILP. Both counts, in either order, now solve, and the analyses agree."""
    from leo.bounds.encoding import build_prefix
    from leo.core.verdicts import Verdict
    from solvers.highs_backend import HighsModel
    from solvers.result import SolveStatus

    net, box = _net(), make_box(0, 1, SIZES[0])
    enc = build_prefix(net, box, analyse(net, box, StabilityOptions(samples=0, branch=False)).all_bounds,
                       [[Verdict.UNSTABLE] * layer.width for layer in net.layers[:-1]], upto=1)
    for threads in (1, 2, 1, 2):
        model = HighsModel(enc, threads=threads)
        assert model.minimise(np.zeros(enc.num_cols), None, 10.0).status is SolveStatus.OPTIMAL, threads
    reports = [analyse(net, box, StabilityOptions(threads=t, samples=64, branch=False))
               for t in (1, 2)]
    assert [lr.active for lr in reports[0].layers] == [lr.active for lr in reports[1].layers]
    assert [lr.inactive for lr in reports[0].layers] == [lr.inactive for lr in reports[1].layers]
