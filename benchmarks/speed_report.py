"""The speed benchmark's report (``benchmarks.speed``): the markdown table, the notes on each
method and the plot, from a run's data alone, so a committed JSON can be re-rendered."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from leo.core.threads import DEFAULT_THREADS

#: leo with each MILP back-end other than HiGHS (``leo`` itself runs HiGHS).
BACKEND_METHODS = {"leo-scip": "scip", "leo-gurobi": "gurobi"}
METHODS = ("naive", "omlt", "leo", "leo-network", "leo-60s", *BACKEND_METHODS)
BUDGET = 60.0  # leo-60s's time budget, seconds
QUICK_NETWORK = "2x100-l1=1e-4"
QUICK_BASELINE_CAP = 120.0
QUICK_LEO_CAP = 60.0


def _unproven(r: dict[str, Any]) -> int:
    """Units a run left unproven (results from before ``unproven`` counted time-outs only)."""
    return int(r.get("unproven", r.get("timeouts")) or 0)


def _fmt_seconds(r: dict[str, Any]) -> str:
    s = r.get("seconds")
    if s is None:
        return "—"
    text = f"{s:.3g}" if s < 10 else f"{s:.0f}"
    return f"≥ {text}" if r.get("capped") else text


def _stable(r: dict[str, Any]) -> str:
    if r.get("stable") is None:
        return "—"
    return f"{r['stable']} ({_unproven(r)} unproven)" if _unproven(r) else str(r["stable"])


def _speedup(r: dict[str, Any], naive: dict[str, Any] | None) -> str:
    if naive is None or naive.get("seconds") is None or r.get("seconds") in (None, 0) or "error" in r:
        return "—"
    if r.get("capped"):
        return "—" if naive.get("capped") else f"≤ {naive['seconds'] / r['seconds']:.3g}×"
    ratio = naive["seconds"] / r["seconds"]
    return f"≥ {ratio:.3g}×" if naive.get("capped") else f"{ratio:.3g}×"


def to_markdown(data: dict[str, Any]) -> str:
    lines = ["# Exact stability analysis: leo against the MILP baselines", ""]
    lines += [f"Command: `{data['command']}`", ""]
    mach = data["machine"]
    lines += [f"Machine: {mach['cpu']}, {mach['cores']} cores, load average at start "
              f"{', '.join(f'{x:.2f}' for x in mach['load_average'])}; "
              + ", ".join(f"{k} {v}" for k, v in mach["versions"].items()), ""]
    caps = data["caps"]
    lines += ["Caps (seconds per method and network): " + ", ".join(f"{m} {c:g}" if c else f"{m} none"
                                                                   for m, c in caps.items()), ""]
    tl = data.get("leo_time_limit")
    limit = f"{tl:g} s" if tl else f"StabilityOptions default ({_defaults(data).time_limit:g} s)"
    lines += [f"leo's per-MILP time limit: {limit}; "
              "a unit whose MILP times out is unproven, and that run is not exact.", ""]
    lines += [f"Threads (torch, BLAS, the solver; `--threads`, 0 = one per core): {data.get('threads', 1)}", ""]
    if data.get("quick"):
        lines += [f"**Quick run**: {QUICK_NETWORK} only, the baselines capped at "
                  f"{caps.get('naive', QUICK_BASELINE_CAP):g} s and leo at {caps.get('leo', QUICK_LEO_CAP):g} s; "
                  "a capped time is a lower bound and the speedups against it are lower bounds too.", ""]
    for entry in data["networks"]:
        agree = {True: "yes", False: "**NO**", None: "not compared (fewer than two finished)"}[entry["agree"]]
        lines += [f"## {entry['name']} (hidden {'-'.join(map(str, entry['hidden']))})", "",
                  f"Same stable set: {agree} (compared: {', '.join(entry['compared']) or 'none'})", ""]
        if entry.get("weights"):
            w = entry["weights"]
            lines += [f"Weights: {w['total']:,}, of which {w['tiny']:,} nonzero with |w| < {w['drop_tol']:g} "
                      "(left out of leo's MILP rows, which are widened instead; the baselines keep them)", ""]
        if entry.get("inexact"):
            lines += ["Not exact (units left unproven by a MILP time-out, the time budget or the margin; not compared): "
                      + ", ".join(f"{m} {n}" for m, n in entry["inexact"].items()), ""]
        if entry.get("differences"):
            lines += ["Differences:", ""] + [f"- {d}" for d in entry["differences"]] + [""]
        lines += ["| method | seconds | solver calls | stable units | capped | peak MiB (+ over start) | speedup vs naive |",
                  "|---|---:|---:|---:|---|---:|---:|"]
        naive = entry["methods"].get("naive")
        for m, r in entry["methods"].items():
            peak, base = r.get("peak_mib"), r.get("baseline_mib")
            mem = f"{peak:.0f} (+{peak - base:.0f})" if peak and base else "—"
            lines.append(
                f"| {m} | {_fmt_seconds(r)} | {r.get('solves') if r.get('solves') is not None else '—'} | "
                f"{_stable(r)} | {'yes' if r.get('capped') else 'no'} | "
                f"{mem} | {_speedup(r, naive)} |")
        errors = [f"- {m}: {r['error']}" for m, r in entry["methods"].items() if "error" in r]
        notes = [f"- {m}: {r['note']}" for m, r in entry["methods"].items() if "note" in r]
        if errors or notes:
            lines += [""] + errors + notes
        lines.append("")
    lines += ["## Notes", ""] + [f"- {n}" for n in method_notes(data)] + [""]
    return "\n".join(lines)


def _exact(r: dict[str, Any]) -> bool:
    return r.get("seconds") is not None and not r.get("capped") and "error" not in r and not _unproven(r)


def leo_defaults() -> dict[str, Any]:
    """leo's default options that the text names, recorded with each run."""
    from leo.stability.analysis import StabilityOptions

    d = StabilityOptions()
    return {"time_limit": d.time_limit, "samples": d.samples, "margin": d.margin, "solver": d.solver}


def _defaults(data: dict[str, Any]) -> Any:
    """The run's recorded defaults (runs from before they were recorded: today's)."""
    return SimpleNamespace(**(data.get("leo_defaults") or leo_defaults()))


def method_notes(data: dict[str, Any]) -> list[str]:
    """What each column and method is; numbers from the run's data or leo's own settings."""
    d = _defaults(data)
    omlt = data.get("machine", {}).get("versions", {}).get("omlt")
    threads = data.get("threads", DEFAULT_THREADS)
    out = [
        "Seconds: wall clock of the method from the loaded network to its verdicts, model building "
        "included; training, process start and imports are not counted. One process per method and "
        "network (`spawn`), so peak MiB is that process's `ru_maxrss`; it includes the interpreter, "
        "torch and Pyomo (`baseline_mib` in the JSON: the peak before the method starts), and "
        "'+ over start' is what the method added on top (0 when it stayed below the import peak).",
        f"Threads for every method: {threads} (`--threads`; 0 = one per core): `leo.core.threads.set_threads` gives "
        "torch, numpy's BLAS and the solver that many, and OMP/OPENBLAS/MKL_NUM_THREADS are set to it too.",
        "naive = LEO (CPAIOR 2020): per hidden layer one Pyomo big-M model of the prefix (interval "
        "big-M only; units proven stable by interval arithmetic or an earlier MILP fixed, no binary), "
        "then max z and min z of every unit the intervals leave open, each solved to optimality "
        "(mip_rel_gap 0) with HiGHS through Pyomo's persistent appsi interface (only the objective "
        "changes between solves).",
        f"omlt = OMLT {omlt or ''} `ReluBigMFormulation` of the prefix network per hidden layer (OMLT's own "
        "interval big-M, a binary for every hidden unit), then max and min of every unit its "
        "intervals leave open, same solver settings.",
        "leo = `analyse(..., StabilityOptions(engine=\"unit\"))`: interval/symbolic bounds, then "
        f"{d.samples:,} random box points and a multi-start local search as witnesses, then per open unit a loop "
        "of ideal-formulation cuts (Anderson et al. 2020) on the LP relaxation, then a search for a crossing "
        "between linear regions (region walk and neighbourhood MILPs) and, if those do not decide it, one MILP "
        "on a persistent prefix model with the binding cuts and the margin as the solver's objective cutoff; "
        "leo-network = `engine=\"network\"` (the network-wide MILP; the units a time-out of it leaves are "
        f"solved per unit). Default options otherwise (no data points as witnesses, {d.time_limit:g} s per MILP, "
        f"solver {d.solver}).",
        "leo-scip, leo-gurobi = leo with `StabilityOptions(solver=\"scip\")` / `(solver=\"gurobi\")` "
        "(solvers/backend.py; versions in the machine line); each runs where its solver is installed.",
        f"A unit is stable on a proven bound beyond the margin {d.margin:g} (max z <= -{d.margin:g} or "
        f"min z >= {d.margin:g}), or on an interval/symbolic bound (upper <= 0 or lower >= 0).",
        f"leo-60s = leo with `time_budget={BUDGET:g}` for the whole analysis (each ReLU layer an equal share of "
        "what is left, each solve an equal share of its layer's); units it cuts short stay unproven.",
        "Capped: the method was stopped at its cap (the baselines stop themselves; a process still "
        "running at cap + grace is killed); its seconds are a lower bound and it is not compared.",
        "Speedup vs naive = naive seconds / method seconds; '≥' when naive was capped.",
    ]
    return out


def plot(data: dict[str, Any], path: Path) -> None:
    """Seconds (log) per method: against total hidden units for the l1=1e-4 networks,
    and against l1 for the 2x100 networks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = data["networks"]
    methods = list(dict.fromkeys(m for e in entries for m in e["methods"]))
    markers = dict(zip(METHODS, "osD^vPX"))

    def timed(group: list[dict[str, Any]]) -> bool:
        return any(r.get("seconds") for e in group for r in e["methods"].values())

    l1_4 = [e for e in entries if e.get("l1") == 1e-4]
    two = [e for e in entries if e["hidden"] == [100, 100] and e.get("l1") is not None]
    # a panel only where the run has its networks: a one-network run drew an empty l1 panel
    panels = [p for p in (
        (l1_4, lambda e: sum(e["hidden"]), "hidden units (λ = 1e-4 networks)", True,
         "by size: " + ", ".join(e["name"].split("-l1")[0] for e in l1_4)),
        (two if len(two) > 1 else [], lambda e: e["l1"], "λ (2x100 networks)", False, "2x100 by l1 penalty"),
    ) if p[0] and timed(p[0])]
    if not panels:
        panels = [(entries, lambda e: sum(e["hidden"]), "hidden units", True, "")]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels) + 0.4, 4.2), squeeze=False)
    axes = list(axes[0])

    def draw(ax, xs_entries, xfun, xlabel, xlog):  # noqa: ANN001, ANN202
        for m in methods:
            pts = [(xfun(e), e["methods"][m]) for e in xs_entries if m in e["methods"]]
            pts = [(x, r) for x, r in pts if r.get("seconds")]
            if not pts:
                continue
            pts.sort(key=lambda p: p[0])
            xs = [p[0] for p in pts]
            ys = [p[1]["seconds"] for p in pts]
            line, = ax.plot(xs, ys, marker=markers.get(m, "o"), label=m)
            capped = [(x, r["seconds"]) for x, r in pts if r.get("capped")]
            if capped:
                ax.scatter(*zip(*capped), s=150, facecolors="none", edgecolors=line.get_color(), linewidths=1.5)
        ax.set_yscale("log")
        if xlog:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("seconds (circled: capped, lower bound)")
        ax.grid(True, which="both", alpha=0.3)

    for ax, (group, xfun, xlabel, xlog, title) in zip(axes, panels):
        draw(ax, group, xfun, xlabel, xlog)
        ax.set_title(title)
    handles = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    if handles:
        axes[0].legend(handles.values(), handles.keys())
    fig.suptitle("Exact ReLU stability analysis on MNIST MLPs, box [0,1]^784"
                 + (" (quick run)" if data.get("quick") else ""))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


