"""The third-party VNN-LIB 2.0 conformance suite (``vnnlib-satisfactory``) against ``leo-vnnlib``.

Runs the suite's own command, ``vnnlib-satisfactory run --solver leo-vnnlib --timeout S``, in a
scratch folder (it writes its artefacts and ``report.json`` under ``.vnnlib-satisfactory/`` of
the working folder), then its three ``compliance`` checks, and writes the raw report with the
versions and the command (``--json``) and a table per test category (``--markdown``). The suite
is deterministic: hand-written cases, no random draws, so a run needs no seed. A category the
suite skips is one whose op or theory ``leo-vnnlib supports`` does not claim; the reason given
is the op or theory it names.

    python -m benchmarks.conformance --json benchmarks/results/conformance.json \\
        --markdown benchmarks/results/conformance.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from benchmarks.common import git_commit, write_json, write_text

SOLVER = "leo-vnnlib"
#: Per-test seconds given to the suite (it passes them to ``verify --timeout`` and kills at them).
TIMEOUT = 60.0
COMPLIANCE = ("opset", "vnnlib", "serialise-assignments")
OUTCOMES = ("pass", "fail", "suspect", "error")
#: Why an op or theory the suite tests is outside what leo verifies exactly.
NOT_PIECEWISE_LINEAR = {"Sigmoid": "sigmoid is not piecewise linear", "Softmax": "softmax is not piecewise linear",
                        "Pow": "a power is not piecewise linear", "POLY": "polynomial constraints are not linear"}


def _tool(name: str) -> str:
    """The suite's executable beside this Python (the same environment), else on PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else name


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("leo", "vnnlib-satisfactory", "onnx", "onnxruntime", "onnxscript", "highspy", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def run_suite(solver: str, timeout: float, test: str | None, workdir: Path) -> dict[str, Any]:
    """The suite's ``run`` command in ``workdir``; its report.json plus what it printed."""
    cmd = [_tool("vnnlib-satisfactory"), "run", "--solver", solver, "--timeout", f"{timeout:g}", "--no-verbose"]
    if test:
        cmd += ["--test", test]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    report_path = workdir / ".vnnlib-satisfactory" / "report.json"
    if not report_path.is_file():
        raise RuntimeError(f"the suite wrote no report (exit {p.returncode}): {p.stderr.strip()[-500:]}")
    report = json.loads(report_path.read_text())
    report["seconds"] = round(time.perf_counter() - t0, 1)
    report["stdout_tail"] = p.stdout[-3000:]
    return report


def run_compliance(solver: str) -> dict[str, str]:
    """Each compliance check's verdict line (``PASS: ...`` or ``FAIL: ...``)."""
    out = {}
    for check in COMPLIANCE:
        p = subprocess.run([_tool("vnnlib-satisfactory"), "compliance", check, "--solver", solver, "--timeout", "60"],
                           capture_output=True, text=True)
        lines = [line for line in p.stdout.splitlines() if line.startswith(("PASS", "FAIL"))]
        out[check] = lines[-1] if lines else f"no verdict (exit {p.returncode}): {p.stderr.strip()[-200:]}"
    return out


THEORY_FLAGS = ("--hidden-node-theories", "--multiple-input-output-theories", "--multiple-network-theories",
                "--arithmetic-complexity-theories")


def theory_notes(solver: str) -> dict[str, str]:
    """Per theory leo-vnnlib does not claim, why (its ``supports`` says so on stderr)."""
    notes = {}
    for flag in THEORY_FLAGS:
        p = subprocess.run([solver, "supports", flag], capture_output=True, text=True)
        for line in p.stderr.splitlines():
            head, sep, why = line.partition(" is not claimed: ")
            if sep:
                notes[head.rsplit(" ", 1)[-1]] = why
    return notes


def skip_reason(missing: str, notes: dict[str, str]) -> str:
    """Why the suite skipped a test whose op or theory leo-vnnlib does not claim."""
    theory = missing.removesuffix(" theory")
    why = NOT_PIECEWISE_LINEAR.get(missing) or notes.get(theory)
    if why:
        return f"{missing}: {why}"
    if theory.isupper():
        return f"{missing}: leo-vnnlib supports does not claim this theory"
    return f"{missing}: not in leo's ONNX reader table"


def _category_rows(report: dict[str, Any]) -> list[str]:
    counts: dict[str, Counter] = {}
    for r in report["results"]:
        counts.setdefault(r["category"], Counter())[r["outcome"]] += 1
    for s in report["skipped"]:
        counts.setdefault(s["category"], Counter())["skip"] += 1
    rows = ["| category | tests | " + " | ".join(OUTCOMES) + " | skipped |", "|---|---|" + "---|" * 5]
    for cat in sorted(counts):
        c = counts[cat]
        rows.append(f"| {cat} | {sum(c.values())} | " + " | ".join(str(c[o]) for o in OUTCOMES) + f" | {c['skip']} |")
    return rows


def markdown(payload: dict[str, Any]) -> str:
    report, summary = payload["report"], payload["report"]["summary"]
    lines = ["# VNN-LIB 2.0 conformance: vnnlib-satisfactory against leo-vnnlib", "",
             f"Command: `{payload['command']}` (leo at commit {payload['commit'] or 'unknown'}, {payload['date']})", "",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in payload["versions"].items()), "",
             f"The suite's own count: {summary['passed']}/{summary['total']} passed, {summary['failed']} failed, "
             f"{summary['suspect']} suspect, {summary['errored']} errored, {summary['skipped']} skipped "
             f"({report['seconds']} s).", "", *_category_rows(report), "", "## Compliance", ""]
    lines += [f"- `compliance {k}`: {v}" for k, v in payload["compliance"].items()]
    bad = [r for r in report["results"] if r["outcome"] != "pass"]
    lines += ["", "## Not passed (the suite's expectation, then what leo-vnnlib said on stderr)", ""]
    lines += [f"- {r['test_id']} ({r['outcome']}, expected {r['expected']}, got {r['actual']}): "
              f"{(r['stderr'].strip().splitlines() or ['(nothing on stderr)'])[-1]}" for r in bad] or ["none"]
    reasons = sorted({(s["category"], skip_reason(s["missing_op"], payload["theory_notes"]))
                      for s in report["skipped"]})
    lines += ["", "## Skipped categories and why", ""] + ([f"- {c}: {why}" for c, why in reasons] or ["none"])
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--solver", default=SOLVER, help="the solver command the suite calls")
    ap.add_argument("--timeout", type=float, default=TIMEOUT, help="seconds per test")
    ap.add_argument("--test", default=None, help="one test category only (the suite's --test)")
    ap.add_argument("--json", dest="json_path", default=None, help="the raw report, versions and command")
    ap.add_argument("--markdown", default=None, help="the table")
    args = ap.parse_args(argv)
    command = "python -m benchmarks.conformance " + shlex.join(argv if argv is not None else sys.argv[1:])
    env_note = {k: os.environ.get(k, "") for k in ("OMP_NUM_THREADS",)}
    with tempfile.TemporaryDirectory(prefix="leo-conformance-") as tmp:
        report = run_suite(args.solver, args.timeout, args.test, Path(tmp))
    payload = {"command": command, "suite_command": f"vnnlib-satisfactory run --solver {args.solver} "
               f"--timeout {args.timeout:g}" + (f" --test {args.test}" if args.test else ""),
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": git_commit(),
               "versions": _versions(), "environment": env_note, "report": report,
               "compliance": run_compliance(args.solver), "theory_notes": theory_notes(args.solver)}
    text = markdown(payload)
    if args.json_path:
        write_json(args.json_path, payload)
    if args.markdown:
        write_text(args.markdown, text)
    print(text)
    s = report["summary"]
    return 1 if s["failed"] or s["suspect"] or s["errored"] or any(v.startswith("FAIL") for v in
                                                                    payload["compliance"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
