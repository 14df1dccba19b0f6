"""Write a network as TorchScript (``.pt``) or ONNX (``.onnx``), atomically."""

from __future__ import annotations

from pathlib import Path

from leo.errors import LeoInputError
from leo.io.files import atomic_write
from leo.network import Network

FORMATS = (".pt", ".onnx")


def check_output_path(path: str | Path, inputs: tuple[str | Path, ...] = ()) -> Path:
    """Refuse an unknown suffix, or an output that would overwrite an input."""
    p = Path(path)
    if p.suffix.lower() not in FORMATS:
        raise LeoInputError(f"output {p} must end in .pt (TorchScript) or .onnx")
    for src in inputs:
        if Path(src).exists() and p.exists() and p.resolve() == Path(src).resolve():
            raise LeoInputError(f"output {p} would overwrite the input model; choose another name")
    return p


def save_network(network: Network, path: str | Path, float64: bool = False) -> None:
    import numpy as np

    p = check_output_path(path)
    with atomic_write(p) as tmp:
        if p.suffix.lower() == ".onnx":
            from leo.io.onnx_export import save_onnx

            save_onnx(network, tmp, np.float64 if float64 else np.float32)
        else:
            import torch

            from leo.io.torch_io import save_torchscript

            save_torchscript(network, tmp, torch.float64 if float64 else torch.float32)
