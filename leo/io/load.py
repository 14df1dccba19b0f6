"""Read a network from a file, whatever its format; bad files become LeoInputError."""

from __future__ import annotations

from pathlib import Path

from leo.errors import LeoInputError
from leo.network import Network


def load_network(path: str | Path, allow_pickle: bool = False) -> Network:
    """A ``.onnx`` model, a TorchScript archive, or a PyTorch state_dict checkpoint."""
    p = Path(path)
    if not p.is_file():
        raise LeoInputError(f"no such model file: {p}")
    if p.suffix.lower() == ".onnx":
        from leo.io.onnx_import import load_onnx

        return load_onnx(p)
    from leo.io.torch_io import load_torch

    return load_torch(p, allow_pickle=allow_pickle)
