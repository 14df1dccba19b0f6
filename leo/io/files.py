"""Write outputs atomically: a reader sees the whole file or none, never a part."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from enum import Enum
from pathlib import Path

import numpy as np

from leo.errors import LeoInputError


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only on success."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


class Replace(Enum):
    """How the caller asks to replace an existing output, which the refusal names: the
    command line's flag, or the Python API's keyword."""

    FORCE = "pass --force"
    OVERWRITE = "pass overwrite=True"


def plan_outputs(outputs: Sequence[str | Path], inputs: Sequence[str | Path | None] = (),
                 overwrite: bool = False, replace: Replace = Replace.FORCE) -> tuple[Path, ...]:
    """Check, before any work is done, that writing ``outputs`` loses nothing the user has.

    Refused (LeoInputError, so exit 2 from the CLI): two outputs that are the same file; an
    output that is one of the ``inputs`` (even with ``overwrite``); an output that is a
    folder; an output that exists already, unless ``overwrite`` (the message says how:
    ``replace``).
    """
    paths = tuple(Path(p) for p in outputs)
    sources = [Path(p) for p in inputs if p is not None and str(p)]
    for i, p in enumerate(paths):
        for q in paths[:i]:
            if _same_file(p, q):
                raise LeoInputError(f"two outputs would be the same file {p}; give each its own name")
        for src in sources:
            if _same_file(p, src):
                raise LeoInputError(f"output {p} would overwrite the input {src}; choose another name")
        if p.is_dir():
            raise LeoInputError(f"output {p} is a folder; give a file name")
        if p.exists() and not overwrite:
            raise LeoInputError(f"output {p} exists already; choose another name or {replace.value} to replace it")
    return paths


def require_npy(path: str | Path, option: str = "--counterexample") -> Path:
    """``path`` if it names a .npy file (any case), else bad input: checked before any work,
    so a long solve never ends in a name it cannot use."""
    if Path(path).suffix.lower() != ".npy":
        raise LeoInputError(f"{option} {path} must end in .npy")
    return Path(path)


def save_point(path: str | Path, x: np.ndarray, overwrite: bool = False) -> Path:
    """Write the point ``x`` as a .npy file, atomically (never a partial file), and not over an
    existing file unless ``overwrite``: checked again here because the commands plan their
    outputs before a solve that may run for minutes. ``numpy.load(path)`` reads it back."""
    target = require_npy(path)
    plan_outputs([target], overwrite=overwrite)
    with atomic_write(target) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.asarray(x))
    return target


def sha256(path: str | Path) -> str:
    """The SHA-256 of a file, read in blocks (certificates name files by it)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
