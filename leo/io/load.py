"""Read a network from a file, whatever its format; bad files become LeoInputError."""

from __future__ import annotations

from pathlib import Path

from leo.errors import LeoInputError
from leo.network import SOURCE_PATH, Network


def load_network(path: str | Path, allow_pickle: bool = False, shapes: tuple[tuple[int, ...], ...] = ()) -> Network:
    """A ``.onnx`` model, a TorchScript archive, a ``torch.export`` program (``.pt2``), or a
    PyTorch state_dict checkpoint; other files are recognised by their content. ``shapes``:
    per-sample input shapes to try for a module that records none (TorchScript)."""
    p = Path(path)
    if p.is_dir():
        raise LeoInputError(f"{p} is a directory, not a model file")
    if not p.is_file():
        raise LeoInputError(f"no such model file: {p}")
    if p.suffix.lower() == ".onnx":
        from leo.io.onnx_import import load_onnx

        network = load_onnx(p)
    else:
        from leo.io.torch_io import load_torch

        network = load_torch(p, allow_pickle=allow_pickle, shapes=shapes)
    return network.with_metadata(**{SOURCE_PATH: str(p.resolve())})
