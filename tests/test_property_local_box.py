"""``leo property --center X.npy --eps E`` (and --lower/--upper) with a VNN-LIB file that
constrains only the outputs: answers against the exact output range over the ball (one LP
per activation pattern, tests.conftest), a sat witness confirmed by onnxruntime inside the
ball, and every bad combination of box options exiting 2 with one line and no output file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from leo.cli.main import main
from leo.core.domain import make_box
from leo.io.onnx_export import save_onnx
from leo.io.vnnlib import read_query, read_vnnlib
from tests.conftest import exact_ranges, random_mlp
from tests.test_property_cli import _ort, _parse_results

GAP = 0.05
CENTER = np.array([0.3, 0.6, 0.95])
EPS = 0.1
DOMAIN = (0.0, 1.0)  # the ball is clipped to it: input 2 to [0.85, 1.0]


def _outputs_only(path: Path, outputs: int, unsafe: str, inputs: int = 0) -> Path:
    """A VNN-LIB file with no input bounds (``inputs`` X_i declared, none bounded)."""
    text = "".join(f"(declare-const X_{i} Real)\n" for i in range(inputs))
    text += "".join(f"(declare-const Y_{j} Real)\n" for j in range(outputs))
    path.write_text(text + f"(assert {unsafe})\n")
    return path


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    tmp = tmp_path_factory.mktemp("local")
    net = random_mlp(np.random.default_rng(4), [3, 5, 4, 2])
    lo, hi = np.clip(CENTER - EPS, *DOMAIN), np.clip(CENTER + EPS, *DOMAIN)
    exact_lo, exact_hi = exact_ranges(net, lo, hi, len(net.layers) - 1)
    model = tmp / "net.onnx"
    save_onnx(net, model, dtype=np.float64)
    center = tmp / "center.npy"
    np.save(center, CENTER)
    return {"net": net, "lo": lo, "hi": hi, "exact_hi": float(exact_hi[0]), "model": model, "center": center,
            "tmp": tmp}


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("declared", [0, 3])  # no X declared at all, or declared but unbounded
def test_ball_answers_match_the_exact_range(capsys, local, tmp_path, declared) -> None:
    top = local["exact_hi"]
    holds = _outputs_only(tmp_path / "holds.vnnlib", 2, f"(>= Y_0 {top + GAP!r})", declared)
    code, out, err = run(capsys, "property", local["model"], holds, "--center", local["center"], "--eps", EPS,
                         "--lower", DOMAIN[0], "--upper", DOMAIN[1], "-q")
    assert (code, out.split(":")[0]) == (0, "unsat"), (out, err)
    violated = _outputs_only(tmp_path / "violated.vnnlib", 2, f"(>= Y_0 {top - GAP!r})", declared)
    results = tmp_path / "result.txt"
    code, out, err = run(capsys, "property", local["model"], violated, "--center", local["center"], "--eps", EPS,
                         "--lower", DOMAIN[0], "--upper", DOMAIN[1], "--results", results, "-q")
    assert (code, out.split(":")[0]) == (1, "sat"), (out, err)
    answer, x, _ = _parse_results(results)
    assert np.all(x >= local["lo"]) and np.all(x <= local["hi"])  # inside the CLIPPED ball
    assert _ort(local["model"], x)[0] >= top - GAP - 1e-6


def test_without_clipping_the_ball_is_wider(capsys, local, tmp_path) -> None:
    """No --lower/--upper: the ball is not clipped, so input 2 reaches 1.05; a threshold just above
    the clipped ball's maximum can be reachable only there, and never contradicts the exact range."""
    net = local["net"]
    lo, hi = CENTER - EPS, CENTER + EPS
    _, exact_hi = exact_ranges(net, lo, hi, len(net.layers) - 1)
    for t, expected in ((exact_hi[0] + GAP, (0, "unsat")), (exact_hi[0] - GAP, (1, "sat"))):
        spec = _outputs_only(tmp_path / f"p{t:.3f}.vnnlib", 2, f"(>= Y_0 {float(t)!r})")
        code, out, err = run(capsys, "property", local["model"], spec, "--center", local["center"], "--eps", EPS, "-q")
        assert (code, out.split(":")[0]) == expected, (t, out, err)


def test_lower_upper_alone_give_the_box(capsys, local, tmp_path) -> None:
    net = local["net"]
    box = make_box(-0.5, 0.5, 3)
    _, exact_hi = exact_ranges(net, box.lower, box.upper, len(net.layers) - 1)
    spec = _outputs_only(tmp_path / "p.vnnlib", 2, f"(>= Y_0 {float(exact_hi[0] + GAP)!r})")
    code, out, _ = run(capsys, "property", local["model"], spec, "--lower", -0.5, "--upper", 0.5, "-q")
    assert (code, out.split(":")[0]) == (0, "unsat")


def _bounded(path: Path) -> Path:
    text = "".join(f"(declare-const X_{i} Real)\n(assert (>= X_{i} 0))\n(assert (<= X_{i} 1))\n" for i in range(3))
    path.write_text(text + "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n(assert (>= Y_0 100))\n")
    return path


@pytest.mark.parametrize("options, message", [
    (["--center", "C", "--eps", "0.1"], "bounds the inputs already; leave out --center/--eps"),
    (["--lower", "0", "--upper", "1"], "bounds the inputs already; leave out --lower/--upper"),
])
def test_box_options_with_a_bounded_file_exit_2(capsys, local, tmp_path, options, message) -> None:
    spec = _bounded(tmp_path / "bounded.vnnlib")
    results = tmp_path / "r.txt"
    args = [local["center"] if a == "C" else a for a in options]
    code, out, err = run(capsys, "property", local["model"], spec, *args, "--results", results)
    assert code == 2 and out == "" and message in err and len(err.strip().splitlines()) == 1, err
    assert not results.exists()


@pytest.mark.parametrize("options, message", [
    ([], "bounds no input (X_i): give the box with --center"),
    (["--center", "C"], "give --center and --eps together"),
    (["--eps", "0.1"], "give --center and --eps together"),
    (["--lower", "0"], "give --lower and --upper together"),
    (["--center", "C", "--eps", "0.1", "--lower", "0"], "give both --lower and --upper"),
    (["--center", "C", "--eps", "-1"], "--eps must be a finite number >= 0"),
    (["--center", "C", "--eps", "0.1", "--lower", "0.5", "--upper", "1"], "lies outside the domain"),
])
def test_bad_combinations_with_an_outputs_only_file_exit_2(capsys, local, tmp_path, options, message) -> None:
    spec = _outputs_only(tmp_path / "o.vnnlib", 2, "(>= Y_0 100)")
    results = tmp_path / "r.txt"
    args = [local["center"] if a == "C" else a for a in options]
    code, out, err = run(capsys, "property", local["model"], spec, *args, "--results", results)
    assert code == 2 and out == "" and message in err and len(err.strip().splitlines()) == 1, err
    assert not results.exists()


def test_read_query_box_is_none_only_when_no_input_is_bounded(tmp_path) -> None:
    spec = _outputs_only(tmp_path / "o.vnnlib", 2, "(>= Y_0 1)", inputs=3)
    box, prop = read_query(spec, 3)
    assert box is None and prop is not None and len(prop.disjuncts) == 1
    with pytest.raises(Exception, match="X_0 has no lower bound"):
        read_vnnlib(spec, 3)  # the box-required reader refuses it as before
    partial = tmp_path / "partial.vnnlib"
    partial.write_text(spec.read_text() + "(assert (>= X_1 0))\n(assert (<= X_1 1))\n")
    with pytest.raises(Exception, match="X_0 has no lower bound"):
        read_query(partial, 3)  # some inputs bounded and others not: refused either way
