"""What a command reads: the model, the input domain the user described, witness data.

The domain options arrive as one ``Domain`` value (``leo.cli.options.domain_options``), so
every command builds its box with the same rules and the same one-line errors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from leo.errors import LeoInputError


def fail(message: str) -> NoReturn:
    """Bad input: one line on stderr, exit 2 (``leo.cli.main`` prints it)."""
    raise LeoInputError(message)


@dataclass(frozen=True)
class Domain:
    """The input domain as given: ``--lower/--upper`` (numbers or ``.npy`` paths), ``--vnnlib``,
    ``--center/--eps`` (an L-inf ball, clipped to ``--lower/--upper`` when given)."""

    lower: str | None = None
    upper: str | None = None
    vnnlib: str | None = None
    center: str | None = None
    eps: float | None = None

    def paths(self) -> tuple[str | None, ...]:
        """What may name a file the command reads (never to be written over)."""
        return self.lower, self.upper, self.vnnlib, self.center

    def given(self) -> list[str]:
        """The box options given, as flags (``leo property`` refuses them for a file that has a box)."""
        flags = (("--center", self.center), ("--eps", self.eps), ("--lower", self.lower), ("--upper", self.upper))
        return [flag for flag, value in flags if value is not None]


def box(network: Any, domain: Domain) -> Any:
    """The ``Box`` that ``domain`` describes for ``network``'s inputs."""
    from leo.core.domain import ball, make_box

    lower, upper = domain.lower, domain.upper
    if (domain.center is None) != (domain.eps is None):
        fail("give --center and --eps together")
    if domain.center is not None:
        if domain.vnnlib:
            fail("give either --vnnlib or --center/--eps, not both")
        if (lower is None) != (upper is None):
            fail("with --center, give both --lower and --upper (the domain to clip to) or neither")
        clip = make_box(lower, upper, network.input_dim) if lower is not None else None
        return ball(domain.center, domain.eps, network.input_dim, clip)
    if domain.vnnlib:
        if lower is not None or upper is not None:
            fail("give either --vnnlib or --lower/--upper, not both")
        from leo.io.vnnlib import read_vnnlib

        found, _ = read_vnnlib(Path(domain.vnnlib), network.input_dim)
        return found
    if lower is None or upper is None:
        fail("the input domain is missing: give --lower and --upper (or --vnnlib)")
    return make_box(lower, upper, network.input_dim)


def model_path(model: str) -> Path:
    """The file of MODEL (``builtin:NAME`` names one shipped with leo)."""
    from leo.io.load import resolve_path

    return resolve_path(model)


def load(model: str, allow_pickle: bool = False, input_shape: tuple[int, ...] | None = None) -> Any:
    """MODEL read with its input shape: the file's, or ``--input-shape`` (checked against the file's)."""
    from leo.io.load import load_network

    return load_network(model_path(model), allow_pickle=allow_pickle, input_shape=input_shape)


def input_files(model: str, *paths: str | None) -> tuple[str, ...]:
    """The files a command reads (the model, .npy bounds, VNN-LIB, data): never outputs."""
    return (str(model_path(model)),) + tuple(p for p in paths if p and p != "-" and Path(p).is_file())


def data(spec: str | None) -> tuple[np.ndarray, np.ndarray | None] | None:
    """``(x, y)`` from an ``.npz`` (``y`` optional) or a named data set."""
    if spec is None:
        return None
    from leo.data import load_npz, named_dataset

    if spec.endswith(".npz"):
        return load_npz(Path(spec))
    return named_dataset(spec)


def chain_data(spec: str | None) -> Any:
    """Data for approximate methods: MNIST keeps its stated train/test split."""
    if spec is not None and spec.lower() == "mnist":
        from leo.data import load_mnist

        d = load_mnist()
        return (d.x_train, d.y_train, d.x_test, d.y_test)
    return data(spec)


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    from leo.io.files import atomic_write

    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=1) + "\n")
