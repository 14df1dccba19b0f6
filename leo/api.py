"""The Python API for notebooks: ``verify`` and ``compress`` take a Network, an
``nn.Module``, or a model path, and return plain results."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from leo.certificate import build_certificate
from leo.domain import Box, make_box
from leo.equivalence import CheckResult, compare_sampled
from leo.network import Network
from leo.reduce import Reduction, reduce
from leo.report import StabilityReport
from leo.stability import ProgressFn, StabilityOptions, analyse

ModelLike = Any  # Network | torch.nn.Module | str | Path

BUILTIN_PREFIX = "builtin:"


def builtin_models() -> list[str]:
    folder = Path(__file__).parent / "models"
    return sorted(p.stem for p in folder.glob("*.pt"))


def resolve_path(model: str | Path) -> Path:
    """A file path, or ``builtin:NAME`` for a model shipped in the package."""
    text = str(model)
    if text.startswith(BUILTIN_PREFIX):
        name = text[len(BUILTIN_PREFIX):]
        path = Path(__file__).parent / "models" / f"{name}.pt"
        if not path.is_file():
            from leo.errors import LeoInputError

            raise LeoInputError(f"no built-in model {name!r}; available: {', '.join(builtin_models())}")
        return path
    return Path(model)


def as_network(model: ModelLike, allow_pickle: bool = False) -> Network:
    if isinstance(model, Network):
        return model
    if isinstance(model, (str, Path)):
        from leo.io.load import load_network

        return load_network(resolve_path(model), allow_pickle=allow_pickle)
    from leo.io.torch_io import from_module

    return from_module(model)


def as_box(network: Network, lower: Any, upper: Any) -> Box:
    if isinstance(lower, Box):
        return lower
    return make_box(np.asarray(lower) if isinstance(lower, (list, tuple)) else lower,
                    np.asarray(upper) if isinstance(upper, (list, tuple)) else upper, network.input_dim)


def verify(model: ModelLike, lower: Any, upper: Any, options: StabilityOptions = StabilityOptions(),
           data: np.ndarray | None = None, progress: ProgressFn | None = None) -> StabilityReport:
    """Which hidden units are stably active / inactive on the box, with proofs."""
    net = as_network(model)
    return analyse(net, as_box(net, lower, upper), options, data=data, progress=progress)


@dataclass(frozen=True)
class Compression:
    original: Network
    network: Network
    report: StabilityReport
    reduction: Reduction
    check: CheckResult
    certificate: dict[str, Any]

    def module(self):  # noqa: ANN201 - torch.nn.Module, imported lazily
        from leo.io.torch_io import to_module

        return to_module(self.network)


def compress(model: ModelLike, lower: Any, upper: Any, options: StabilityOptions = StabilityOptions(),
             data: np.ndarray | None = None, progress: ProgressFn | None = None,
             check_points: int = 10_000, model_path: Path | None = None,
             out_path: Path | None = None) -> Compression:
    """Prove stability, reduce, and check the result on sampled points of the box."""
    net = as_network(model)
    box = as_box(net, lower, upper)
    report = analyse(net, box, options, data=data, progress=progress)
    reduction = reduce(net, report)
    check = compare_sampled(net, reduction.network, box, n=check_points, tolerance=1e-6 * (1 + _scale(net, box)))
    if not check.equivalent:
        raise RuntimeError(
            f"internal error: the reduced network differs from the original by {check.max_diff:g} "
            "on a sampled point; please report this model"
        )
    cert = build_certificate(net, report, reduction, check,
                             model_path if model_path is not None else (Path(model) if isinstance(model, (str, Path)) and Path(str(model)).is_file() else None),
                             out_path)
    return Compression(net, reduction.network, report, reduction, check, cert)


def _scale(net: Network, box: Box) -> float:
    pts = box.sample(64, np.random.default_rng(0))
    return float(np.abs(net(pts)).max()) if len(pts) else 0.0
