"""The ``leo`` command as a package (``leo/cli/``, one module per command, loaded lazily) and
``--solver`` on ``property`` and ``check --exact``.

Answers are checked against exact output ranges (one LP per activation pattern,
tests.conftest) and onnxruntime; the wiring of ``--solver`` by recording what the query
functions receive; start-up by which modules a fresh interpreter imports."""

from __future__ import annotations

import importlib.util
import inspect
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import leo.queries.equivalence as equivalence
import leo.queries.property as property_module
from leo.cli.main import COMMANDS, main
from leo.core.domain import make_box
from leo.core.network import Network
from leo.io.onnx_export import save_onnx
from solvers import backend
from solvers.backend import Solver
from tests.conftest import exact_ranges, random_mlp

ROOT = Path(__file__).resolve().parents[1]
GAP = 0.05  # property thresholds sit this far inside / outside the exact range
BOX = ("--lower", "-1", "--upper", "1")
HAVE_SCIP = importlib.util.find_spec("pyscipopt") is not None


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _fresh(code: str) -> str:
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=ROOT,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    return p.stdout


def _ort(model: Path, x: np.ndarray) -> np.ndarray:
    """The model file's output at ``x`` by onnxruntime, independent of leo's forward pass."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.asarray(sess.run(None, {name: x.reshape(1, -1).astype(np.float64)})[0], dtype=np.float64).ravel()


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 3-8-2 float64 ONNX network, the exact range of Y_0 over [-1, 1]^3, and property files
    (the box in the file) that hold and that are violated by that range."""
    tmp = tmp_path_factory.mktemp("cli_pkg")
    net = random_mlp(np.random.default_rng(3), [3, 8, 2])
    box = make_box(-1, 1, 3)
    lo, hi = exact_ranges(net, box.lower, box.upper, 1)
    model = tmp / "net.onnx"
    save_onnx(net, model, dtype=np.float64)
    head = "".join(f"(declare-const X_{i} Real)\n(assert (>= X_{i} -1))\n(assert (<= X_{i} 1))\n" for i in range(3))
    head += "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
    files = {}
    for name, threshold in (("holds", hi[0] + GAP), ("violated", hi[0] - GAP)):
        files[name] = tmp / f"{name}.vnnlib"
        files[name].write_text(head + f"(assert (>= Y_0 {float(threshold)!r}))\n")
    outputs_only = tmp / "outputs_only.vnnlib"
    outputs_only.write_text("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const X_2 Real)\n"
                            "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
                            f"(assert (>= Y_0 {float(hi[0] + GAP)!r}))\n")
    return {"net": net, "hi": float(hi[0]), "model": model, "outputs_only": outputs_only, **files}


def _record(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[Any]:
    """Replace ``module.name`` by a spy that records its ``solver`` and calls the real function
    (with ``solver`` where the real one takes it)."""
    real = getattr(module, name)
    takes = "solver" in inspect.signature(real).parameters
    seen: list[Any] = []

    def spy(*args: Any, solver: Any = "(not passed)", **kwargs: Any) -> Any:
        seen.append(solver)
        return real(*args, **({"solver": solver} if takes else {}), **kwargs)

    monkeypatch.setattr(module, name, spy)
    return seen


# -- --solver on property and check ------------------------------------------------------

@pytest.mark.parametrize("solver", [Solver.HIGHS, pytest.param(Solver.SCIP, marks=pytest.mark.skipif(
    not HAVE_SCIP, reason="pyscipopt not installed"))])
def test_property_passes_its_solver_and_answers_as_the_exact_range_says(capsys, monkeypatch, case, tmp_path,
                                                                        solver):
    seen = _record(monkeypatch, property_module, "check_property")
    code, out, _ = run(capsys, "property", case["model"], case["holds"], "--solver", solver, "-q")
    assert (code, out.split(":")[0]) == (0, "unsat") and seen == [solver] and type(seen[0]) is Solver
    npy = tmp_path / "x.npy"
    code, out, _ = run(capsys, "property", case["model"], case["violated"], "--solver", solver, "-q",
                       "--counterexample", npy)
    assert (code, out.split(":")[0]) == (1, "sat") and seen == [solver, solver]
    assert _ort(case["model"], np.load(npy))[0] >= case["hi"] - GAP  # in the unsafe set, by onnxruntime


def test_property_default_solver_is_highs(capsys, monkeypatch, case):
    seen = _record(monkeypatch, property_module, "check_property")
    assert run(capsys, "property", case["model"], case["holds"], "-q")[0] == 0
    assert seen == [Solver.HIGHS]


def _pair(tmp: Path, shift: float) -> tuple[Path, Path, Network]:
    """A network and a copy whose output 0 is raised by ``shift`` (0: the same function)."""
    from dataclasses import replace

    net = random_mlp(np.random.default_rng(5), [3, 6, 2])
    last = net.layers[-1]
    bias = last.bias.copy()
    bias[0] += shift
    other = Network(net.input_dim, (*net.layers[:-1], replace(last, bias=bias)))
    a, b = tmp / "a.onnx", tmp / f"b{shift:g}.onnx"
    save_onnx(net, a, dtype=np.float64)
    save_onnx(other, b, dtype=np.float64)
    return a, b, net


@pytest.mark.parametrize("solver", [Solver.HIGHS, pytest.param(Solver.SCIP, marks=pytest.mark.skipif(
    not HAVE_SCIP, reason="pyscipopt not installed"))])
def test_check_exact_passes_its_solver(capsys, monkeypatch, tmp_path, solver):
    seen = _record(monkeypatch, equivalence, "compare_exact")
    a, same, _ = _pair(tmp_path, 0.0)
    code, out, _ = run(capsys, "check", a, same, *BOX, "--exact", "--points", "200", "--solver", solver, "-q")
    assert code == 0 and "proven by MILP" in out and seen == [solver]
    # a difference sampling cannot miss is refuted before any MILP: compare_exact is not asked
    _, far, _ = _pair(tmp_path, 1.0)
    code, out, _ = run(capsys, "check", a, far, *BOX, "--exact", "--points", "200", "--solver", solver, "-q")
    assert code == 1 and "NOT equivalent" in out and seen == [solver]


def test_a_solver_that_is_not_installed_is_one_line_and_exit_2(capsys, monkeypatch, case, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(backend.importlib.util, "find_spec",
                        lambda name, *a: None if name == "pyscipopt" else real(name, *a))
    results = tmp_path / "r.txt"
    for argv in (("property", case["model"], case["holds"], "--results", results),
                 ("check", case["model"], case["model"], *BOX, "--exact"),
                 ("verify", case["model"], *BOX)):
        code, out, err = run(capsys, *argv, "--solver", "scip")
        assert code == 2 and out == "" and err.count("\n") == 1, (argv, err)
        assert "pip install 'leo[scip]'" in err
    assert not results.exists()


@pytest.mark.parametrize("option, value, what", [("--solver", "cplex", "solver"), ("--engine", "both", "engine"),
                                                 ("--form", "tiny", "form")])
def test_a_wrong_choice_names_the_choices_in_one_line(capsys, case, tmp_path, option, value, what):
    command = "property" if option == "--solver" else "compress"
    argv = ([command, case["model"], case["holds"]] if command == "property"
            else [command, case["model"], *BOX, "-o", tmp_path / "s.onnx"])
    code, out, err = run(capsys, *argv, option, value)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert f"unknown {what} {value!r}; choose one of" in err and f"(see 'leo {command} --help')" in err
    assert not (tmp_path / "s.onnx").exists()


# -- property reads its box with the shared options ----------------------------------------

def test_property_takes_the_shared_box_options(capsys, case):
    """--lower/--upper give the box of a file that bounds no input: the same answer as the file
    with the box in it; box options beside a file's own box, or --vnnlib, are bad input."""
    code, out, _ = run(capsys, "property", case["model"], case["outputs_only"], *BOX, "-q")
    assert (code, out.split(":")[0]) == (0, "unsat")
    code, _, err = run(capsys, "property", case["model"], case["holds"], *BOX)
    assert code == 2 and "bounds the inputs already; leave out --lower/--upper" in err
    code, _, err = run(capsys, "property", case["model"], case["outputs_only"], "--vnnlib", case["holds"])
    assert code == 2 and "No such option '--vnnlib'" in err


# -- the package: lazy commands, entry points ----------------------------------------------

def test_help_imports_no_command_module_and_a_command_imports_only_its_own(case):
    modules = sorted(target.split(":")[0] for target, _ in COMMANDS.values())
    out = _fresh(f"""
        import sys
        from leo.cli.main import main
        main(['--help'])
        print('help', sorted(m for m in {modules!r} if m in sys.modules))
        main(['property', {str(case['model'])!r}, {str(case['violated'])!r}, '-q'])
        print('property', sorted(m for m in {modules!r} if m in sys.modules), 'torch' in sys.modules)
    """)
    lines = [line for line in out.splitlines() if line.startswith(("help ", "property "))]
    assert lines == ["help []", "property ['leo.cli.property'] False"], out


def test_every_command_is_listed_and_shows_its_own_help(capsys):
    code, out, _ = run(capsys, "--help")
    listed = [line.split()[0] for line in out.split("Commands:")[1].splitlines() if line.startswith("  ") and
              not line.startswith("   ")]
    assert code == 0 and listed == sorted(COMMANDS)
    for name in COMMANDS:
        if name == "train" and importlib.util.find_spec("torch") is None:
            continue
        code, out, _ = run(capsys, name, "--help")
        assert code == 0 and out.startswith(f"Usage: leo {name} ")


@pytest.mark.parametrize("module", ["leo.cli", "leo.cli.main"])
def test_python_m_runs_leo(module, case):
    p = subprocess.run([sys.executable, "-m", module, "property", str(case["model"]), str(case["violated"]), "-q"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 1 and p.stdout.startswith("sat:"), p.stderr


def test_the_table_never_wraps_a_cell(capsys):
    """One line per layer however many methods decided its units (a wrapped cell added a row
    with an empty layer name, which readers of the table took for a layer)."""
    from types import SimpleNamespace

    from leo.cli.table import print_table

    methods = {f"method-{k}": k for k in range(12)}
    layer = SimpleNamespace(name="1", shape_text="8", width=8, active=[], inactive=[], proven_unstable=[],
                            unproven=[], seconds=0.0, methods=lambda: methods, internal=None,
                            channel_line=lambda: "")
    report = SimpleNamespace(box=SimpleNamespace(dim=3), layers=[layer], num_unproven=0, num_stable=0, lps=0,
                             milps=0, nodes=0, seconds=0.0)
    print_table(report)
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("│")]
    assert len(rows) == 1 and all(f"method-{k} {k}" in rows[0] for k in range(12)), rows
