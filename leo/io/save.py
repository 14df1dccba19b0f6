"""Write a network as TorchScript (``.pt``) or ONNX (``.onnx``), atomically."""

from __future__ import annotations

from pathlib import Path

from leo.errors import LeoInputError
from leo.io.files import Replace, atomic_write, plan_outputs
from leo.core.network import SOURCE_PATH, Network

FORMATS = (".pt", ".onnx")


def check_output_path(path: str | Path, inputs: tuple[str | Path | None, ...] = (), overwrite: bool = False,
                      replace: Replace = Replace.FORCE) -> Path:
    """Refuse an unknown suffix, an output over an input, or (unless ``overwrite``) over any file."""
    p = Path(path)
    if p.suffix.lower() not in FORMATS:
        raise LeoInputError(f"output {p} must end in .pt (TorchScript) or .onnx")
    return plan_outputs([p], inputs, overwrite, replace)[0]


def certificate_path(output: Path) -> Path:
    """The default certificate of an output: ``m.pt`` -> ``m.pt.cert.json``, so that ``m.pt``
    and ``m.onnx`` each keep their own."""
    return output.with_name(output.name + ".cert.json")


def save_network(network: Network, path: str | Path, float64: bool = False, overwrite: bool = False,
                 replace: Replace = Replace.OVERWRITE) -> Path:
    """Write ``network`` to ``path`` (``.pt`` TorchScript or ``.onnx``), atomically.

    Never over the file the network was read from; over another existing file only with
    ``overwrite=True`` (a refusal names that, or the caller's ``replace``: the CLI's --force).
    """
    import numpy as np

    p = check_output_path(path, (network.metadata.get(SOURCE_PATH),), overwrite, replace)
    with atomic_write(p) as tmp:
        if p.suffix.lower() == ".onnx":
            from leo.io.onnx_export import save_onnx

            save_onnx(network, tmp, np.float64 if float64 else np.float32)
        else:
            import torch

            from leo.io.torch_write import save_torchscript

            save_torchscript(network, tmp, torch.float64 if float64 else torch.float32)
    return p
