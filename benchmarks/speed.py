"""Speed of exact stability analysis: leo against the MILP baselines, side by side.

    python -m benchmarks.speed [--json PATH] [--markdown PATH] [--plot PATH] [--quick]
                               [--cap SECONDS] [--methods naive,omlt,leo,leo-network]
                               [--networks NAMES]

The full run writes ``benchmarks/results/speed.*``; a partial one (``--quick``,
``--networks``, ``--methods``) writes to ``SCRATCH`` unless its paths are named.

On MNIST MLPs trained with the paper's recipe (``benchmarks.common.get_network``;
training time is not measured) and the box [0, 1]^784, every method proves which
hidden units are stably active or inactive:

* ``naive``: LEO 2020, Pyomo big-M MILPs with interval big-M, max and min per unit;
* ``omlt``: OMLT's ``ReluBigMFormulation``, max and min per unit;
* ``leo``: ``leo.stability.analysis.analyse`` with ``engine="unit"``;
* ``leo-network``: ``analyse`` with ``engine="network"``;
* ``leo-60s``: ``leo`` with a time budget of 60 s for the whole analysis
  (``StabilityOptions.time_budget``): what leo proves when it must answer within the
  target time. It is exact only when it leaves no unit unproven.
* ``leo-scip``, ``leo-gurobi``: ``leo`` with ``StabilityOptions(solver="scip"|"gurobi")``,
  one per MILP back-end installed besides HiGHS (``solvers.backend.available()``); by
  default every installed one runs. Gurobi's pip package has a size-limited licence: a
  network too large for it gives that run an ``error``, recorded as such.

Each (network, method) runs in a fresh process (``spawn``), so the peak memory
(``ru_maxrss``) is the method's own; the clock covers everything the method does
from the loaded network on (model building included), not the process start or the
imports. Every method is capped: the baselines stop themselves at the cap, and a
process still running at cap + grace is killed; either way the result says
``capped`` and its seconds are a lower bound. The exact methods that finished must
report the same stable set (active and inactive units per layer): ``agree``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.speed_report import (BACKEND_METHODS, BUDGET, METHODS, QUICK_BASELINE_CAP, QUICK_LEO_CAP,
                                     QUICK_NETWORK, _fmt_seconds, _unproven, leo_defaults, plot, to_markdown)
from leo.core.domain import Box
from leo.core.network import Network
from leo.core.threads import DEFAULT_THREADS, resolve, set_threads

DEFAULT_CAP = 3600.0
KILL_GRACE = 30.0  # seconds past the cap before a process is killed (model building is not interruptible)
SEED = 0
# the thread variables set for every method's process (leo.core.threads sets the rest)
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class Spec:
    """A benchmark network: hidden widths and the l1 penalty of its training."""

    hidden: tuple[int, ...]
    l1: float

    @property
    def name(self) -> str:
        from benchmarks.common import network_name

        return network_name(self.hidden, self.l1)


SPECS = (
    Spec((100, 100), 5e-4),
    Spec((100, 100), 1e-4),
    Spec((100, 100), 0.0),
    Spec((100, 100, 100), 1e-4),
    Spec((100,) * 5, 1e-4),
    Spec((800, 800), 1e-4),
)


# -- the methods -----------------------------------------------------------------
def _leo(engine: str, time_limit: float | None, budget: float | None = None, threads: int = DEFAULT_THREADS,
         solver: str | None = None) -> Callable[[Network, Box, float | None], dict[str, Any]]:
    def run(network: Network, box: Box, cap: float | None) -> dict[str, Any]:  # noqa: ARG001 - killed at the cap
        from leo.stability.analysis import StabilityOptions, analyse

        kwargs: dict[str, Any] = {} if time_limit is None else {"time_limit": time_limit}
        if budget is not None:
            kwargs["time_budget"] = budget
        if solver is not None:
            if "solver" not in StabilityOptions.__dataclass_fields__:
                raise RuntimeError("this leo has no StabilityOptions.solver")
            kwargs["solver"] = solver
        if "threads" in StabilityOptions.__dataclass_fields__:
            kwargs["threads"] = threads
        if "engine" in StabilityOptions.__dataclass_fields__:
            options = StabilityOptions(engine=engine, **kwargs)
        elif engine == "unit":  # before the network engine existed, per-unit was the only one
            options = StabilityOptions(**kwargs)
        else:
            raise RuntimeError(f"this leo has no engine={engine!r}")
        start = time.perf_counter()
        report = analyse(network, box, options)
        seconds = time.perf_counter() - start
        active = [lr.active for lr in report.layers]
        inactive = [lr.inactive for lr in report.layers]
        timeouts = sum(1 for lr in report.layers for p in lr.proofs if p.method == "timeout")
        return {"seconds": seconds, "solves": report.solves, "solver": str(report.settings.get("solver", "")),
                "stable": sum(map(len, active)) + sum(map(len, inactive)), "capped": False,
                "active": active, "inactive": inactive, "timeouts": timeouts, "unproven": report.num_unproven,
                "layer_seconds": [lr.seconds for lr in report.layers]}

    return run


def method_function(name: str, leo_time_limit: float | None = None, threads: int = DEFAULT_THREADS
                    ) -> Callable[[Network, Box, float | None], dict[str, Any]]:
    """The method by name; ``leo_time_limit`` is leo's per-MILP limit (None: its default);
    ``threads`` leo's thread setting (``leo.core.threads``)."""
    from benchmarks import baselines

    table: dict[str, Callable[[Network, Box, float | None], dict[str, Any]]] = {
        "naive": lambda net, box, cap: baselines.naive(net, box, cap=cap),
        "omlt": lambda net, box, cap: baselines.omlt(net, box, cap=cap),
        "leo": _leo("unit", leo_time_limit, threads=threads),
        "leo-network": _leo("network", leo_time_limit, threads=threads),
        "leo-60s": _leo("unit", leo_time_limit, BUDGET, threads),
        **{m: _leo("unit", leo_time_limit, threads=threads, solver=s) for m, s in BACKEND_METHODS.items()},
    }
    if name not in table:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return table[name]


def _warm_imports(name: str) -> None:
    """Import what a method needs before its clock starts."""
    import leo.stability.analysis  # noqa: F401
    if name in ("naive", "omlt"):
        import pyomo.contrib.appsi.solvers  # noqa: F401
        import pyomo.environ  # noqa: F401
    if name == "omlt":
        import omlt.neuralnet  # noqa: F401


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def run_method(name: str, network: Network, box: Box, cap: float | None,
               leo_time_limit: float | None = None, threads: int = DEFAULT_THREADS) -> dict[str, Any]:
    """One method in this process; the uniform result dict (or one with ``error``)."""
    _warm_imports(name)
    fn = method_function(name, leo_time_limit, threads)
    start = time.perf_counter()
    try:
        out = fn(network, box, cap)
    except Exception as exc:  # noqa: BLE001 - recorded, the benchmark goes on
        return {"seconds": time.perf_counter() - start, "solves": None, "stable": None, "capped": False,
                "error": f"{type(exc).__name__}: {exc}"}
    if cap is not None and not out["capped"] and out["seconds"] > cap:
        out["capped"] = True  # leo has no internal cap: over it counts as capped
    return out


def _child(conn, name: str, network: Network, box: Box, cap: float | None,  # noqa: ANN001
           leo_time_limit: float | None, threads: int = DEFAULT_THREADS) -> None:
    try:
        set_threads(threads)  # torch, BLAS and HiGHS: leo's one thread policy
        _warm_imports(name)
        base = _maxrss_mib()
        out = run_method(name, network, box, cap, leo_time_limit, threads)
        out["peak_mib"] = _maxrss_mib()
        out["baseline_mib"] = base
        conn.send(out)
    except BaseException as exc:  # noqa: BLE001 - report anything to the parent
        conn.send({"seconds": None, "solves": None, "stable": None, "capped": False,
                   "error": f"{type(exc).__name__}: {exc}"})
    finally:
        conn.close()


def measure(name: str, network: Network, box: Box, cap: float | None, isolate: bool = True,
            grace: float = KILL_GRACE, leo_time_limit: float | None = None,
            threads: int = DEFAULT_THREADS) -> dict[str, Any]:
    """Run one method, in a fresh process when ``isolate`` (killed at cap + grace), with
    ``threads`` for torch, BLAS and HiGHS (``leo.core.threads``; 0: one per core)."""
    if not isolate:
        return run_method(name, network, box, cap, leo_time_limit, threads)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, name, network, box, cap, leo_time_limit, threads), daemon=True)
    saved = {k: os.environ.get(k) for k in THREAD_VARS}
    os.environ.update({k: str(resolve(threads)) for k in THREAD_VARS})  # the child's BLAS reads these at import
    try:
        proc.start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    child.close()
    wait = None if cap is None else cap + grace + 60.0  # + start-up and imports
    start = time.perf_counter()
    out: dict[str, Any] | None = None
    if parent.poll(wait):
        try:
            out = parent.recv()
        except EOFError:
            out = None
    proc.join(timeout=5)
    if proc.is_alive():
        proc.kill()
        proc.join()
    if out is None:
        elapsed = time.perf_counter() - start
        if cap is not None and elapsed >= cap:
            return {"seconds": cap, "solves": None, "stable": None, "capped": True,
                    "note": f"killed after {elapsed:.0f} s (cap {cap:g} s)"}
        return {"seconds": None, "solves": None, "stable": None, "capped": False,
                "error": f"the process ended without a result (exit code {proc.exitcode})"}
    return out


# -- comparing -------------------------------------------------------------------
def compare(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Do the methods that finished exactly (no cap, no error, no unit left unproven)
    report the same stable set? ``agree`` is None when fewer than two can be compared.
    A run that left units unproven must still find a subset of an exact run's stable
    units; one that does not makes ``agree`` False."""
    done = {m: r for m, r in results.items()
            if not r.get("capped") and "error" not in r and "active" in r and not _unproven(r)}
    out: dict[str, Any] = {"agree": None, "compared": sorted(done)}
    inexact = {m: _unproven(r) for m, r in results.items() if _unproven(r) and not r.get("capped")}
    if inexact:
        out["inexact"] = inexact  # method -> units left unproven (a time-out, the budget, the margin)
    diffs = []
    if done:
        ref_name, ref = next(iter(done.items()))
        for m in inexact:
            r = results[m]
            for kind in ("active", "inactive"):
                for k, (a, b) in enumerate(zip(r.get(kind, []), ref[kind])):
                    extra = sorted(set(a) - set(b))
                    if extra:
                        diffs.append(f"layer {k + 1} {kind}: {m} claims {extra[:10]}, which exact {ref_name} does not")
        out["subsets_checked"] = sorted(m for m in inexact if "active" in results[m])
    if len(done) < 2:
        if diffs:
            out["agree"], out["differences"] = False, diffs
        return out
    for m, r in done.items():
        for kind in ("active", "inactive"):
            if len(r[kind]) != len(ref[kind]):
                diffs.append(f"{m} vs {ref_name}: {len(r[kind])} layers of {kind} units, not {len(ref[kind])}")
                continue
            for k, (a, b) in enumerate(zip(r[kind], ref[kind])):
                if list(a) != list(b):
                    only_m = sorted(set(a) - set(b))
                    only_ref = sorted(set(b) - set(a))
                    diffs.append(f"layer {k + 1} {kind}: only {m} {only_m[:10]}, only {ref_name} {only_ref[:10]}")
    out["agree"] = not diffs
    if diffs:
        out["differences"] = diffs
    return out


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    """What the JSON keeps of one method's run: no unit lists, counts per layer instead."""
    keep = {k: v for k, v in result.items() if k not in ("active", "inactive")}
    if "active" in result:
        keep["active_per_layer"] = [len(a) for a in result["active"]]
        keep["inactive_per_layer"] = [len(i) for i in result["inactive"]]
    return keep


def benchmark(networks: Sequence[tuple[str, Network]], methods: Sequence[str],
              caps: dict[str, float | None], box: Box | None = None, isolate: bool = True,
              log: Callable[[str], None] | None = print, grace: float = KILL_GRACE,
              leo_time_limit: float | None = None, threads: int = DEFAULT_THREADS) -> list[dict[str, Any]]:
    """Every method on every network; one entry per network, in the JSON's shape."""
    entries = []
    for name, net in networks:
        b = box if box is not None else Box(np.zeros(net.input_dim), np.ones(net.input_dim))
        full: dict[str, dict[str, Any]] = {}
        for m in methods:
            if log:
                log(f"{name}: {m} (cap {caps.get(m)} s) ...")
            full[m] = measure(m, net, b, caps.get(m), isolate=isolate, grace=grace, leo_time_limit=leo_time_limit,
                              threads=threads)
            if log:
                r = full[m]
                log(f"  {m}: {_fmt_seconds(r)} s, {r.get('solves')} solves, {r.get('stable')} stable"
                    + (", capped" if r.get("capped") else "") + (f", ERROR {r['error']}" if "error" in r else ""))
        check = compare(full)
        entries.append({
            "name": name,
            "hidden": list(net.hidden),
            "weights": weight_counts(net),
            "methods": {m: _summary(r) for m, r in full.items()},
            **check,
        })
        if log:
            log(f"  agree: {check['agree']} (compared {', '.join(check['compared'])})")
    return entries


def weight_counts(network: Network) -> dict[str, Any]:
    """How many weights the network has, and how many nonzero ones leo leaves out of its
    MILP rows for being below ``DROP_TOL``."""
    from leo.bounds.encoding import DROP_TOL

    ws = [np.asarray(w) for layer in network.layers for w in layer.weights.values()]
    tiny = sum(int(np.sum((np.abs(w) < DROP_TOL) & (w != 0))) for w in ws)
    return {"total": sum(int(w.size) for w in ws), "tiny": tiny, "drop_tol": DROP_TOL}


# -- reporting -------------------------------------------------------------------
def default_methods() -> tuple[str, ...]:
    """Every method whose solver is installed here (leo with each installed back-end)."""
    from solvers.backend import available

    installed = available()
    return tuple(m for m in METHODS if BACKEND_METHODS.get(m, "highs") in installed)


def machine() -> dict[str, Any]:
    """Facts about where the benchmark runs, read when it runs."""
    from solvers.backend import available, backend_version

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for mod in ("torch", "pyomo", "omlt"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            versions[mod] = None
    for solver in available():
        versions[solver] = backend_version(solver)
    return {"cpu": cpu, "cores": os.cpu_count(), "load_average": list(os.getloadavg()),
            "platform": platform.platform(), "versions": versions}


# -- command line ----------------------------------------------------------------
def load_networks(specs: Sequence[Spec], log: Callable[[str], None] | None = print) -> list[tuple[str, Network]]:
    from benchmarks.common import get_network
    from leo.io.torch_io import from_module
    from leo.train import PAPER_STEPS

    out = []
    for spec in specs:
        module, _train_seconds = get_network(spec.hidden, spec.l1, SEED, PAPER_STEPS, verbose=log is not None)
        out.append((spec.name, from_module(module)))
    return out


#: Where a partial run (--quick, --networks, --methods) writes unless told: outside the repository,
#: so the README's quick command cannot replace the committed benchmarks/results/speed.*.
SCRATCH = Path(tempfile.gettempdir()) / "leo-benchmarks"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from benchmarks.common import RESULTS

    p = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=Path, default=None,
                   help=f"default: {RESULTS / 'speed.json'} for the full run; a run of part of it (--quick, "
                        f"--networks, --methods) writes to {SCRATCH} unless named, so it never replaces the "
                        "committed results")
    p.add_argument("--markdown", type=Path, default=None, help="default: beside --json's default, as speed.md")
    p.add_argument("--plot", type=Path, default=None,
                   help="default: beside --markdown, as .png (a run writing elsewhere never replaces the committed plot)")
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK_NETWORK} only, baselines capped at {QUICK_BASELINE_CAP:g} s, "
                        f"leo at {QUICK_LEO_CAP:g} s")
    p.add_argument("--cap", type=float, default=None,
                   help=f"seconds per method and network (default {DEFAULT_CAP:g}; quick: "
                        f"{QUICK_BASELINE_CAP:g} for the baselines, {QUICK_LEO_CAP:g} for leo)")
    p.add_argument("--leo-cap", type=float, default=None,
                   help="seconds for leo and leo-network per network, when they should differ from --cap "
                        "(e.g. baselines at 90 s and leo at 900 s, to see leo's whole run)")
    p.add_argument("--methods", default=None,
                   help=f"comma-separated, from {', '.join(METHODS)} (default: all whose solver is installed)")
    p.add_argument("--networks", default=None, help="comma-separated names, e.g. 2x100-l1=1e-4")
    p.add_argument("--leo-time-limit", type=float, default=None,
                   help="leo's per-MILP time limit (default: StabilityOptions' own, 60 s); a unit whose "
                        "MILP times out stays unproven and makes that leo run inexact")
    p.add_argument("--no-isolate", action="store_true", help="run the methods in this process (no memory numbers)")
    p.add_argument("--from-json", type=Path, default=None,
                   help="re-render the markdown and plot from a JSON written earlier (no run)")
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                   help="threads for torch, BLAS and HiGHS in every method (leo.core.threads; 0: one per core); "
                        "recorded in the JSON")
    args = p.parse_args(argv)
    full = not args.quick and args.networks is None and args.methods is None and args.from_json is None
    folder = RESULTS if full else SCRATCH
    args.json = args.json if args.json is not None else folder / "speed.json"
    args.markdown = args.markdown if args.markdown is not None else folder / "speed.md"
    args.methods = ([m.strip() for m in args.methods.split(",") if m.strip()] if args.methods is not None
                    else list(default_methods()))
    for m in args.methods:
        if m not in METHODS:
            p.error(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    if args.plot is None:
        args.plot = args.markdown.with_suffix(".png")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from benchmarks.common import write_json, write_text

    args = parse_args(argv)
    for path in (args.json, args.markdown, args.plot):
        path.parent.mkdir(parents=True, exist_ok=True)
    if args.from_json is not None:  # the text and plot of an earlier run, by today's renderer
        data = json.loads(args.from_json.read_text())
        write_text(args.markdown, to_markdown(data))
        plot(data, args.plot)
        print(f"wrote {args.markdown}, {args.plot} from {args.from_json}")
        return data
    set_threads(args.threads)  # training a missing network too: the same policy as the methods
    names = {s.name: s for s in SPECS}
    if args.networks:
        wanted = [n.strip() for n in args.networks.split(",") if n.strip()]
        bad = [n for n in wanted if n not in names]
        if bad:
            raise SystemExit(f"unknown network(s) {', '.join(bad)}; choose from {', '.join(names)}")
        specs = [names[n] for n in wanted]
    elif args.quick:
        specs = [names[QUICK_NETWORK]]
    else:
        specs = list(SPECS)
    if args.quick:
        caps = {m: (args.cap or QUICK_BASELINE_CAP) if m in ("naive", "omlt") else QUICK_LEO_CAP
                for m in args.methods}
    else:
        caps = {m: args.cap or DEFAULT_CAP for m in args.methods}
    if args.leo_cap is not None:
        caps.update({m: args.leo_cap for m in args.methods if m.startswith("leo")})
    command = "python -m benchmarks.speed " + " ".join(sys.argv[1:] if argv is None else argv)
    mach = machine()
    networks = load_networks(specs)
    entries = benchmark(networks, args.methods, caps, isolate=not args.no_isolate,
                        leo_time_limit=args.leo_time_limit, threads=args.threads)
    for entry, spec in zip(entries, specs):
        entry["l1"] = spec.l1
    data = {"networks": entries, "machine": mach, "command": command.strip(), "quick": args.quick,
            "caps": caps, "box": "[0, 1]^784", "seed": SEED, "leo_time_limit": args.leo_time_limit,
            "threads": args.threads, "leo_defaults": leo_defaults()}
    write_json(args.json, data)
    write_text(args.markdown, to_markdown(data))
    plot(data, args.plot)
    print(f"wrote {args.json}, {args.markdown}, {args.plot}")
    return data


if __name__ == "__main__":
    main()
