"""One way to save a point as .npy (``leo.io.files.save_point``), used by ``leo check
--counterexample`` and ``leo property --counterexample``: the whole file or none, never over
an existing file (also one that appeared while the solve ran) unless --force, and a file
``numpy.load`` reads back as the point the forward passes confirm."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from leo.cli.main import main
from leo.core.domain import make_box
from leo.errors import LeoInputError
from leo.exitcodes import ExitCode
from leo.io.files import save_point
from leo.io.onnx_export import save_onnx
from leo.queries.property import Answer, PropertyResult, save_outputs
from tests.conftest import exact_ranges, random_mlp

OLD = b"the user's own file"


def _run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _ort(model: Path, x: np.ndarray) -> np.ndarray:
    """The model file's output at ``x`` by onnxruntime (not leo's forward pass)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.asarray(sess.run(None, {name: x.reshape(1, -1)})[0], dtype=np.float64).ravel()


def _model(seed: int, path: Path) -> Path:
    save_onnx(random_mlp(np.random.default_rng(seed), [3, 8, 2]), path, dtype=np.float64)
    return path


def test_save_point_writes_the_exact_point_and_refuses_an_existing_file(tmp_path: Path) -> None:
    x = np.array([0.1, 1 / 3, np.nextafter(0.0, 1.0), -0.0])
    path = save_point(tmp_path / "x.NPY", x)  # the suffix in any case, as `leo check` always took it
    assert np.load(path).tobytes() == x.tobytes()
    with pytest.raises(LeoInputError, match="exists already"):
        save_point(path, np.zeros(4))
    assert np.load(path).tobytes() == x.tobytes()
    save_point(path, np.ones(4), overwrite=True)
    np.testing.assert_array_equal(np.load(path), np.ones(4))
    with pytest.raises(LeoInputError, match="must end in .npy"):
        save_point(tmp_path / "x.txt", x)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.NPY"]  # no temporary file left


def test_property_outputs_never_replace_a_point_that_appeared_during_the_solve(tmp_path: Path) -> None:
    result = PropertyResult(Answer.SAT, np.array([0.5, -0.5]), 0.1, output=np.array([1.0]), disjunct=0)
    point, results = tmp_path / "x.npy", tmp_path / "r.txt"
    point.write_bytes(OLD)  # planned as free before the solve; the user made it meanwhile
    with pytest.raises(LeoInputError, match="exists already"):
        save_outputs(result, str(results), str(point))
    assert point.read_bytes() == OLD and not results.exists()  # nothing written, nothing half-written
    assert save_outputs(result, str(results), str(point), overwrite=True) == [str(results), str(point)]
    np.testing.assert_array_equal(np.load(point), result.counterexample)


def test_check_saves_a_point_where_the_models_differ_and_refuses_an_existing_file(capsys, tmp_path: Path) -> None:
    f, g = _model(1, tmp_path / "f.onnx"), _model(2, tmp_path / "g.onnx")
    point = tmp_path / "cx.npy"
    point.write_bytes(OLD)
    code, out, err = _run(capsys, "check", f, g, "--lower", "-1", "--upper", "1", "--points", "100",
                          "--counterexample", point)
    assert code == ExitCode.BAD_INPUT and out == "" and len(err.strip().splitlines()) == 1
    assert point.read_bytes() == OLD
    point.unlink()
    code, out, _ = _run(capsys, "check", f, g, "--lower", "-1", "--upper", "1", "--points", "100",
                        "--counterexample", point)
    assert code == ExitCode.REFUTED and f"saved x (3 values) to {point}" in out
    x = np.load(point)
    assert x.shape == (3,) and np.all(np.abs(x) <= 1)
    assert np.abs(_ort(f, x) - _ort(g, x)).max() > 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cx.npy", "f.onnx", "g.onnx"]


def test_property_saves_the_counterexample_and_refuses_an_existing_file(capsys, tmp_path: Path) -> None:
    net = random_mlp(np.random.default_rng(3), [3, 8, 2])
    model = tmp_path / "net.onnx"
    save_onnx(net, model, dtype=np.float64)
    box = make_box(-1.0, 1.0, 3)
    threshold = float(exact_ranges(net, box.lower, box.upper, 1)[1][0]) - 0.05  # Y_0 reaches it on part of the box
    spec = tmp_path / "p.vnnlib"
    spec.write_text("".join(f"(declare-const X_{i} Real)\n(assert (>= X_{i} -1.0))\n(assert (<= X_{i} 1.0))\n"
                            for i in range(3))
                    + "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
                    + f"(assert (>= Y_0 {threshold!r}))\n")
    point = tmp_path / "x.npy"
    point.write_bytes(OLD)
    before = (_digest(model), _digest(spec))
    code, out, err = _run(capsys, "property", model, spec, "--counterexample", point, "-q")
    assert code == ExitCode.BAD_INPUT and out == "" and len(err.strip().splitlines()) == 1
    assert point.read_bytes() == OLD and (_digest(model), _digest(spec)) == before
    point.unlink()
    code, out, _ = _run(capsys, "property", model, spec, "--counterexample", point, "-q")
    assert code == ExitCode.REFUTED and out.startswith("sat")
    x = np.load(point)
    assert x.shape == (3,) and np.all(np.abs(x) <= 1)
    assert _ort(model, x)[0] >= threshold  # in the unsafe set, by onnxruntime
