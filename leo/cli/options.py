"""The options several commands share, as click decorators, each handing the command a typed value.

Choices are the enums a user's word names (``Engine``, ``Form``, ``Solver``): ``EnumChoice``
converts with ``leo.core.choices.choose``, so the CLI and the Python API refuse a wrong name
with the same line.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from typing import Any

import click

from leo.cli.inputs import Domain
from leo.core.choices import Engine, choose
from leo.core.threads import set_threads, threads_option
from leo.errors import LeoInputError
from solvers.backend import Solver, unavailable

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


class EnumChoice(click.Choice):
    """One of an enum's values, given to the command as the member."""

    def __init__(self, kind: type[enum.StrEnum], what: str) -> None:
        super().__init__([m.value for m in kind])
        self.kind, self.what = kind, what

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return choose(self.kind, value, self.what)
        except LeoInputError as exc:
            self.fail(str(exc), param, ctx)


def _usable_solver(ctx: click.Context, param: click.Parameter, value: Solver) -> Solver:
    """A back-end that is not installed (or not licensed) is bad input, said in one line."""
    why = unavailable(value)
    if why is not None:
        raise LeoInputError(why)
    return value


def solver_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--solver {highs,scip,gurobi}`` (``solvers.backend.Solver``), checked usable here."""
    return click.option("--solver", type=EnumChoice(Solver, "solver"), default=Solver.HIGHS.value,
                        show_default=True, callback=_usable_solver,
                        help="MILP back-end: HiGHS, or SCIP / Gurobi where installed (pip install 'leo[scip]', "
                             "'leo[gurobi]'; gurobipy's pip licence solves small models only).")(f)


def _input_shape(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    from leo.io.shape import parse_input_shape

    return parse_input_shape(value)


def input_shape_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--input-shape C,H,W``, passed to the command as ``input_shape`` (a tuple, or None)."""
    return click.option("--input-shape", "input_shape", default=None, callback=_input_shape, metavar="C,H,W",
                        help="One input's shape (no batch dimension), e.g. 1,28,28: for a model whose file "
                             "records none (a scripted TorchScript archive, a pickled module); checked against "
                             "the file's shape otherwise (ONNX, .pt2 and traced TorchScript record it).")(f)


_DOMAIN_FIELDS = ("lower", "upper", "vnnlib", "center", "eps")


def domain_options(vnnlib: bool = True) -> Decorator:
    """``--lower/--upper``, ``--center/--eps`` (and ``--vnnlib`` FILE for the box), given to the
    command as one ``domain: Domain``, and ``--input-shape``. ``vnnlib=False`` for a command
    whose own argument is a VNN-LIB file (``property``): there the options give the box only
    when that file bounds no input."""
    only = "; only for a property file that bounds no input (X_i)" if not vnnlib else ""

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(f)
        def run(*args: Any, **kwargs: Any) -> Any:
            fields = {name: kwargs.pop(name, None) for name in _DOMAIN_FIELDS}
            return f(*args, domain=Domain(**fields), **kwargs)

        run = click.option("--upper", default=None, help=f"Upper bound of the input box: a number (broadcast) "
                           f"or a .npy vector; with --center, the domain to clip to{only}.")(run)
        run = click.option("--lower", default=None, help=f"Lower bound of the input box: a number (broadcast) "
                           f"or a .npy vector; with --center, the domain to clip to{only}.")(run)
        if vnnlib:
            run = click.option("--vnnlib", type=click.Path(dir_okay=False), default=None,
                               help="Read the input box from a VNN-LIB file instead of --lower/--upper.")(run)
        run = click.option("--eps", type=float, default=None, help="Radius of the L-inf ball around --center.")(run)
        run = click.option("--center", default=None,
                           help="A local box: the L-inf ball of radius --eps around this input (.npy, flat or "
                                "shaped like one input), clipped to --lower/--upper when given (e.g. 0 and 1 for "
                                f"pixels); without them it is not clipped{only}.")(run)
        return input_shape_option(run)

    return decorate


def force_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--force", is_flag=True,
                        help="Replace output files that exist already (never an input, never another output).")(f)


def applied_threads_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--threads N``, applied for the whole command before it runs (leo.core.threads)."""

    @functools.wraps(f)
    def run(*args: Any, threads: int, **kwargs: Any) -> Any:
        set_threads(threads)
        return f(*args, **kwargs)

    return threads_option(run)


#: The analysis options of ``verify`` and ``compress``: (flags, click keywords), in help order.
_ANALYSIS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (("--time-limit",), dict(type=click.FloatRange(min=0.001), default=60.0, show_default=True,
                             help="Seconds per MILP solve; a unit whose solve times out counts as unstable.")),
    (("--time-budget",), dict(type=click.FloatRange(min=0.0, min_open=True), default=None,
                              help="Seconds for the whole analysis. Units still open when it runs out stay "
                                   "unproven and are kept, so compression stays lossless.")),
    (("--margin",), dict(type=click.FloatRange(min=0.0), default=1e-6, show_default=True,
                         help="A solver bound proves a sign only when it clears zero by this much.")),
    (("--workers",), dict(type=click.IntRange(min=1), default=1, show_default=True,
                          help="Processes for the MILP phase.")),
    (("--scheduler",), dict(default=None, help="Dask scheduler address: run the MILP phase on that cluster.")),
    (("--data",), dict(default=None, help="Witness data: an .npz with an array x, or a named dataset (mnist).")),
    (("--samples",), dict(type=click.IntRange(min=0), default=2048, show_default=True,
                          help="Random box points used as witnesses of instability.")),
    (("--seed",), dict(type=int, default=0, show_default=True)),
    (("--allow-pickle",), dict(is_flag=True,
                               help="Allow a pickled whole module (unpickling runs code from the file).")),
    (("--engine",), dict(type=EnumChoice(Engine, "engine"), default=Engine.UNIT.value, show_default=True,
                         help="MILP engine: one solve per open unit, or one network-wide MILP (NeurIPS 2021).")),
    (("--lp-bounds",), dict(is_flag=True,
                            help="Tighten earlier layers' big-M values with LP relaxations before a layer's MILPs.")),
    (("--no-cuts",), dict(is_flag=True,
                          help="Skip the ideal-formulation cuts on the LP relaxation before each MILP.")),
    (("--no-search",), dict(is_flag=True, help="Skip the neighbourhood search for a crossing before each MILP.")),
    (("--branch/--no-branch",), dict(default=None, help=(
        "Input-splitting branch and bound (leo/bab/input_split.py) on the open units before the MILPs. "
        "Default: on for layers whose MILPs carry 24+ binaries in networks with at most 16 inputs (ACAS Xu: 5), "
        "where it pays; off elsewhere (images; small easy networks)."))),
    (("--quiet", "-q"), dict(is_flag=True, help="No progress display.")),
)


def analysis_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The stability analysis's options (``stability_options`` turns them into ``StabilityOptions``)."""
    f = threads_option(solver_option(f))
    for flags, keywords in reversed(_ANALYSIS):
        f = click.option(*flags, **keywords)(f)
    return f


def stability_options(kw: dict[str, Any]) -> Any:
    """The analysis options of a command; also applies its ``--threads`` to the whole
    command (leo.core.threads): the sampled check after the analysis ran 10k points through a
    784-256x4 net in 5.8 s with BLAS's default threads on the shared 2-core machine."""
    from leo.stability.analysis import StabilityOptions

    set_threads(kw["threads"])
    return StabilityOptions(time_limit=kw["time_limit"], margin=kw["margin"], samples=kw["samples"],
                            seed=kw["seed"], workers=kw["workers"], scheduler=kw["scheduler"], engine=kw["engine"],
                            lp_bounds=kw["lp_bounds"], cuts=not kw["no_cuts"], neighbourhood=not kw["no_search"],
                            time_budget=kw["time_budget"], threads=kw["threads"], solver=kw["solver"],
                            branch=kw["branch"])
