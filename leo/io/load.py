"""Read a network from a file, whatever its format; bad files become LeoInputError.

The input shape comes from where the file records it (ONNX, ``.pt2``, a traced
TorchScript archive, leo's own archives), else from the user (``--input-shape`` /
``input_shape=``); a shape the user gives must agree with a recorded one.
"""

from __future__ import annotations

from pathlib import Path

from leo.errors import LeoInputError
from leo.io.shape import parse_input_shape, with_input_shape
from leo.core.network import SOURCE_PATH, Network

BUILTIN_PREFIX = "builtin:"
_MODELS = Path(__file__).resolve().parent.parent / "models"


def builtin_models() -> list[str]:
    return sorted(p.stem for p in _MODELS.glob("*.pt"))


def resolve_path(model: str | Path) -> Path:
    """A file path, or ``builtin:NAME`` for a model shipped in the package."""
    text = str(model)
    if not text.startswith(BUILTIN_PREFIX):
        return Path(model)
    name = text[len(BUILTIN_PREFIX):]
    path = _MODELS / f"{name}.pt"
    if not path.is_file():
        raise LeoInputError(f"no built-in model {name!r}; available: {', '.join(builtin_models())}")
    return path


def load_network(path: str | Path, allow_pickle: bool = False, shapes: tuple[tuple[int, ...], ...] = (),
                 input_shape: object = None) -> Network:
    """A ``.onnx`` model, a TorchScript archive, a ``torch.export`` program (``.pt2``), a
    PyTorch state_dict checkpoint, or ``builtin:NAME``; other files are recognised by their
    content. ``input_shape``: one input's shape (e.g. ``(1, 28, 28)``), needed only for a
    module whose file records none (a scripted TorchScript archive, a pickled module), and
    checked against the file's when it records one. ``shapes``: further shapes to try for
    a module that records none (an original read beside leo's output, say)."""
    given = parse_input_shape(input_shape)
    p = resolve_path(path)
    if p.is_dir():
        raise LeoInputError(f"{p} is a directory, not a model file")
    if not p.is_file():
        raise LeoInputError(f"no such model file: {p}")
    if p.suffix.lower() == ".onnx":
        from leo.io.onnx_import import load_onnx

        network = with_input_shape(load_onnx(p, given), given, p)
    else:
        from leo.io.torch_io import load_torch

        network = load_torch(p, allow_pickle=allow_pickle, shapes=shapes, input_shape=given)
    return network.with_metadata(**{SOURCE_PATH: str(p.resolve())})
