"""VNN-COMP 2021 instances: leo, leo --compress-first, leo --solver scip, Marabou and nnenum side by side.

Every row of ``$LEO_DATA/vnncomp2021/results_2021.csv`` (default ``../shared/data``) with
the competition's time-out (116 s ACAS Xu, 120 s mnistfc; ``--cap S`` lowers them for a
short run). Each tool runs as its own subprocess on the same ONNX and VNN-LIB files:
``leo property`` through the command line (what a user runs, start-up and model reading
included, as the competition timed it; a process can be killed at the time-out plus a grace,
so one stuck run cannot stall the benchmark) and Marabou through maraboupy (its ONNX reader
and its VNN-LIB property reader, ``MarabouNetwork.solve(propertyFilename=...)``), with the
same wall-clock treatment. nnenum (GPL-3.0) runs only as its own program in its own
environment (``nnenum_python``: ``--nnenum-python``, else ``$LEO_NNENUM_PYTHON``, else
``.venv-nnenum/bin/python`` beside this repository, as ``../shared/peers/README.md`` installs
it); the results say which interpreter was used, and the tool is left out when none is found.
Seconds are wall-clock seconds of the subprocess.

An answer (sat/unsat) that contradicts the 2021 answer is counted; leo's must be 0.

    python -m benchmarks.vnncomp --json benchmarks/results/vnncomp.json --markdown benchmarks/results/vnncomp.md
    python -m benchmarks.vnncomp --quick --cap 60     # three instances
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.common import git_commit, write_json, write_text
from leo.data import data_dir

TIMEOUTS = {"acasxu": 116.0, "mnistfc": 120.0}
#: Beyond the time-out, a subprocess gets this long to start and stop before it is killed.
GRACE = 30.0
#: --quick: ACAS Xu 1_7 prop 3 (sat), 1_1 prop 3 (unsat), MNIST image 2 at 0.03 (unsat).
QUICK = [("ACASXU_run2a_1_7_batch_2000.onnx", "prop_3.vnnlib"),
         ("ACASXU_run2a_1_1_batch_2000.onnx", "prop_3.vnnlib"),
         ("mnist-net_256x2.onnx", "prop_2_0.03.vnnlib")]
TOOLS = ("leo", "leo_compress_first", "leo_scip", "marabou", "nnenum")
#: nnenum's first result line in VNN-COMP's words.
NNENUM_ANSWERS = {"holds": "unsat", "violated": "sat", "timeout": "timeout", "unknown": "unknown"}
ANSWERS = ("sat", "unsat", "unknown", "timeout")


def instances(root: Path, quick: bool, only: str | None) -> list[dict[str, Any]]:
    """The rows of results_2021.csv (or the three quick ones), with file paths."""
    with open(root / "results_2021.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    if quick:
        rows = [r for key in QUICK for r in rows if (r["onnx"], r["vnnlib"]) == key]
    if only:
        rows = [r for r in rows if re.search(only, f"{r['onnx']} {r['vnnlib']}")]
    return [{"benchmark": r["benchmark"], "onnx": r["onnx"], "vnnlib": r["vnnlib"], "expected": r["answer"],
             "onnx_path": root / r["benchmark"] / r["onnx"], "vnnlib_path": root / r["benchmark"] / r["vnnlib"]}
            for r in rows]


def _run(cmd: list[str], limit: float) -> tuple[str, float, str]:
    """(stdout, seconds, stderr tail) of a subprocess killed after ``limit`` seconds ("" then)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, env=env)
        return p.stdout, time.perf_counter() - t0, p.stderr[-400:]
    except subprocess.TimeoutExpired:
        return "", time.perf_counter() - t0, "killed"


def run_leo(inst: dict[str, Any], timeout: float, compress_first: bool, solver: str = "highs") -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "result.txt"
        cmd = [sys.executable, "-m", "leo.cli.main", "property", str(inst["onnx_path"]), str(inst["vnnlib_path"]),
               "--time-limit", str(timeout), "--results", str(results), "-q"]
        if compress_first:
            cmd.append("--compress-first")
        if solver != "highs":
            cmd += ["--solver", solver]
        out, seconds, err = _run(cmd, timeout + GRACE)
        answer = results.read_text().split()[0] if results.is_file() else ""
    if answer not in ANSWERS:
        answer = "timeout" if err == "killed" else "unknown"
    row: dict[str, Any] = {"answer": answer, "seconds": round(seconds, 2)}
    if answer == "unknown":
        row["note"] = (out.strip().splitlines() or [err.strip()])[0][:300] if (out or err) else ""
    return row


def marabou_one(onnx: str, vnnlib: str, timeout: float) -> str:
    """One Marabou run in this process; its answer in VNN-COMP's words."""
    import warnings

    warnings.filterwarnings("ignore")
    from maraboupy import Marabou

    net = Marabou.read_onnx(onnx)
    options = Marabou.createOptions(timeoutInSeconds=max(1, int(timeout)), verbosity=0)
    code, _, stats = net.solve(propertyFilename=vnnlib, options=options, verbose=False)
    if stats.hasTimedOut() or code == "TIMEOUT":
        return "timeout"
    return code if code in ("sat", "unsat") else "unknown"


def run_marabou(inst: dict[str, Any], timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.vnncomp", "--marabou-one", str(inst["onnx_path"]),
           str(inst["vnnlib_path"]), str(timeout)]
    out, seconds, err = _run(cmd, timeout + GRACE)
    lines = [line for line in out.splitlines() if line.startswith("answer ")]
    answer = lines[-1].split()[1] if lines else ("timeout" if err == "killed" else "unknown")
    return {"answer": answer, "seconds": round(seconds, 2)}


def nnenum_python(given: str | None) -> tuple[Path | None, str]:
    """The interpreter that has nnenum installed, and how it was found (for the results)."""
    candidates = [(given, "--nnenum-python"), (os.environ.get("LEO_NNENUM_PYTHON"), "$LEO_NNENUM_PYTHON"),
                  (str(Path(__file__).resolve().parent.parent / ".venv-nnenum" / "bin" / "python"),
                   ".venv-nnenum beside the repository")]
    for path, how in candidates:
        if path and Path(path).is_file():
            ok = subprocess.run([path, "-c", "import nnenum.nnenum"], capture_output=True).returncode == 0
            return (Path(path), f"{how}: {path}") if ok else (None, f"{how}: {path} cannot import nnenum")
    return None, "not found (install it as ../shared/peers/README.md says)"


def run_nnenum(inst: dict[str, Any], timeout: float, python: Path) -> dict[str, Any]:
    """nnenum as VNN-COMP ran it: its own process, the instance's time-out, its result file."""
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "result.txt"
        cmd = [str(python), "-m", "nnenum.nnenum", str(inst["onnx_path"]), str(inst["vnnlib_path"]),
               str(timeout), str(results)]
        _, seconds, err = _run(cmd, timeout + GRACE)
        first = results.read_text().split()[:1] if results.is_file() else []
    answer = NNENUM_ANSWERS.get(first[0] if first else "", "timeout" if err == "killed" else "unknown")
    return {"answer": answer, "seconds": round(seconds, 2)}


def run_instance(inst: dict[str, Any], cap: float | None, tools: tuple[str, ...],
                 nnenum: Path | None = None) -> dict[str, Any]:
    timeout = min(TIMEOUTS[inst["benchmark"]], cap or float("inf"))
    row = {k: inst[k] for k in ("benchmark", "onnx", "vnnlib", "expected")} | {"timeout": timeout}
    if "leo" in tools:
        row["leo"] = run_leo(inst, timeout, False)
    if "leo_compress_first" in tools:
        row["leo_compress_first"] = run_leo(inst, timeout, True)
    if "leo_scip" in tools:  # the same schedule with SCIP for every LP and MILP (extra leo[scip])
        row["leo_scip"] = run_leo(inst, timeout, False, "scip")
    if "marabou" in tools:
        row["marabou"] = run_marabou(inst, timeout)
    if "nnenum" in tools and nnenum is not None:
        row["nnenum"] = run_nnenum(inst, timeout, nnenum)
    for tool in tools:
        row[tool]["contradicts"] = row[tool]["answer"] in ("sat", "unsat") and row[tool]["answer"] != inst["expected"]
    print(" ".join([f"{inst['onnx']} {inst['vnnlib']} expected {inst['expected']}:"]
                   + [f"{t} {row[t]['answer']} {row[t]['seconds']:.1f}s" for t in tools]), file=sys.stderr, flush=True)
    return row


def totals(rows: list[dict[str, Any]], tools: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Per tool: instances decided, correct, contradicting, seconds in all (a time-out counts
    its wall-clock seconds, i.e. at least the time-out)."""
    out = {}
    for t in tools:
        mine = [r[t] for r in rows]
        out[t] = {"decided": sum(m["answer"] in ("sat", "unsat") for m in mine),
                  "contradictions": sum(bool(m["contradicts"]) for m in mine),
                  "seconds": round(sum(m["seconds"] for m in mine), 2),
                  **{a: sum(m["answer"] == a for m in mine) for a in ANSWERS}}
    return out


def markdown(rows: list[dict[str, Any]], tools: tuple[str, ...], summary: dict, command: str,
             load: dict[str, list[float]] | None = None, commit: str = "",
             runs: list[dict[str, Any]] | None = None) -> str:
    """The table; with ``runs`` (``--from-json``) one per run merged, each row naming its run."""
    where = (f" Load average (1, 5, 15 min) of the shared 2-core machine: {load['before']} before, "
             f"{load['after']} after." if load else "")
    lines = ["# VNN-COMP 2021: " + ", ".join(tools), "", f"Command: `{command}`"
             + (f" (leo at commit {commit})" if commit else ""), ""]
    for k, run in enumerate(runs or [], start=1):
        lines.append(f"- run {k}: `{run['command']}`, leo at commit {run.get('commit') or 'not recorded'}, "
                     f"load average {run['load_average']['before']} before, {run['load_average']['after']} after; "
                     "the three tools of an instance always ran side by side in the same run")
    lines += ([""] if runs else []) + [
        "Answers: sat (violated, counterexample), unsat (holds, proven), unknown, timeout. "
        "Seconds: wall clock of each tool's subprocess (start-up included), same machine, same time-out."
        + where, "",
        "| network | property | expected | time-out | " + " | ".join(tools) + (" | run |" if runs else " |"),
        "|---|---|---|---|" + "---|" * (len(tools) + bool(runs))]
    for r in rows:
        cells = [f"{r[t]['answer']}{' **CONTRADICTS**' if r[t]['contradicts'] else ''} {r[t]['seconds']:.1f} s"
                 for t in tools] + ([str(r["run"])] if runs else [])
        head = f"| {r['onnx']} | {r['vnnlib']} | {r['expected']} | {r['timeout']:g} | "
        lines.append(head + " | ".join(cells) + " |")
    lines += ["", "| tool | decided | sat | unsat | unknown | timeout | contradictions | total seconds |",
              "|---|---|---|---|---|---|---|---|"]
    for t in tools:
        s = summary[t]
        lines.append(f"| {t} | {s['decided']}/{len(rows)} | {s['sat']} | {s['unsat']} | {s['unknown']} | "
                     f"{s['timeout']} | {s['contradictions']} | {s['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="three instances")
    ap.add_argument("--cap", type=float, default=None, help="lower every time-out to this many seconds")
    ap.add_argument("--only", default=None, help="a regular expression on 'ONNX VNNLIB'")
    ap.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated, of {', '.join(TOOLS)}")
    ap.add_argument("--nnenum-python", default=None,
                    help="the interpreter of nnenum's own environment [default: $LEO_NNENUM_PYTHON, "
                         "else .venv-nnenum/bin/python beside the repository]")
    ap.add_argument("--jobs", type=int, default=1, help="instances run at once (1 on the shared 2-core machine)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--markdown", default=None)
    ap.add_argument("--from-json", nargs="+", default=None, metavar="JSON",
                    help="run nothing: merge earlier runs' JSON into one table (each row names its run)")
    ap.add_argument("--marabou-one", nargs=3, metavar=("ONNX", "VNNLIB", "TIMEOUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.marabou_one:
        print("answer", marabou_one(args.marabou_one[0], args.marabou_one[1], float(args.marabou_one[2])), flush=True)
        return 0
    tools = tuple(t.strip() for t in args.tools.split(",") if t.strip())
    if not set(tools) <= set(TOOLS):
        ap.error(f"--tools: unknown {sorted(set(tools) - set(TOOLS))}")
    command = "python -m benchmarks.vnncomp " + shlex.join(argv if argv is not None else sys.argv[1:])
    if args.from_json:
        return merged(args.from_json, tools, command, args.json, args.markdown)
    nnenum, nnenum_found = nnenum_python(args.nnenum_python) if "nnenum" in tools else (None, "not asked for")
    if "nnenum" in tools and nnenum is None:
        print(f"nnenum left out: {nnenum_found}", file=sys.stderr)
        tools = tuple(t for t in tools if t != "nnenum")
    insts = instances(data_dir() / "vnncomp2021", args.quick, args.only)
    load_before = os.getloadavg()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        rows = list(pool.map(lambda i: run_instance(i, args.cap, tools, nnenum), insts))
    load = {"before": [round(v, 2) for v in load_before], "after": [round(v, 2) for v in os.getloadavg()]}
    summary = totals(rows, tools)
    payload = {"command": command, "commit": git_commit(), "timeouts": TIMEOUTS, "cap": args.cap,
               "load_average": load, "nnenum": nnenum_found, "instances": rows, "totals": summary}
    if args.json:
        write_json(args.json, payload)
    text = markdown(rows, tools, summary, command, load, payload["commit"])
    if "nnenum" in tools:
        text += f"\nnnenum: {nnenum_found}\n"
    if args.markdown:
        write_text(args.markdown, text)
    print(text)
    return 1 if any(summary[t]["contradictions"] for t in tools if t.startswith("leo")) else 0


def merged(paths: list[str], tools: tuple[str, ...], command: str, json_path: str | None,
           md_path: str | None) -> int:
    """Earlier runs' JSON as one table: rows in results_2021.csv's order, each with its run; an
    instance in two runs keeps the later run's row."""
    import json

    runs = [json.loads(Path(p).read_text()) for p in paths]
    order = {(i["onnx"], i["vnnlib"]): k for k, i in enumerate(instances(data_dir() / "vnncomp2021", False, None))}
    by_key: dict[tuple[str, str], dict[str, Any]] = {}
    for k, run in enumerate(runs, start=1):
        for row in run["instances"]:
            by_key[(row["onnx"], row["vnnlib"])] = dict(row, run=k)
    rows = sorted(by_key.values(), key=lambda r: order.get((r["onnx"], r["vnnlib"]), len(order)))
    tools = tuple(t for t in tools if all(t in r for r in rows))  # a tool some run did not have is left out
    summary = totals(rows, tools)
    heads = [{k: run.get(k) for k in ("command", "commit", "load_average")} for run in runs]
    if json_path:
        write_json(json_path, {"command": command, "runs": heads, "timeouts": TIMEOUTS, "instances": rows,
                               "totals": summary})
    text = markdown(rows, tools, summary, command, runs=heads)
    if md_path:
        write_text(md_path, text)
    print(text)
    return 1 if any(summary[t]["contradictions"] for t in tools if t.startswith("leo")) else 0


if __name__ == "__main__":
    sys.exit(main())
