"""Equivalence benchmark in the style of VNN-COMP 2026's isomorphic_acasxu_2026: is an ACAS Xu
network within ε of a modified copy over the whole normalised input domain?

Pairs: ACAS Xu 1_1 ... 1_9 (``$LEO_DATA/vnncomp2021/acasxu``) against copies with a share of
their weights magnitude-pruned (per layer, the smallest |w| set to 0, written as ONNX with the
onnx helpers) and against leo's own compressed copies (``leo.compress`` over the domain). Each
instance is written as a VNN-LIB 2.0 file (g ``isomorphic-to`` f, inputs tied by ``==``, the unsafe
set "some |f_i - g_i| >= ε") and answered through the standard entry point ``leo-vnnlib verify``
and/or ``leo.queries.closeness.closeness`` (``--entries``; each row says which). Every sat is
confirmed by onnxruntime on both ONNX files; every unsat is cross-checked by dense sampling and,
where it finishes in the time, by ``leo check --exact``.

    python -m benchmarks.equivalence                      # the reduced run committed
    python -m benchmarks.equivalence --full               # 1_1..1_9 x 5/10/30 % x every ε, and leo's copies
    python -m benchmarks.equivalence --entries vnnlib,closeness   # both ways, one row each
"""

from __future__ import annotations

import argparse
import enum
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import write_json, write_text

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PRUNE_LEVELS = (0.05, 0.10, 0.30)
#: ε values (ACAS Xu outputs are normalised advisory scores of order 0.01-1): small enough
#: that pruned copies are refuted, large enough that some are proven close.
EPSILONS = (0.05, 0.5, 2.0)
REDUCED = {"networks": ("1_1", "1_5", "1_9"), "prunes": PRUNE_LEVELS, "epsilons": (0.05,), "leo_eps": (0.05,)}
FULL = {"networks": tuple(f"1_{k}" for k in range(1, 10)), "prunes": PRUNE_LEVELS, "epsilons": EPSILONS,
        "leo_eps": (0.05,)}
#: Points for the dense-sampling cross-check of an unsat answer.
DENSE_POINTS = 200_000
#: onnxruntime runs float32: a sat is confirmed when its |f - g| reaches ε less this.
ORT_TOL = 1e-5


def acas_dir() -> Path:
    from leo.data import data_dir

    return data_dir() / "vnncomp2021" / "acasxu"


def acas_onnx(name: str) -> Path:
    return acas_dir() / f"ACASXU_run2a_{name}_batch_2000.onnx"


def domain() -> tuple[np.ndarray, np.ndarray]:
    """The union (bounding box) of the input boxes of the shared ACAS Xu properties: the whole
    normalised input domain (property 7's box is that domain)."""
    from leo.io.vnnlib import read_vnnlib

    boxes = [read_vnnlib(p, 5)[0] for p in sorted(acas_dir().glob("prop_*.vnnlib"))]
    return np.min([b.lower for b in boxes], axis=0), np.max([b.upper for b in boxes], axis=0)


def prune_onnx(src: Path, dst: Path, fraction: float) -> None:
    """``src`` with the ``fraction`` smallest |w| of every MatMul/Gemm weight set to 0 (per layer)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    weights = {n.input[1] for n in model.graph.node if n.op_type in ("MatMul", "Gemm")}
    for init in model.graph.initializer:
        if init.name not in weights:
            continue
        w = numpy_helper.to_array(init).copy()
        cut = int(round(fraction * w.size))
        if cut:
            order = np.argsort(np.abs(w), axis=None, kind="stable")[:cut]
            w.flat[order] = 0
        init.CopyFrom(numpy_helper.from_array(w, init.name))
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


def compressed_onnx(src: Path, dst: Path, lower: np.ndarray, upper: np.ndarray, budget: float) -> dict[str, Any]:
    """leo's lossless compression of ``src`` over the domain, saved as ONNX."""
    import leo
    from leo.stability.analysis import StabilityOptions

    shape = (1, 1, 1, 5)
    res = leo.compress(str(src), lower.reshape(shape), upper.reshape(shape), StabilityOptions(time_budget=budget))
    leo.save_network(res.network, dst, overwrite=True)  # dst is in the benchmark's own work folder
    return {"hidden_before": int(sum(res.original.hidden)), "hidden_after": int(sum(res.network.hidden))}


def vnnlib2(eps: float, lower: np.ndarray, upper: np.ndarray, outputs: int = 5) -> str:
    """The query as VNN-LIB 2.0: g declared ``isomorphic-to`` f (same architecture, its own
    weights), g's inputs tied to f's (``==``), f's inputs over the box, and the unsafe set
    "f_i - g_i >= eps or g_i - f_i >= eps for some i"."""
    lines = ["; ε-closeness of two ACAS Xu networks over the whole normalised input domain",
             "(vnnlib-version <2.0>)",
             "(declare-network f",
             "    (declare-input X float32 [1,1,1,5])",
             f"    (declare-output Y float32 [1,{outputs}]))",
             "(declare-network g",
             "    (isomorphic-to f)",
             "    (declare-input X2 float32 [1,1,1,5])",
             f"    (declare-output Y2 float32 [1,{outputs}]))"]
    box = " ".join(f"(<= {lo!r} X[0,0,0,{i}]) (<= X[0,0,0,{i}] {hi!r})"
                   for i, (lo, hi) in enumerate(zip(lower.tolist(), upper.tolist())))
    lines.append(f"(assert (and {box}))")
    lines.append("(assert (and " + " ".join(f"(== X2[0,0,0,{i}] X[0,0,0,{i}])" for i in range(len(lower))) + "))")
    diffs = " ".join(f"(>= (- Y[0,{i}] Y2[0,{i}]) {eps!r}) (>= (- Y2[0,{i}] Y[0,{i}]) {eps!r})"
                     for i in range(outputs))
    lines.append(f"(assert (or {diffs}))")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Row:
    instance: str
    eps: float
    answer: str
    seconds: float
    how: str
    entry: str  # how the query was answered (Entry.value)
    confirmation: str
    max_diff_sampled: float
    exact: str = ""  # leo check --exact on unsat instances: its answer and seconds


def ort_diff(f: Path, g: Path, x: np.ndarray) -> float:
    """max |f(x) - g(x)| by onnxruntime at one point (float32, the files' own type)."""
    import onnxruntime as ort

    def run(path: Path) -> np.ndarray:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        dtype = np.float64 if "double" in inp.type else np.float32
        return np.asarray(sess.run(None, {inp.name: x.reshape(1, 1, 1, 5).astype(dtype)})[0], dtype=np.float64)

    return float(np.abs(run(f) - run(g)).max())


def dense_diff(f: Path, g: Path, lower: np.ndarray, upper: np.ndarray, n: int) -> float:
    """max |f - g| over ``n`` random domain points and the corners, by leo's float64 forward pass."""
    from leo.api import as_network
    from leo.core.domain import Box
    from leo.core.domain import sample_points

    nf, ng = as_network(str(f)), as_network(str(g))
    pts = sample_points(Box(lower, upper), n, np.random.default_rng(7))
    return float(max(np.abs(nf(c) - ng(c)).max() for c in np.array_split(pts, max(1, len(pts) // 20_000))))


class Entry(enum.Enum):
    """How an instance is answered."""

    VNNLIB = "leo-vnnlib verify"  # the standard entry point, as a subprocess: check_query on the product
    CLOSENESS = "leo.queries.closeness.closeness"  # product searches, then compare_exact's shared-unit MILPs


def solve(entry: Entry, f: Path, g: Path, query: Path, lower: np.ndarray, upper: np.ndarray, eps: float,
          timeout: float) -> tuple[str, float, str, np.ndarray | None]:
    """(answer, seconds, how decided, witness) through ``entry``."""
    return _SOLVERS[entry](f, g, query, lower, upper, eps, timeout)


def _solve_vnnlib(f: Path, g: Path, query: Path, lower: np.ndarray, upper: np.ndarray, eps: float,
                  timeout: float) -> tuple[str, float, str, np.ndarray | None]:
    """``leo-vnnlib verify`` (run as ``python -m leo.cli.vnnlib`` so an editable checkout needs no
    reinstall); seconds include its start-up."""
    cmd = [sys.executable, "-m", "leo.cli.vnnlib", "verify", str(query), "--network", f"f={f}",
           "--network", f"g={g}", "--timeout", f"{timeout:g}"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 120)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        return f"error (exit {proc.returncode}: {proc.stderr.strip()[-200:]})", seconds, "", None
    answer, witness = parse_verdict(proc.stdout)
    return answer, seconds, "", witness


def _solve_closeness(f: Path, g: Path, query: Path, lower: np.ndarray, upper: np.ndarray, eps: float,
                     timeout: float) -> tuple[str, float, str, np.ndarray | None]:
    from leo.api import as_network
    from leo.queries.closeness import closeness
    from leo.core.domain import Box

    res = closeness(as_network(str(f)), as_network(str(g)), Box(lower, upper), eps, timeout)
    return res.answer.value, res.seconds, res.how, res.counterexample


_SOLVERS = {Entry.VNNLIB: _solve_vnnlib, Entry.CLOSENESS: _solve_closeness}


def parse_verdict(stdout: str) -> tuple[str, np.ndarray | None]:
    """The result line of ``leo-vnnlib verify`` and, after sat, X's values from the assignment
    (a header ``X float32 [1,1,1,5]``, then one value per line)."""
    lines = stdout.strip().splitlines()
    if not lines:
        return "no output", None
    answer = lines[0].strip()
    for k, line in enumerate(lines):
        if line.split()[:1] == ["X"]:
            return answer, np.array([float(v) for v in lines[k + 1:k + 6]])
    return answer, None


def exact_check(f: Path, g: Path, lower_npy: Path, upper_npy: Path, eps: float, timeout: float) -> str:
    """``leo check --exact`` with tolerance ε: its verdict and seconds, or that it did not finish."""
    cmd = [sys.executable, "-m", "leo.cli.main", "check", str(f), str(g), "--lower", str(lower_npy), "--upper",
           str(upper_npy), "--exact", "--tolerance", repr(eps), "--time-limit", f"{timeout / 10:g}", "-q",
           "--points", "10000"]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"not finished in {timeout:g} s"
    words = {0: "proven equivalent", 1: "REFUTED", 3: "undecided"}.get(proc.returncode, f"exit {proc.returncode}")
    return f"{words} ({time.perf_counter() - t0:.1f} s)"


def confirm(row_answer: str, f: Path, g: Path, witness: np.ndarray | None, eps: float,
            lower: np.ndarray, upper: np.ndarray) -> tuple[str, float]:
    """The independent check of an answer, and the largest |f - g| dense sampling saw."""
    sampled = dense_diff(f, g, lower, upper, DENSE_POINTS)
    if row_answer == "sat":
        if witness is None:
            return "NO WITNESS", sampled
        inside = bool(np.all(witness >= lower) and np.all(witness <= upper))
        diff = ort_diff(f, g, witness)
        ok = inside and diff >= eps - ORT_TOL
        return f"{'confirmed' if ok else 'NOT CONFIRMED'}: onnxruntime |f-g| = {diff:.4g}", sampled
    if row_answer == "unsat":
        ok = sampled < eps
        return f"{'consistent' if ok else 'CONTRADICTED'}: sampled max |f-g| = {sampled:.4g}", sampled
    return "-", sampled


def pairs(grid: dict[str, Any], work: Path, lower: np.ndarray, upper: np.ndarray, budget: float,
          only: tuple[str, ...] | None = None) -> list[tuple[str, Path, Path, float, dict[str, Any]]]:
    """(instance name, f, g, ε, extra) for every instance of the grid (or those in ``only``),
    writing the copies."""
    out = []
    for name in grid["networks"]:
        f = acas_onnx(name)
        for p in grid["prunes"]:
            inst = f"{name} vs pruned {p:.0%}"
            if only is None or inst in only:
                g = work / f"ACASXU_{name}_pruned{int(round(p * 100))}.onnx"
                prune_onnx(f, g, p)
                out += [(inst, f, g, eps, {}) for eps in grid["epsilons"]]
        inst = f"{name} vs leo compressed"
        if grid["leo_eps"] and (only is None or inst in only):
            g = work / f"ACASXU_{name}_leo.onnx"
            extra = compressed_onnx(f, g, lower, upper, budget)
            out += [(inst, f, g, eps, extra) for eps in grid["leo_eps"]]
    return out


def run(grid: dict[str, Any], timeout: float, exact: bool, work: Path, budget: float,
        entries: tuple[Entry, ...] = (Entry.VNNLIB,), only: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Every instance of the grid (or those named in ``only``) through every entry; one row each."""
    lower, upper = domain()
    np.save(work / "lower.npy", lower)
    np.save(work / "upper.npy", upper)
    rows = []
    for inst, f, g, eps, extra in pairs(grid, work, lower, upper, budget, only):
        query = work / f"{inst.replace(' ', '_').replace('%', 'pc')}_eps{eps:g}.vnnlib"
        query.write_text(vnnlib2(eps, lower, upper))
        checked = ""
        for entry in entries:
            load = os.getloadavg()[0]
            answer, seconds, how, witness = solve(entry, f, g, query, lower, upper, eps, timeout)
            confirmation, sampled = confirm(answer, f, g, witness, eps, lower, upper)
            if exact and answer == "unsat" and not checked:
                checked = exact_check(f, g, work / "lower.npy", work / "upper.npy", eps, timeout)
            row = asdict(Row(inst, eps, answer, round(seconds, 2), how, entry.value, confirmation, sampled,
                             checked if answer == "unsat" else ""))
            rows.append({**row, **extra, "load_1min": round(load, 2)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def merged(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``old`` with each row that ``new`` has again (same instance, ε and entry) replaced, in
    ``old``'s order, then ``new``'s other rows."""
    def key(r: dict[str, Any]) -> tuple[str, float, str]:
        return r["instance"], r["eps"], r["entry"]

    table = {key(r): r for r in old} | {key(r): r for r in new}
    return list(table.values())


def environment() -> dict[str, str]:
    import highspy  # noqa: F401
    import onnx
    import onnxruntime

    from importlib.metadata import version

    return {"python": platform.python_version(), "leo": version("leo"), "highspy": version("highspy"),
            "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
            "machine": platform.machine(), "cpus": str(os.cpu_count()),
            "load": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()}


def markdown(rows: list[dict[str, Any]], env: dict[str, str], command: str, timeout: float) -> str:
    decided = [r for r in rows if r["answer"] in ("sat", "unsat")]
    lines = ["# Equivalence benchmark (isomorphic_acasxu_2026 style)", "",
             f"Command: `{command}`", "",
             f"ACAS Xu networks against magnitude-pruned copies and leo's compressed copies, ε-closeness over the "
             f"whole normalised input domain (the bounding box of the shared ACAS Xu property boxes), "
             f"{timeout:g} s per instance. Sat: confirmed by onnxruntime on both ONNX files at the witness; "
             f"unsat: dense sampling ({DENSE_POINTS:,} points and the corners) and `leo check --exact`.", "",
             "Environment: " + ", ".join(f"{k} {v}" for k, v in env.items()), "",
             f"Decided {len(decided)} of {len(rows)} "
             f"({sum(r['answer'] == 'sat' for r in rows)} sat, {sum(r['answer'] == 'unsat' for r in rows)} unsat).", "",
             "| instance | ε | answered through | answer | seconds | how decided | confirmation | "
             "leo check --exact | load (1 min) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [r["instance"], f"{r['eps']:g}", r["entry"], r["answer"], f"{r['seconds']:.2f}", r["how"] or "-",
                 r["confirmation"], r["exact"] or "-", str(r["load_1min"])]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="1_1..1_9 x 5/10/30 %% x every ε, and leo's copies")
    ap.add_argument("--timeout", type=float, default=100.0, help="seconds per instance")
    ap.add_argument("--compress-budget", type=float, default=60.0, help="leo.compress's time budget per network")
    ap.add_argument("--no-exact", action="store_true", help="skip the leo check --exact cross-check")
    ap.add_argument("--entries", default="vnnlib,closeness", help="comma-separated: vnnlib (leo-vnnlib verify), "
                    "closeness (leo.queries.closeness.closeness)")
    ap.add_argument("--out", default=str(RESULTS / "equivalence"), help="results path without suffix")
    ap.add_argument("--only", default=None, help="comma-separated instance names to run (e.g. '1_5 vs pruned 5%%')")
    ap.add_argument("--update", action="store_true", help="replace the rows of the instances run in the "
                    "existing results, keeping the others (the command of each run is listed)")
    ap.add_argument("--work", default=None, help="folder for the copies and queries (default: a temporary one)")
    args = ap.parse_args(argv)
    from leo.core.threads import set_threads

    set_threads(1)
    grid = FULL if args.full else REDUCED
    command = "python -m benchmarks.equivalence " + " ".join(argv if argv is not None else sys.argv[1:])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        env = environment()
        entries = tuple({"vnnlib": Entry.VNNLIB, "closeness": Entry.CLOSENESS}[e] for e in args.entries.split(","))
        only = tuple(args.only.split(",")) if args.only else None
        rows = run(grid, args.timeout, not args.no_exact, work, args.compress_budget, entries, only)
    commands = [command.strip()]
    if args.update and Path(args.out + ".json").is_file():
        old = json.loads(Path(args.out + ".json").read_text())
        rows = merged(old["rows"], rows)
        commands = [*old.get("commands", [old["command"]]), command.strip()]
    write_json(args.out + ".json", {"command": commands[0], "commands": commands, "environment": env,
                                    "grid": grid, "rows": rows})
    write_text(args.out + ".md", markdown(rows, env, "`, then `".join(commands), args.timeout))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
