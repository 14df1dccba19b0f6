"""Reading PyTorch models as users have them (issue 13, defects 2 and 8): any nn.Module,
traced or scripted TorchScript, torch.export programs, and state_dicts whose assumed
architecture is stated; bad files get one line and exit 2.

The truth is always the model's own forward pass in torch, in float64.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import leo
from leo.cli.main import main
from leo.errors import LeoInputError
from leo.io.load import load_network
from leo.io.torch_io import STATE_DICT_SOURCE, from_module
from leo.core.network import Network

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


class Residual(nn.Module):
    """h = relu(fc1(x)); h = h + relu(fc2(h)); return fc3(h): not a Linear-ReLU chain."""

    def __init__(self, n_in: int = 6, width: int = 10, n_out: int = 3) -> None:
        super().__init__()
        self.fc1 = nn.Linear(n_in, width)
        self.fc2 = nn.Linear(width, width)
        self.fc3 = nn.Linear(width, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc1(x))
        h = h + torch.relu(self.fc2(h))
        return self.fc3(h)


class WithSigmoid(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 5)
        self.act = nn.Sigmoid()
        self.out = nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.fc(x)))


class Branchy(nn.Module):
    """Python control flow on the input's values: a trace would bake in one branch."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return self.fc(x)
        return -self.fc(x)


def _residual(seed: int = 0) -> Residual:
    torch.manual_seed(seed)
    return Residual().double().eval()


def _points(n_in: int, n: int = 1000) -> np.ndarray:
    return np.random.default_rng(1).uniform(-2, 2, size=(n, n_in))


def _assert_same(net: Network, module: nn.Module, x: np.ndarray) -> None:
    """leo's forward equals torch's to 1e-9 relative, in float64."""
    with torch.no_grad():
        want = module(torch.tensor(x, dtype=torch.float64)).numpy()
    got = net(x.reshape(len(x), -1))
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-9 * (1 + np.abs(want).max())


def _cli(capsys, *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _bad(capsys, model: Path) -> str:
    """``leo verify`` on a bad model: exit 2, one line on stderr, no traceback."""
    code, _, err = _cli(capsys, "verify", model, "--lower", "0", "--upper", "1", "-q")
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("leo:")]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- architectures that a state_dict cannot record ----------------------------------------

def test_residual_module_reads_exactly() -> None:
    module = _residual()
    net = from_module(module)
    _assert_same(net, module, _points(6))
    assert net.layers[2].sources == (1, 2)  # the skip is a layer with two sources
    assert net.metadata["architecture_source"] == "nn.Module"


def test_residual_through_the_api() -> None:
    from leo.api import as_network

    module = _residual()
    _assert_same(as_network(module), module, _points(6))
    report = leo.verify(module, -2.0, 2.0)
    assert len(report.layers) == 2  # two ReLU layers of 10 units, the skip kept


@pytest.mark.parametrize("how", ["script", "trace"])
def test_custom_torchscript(tmp_path: Path, how: str) -> None:
    module = _residual(2)
    example = torch.zeros(1, 6, dtype=torch.float64)
    ts = torch.jit.script(module) if how == "script" else torch.jit.trace(module, example)
    path = tmp_path / f"{how}.pt"
    ts.save(str(path))
    net = load_network(path)
    _assert_same(net, module, _points(6))
    assert net.metadata["architecture_source"] == "torchscript"


def test_torch_export_program(tmp_path: Path) -> None:
    module = _residual(3)
    program = torch.export.export(module, (torch.zeros(2, 6, dtype=torch.float64),))
    path = tmp_path / "m.pt2"
    torch.export.save(program, str(path))
    net = load_network(path)
    _assert_same(net, module, _points(6))
    assert net.metadata["architecture_source"] == "torch.export"
    assert net.input_shape == (6,)


def test_state_dict_is_read_as_a_chain_and_says_so(tmp_path: Path, caplog) -> None:
    """The assumption is visible: a warning naming the file, the metadata, the certificate.

    (The residual model's state_dict really is misread: that is why it must be said.)
    """
    module = _residual(4)
    path = tmp_path / "sd.pt"
    torch.save(module.state_dict(), path)
    with caplog.at_level("WARNING"):
        net = load_network(path)
    assert net.metadata["architecture_source"] == STATE_DICT_SOURCE
    notes = [r.getMessage() for r in caplog.records if "state_dict" in r.getMessage()]
    assert len(notes) == 1 and str(path) in notes[0] and "ONNX" in notes[0]
    x = _points(6, 200)
    with torch.no_grad():
        truth = module(torch.tensor(x)).numpy()
    assert np.abs(net(x) - truth).max() > 1e-3  # the chain is not the residual function
    cert = leo.compress(path, -1.0, 1.0).certificate
    assert cert["original"]["architecture_source"] == STATE_DICT_SOURCE


def test_state_dict_note_on_stderr_even_quiet(tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = tmp_path / "sd.pt"
    torch.save(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).state_dict(), path)
    proc = subprocess.run([sys.executable, "-m", "leo.cli.main", "verify", str(path), "--lower", "0", "--upper", "1",
                           "-q"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    notes = [ln for ln in proc.stderr.splitlines() if "as a state_dict" in ln]
    assert len(notes) == 1 and "assumed Linear→ReLU" in notes[0]


def test_exact_sources_are_recorded(tmp_path: Path) -> None:
    module = _residual(5)
    path = tmp_path / "m.onnx"
    torch.onnx.export(module, (torch.zeros(1, 6, dtype=torch.float64),), str(path), dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {0: "b"}})
    net = load_network(path)
    assert net.metadata["architecture_source"] == "onnx" and net.input_shape == (6,)
    _assert_same(net, module, _points(6))


# -- what leo cannot read: exit 2 naming the op -------------------------------------------

def test_unsupported_op_in_module_torchscript_and_export(tmp_path: Path, capsys) -> None:
    torch.manual_seed(0)
    with pytest.raises(LeoInputError, match="Sigmoid at node '/act/Sigmoid'"):
        from_module(WithSigmoid())
    ts = tmp_path / "sig.pt"
    torch.jit.script(WithSigmoid()).save(str(ts))
    assert "Sigmoid at node '/act/Sigmoid'" in _bad(capsys, ts)
    seq = tmp_path / "tanh.pt"
    torch.jit.script(nn.Sequential(nn.Linear(4, 3), nn.Tanh())).save(str(seq))
    assert "Tanh at node" in _bad(capsys, seq)
    pt2 = tmp_path / "sig.pt2"
    torch.export.save(torch.export.export(WithSigmoid(), (torch.zeros(2, 4),)), str(pt2))
    line = _bad(capsys, pt2)
    assert "Sigmoid" in line and "Relu" in line  # names the op and what leo reads


def test_value_dependent_python_code_is_refused() -> None:
    with pytest.raises(LeoInputError, match="depends on the values of its input"):
        from_module(Branchy())


# -- files that are not what they claim ---------------------------------------------------

def _files(tmp_path: Path) -> dict[str, Path]:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    good = {"sd.pt": lambda p: torch.save(m.state_dict(), p),
            "ts.pt": lambda p: torch.jit.script(m).save(str(p)),
            "e.pt2": lambda p: torch.export.save(torch.export.export(m, (torch.zeros(2, 4),)), str(p)),
            "m.onnx": lambda p: torch.onnx.export(m, (torch.zeros(1, 4),), str(p), dynamo=False)}
    out = {}
    for name, write in good.items():
        path = tmp_path / name
        write(path)
        out[name] = path
    return out


def test_good_files_read(tmp_path: Path) -> None:
    for path in _files(tmp_path).values():
        assert load_network(path).input_dim == 4


def test_text_empty_directory_json(tmp_path: Path, capsys) -> None:
    text = tmp_path / "x.pt"
    text.write_text("this is a note, not a model\n")
    line = _bad(capsys, text)
    assert "x.pt is not a PyTorch checkpoint, TorchScript archive or torch.export program" in line \
        or "x.pt is not a PyTorch checkpoint, TorchScript archive, torch.export program" in line
    assert "starts with text" in line and "--allow-pickle" not in line
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    assert "empty" in _bad(capsys, empty)
    folder = tmp_path / "folder.pt"
    folder.mkdir()
    assert "directory" in _bad(capsys, folder)
    js = tmp_path / "model.json"
    js.write_text(json.dumps({"layers": [4, 6, 2]}))
    assert "starts with text" in _bad(capsys, js)
    binary = tmp_path / "noise.pt"
    binary.write_bytes(bytes(range(256)) * 4)
    assert "--allow-pickle" not in _bad(capsys, binary)


@pytest.mark.parametrize("name", ["sd.pt", "ts.pt", "e.pt2", "m.onnx"])
@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_files(tmp_path: Path, capsys, name: str, damage: str) -> None:
    path = _files(tmp_path)[name]
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:  # one flipped bit inside the largest stored weight (a checksum must catch it)
        data[_inside_weights(path, data)] ^= 0x10 if path.suffix != ".onnx" else 0xFF
    bad = tmp_path / f"bad_{name}"
    bad.write_bytes(bytes(data))
    _bad(capsys, bad)


def _inside_weights(path: Path, data: bytearray) -> int:
    """An offset inside the largest zip member's payload (torch does not check zip
    checksums, leo does). ONNX has no checksum, so a flip inside its float data is a
    different valid model, undetectable by anyone: there the flip hits the structure."""
    import struct
    import zipfile

    if path.suffix == ".onnx":
        return _onnx_structure(data)
    with zipfile.ZipFile(path) as zf:
        info = max(zf.infolist(), key=lambda i: i.file_size)
    n, extra = struct.unpack("<HH", data[info.header_offset + 26: info.header_offset + 30])
    return info.header_offset + 30 + n + extra + info.compress_size // 2


def _onnx_structure(data: bytearray) -> int:
    """The tag byte of the graph field (ModelProto field 7, length-delimited: 0x3A)."""
    return data.index(0x3A)


class _WritesAFile:
    """Unpickling this calls Path.write_text: code that runs on load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pickle code ran"))


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_code_running_pickle_never_runs(tmp_path: Path, capsys, how: str) -> None:
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.pt"
    payload = {"0.weight": _WritesAFile(marker)}
    if how == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as fh:
            pickle.dump(payload, fh)
    line = _bad(capsys, path)
    assert "--allow-pickle" in line and "weights-only" in line
    assert not marker.exists()
