"""Re-check a compression certificate from scratch (``leo audit``).

Deliberately independent of the prover: the audit modules (``leo.certify.audit*``) import
none of ``leo.bounds``, ``leo.search``, ``leo.bab``, ``leo.stability``, ``leo.reduction`` or
``solvers``; bounds, relaxations, MILPs and the reduction's interpreter are written again.
The audit

1. compares the sha256 of the original and compressed files with the certificate's;
2. re-proves every stable claim, layer by layer (``audit_claims``, on ``audit_bounds``);
3. replays the certificate's step log, each step checked against the claims, and requires
   the result to equal the compressed file's network (``audit_replay``).

Certificates of schema 3 (a step log) and schema 2 (per-layer lists, written by earlier
versions) are both audited: a certificate stays evidence after leo changes, and the
schema 2 lists determine the steps that version applied (``audit_replay.steps_from_lists``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from leo.certify.audit_bounds import Prover
from leo.certify.audit_claims import reprove
from leo.certify.audit_outcome import Refuted, Undecided
from leo.certify.audit_replay import check_summary, compare, log_of, replay, replay_log
from leo.core.deadline import Deadline
from leo.core.network import Network
from leo.core.verdicts import Verdict
from leo.errors import LeoInputError
from leo.exitcodes import ExitCode
from leo.io.files import sha256

#: The certificate schemas this audit reads (see the module's docstring).
SCHEMAS = (2, 3)
#: Where ``builtin:NAME`` models live.
MODELS = Path(__file__).resolve().parents[1] / "models"


@dataclass(frozen=True)
class AuditResult:
    """The audit's answer: its exit code, one line saying why, and the claims re-proved by method."""

    code: ExitCode
    message: str
    proofs: dict[str, int] = field(default_factory=dict)  # claims re-proved, by method
    seconds: float = 0.0


# -- reading the certificate ------------------------------------------------------

def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise LeoInputError(f"no such certificate: {path}")
    try:
        cert = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise LeoInputError(f"{path} is not a JSON certificate ({exc})") from None
    if not isinstance(cert, dict) or cert.get("schema") not in SCHEMAS:
        found = cert.get("schema") if isinstance(cert, dict) else None
        raise LeoInputError(f"{path}: certificate schema {found!r} is not one of {', '.join(map(str, SCHEMAS))}; "
                            "re-run leo compress")
    for key in ("original", "compressed", "domain", "layers", "reduction", "tolerances"):
        if key not in cert:
            raise LeoInputError(f"{path}: the certificate has no {key!r} entry")
    return cert


def _model_file(given: str | None, recorded: str | None, cert_path: Path, what: str) -> Path:
    """The file given on the command line, else the certificate's path (as written, or
    beside the certificate)."""
    if given is not None:
        text = str(given)
        if text.startswith("builtin:"):
            return MODELS / f"{text[len('builtin:'):]}.pt"
        return Path(text)
    if not recorded:
        raise LeoInputError(f"the certificate names no {what} file; give --{what}")
    p = Path(recorded)
    for candidate in (p, cert_path.parent / p, cert_path.parent / p.name):
        if candidate.is_file():
            return candidate
    raise LeoInputError(f"the {what} file {recorded} is missing; give --{what}")


def _check_hash(path: Path, recorded: str | None, what: str) -> str:
    """Refuted on a mismatch; the outcome in words otherwise."""
    if recorded is None:  # e.g. a certificate of an in-memory model: the replay still checks the file
        return f"no sha256 recorded for the {what} file"
    actual = sha256(path)
    if actual != recorded:
        raise Refuted(f"{what} file {path}: sha256 {actual[:16]}... is not the certificate's {recorded[:16]}...")
    return ""


def _box(domain: dict[str, Any], dim: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        lo = np.broadcast_to(np.asarray(domain["lower"], dtype=np.float64), (dim,)).copy()
        hi = np.broadcast_to(np.asarray(domain["upper"], dtype=np.float64), (dim,)).copy()
    except (KeyError, ValueError, TypeError):
        raise Refuted(f"domain: not a box over the original network's {dim} inputs") from None
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()) or (lo > hi).any():
        raise LeoInputError("the certificate's domain is not a finite box with lower <= upper")
    return lo, hi


def _claims(cert: dict[str, Any], net: Network) -> dict[int, list[Verdict]]:
    """Verdict per unit of every ReLU layer (1-based layer index)."""
    recorded = {int(entry["layer"]): entry["units"] for entry in cert["layers"]}
    out: dict[int, list[Verdict]] = {}
    for k, layer in enumerate(net.layers, start=1):
        if not layer.relu:
            continue
        units = recorded.get(k)
        if units is None or len(units) != layer.width:
            raise Refuted(f"layer {k}: the certificate has no verdict for each of its {layer.width} units")
        verdicts = [u.get("verdict") for u in units]
        bad = [v for v in verdicts if v not in set(Verdict)]
        if bad:
            raise LeoInputError(f"layer {k}: unknown verdict {bad[0]!r} in the certificate")
        out[k] = [Verdict(v) for v in verdicts]
    extra = set(recorded) - set(out)
    if extra:
        raise Refuted(f"layer {min(extra)}: the certificate has verdicts for a layer with no ReLU")
    return out


# -- the audit ---------------------------------------------------------------------

def audit(certificate: str | Path, original: str | None = None, compressed: str | None = None,
          time_limit: float = 60.0, progress: Callable[[str], None] | None = None,
          time_budget: float | None = None) -> AuditResult:
    """Check a certificate: OK (valid), REFUTED (first failing item), UNDECIDED; bad input raises.
    ``progress`` hears a line per step; ``time_budget`` (seconds) bounds the re-proving: a claim
    not reached by then makes the audit UNDECIDED, never valid."""
    from leo.io.load import load_network

    t0 = time.perf_counter()
    deadline = Deadline.after(time_budget)
    say = progress or (lambda _: None)
    cert_path = Path(certificate)
    cert = _read(cert_path)
    orig_path = _model_file(original, cert["original"].get("path"), cert_path, "original")
    comp_path = _model_file(compressed, cert["compressed"].get("path"), cert_path, "compressed")
    prover: Prover | None = None
    try:
        hashes = [_check_hash(orig_path, cert["original"].get("sha256"), "original"),
                  _check_hash(comp_path, cert["compressed"].get("sha256"), "compressed")]
        file_net = load_network(comp_path)
        # leo's output records the input shape; an original TorchScript archive does not
        hint = (file_net.input_shape,) if file_net.input_shape else ()
        net = load_network(orig_path, shapes=hint)
        lo, hi = _box(cert["domain"], net.input_dim)
        claims = _claims(cert, net)
        steps = log_of(net, claims, cert["reduction"])  # read before the work: a bad log is bad input
        try:
            recorded_max = float(cert["tolerances"].get("fold_residual", 0.0))
        except (TypeError, ValueError):
            raise LeoInputError("the certificate's fold_residual is not a number") from None
        prover = Prover(net, lo, hi, time_limit, deadline)
        say(f"re-proving the stable claims of {len(claims)} ReLU layers")
        reprove(prover, claims, say)
        say(f"replaying the reduction's {len(steps)} steps")
        replayed = replay_log(net, claims, steps, recorded_max)
        if "steps" in cert["reduction"]:
            check_summary(steps, cert["reduction"])
        say("comparing the replayed network with the compressed file")
        dtype = compare(replayed, file_net)
    except Refuted as exc:
        return AuditResult(ExitCode.REFUTED, str(exc), prover.proofs if prover else {}, time.perf_counter() - t0)
    except Undecided as exc:
        return AuditResult(ExitCode.UNDECIDED, str(exc), prover.proofs, time.perf_counter() - t0)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, LeoInputError):
            raise
        raise LeoInputError(f"the certificate is malformed ({type(exc).__name__}: {exc})") from None
    n = sum(prover.proofs.values())
    how = ", ".join(f"{m} {c}" for m, c in sorted(prover.proofs.items())) or "none"
    hashes_line = "; ".join(h for h in hashes if h) or "hashes match"
    return AuditResult(ExitCode.OK, f"{hashes_line}; {n} stable claims re-proved ({how}); the replayed "
                       f"reduction equals the compressed file ({dtype} tolerance)", prover.proofs,
                       time.perf_counter() - t0)


__all__ = ["SCHEMAS", "AuditResult", "Prover", "Refuted", "Undecided", "audit", "compare", "replay"]
