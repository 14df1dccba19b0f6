"""Bad-input fuzz of the command line: corrupted models and properties through
``leo verify``, ``compress``, ``check`` and ``property``.

    python -m benchmarks.fuzz [--variants N] [--seed S] [--subprocess K] [--json PATH] [--markdown PATH]
                              [--keep DIR]

In a scratch folder, a small MLP is written as a state_dict checkpoint (``.pt``), a
TorchScript archive and an ONNX file, with a VNN-LIB property on its box. From each,
``--variants`` seeded corruptions (truncations and bit flips; for the VNN-LIB text also
deleted or duplicated lines, bad numbers, unbalanced parentheses) plus fixed cases
(empty files, a directory, JSON given as a model, a text file named ``.pt``, a missing
file, pickles whose unpickling would write a marker file) go through every command that
reads them. Each case runs in-process through ``leo.cli.main.main`` (stdout and stderr
captured at the Python and the file-descriptor level), ``--subprocess`` of them through
``python -m leo.cli.main`` too.

A case **passes** when: the exit code is 2, or 0/1/3 and the corrupted file still loads
as a model (``leo.load_network``) or still parses as a property (``legitimate``); with
exit 2 stderr is exactly one line; no "Traceback" anywhere in the output; after a
non-zero exit no output file exists (``-o``, the certificate, ``--json``) and after any
exit no other new file is left in the folder (temp files); every input file has the same
SHA-256 as before; the marker file never appears. The counts go into the results with
every failing case and the command that reproduces it (run from the folder ``--keep``
leaves behind). A control case runs one marker pickle *with* ``--allow-pickle`` to show
the marker check can fire; it is reported apart, not counted as a failure.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import pickle
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CASE_SECONDS = 120  # a case still running after this is recorded as a hang
LEGIT_CODES = (0, 1, 3)
MARKER = "PICKLE_RAN"
VNNLIB = """; a property of the fuzz model: is output 0 ever >= output 1 on the box?
(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const X_2 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(assert (>= X_0 -1.0))
(assert (<= X_0 1.0))
(assert (>= X_1 -0.5))
(assert (<= X_1 0.5))
(assert (>= X_2 0.0))
(assert (<= X_2 2.0))
(assert (>= Y_0 Y_1))
"""


# -- the scratch folder ------------------------------------------------------------
def _model():  # noqa: ANN202 - torch.nn.Sequential
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2)).eval()


class _Evil:
    """Unpickling this writes the marker file (never allowed without --allow-pickle)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def write_originals(folder: Path) -> dict[str, Path]:
    """The intact inputs every corruption starts from."""
    import torch

    from leo.io import save_network
    from leo.io.torch_io import from_module

    module = _model()
    net = from_module(module)
    paths = {"state_dict": folder / "model.pt", "torchscript": folder / "model.ts.pt",
             "onnx": folder / "model.onnx", "vnnlib": folder / "prop.vnnlib"}
    torch.save(module.state_dict(), paths["state_dict"])
    save_network(net, paths["torchscript"])
    save_network(net, paths["onnx"])
    paths["vnnlib"].write_text(VNNLIB)
    return paths


def write_specials(folder: Path, marker: Path) -> dict[str, tuple[Path, str]]:
    """Fixed bad inputs: name -> (path, kind), kind 'model' or 'vnnlib'."""
    import torch

    specials: dict[str, tuple[Path, str]] = {}

    def add(name: str, path: Path, kind: str = "model") -> None:
        specials[name] = (path, kind)

    for suffix in (".pt", ".onnx", ".pt2", ".bin"):
        p = folder / f"empty{suffix}"
        p.write_bytes(b"")
        add(f"empty{suffix}", p)
    (folder / "empty.vnnlib").write_text("")
    add("empty.vnnlib", folder / "empty.vnnlib", "vnnlib")
    for suffix in (".pt", ".onnx"):
        d = folder / f"folder{suffix}"
        d.mkdir()
        add(f"directory{suffix}", d)
    d = folder / "folder.vnnlib"
    d.mkdir()
    add("directory.vnnlib", d, "vnnlib")
    sd = {k: v.tolist() for k, v in _model().state_dict().items()}
    for suffix in (".pt", ".json", ".onnx"):
        p = folder / f"json-model{suffix}"
        p.write_text(json.dumps(sd))
        add(f"json-as-model{suffix}", p)
    p = folder / "text.pt"
    p.write_text("this is not a checkpoint\n" * 5)
    add("text-named.pt", p)
    p = folder / "binary.vnnlib"
    p.write_bytes(bytes(range(256)) * 4)
    add("binary.vnnlib", p, "vnnlib")
    p = folder / "model-as.vnnlib"
    shutil.copy(folder / "model.pt", p)
    add("checkpoint-as.vnnlib", p, "vnnlib")
    add("missing.pt", folder / "does-not-exist.pt")
    add("missing.vnnlib", folder / "does-not-exist.vnnlib", "vnnlib")
    # pickles that would write the marker: a torch checkpoint, a state_dict holding one, a raw pickle
    torch.save(_Evil(marker), folder / "evil-object.pt")
    add("pickle-object.pt", folder / "evil-object.pt")
    torch.save({"0.weight": _Evil(marker), "0.bias": torch.zeros(2)}, folder / "evil-dict.pt")
    add("pickle-in-state-dict.pt", folder / "evil-dict.pt")
    (folder / "evil-raw.pt").write_bytes(pickle.dumps(_Evil(marker)))
    add("raw-pickle.pt", folder / "evil-raw.pt")
    with open(folder / "evil-legacy.pt", "wb") as fh:
        torch.save(_Evil(marker), fh, _use_new_zipfile_serialization=False)
    add("legacy-pickle.pt", folder / "evil-legacy.pt")
    return specials


# -- corruptions -------------------------------------------------------------------
def _truncate(data: bytes, rng: np.random.Generator) -> bytes:
    cut = int(rng.choice([0, 1, 2, 8, 64, len(data) // 2, len(data) - 1, int(rng.integers(0, len(data)))]))
    return data[:max(0, min(cut, len(data) - 1))]


def _flip(data: bytes, rng: np.random.Generator) -> bytes:
    out = bytearray(data)
    for _ in range(int(rng.choice([1, 1, 2, 4, 16, 64]))):
        i = int(rng.integers(0, len(out)))
        out[i] ^= 1 << int(rng.integers(0, 8))
    return bytes(out)


def _overwrite(data: bytes, rng: np.random.Generator) -> bytes:
    out = bytearray(data)
    start = int(rng.integers(0, len(out)))
    n = int(rng.integers(1, 64))
    out[start:start + n] = rng.integers(0, 256, size=len(out[start:start + n]), dtype=np.uint8).tobytes()
    return bytes(out)


def _text_edit(data: bytes, rng: np.random.Generator) -> bytes:
    lines = data.decode().splitlines()
    kind = int(rng.integers(0, 7))
    i = int(rng.integers(1, len(lines)))
    if kind == 0:
        del lines[i]
    elif kind == 1:
        lines.insert(i, lines[i])
    elif kind == 2:
        lines[i] = lines[i].replace("1.0", str(rng.choice(["nan", "inf", "-inf", "1e999", "0x10", "1..0", "", "+"])))
    elif kind == 3:
        lines[i] = lines[i].replace(")", "", 1)
    elif kind == 4:
        lines[i] = lines[i].replace("(", "((", 1)
    elif kind == 5:
        lines[i] = lines[i].replace("X_", str(rng.choice(["Y_", "Z_", "X_9", "X_-"])), 1)
    else:
        lines[i] = lines[i].replace("<=", str(rng.choice([">=", "<", "=", "and", "or"])), 1)
    return ("\n".join(lines) + "\n").encode()


BINARY_CORRUPTIONS: dict[str, Callable[[bytes, np.random.Generator], bytes]] = {
    "truncate": _truncate, "flip": _flip, "overwrite": _overwrite}
TEXT_CORRUPTIONS = BINARY_CORRUPTIONS | {"edit": _text_edit}


def corrupt_variants(original: Path, kind: str, n: int, seed: int, folder: Path) -> list[tuple[str, Path]]:
    """``n`` seeded corrupted copies of ``original`` (named after the corruption and its number)."""
    data = original.read_bytes()
    table = TEXT_CORRUPTIONS if kind == "vnnlib" else BINARY_CORRUPTIONS
    names = list(table)
    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, i, sum(kind.encode())])
        how = names[i % len(names)]
        bad = table[how](data, rng)
        if bad == data:
            bad = _flip(data, rng)
        path = folder / f"{kind}-{how}-{i}{''.join(original.suffixes)}"
        path.write_bytes(bad)
        out.append((f"{kind}/{how}/{i}", path))
    return out


# -- running one case --------------------------------------------------------------
@dataclass
class Case:
    name: str
    command: str
    argv: list[str]
    inputs: list[str]  # files read (hashed before and after)
    outputs: list[str]  # files the command would write
    legit_check: str  # "model:PATH" / "vnnlib:PATH": what a legitimate 0/1/3 needs to load


@dataclass
class Result:
    name: str
    command: str
    argv: list[str]
    runner: str
    code: int | None
    stderr_lines: int
    seconds: float
    problems: list[str] = field(default_factory=list)
    legitimate: bool = False
    stderr: str = ""


class _Hang(BaseException):
    """Raised by the alarm: a BaseException, so no ``except Exception`` in leo swallows it."""


@contextlib.contextmanager
def _captured() -> Iterator[dict[str, str]]:
    """Capture sys.stdout/sys.stderr and file descriptors 1 and 2 (HiGHS writes to fd 1)."""
    result: dict[str, str] = {}
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    with tempfile.TemporaryFile() as f1, tempfile.TemporaryFile() as f2:
        os.dup2(f1.fileno(), 1)
        os.dup2(f2.fileno(), 2)
        out, err = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                yield result
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            f1.seek(0)
            f2.seek(0)
            result["stdout"] = out.getvalue() + f1.read().decode(errors="replace")
            result["stderr"] = err.getvalue() + f2.read().decode(errors="replace")


def _alarm(signum: int, frame: object) -> None:  # noqa: ARG001
    raise _Hang


def run_in_process(argv: Sequence[str]) -> tuple[int | None, str, str, list[str]]:
    """``leo.cli.main.main(argv)``: exit code, stdout, stderr, and anything that escaped main."""
    import logging

    from leo.cli.main import main

    def reset_logging() -> None:  # main's logging.basicConfig binds sys.stderr as it is at the call
        for handler in list(logging.root.handlers):
            logging.root.removeHandler(handler)

    escaped: list[str] = []
    code: int | None = None
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_SECONDS)
    try:
        with _captured() as cap:
            reset_logging()
            try:
                code = main(list(argv))
            except _Hang:
                escaped.append(f"hang: still running after {CASE_SECONDS} s")
            except SystemExit as exc:
                escaped.append(f"SystemExit({exc.code!r}) escaped main()")
                code = exc.code if isinstance(exc.code, int) else None
            except BaseException as exc:  # noqa: BLE001 - recorded: nothing may escape main()
                import traceback

                escaped.append(f"{type(exc).__name__} escaped main(): {exc}")
                print(traceback.format_exc(), file=sys.stderr)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        reset_logging()
    return code, cap["stdout"], cap["stderr"], escaped


def run_subprocess(argv: Sequence[str], cwd: Path) -> tuple[int | None, str, str, list[str]]:
    """``python -m leo.cli.main argv`` in ``cwd``."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS=os.environ.get("PYTHONWARNINGS", ""))
    env.pop("LEO_DEBUG", None)
    try:
        p = subprocess.run([sys.executable, "-m", "leo.cli.main", *argv], cwd=cwd, capture_output=True, text=True,
                           timeout=CASE_SECONDS + 60, env=env)
    except subprocess.TimeoutExpired:
        return None, "", "", [f"hang: still running after {CASE_SECONDS + 60} s"]
    return p.returncode, p.stdout, p.stderr, []


def _sha(path: Path) -> str | None:
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    if path.is_dir():
        return "dir:" + ",".join(sorted(p.name for p in path.iterdir()))
    return None


def _legitimate(spec: str, folder: Path) -> bool:
    """Does the (possibly corrupted) input still load? Then a 0/1/3 exit is fair."""
    import logging

    kind, _, name = spec.partition(":")
    path = folder / name
    if kind == "none":
        return False
    logging.disable(logging.WARNING)  # the loaders' warnings are not the case's output
    try:
        from leo.io import load_network

        if kind == "model":
            load_network(path)
            return True
        from leo.io.vnnlib import read_vnnlib

        read_vnnlib(Path(path), 3)
        return True
    except Exception:  # noqa: BLE001 - any failure to load: not a legitimate model
        return False
    finally:
        logging.disable(logging.NOTSET)


def run_case(case: Case, folder: Path, marker: Path, runner: str) -> Result:
    """Run one case and list every way it broke the bad-input rules."""
    before_files = set(folder.iterdir())
    hashes = {p: _sha(folder / p) for p in case.inputs}
    start = time.perf_counter()
    cwd = os.getcwd()
    if runner == "in-process":
        os.chdir(folder)
        try:
            code, out, err, escaped = run_in_process(case.argv)
        finally:
            os.chdir(cwd)
    else:
        code, out, err, escaped = run_subprocess(case.argv, folder)
    seconds = time.perf_counter() - start
    lines = [ln for ln in err.splitlines() if ln.strip()]
    r = Result(case.name, case.command, case.argv, runner, code, len(lines), seconds, list(escaped),
               stderr=err[-2000:])
    if code not in (2, *LEGIT_CODES):
        r.problems.append(f"exit code {code}")
    elif code in LEGIT_CODES:
        r.legitimate = _legitimate(case.legit_check, folder)
        if not r.legitimate:
            r.problems.append(f"exit {code} although the input does not load")
    if code == 2 and len(lines) != 1:
        r.problems.append(f"{len(lines)} lines on stderr")
    if "Traceback" in out or "Traceback" in err:
        r.problems.append("traceback")
    written = [o for o in case.outputs if (folder / o).exists()]
    if code not in (0, 1) and written:  # check writes its counterexample with exit 1
        r.problems.append(f"output left: {', '.join(written)}")
    left = sorted(p.name for p in set(folder.iterdir()) - before_files if p.name not in case.outputs)
    if left:
        r.problems.append(f"new files left: {', '.join(left)}")
    for p in case.inputs:
        if _sha(folder / p) != hashes[p]:
            r.problems.append(f"input changed: {p}")
    if marker.exists():
        r.problems.append("pickle executed (marker written)")
    _clean(folder, before_files, case.outputs, marker)
    return r


def _clean(folder: Path, before: set[Path], outputs: Sequence[str], marker: Path) -> None:
    """Remove what a case wrote, so the next one starts from the same folder."""
    for p in set(folder.iterdir()) - before:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    for o in outputs:
        if (folder / o).is_file() and (folder / o) not in before:
            (folder / o).unlink()
    marker.unlink(missing_ok=True)


# -- the cases ---------------------------------------------------------------------
ANALYSIS = ["--time-limit", "2", "--samples", "64", "-q"]
BOX = ["--lower", "-1", "--upper", "1"]


def model_cases(name: str, path: str, good: str, vnnlib: str) -> list[Case]:
    """Every command that reads a model, given this (corrupted) one."""
    legit = f"model:{path}"
    return [
        Case(name, "verify", ["verify", path, *BOX, *ANALYSIS, "--json", "out.json"], [path], ["out.json"], legit),
        Case(name, "compress", ["compress", path, *BOX, *ANALYSIS, "-o", "out.pt"], [path],
             ["out.pt", "out.pt.cert.json", "out.cert.json"], legit),
        Case(name, "compress-onnx", ["compress", path, "--vnnlib", vnnlib, *ANALYSIS, "-o", "out.onnx"],
             [path, vnnlib], ["out.onnx", "out.onnx.cert.json", "out.cert.json"], legit),
        Case(name, "check-original", ["check", path, good, *BOX, "--points", "200"], [path, good], [], legit),
        Case(name, "check-compressed", ["check", good, path, *BOX, "--points", "200", "--counterexample", "cx.npy"],
             [path, good], ["cx.npy"], legit),
        Case(name, "property", ["property", path, vnnlib, "--time-limit", "5"], [path, vnnlib], [], legit),
    ]


def vnnlib_cases(name: str, path: str, good: str) -> list[Case]:
    """Every command that reads a VNN-LIB file, given this (corrupted) one."""
    legit = f"vnnlib:{path}"
    return [
        Case(name, "property", ["property", good, path, "--time-limit", "5"], [path, good], [], legit),
        Case(name, "verify-vnnlib", ["verify", good, "--vnnlib", path, *ANALYSIS], [path, good], [], legit),
        Case(name, "compress-vnnlib", ["compress", good, "--vnnlib", path, *ANALYSIS, "-o", "out.pt"], [path, good],
             ["out.pt", "out.pt.cert.json", "out.cert.json"], legit),
        Case(name, "check-vnnlib", ["check", good, good, "--vnnlib", path, "--points", "200"], [path, good], [], legit),
    ]


def build_cases(folder: Path, variants: int, seed: int, marker: Path) -> tuple[list[Case], list[Case]]:
    """All cases and the control (a marker pickle *with* --allow-pickle)."""
    originals = write_originals(folder)
    good, vnn = originals["state_dict"].name, originals["vnnlib"].name
    cases: list[Case] = []
    for kind in ("state_dict", "torchscript", "onnx", "vnnlib"):
        for name, path in corrupt_variants(originals[kind], kind, variants, seed, folder):
            if kind == "vnnlib":
                cases += vnnlib_cases(name, path.name, good)
            else:
                cases += model_cases(name, path.name, good, vnn)
    for name, (path, kind) in write_specials(folder, marker).items():
        if kind == "vnnlib":
            cases += vnnlib_cases(f"special/{name}", path.name, good)
        else:
            cases += model_cases(f"special/{name}", path.name, good, vnn)
    for kind in ("state_dict", "torchscript", "onnx"):  # the intact inputs: the fuzz's own baseline
        cases += model_cases(f"intact/{kind}", originals[kind].name, good, vnn)
    control = [Case("control/pickle-object.pt", "verify-allow-pickle",
                    ["verify", "evil-object.pt", *BOX, *ANALYSIS, "--allow-pickle"], ["evil-object.pt"], [], "none")]
    return cases, control


def reproduce(r: Result) -> str:
    return "leo " + " ".join(shlex.quote(a) for a in r.argv)


def fuzz(variants: int, seed: int, subprocess_cases: int, keep: Path | None = None,
         log: Callable[[str], None] | None = None, commands: Sequence[str] | None = None) -> dict[str, Any]:
    """Build the scratch folder, run every case (those of ``commands`` only, when given), and count."""
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="leo-fuzz-")) if keep is None else keep
    if keep is not None:  # a fresh folder, so reruns see the same cases
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    marker = folder.parent / f"{folder.name}-{MARKER}"
    marker.unlink(missing_ok=True)
    try:
        cases, control = build_cases(folder, variants, seed, marker)
        if commands is not None:
            cases = [c for c in cases if c.command in commands]
        results = []
        for i, case in enumerate(cases):
            results.append(run_case(case, folder, marker, "in-process"))
            if log is not None and results[-1].problems:
                log(f"[{i}/{len(cases)}] {case.name} {case.command}: {'; '.join(results[-1].problems)}")
        rng = np.random.default_rng(seed)
        picks = sorted(rng.choice(len(cases), size=min(subprocess_cases, len(cases)), replace=False).tolist())
        picks += [i for i, c in enumerate(cases) if c.name.startswith("special/pickle") and i not in picks][:2]
        results += [run_case(cases[i], folder, marker, "subprocess") for i in picks]
        control_results = [run_case(c, folder, marker, "in-process") for c in control]
    finally:
        if keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    return summarise(results, control_results, variants, seed, time.perf_counter() - t0,
                     str(folder) if keep is not None else None)


def summarise(results: Sequence[Result], control: Sequence[Result], variants: int, seed: int, seconds: float,
              folder: str | None) -> dict[str, Any]:
    def count(pred: Callable[[Result], bool]) -> int:
        return sum(1 for r in results if pred(r))

    def has(word: str) -> Callable[[Result], bool]:
        return lambda r: any(word in p for p in r.problems)

    failures = [r for r in results if r.problems]
    return {
        "seed": seed,
        "variants": variants,
        "cases": len(results),
        "cases_in_process": count(lambda r: r.runner == "in-process"),
        "cases_subprocess": count(lambda r: r.runner == "subprocess"),
        "exit_codes": {str(k): v for k, v in sorted(Counter(str(r.code) for r in results).items())},
        "legitimate_success": count(lambda r: r.code in LEGIT_CODES and r.legitimate),
        "legitimate_by_code": {str(k): v for k, v in sorted(Counter(r.code for r in results if r.legitimate).items())},
        "tracebacks": count(has("traceback")),
        "escaped_main": count(has("escaped")),
        "hangs": count(has("hang")),
        "internal_errors": count(lambda r: r.code == 4),
        "multi_line_stderr": count(has("lines on stderr")),
        "outputs_left": count(has("output left")) + count(has("new files left")),
        "changed_inputs": count(has("input changed")),
        "pickle_executions": count(has("pickle executed")),
        "success_on_unloadable": count(has("does not load")),
        "failing_cases": len(failures),
        "control": [{"name": r.name, "code": r.code, "marker_written": any("pickle executed" in p for p in r.problems)}
                    for r in control],
        "seconds": seconds,
        "folder": folder,
        "failures": [{"name": r.name, "command": r.command, "runner": r.runner, "code": r.code,
                      "problems": r.problems, "reproduce": reproduce(r), "stderr": r.stderr[-600:]}
                     for r in failures],
        "defects": defects(failures),
    }


def defects(failures: Sequence[Result]) -> list[dict[str, Any]]:
    """Failures grouped by (command, what went wrong, first stderr line with numbers blanked)."""
    import re

    groups: dict[tuple[str, str, str], list[Result]] = {}
    for r in failures:
        first = next((ln for ln in r.stderr.splitlines() if ln.strip()), "")
        first = re.sub(r"[-\w./]*(?:model|vnnlib|onnx|state_dict|torchscript)[-\w./]*", "FILE", first)
        first = re.sub(r"\d+", "N", first)[:160]
        key = (r.command, "; ".join(sorted({re.sub(r"\d+", "N", p) for p in r.problems})), first)
        groups.setdefault(key, []).append(r)
    def first_line(r: Result) -> str:
        return next((ln for ln in r.stderr.splitlines() if ln.strip()), "")[:200]

    return [{"command": k[0], "problems": "; ".join(v[0].problems), "stderr": first_line(v[0]), "cases": len(v),
             "example": reproduce(v[0]), "example_case": v[0].name, "runner": v[0].runner}
            for k, v in sorted(groups.items(), key=lambda kv: -len(kv[1]))]


def to_markdown(f: dict[str, Any], heading: str = "#") -> str:
    lines = [f"{heading} Fuzz: bad input through the command line", ""]
    if "command" in f:
        lines += [f"Command: `{f['command']}`", ""]
    rows = [("seed / variants per format", f"{f['seed']} / {f['variants']}"),
            ("cases (in-process / subprocess)", f"{f['cases']} ({f['cases_in_process']} / {f['cases_subprocess']})"),
            ("exit codes", ", ".join(f"{k}: {v}" for k, v in f["exit_codes"].items())),
            ("exit 0/1/3 on an input that still loads", f["legitimate_success"]),
            ("tracebacks", f["tracebacks"]), ("exceptions escaping main()", f["escaped_main"]),
            ("hangs", f["hangs"]), ("internal errors (exit 4)", f["internal_errors"]),
            ("exit 2 with other than one stderr line", f["multi_line_stderr"]),
            ("output or temp files left", f["outputs_left"]), ("changed inputs", f["changed_inputs"]),
            ("pickle executions", f["pickle_executions"]),
            ("exit 0/1/3 on an input that does not load", f["success_on_unloadable"]),
            ("failing cases", f["failing_cases"]),
            ("control: marker pickle with --allow-pickle", ", ".join(
                f"exit {c['code']}, marker {'written' if c['marker_written'] else 'not written'}"
                for c in f["control"])),
            ("seconds", f"{f['seconds']:.0f}")]
    lines += ["| quantity | value |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows]]
    if f["defects"]:
        lines += ["", f"{heading}# Distinct failures", "",
                  "| command | cases | what | first stderr line | example (run in the fuzz folder) |",
                  "|---|---|---|---|---|"]
        lines += [f"| {d['command']} | {d['cases']} | {d['problems']} | `{d['stderr']}` | `{d['example']}` |"
                  for d in f["defects"]]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from benchmarks.common import RESULTS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", type=int, default=40, help="corrupted copies per format")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--subprocess", type=int, default=12, help="cases also run through python -m leo.cli.main")
    p.add_argument("--commands", default=None, help="comma-separated case commands to run (default: all), "
                   "e.g. verify,property,verify-vnnlib")
    p.add_argument("--keep", type=Path, default=None, help="run in this folder and keep it (to reproduce failures)")
    p.add_argument("--json", type=Path, default=RESULTS / "soak.json", help="results JSON: its 'fuzz' section")
    p.add_argument("--markdown", type=Path, default=RESULTS / "soak.md")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from benchmarks.common import write_json, write_text
    from benchmarks.soak import to_markdown as soak_markdown
    from benchmarks.soak import versions

    args = parse_args(argv)
    command = "python -m benchmarks.fuzz " + " ".join(sys.argv[1:] if argv is None else argv)
    result = fuzz(args.variants, args.seed, args.subprocess, args.keep, log=lambda s: print(s, flush=True),
                  commands=args.commands.split(",") if args.commands else None)
    result = {"command": command.strip(), "versions": versions(), **result}
    data = json.loads(args.json.read_text()) if args.json.is_file() else {}
    data["fuzz"] = result
    write_json(args.json, data)
    write_text(args.markdown, soak_markdown(data) if "soak" in data else to_markdown(result))
    print(f"wrote {args.json}, {args.markdown}: {result['cases']} cases, {result['failing_cases']} failing")
    return data


if __name__ == "__main__":
    main()
