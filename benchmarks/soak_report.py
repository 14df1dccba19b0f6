"""The soak's results: versions, and the Markdown page of a run (dense MLP soak, the
graph soak of conv / residual / max-pool networks and queries, the fuzz section)."""

from __future__ import annotations

import platform
from typing import Any

import numpy as np


def versions() -> dict[str, str]:
    import highspy  # noqa: F401
    import scipy
    import torch
    from importlib.metadata import version

    import leo

    return {"leo": leo.__version__, "highspy": version("highspy"), "torch": torch.__version__,
            "scipy": scipy.__version__, "numpy": np.__version__, "python": platform.python_version()}



def to_markdown(data: dict[str, Any]) -> str:
    lines = ["# Soak: leo's claims, compressions and answers against independent truth", "",
             f"Command: `{data['command']}`", ""]
    lines += [f"- part: `{c}`" for c in data.get("parts", [])] + ([""] if "parts" in data else [])
    lines += ["Versions: " + ", ".join(f"{k} {v}" for k, v in data["versions"].items())]
    if "soak" in data:
        lines += ["", "## Dense MLPs: stable claims and compressions", ""] + _dense(data["soak"])
    if "graphs" in data:
        lines += ["", "## Graph soak: conv, residual, max-pool and dense networks, with queries", ""]
        lines += graphs_markdown(data["graphs"], data.get("soak"))
    if "fuzz" in data:
        from benchmarks.fuzz import to_markdown as fuzz_markdown

        lines += ["", fuzz_markdown(data["fuzz"], heading="##")]
    return "\n".join(lines)


def _dense(s: dict[str, Any]) -> list[str]:
    lines = ["| quantity | value |", "|---|---|"]
    rows = [("seed", s["seed"]), ("networks", s["networks"]),
            ("networks with exact LP ranges", s["exact_networks"]), ("hidden ReLUs", s["hidden_relus"]),
            ("activation regions enumerated", s["regions"]), ("LPs", s["lps"]),
            ("sampled points per network", s["samples"]), ("time limit per solve (s)", s["time_limit"]),
            ("stable claims checked", s["claims_checked"]),
            ("… of them against exact ranges", s["claims_checked_exact"]),
            ("claimed active / inactive", f"{s['claimed_active']} / {s['claimed_inactive']}"),
            ("false claims", s["false_claims"]),
            ("claims violated by more than rounding but within tol", s["violations_within_tol"]),
            ("LP bound beyond tol, unconfirmed by a point", s["lp_unconfirmed"]),
            ("compression mismatches", s["compression_mismatches"]), ("leo errors", s["errors"]),
            ("truly stable units left unstable (exact networks)", s["incomplete"]),
            ("units reported unproven", s["unproven"]), ("units removed by compression", s["removed_units"]),
            ("seconds (total / leo / truth)",
             f"{s['seconds']:.0f} / {s['seconds_leo']:.0f} / {s['seconds_truth']:.0f}")]
    lines += [f"| {k} | {v} |" for k, v in rows]
    t = s["tolerances"]
    lines += ["", f"Tolerances: claim tol = {t['claim_rtol']:g} x (1 + term size), rounding = "
              f"{t['rounding_rtol']:g} x (1 + term size), output tol = {t['output_rtol']:g} "
              f"x (1 + output term size); exact ranges for <= {t['exact_max_relus']} hidden ReLUs and <= "
              f"{t['lp_cap']} LPs.", "",
              "Networks by analysis settings: " + ", ".join(f"{k} {v}" for k, v in s["networks_by_options"].items()),
              "", "Networks by depth: " + ", ".join(f"{k}: {v}" for k, v in s["networks_by_depth"].items()),
              "", "Networks by trait: " + ", ".join(f"{k} {v}" for k, v in s["networks_by_trait"].items())]
    if s["failures"]:
        lines += ["", "## Failures", ""]
        lines += [f"- network {f['index']} (hidden {f['hidden']}, {f['inputs']} inputs, {f['options']}): "
                  f"{len(f['false_claims'])} false claims, {len(f['mismatches'])} mismatches" for f in s["failures"]]
    return lines


def _per_generator(name: str, c: dict[str, Any]) -> str:
    p, e = c["property"], c["equivalence"]
    asked = ("right", "wrong", "undecided", "truth disagrees", "witness outside the box")
    return (f"| {name} | {c['networks']} | {c['exact_networks']} | {c['claims']} | {c['false_claims']} | "
            f"{sum(p[k] for k in asked)} ({p['true']} sat / {p['false']} unsat) | "
            f"{sum(e[k] for k in asked)} ({e['true']} eq / {e['false']} not) | "
            f"{c['wrong_answers']} | {c['mismatches']} | {c['undecided']} | "
            f"{p['no truth'] + e['no truth']} | {c['truth_disagreements']} | {c['seconds']:.0f} |")


def graphs_markdown(g: dict[str, Any], dense: dict[str, Any] | None = None) -> list[str]:
    """The graph soak's table, one row per generator (and the dense soak's row when given)."""
    lines = ["| generator | networks | exact ranges | stable claims | false claims | property queries "
             "| equivalence queries | wrong answers | mismatches | undecided | no truth (cap) "
             "| truth disagreements | seconds |", "|---" * 13 + "|"]
    if dense is not None:
        lines.append(f"| dense soak (no queries) | {dense['networks']} | {dense['exact_networks']} | "
                     f"{dense['claims_checked']} | {dense['false_claims']} | - | - | - | "
                     f"{dense['compression_mismatches']} | - | - | - | {dense['seconds']:.0f} |")
    lines += [_per_generator(name, c) for name, c in g["by_generator"].items()]
    lines.append(_per_generator("**all graph networks**", g["total"]))
    t = g["total"]
    lines += ["", f"Seed {g['seed']}; {g['samples']} sampled points per network; time limit per solve "
              f"{g['time_limit']:g} s, per query {g['query_time_limit']:g} s; enumeration cap {g['enum_lp_cap']} "
              f"LPs; claim tol = {g['claim_rtol']:g} x (1 + term size), output tol = {g['output_rtol']:g} "
              "x (1 + output term size).", "",
              f"Claims: violated by more than rounding but within tol {t['violations_within_tol']}, LP bound beyond "
              f"tol unconfirmed by a point {t['lp_unconfirmed']}, truly stable units left unstable "
              f"{t['incomplete']}; leo errors {t['errors']}.", "",
              "Property answers (right / wrong / undecided): "
              f"{t['property']['right']} / {t['property']['wrong']} / {t['property']['undecided']}; "
              "equivalence answers: "
              f"{t['equivalence']['right']} / {t['equivalence']['wrong']} / {t['equivalence']['undecided']}; "
              f"right answers whose refuting point lies outside the box (clipped into it, it confirms): "
              f"{t['outside_box']}" + ("".join(f"; network {o['index']}: {o['outside_box']:.3g} outside"
                                               for o in g["outside_box"][:10])) + ".", "",
              "Networks by analysis settings: " + ", ".join(f"{k} {v}" for k, v in g["by_options"].items())]
    if g["failures"]:
        lines += ["", "### Failures", ""]
        lines += [f"- {f['kind']} network {f['index']} ({f['options']}): {len(f['false_claims'])} false claims, "
                  f"{len(f['mismatches'])} mismatches, {len(f['queries'])} wrong or disputed answers"
                  for f in g["failures"]]
    return lines


def _add(a: Any, b: Any) -> Any:
    """Counts of two runs added: numbers summed, dicts by key, lists joined."""
    if isinstance(a, dict):
        return {k: _add(a[k], b[k]) if k in b else a[k] for k in a} | {k: v for k, v in b.items() if k not in a}
    if isinstance(a, list):
        return a + b
    return a + b


def merge(parts: list[dict[str, Any]], command: str) -> dict[str, Any]:
    """One results page from runs of disjoint slices (the same seed and settings): the dense
    soak of the one part that has it, the graph soak's counts added, the fuzz section kept;
    ``seconds`` become the sum over the processes."""
    graphs = [p["graphs"] for p in parts if "graphs" in p]
    same = ("seed", "samples", "time_limit", "query_time_limit", "enum_lp_cap", "claim_rtol", "output_rtol")
    if any(tuple(g[k] for k in same) != tuple(graphs[0][k] for k in same) for g in graphs):
        raise ValueError("the graph runs to merge differ in seed or settings")
    data: dict[str, Any] = {"command": command, "parts": [p["command"] for p in parts],
                            "versions": parts[0]["versions"]}
    for key in ("soak", "fuzz"):
        found = [p[key] for p in parts if key in p]
        if len(found) > 1:
            raise ValueError(f"more than one run has a {key!r} section")
        if found:
            data[key] = found[0]
    if graphs:
        merged = dict(graphs[0])
        for g in graphs[1:]:
            for key in ("total", "by_generator", "by_options", "seconds", "failures", "outside_box"):
                merged[key] = _add(merged[key], g[key])
        data["graphs"] = merged
    return data
