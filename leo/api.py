"""The Python API for notebooks: ``verify`` and ``compress`` take a Network, an
``nn.Module``, or a model path, and return plain results."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from leo.certify.certificate import build_certificate
from leo.core.domain import Box, make_box
from leo.queries.equivalence import CheckResult, compare_sampled
from leo.core.choices import Form, choose
from leo.io.files import Replace
from leo.io.load import BUILTIN_PREFIX, builtin_models, load_network, resolve_path  # noqa: F401 - public here too
from leo.io.shape import parse_input_shape, with_input_shape
from leo.core.network import SOURCE_PATH, Network
from leo.reduction.reduce import Reduction, reduce_form
from leo.stability.report import StabilityReport
from leo.stability.analysis import ProgressFn, StabilityOptions, analyse

ModelLike = Any  # Network | torch.nn.Module | str | Path


def as_network(model: ModelLike, allow_pickle: bool = False, like: Any = None,
               input_shape: Any = None) -> Network:
    """A Network from a Network, a model file (or ``builtin:NAME``), or an ``nn.Module``.

    ``input_shape`` is one input's shape, e.g. ``(1, 28, 28)``: needed for a module or file
    that records none (an ``nn.Module`` not starting with Linear, a scripted TorchScript
    archive), and checked against the recorded one otherwise. Without it, for a module,
    ``like`` (the lower bound, say) may give the shape: shaped like one input, e.g.
    (1, 5, 5), or with a leading batch dimension of 1 (see ``_shape_candidates``). The
    network keeps the shape, so ``module()`` and saved models take it.
    """
    given = parse_input_shape(input_shape)
    if isinstance(model, Network):
        return with_input_shape(model, given, "the network")
    if isinstance(model, (str, Path)):
        return load_network(model, allow_pickle=allow_pickle, input_shape=given)
    import torch

    from leo.io.graph import module_shape, traced_shape
    from leo.io.torch_io import from_module

    recorded = traced_shape(model) if isinstance(model, torch.jit.ScriptModule) else None
    shape = module_shape(model, recorded, given, tuple(_shape_candidates(like)), "the model")
    return from_module(model, input_shape=shape)


def _shape_candidates(like: Any) -> list[tuple[int, ...]]:
    """Per-sample input shapes a bound array may mean, likeliest first.

    A leading 1 is ambiguous ((1, 5, 5) is one 1x5x5 image, or a batch of one 5x5
    one); per-sample inputs are usually flat vectors or CxHxW images, so a 2-D or 4-D
    array with a leading 1 is read as a batch first, anything else as one input first.
    """
    shape = tuple(int(d) for d in getattr(like, "shape", ()))
    if len(shape) == 0 or (len(shape) == 1 and shape[0] == 1):
        return []
    if shape[0] != 1 or len(shape) == 1:
        return [shape]
    batch_first = len(shape) in (2, 4)
    return [shape[1:], shape] if batch_first else [shape, shape[1:]]


def _array(bound: Any) -> Any:
    """A bound as an array when it is one (list, tuple, ndarray, tensor), else as given."""
    if isinstance(bound, (list, tuple)) or hasattr(bound, "__array__"):
        return np.asarray(bound)
    return bound


def as_box(network: Network, lower: Any, upper: Any) -> Box:
    if isinstance(lower, Box):
        return lower
    return make_box(np.asarray(lower) if isinstance(lower, (list, tuple)) else lower,
                    np.asarray(upper) if isinstance(upper, (list, tuple)) else upper, network.input_dim)


def verify(model: ModelLike, lower: Any, upper: Any, options: StabilityOptions = StabilityOptions(),
           data: np.ndarray | None = None, progress: ProgressFn | None = None,
           input_shape: Any = None) -> StabilityReport:
    """Which hidden units are stably active / inactive on the box, with proofs.
    ``input_shape``: one input's shape, for a model that records none (see ``as_network``)."""
    net = as_network(model, like=_array(lower), input_shape=input_shape)
    return analyse(net, as_box(net, lower, upper), options, data=data, progress=progress)


@dataclass(frozen=True)
class Compression:
    original: Network
    network: Network
    report: StabilityReport
    reduction: Reduction
    check: CheckResult
    certificate: dict[str, Any]
    #: For an ``nn.Module`` compressed with form "structured": the user's own module with
    #: the dead channels removed (``leo.io.prune_module``), checked against the original.
    pruned: Any = None  # leo.io.prune_module.PrunedModule | None

    def __repr__(self) -> str:
        """One line: the dataclass's own repr printed both networks and every proof."""
        return (f"<Compression: {sum(self.original.hidden)} -> {sum(self.network.hidden)} hidden units, "
                f"{self.report.num_stable} proven stable; max |f-g| {self.check.max_diff:.3g} on "
                f"{self.check.points} sampled points>")

    def module(self):  # noqa: ANN201 - torch.nn.Module, imported lazily
        """The compressed model as a torch module: a fresh copy of the user's own class,
        pruned, when there is one (``pruned``), else leo's module of ``network``."""
        if self.pruned is not None:
            import copy

            return copy.deepcopy(self.pruned.module)
        from leo.io.torch_io import to_module

        return to_module(self.network)

    def save(self, path: str | Path, certificate: str | Path | None = None, overwrite: bool = False,
             float64: bool = False) -> tuple[Path, Path]:
        """Write the compressed model (``.pt`` or ``.onnx``), THEN its certificate (default
        ``PATH.cert.json``) naming the written file by its sha256, so ``leo audit`` can check it.
        A model that came from no file (an in-memory ``nn.Module`` or Network) is first written
        as leo read it, in float64, to ``original_path(PATH)``, which the certificate names
        too: so ``leo audit CERT`` needs nothing else. Returns the model's and the certificate's
        paths. Nothing replaces the original model; existing files only with ``overwrite``."""
        from leo.certify.certificate import seal
        from leo.io.files import atomic_write, plan_outputs, sha256
        from leo.io.save import certificate_path, check_output_path, save_network

        inputs = (self.original.metadata.get(SOURCE_PATH), self.certificate["original"]["path"])
        out = check_output_path(path, inputs, overwrite, Replace.OVERWRITE)
        side = Path(certificate) if certificate is not None else certificate_path(out)
        kept = (original_path(out, self.original)  # no file behind it
                if self.certificate["original"]["path"] is None else None)
        plan_outputs([out, side] + ([kept] if kept else []), inputs, overwrite, Replace.OVERWRITE)
        cert = self.certificate
        if kept is not None:
            save_network(self.original, kept, float64=True, overwrite=overwrite)
            cert = {**cert, "original": {**cert["original"], "path": str(kept), "sha256": sha256(kept),
                                         "written_by": "leo: the in-memory model as leo read it, float64"}}
        save_network(self.network, out, float64=float64, overwrite=overwrite)
        with atomic_write(side) as tmp:
            tmp.write_text(json.dumps(seal(cert, out), indent=1) + "\n")
        return out, side


def original_path(out: Path, original: Network | None = None) -> Path:
    """Where ``Compression.save`` writes an in-memory original: ``small.onnx`` -> ``small.original.onnx``,
    except that a network with shaped (convolutional) layers beside an ONNX output goes to
    ``small.onnx.original.pt`` (not ``small.original.pt``, which a ``small.pt`` output's own copy
    takes): float64 ONNX is written as MatMuls (onnxruntime has no float64 Conv), which drops
    the channel layout that the audit needs to replay a structured form's dead channels."""
    shaped = original is not None and any(ly.shape is not None for ly in original.layers)
    if shaped and out.suffix == ".onnx":
        return out.with_name(f"{out.name}.original.pt")
    return out.with_name(f"{out.stem}.original{out.suffix}")


def compress(model: ModelLike, lower: Any, upper: Any, options: StabilityOptions = StabilityOptions(),
             data: np.ndarray | None = None, progress: ProgressFn | None = None,
             check_points: int = 10_000, model_path: Path | None = None,
             out_path: Path | None = None, form: Form | str = Form.LEO, input_shape: Any = None) -> Compression:
    """Prove stability, reduce, and check the result on sampled points of the box.
    ``form`` (a ``Form`` or its name, see ``FORMS``): how stable units are removed;
    ``input_shape``: one input's shape, for a model that records none (see ``as_network``)."""
    form = choose(Form, form, "form")
    net = as_network(model, like=_array(lower), input_shape=input_shape)
    step = exact_step(net, as_box(net, lower, upper), options, data, progress, check_points, form)
    source = model_path if model_path is not None else (
        resolve_path(model) if isinstance(model, (str, Path)) else None)  # builtin:NAME is a file too
    cert = build_certificate(net, step.report, step.reduction, step.check, source,  # sealed by save()
                             time_budget=options.time_budget)
    pruned = _pruned_module(model, net, step, as_box(net, lower, upper), check_points) \
        if form is Form.STRUCTURED else None
    return Compression(net, step.reduction.network, step.report, step.reduction, step.check, cert, pruned)


def _pruned_module(model: ModelLike, net: Network, step: ExactStep, box: Box, check_points: int) -> Any:
    """The user's own module without the channels the structured reduction deleted (all
    proven dead), or None when ``model`` is not a plain ``nn.Module`` (a file, a Network,
    a TorchScript module: those get leo's module of the reduced network), or when
    Torch-Pruning (the ``prune`` extra) is not installed, which a warning says."""
    import importlib.util

    import torch

    if not isinstance(model, torch.nn.Module) or isinstance(model, torch.jit.ScriptModule):
        return None
    if importlib.util.find_spec("torch_pruning") is None:
        import warnings

        warnings.warn("Compression.module() gives leo's module, not yours pruned: that needs "
                      "Torch-Pruning (pip install 'leo[prune]')", stacklevel=3)
        return None
    from leo.io.prune_module import dead_channels_from_report, prune_module

    by_layer = getattr(step.reduction, "dead_channels", ())
    dead = ({k: chans for k, chans in enumerate(by_layer, start=1) if chans} if by_layer
            else dead_channels_from_report(net, step.report))
    return prune_module(model, net, dead, box, box, points=check_points)


#: How ``compress`` removes stable units. "leo" (LEO, Serra et al. 2020): inactive units are
#: deleted, active units folded only where their rows depend on other active rows, and
#: layers whose units are all active merged, so the network stays a plain chain of layers.
#: "flat" (REDNet's form, for verifiers): every stable unit is removed; an active unit's
#: linear map goes to the layers that read it through skip connections, so only unstable
#: units keep a ReLU. Both are exact on the box; on conv networks "leo" can make the
#: lowered weights denser (folding into a basis of hundreds of rows), "flat" keeps them sparse.
#: "structured" (``leo.reduction.structured``): conv layers lose whole channels whose units are all
#: stably inactive and stay convolutions (written as Conv nodes / nn.Conv2d), dense layers
#: as "leo"; ``reduction.dead_channels`` names the channels removed.
FORMS = tuple(Form)


@dataclass(frozen=True)
class ExactStep:
    """What the exact compress step proved and built: the stability report, the reduction
    (``reduction.network`` is the smaller network) and the sampled check of the two."""

    report: StabilityReport
    reduction: Reduction
    check: CheckResult


def exact_step(net: Network, box: Box, options: StabilityOptions = StabilityOptions(),
               data: np.ndarray | None = None, progress: ProgressFn | None = None,
               check_points: int = 10_000, form: Form | str = Form.LEO) -> ExactStep:
    """Prove stability on the box, reduce, and check the result on sampled points of the
    box. The one exact step: ``compress`` and the chains of ``leo.reduction.compose`` both run it,
    so they cannot drift apart. A reduced network that differs on a sampled point is a
    bug in leo (RuntimeError), never a result."""
    form = choose(Form, form, "form")
    report = analyse(net, box, _within_budget(net, box, options, check_points), data=data, progress=progress)
    reduction = reduce_form(net, report, form)
    check = compare_sampled(net, reduction.network, box, n=check_points, tolerance=1e-6 * (1 + _scale(net, box)))
    if not check.equivalent:
        raise RuntimeError(
            f"internal error: the reduced network differs from its input by {check.max_diff:g} "
            "on a sampled point of the box; please report this model"
        )
    return ExactStep(report, reduction, check)


def _within_budget(net: Network, box: Box, options: StabilityOptions, check_points: int) -> StabilityOptions:
    """Options whose time budget leaves room for the sampled check that follows the analysis,
    so the whole of ``compress`` stays within the budget. The check's cost is measured on
    256 points (two networks, and room to spare), never more than half the budget."""
    if options.time_budget is None:
        return options
    pts = box.sample(256, np.random.default_rng(0))
    start = time.perf_counter()
    net(pts)
    per_point = (time.perf_counter() - start) / len(pts)
    reserve = min(3.0 * per_point * check_points + 0.2, options.time_budget / 2)
    return dataclasses.replace(options, time_budget=options.time_budget - reserve)


def _scale(net: Network, box: Box) -> float:
    pts = box.sample(64, np.random.default_rng(0))
    return float(np.abs(net(pts)).max()) if len(pts) else 0.0
