"""The graph soak: convolutional, residual, max-pool and awkward dense networks, each
read by leo's production reader from a torch module, then

* compressed by ``leo.compress``: every stable claim checked on sampled points and LP
  optima through a plain loop over leo's layers, and against exact ranges (the
  enumeration of ``benchmarks.soak_enum`` over leo's layers, as data) when it fits its
  cap; the compressed network compared with the torch module's own forward pass;
* asked a random property query and a random epsilon-equivalence query whose truth the
  enumeration over the torch-measured graph knows (``benchmarks.soak_queries``).

Network ``i`` of seed ``S`` uses generator ``GENERATORS[i % 4]`` and its own generators
seeded by ``(S, i)``.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.soak import CLAIM_RTOL, OPTION_SETS, OUTPUT_RTOL, _check_claims, _options
from benchmarks.soak_draw import Kind, draw
from benchmarks.soak_enum import ENUM_LP_CAP, enumerate_regions
from benchmarks.soak_graph import Drawn, Graph, Op, from_leo, graph_of, module, torch_forward
from benchmarks.soak_queries import QueryOutcome, Verdict, equivalence_query, property_query

GENERATORS = (Kind.CONV, Kind.RESIDUAL, Kind.MAXPOOL, Kind.MLP)
#: Time limit of each query (check_property's whole budget; compare_exact's per solve).
QUERY_TIME_LIMIT = 10.0
DEFAULT_GRAPH_SAMPLES = 4000


@dataclass
class GraphOutcome:
    index: int
    kind: str
    options: str
    traits: tuple[str, ...]
    relus: int = 0
    exact: bool = False
    claims: int = 0
    claimed_active: int = 0
    claimed_inactive: int = 0
    false_claims: list[dict[str, Any]] = field(default_factory=list)
    lp_unconfirmed: list[dict[str, Any]] = field(default_factory=list)
    small_violations: list[dict[str, Any]] = field(default_factory=list)
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    incomplete: int = 0
    queries: list[QueryOutcome] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None

    @property
    def wrong(self) -> list[QueryOutcome]:
        return [q for q in self.queries if q.verdict is Verdict.WRONG]

    @property
    def failed(self) -> bool:
        return bool(self.false_claims or self.mismatches or self.wrong
                    or any(q.verdict is Verdict.DISAGREES for q in self.queries))


@dataclass(frozen=True)
class _Ranges:
    """Exact ranges per reported layer, in the shape ``soak._check_claims`` reads."""

    lower: list[np.ndarray]
    upper: list[np.ndarray]


def _leo_layers(graph: Graph) -> list[int]:
    """The value index of each leo layer's pre-activation in ``from_leo``'s graph."""
    return [i for i, n in enumerate(graph.nodes, start=1) if n.op is Op.AFFINE]


def _terms(graph: Graph, vals: list[np.ndarray]) -> dict[int, np.ndarray]:
    """|b| + sum |W| |h| of every affine node, per point: the size its sign's rounding scales with."""
    return {i: np.abs(n.bias) + sum(np.abs(vals[s]) @ np.abs(w).T for s, w in zip(n.sources, n.weights))
            for i, n in enumerate(graph.nodes, start=1) if n.op is Op.AFFINE}


def _points(drawn: Drawn, samples: int, rng: np.random.Generator) -> np.ndarray:
    lo, hi = drawn.lower, drawn.upper
    return np.vstack([lo + rng.random((samples, lo.size)) * (hi - lo), lo, hi, (lo + hi)[None, :] / 2])


def _check_compression(out: GraphOutcome, drawn: Drawn, mod: Any, net: Any, result: Any,
                       pts: np.ndarray, exact: bool) -> np.ndarray:
    """Claims against points (and, when ``exact``, exact ranges of leo's layers), outputs against torch."""
    lgraph = from_leo(net)
    where = _leo_layers(lgraph)
    found = enumerate_regions(lgraph, drawn.lower, drawn.upper) if exact else None
    if found is not None:
        pts = np.vstack([pts, np.array(found[1].points)]) if found[1].points else pts
    vals = lgraph.values(pts)
    terms = _terms(lgraph, vals)
    layers = [r.layer for r in result.report.layers]
    zs = [vals[where[k - 1]] for k in layers]
    sizes = [terms[where[k - 1]] for k in layers]
    exact = None
    if found is not None:
        out.exact = True
        regions = found[1]
        exact = _Ranges([regions.lower.get(where[k - 1] + 1, np.full(zs[i].shape[1], np.inf))
                         for i, k in enumerate(layers)],
                        [regions.upper.get(where[k - 1] + 1, np.full(zs[i].shape[1], -np.inf))
                         for i, k in enumerate(layers)])
    _check_claims(out, result.report, zs, sizes, exact, pts)
    y = torch_forward(mod, drawn.shape, pts)
    g = from_leo(result.network)(pts)
    tol = OUTPUT_RTOL * (1.0 + float(terms[where[-1]].max()))
    diff = np.abs(g - y).max(axis=1)
    worst = int(np.argmax(diff))
    if diff[worst] > tol:
        out.mismatches.append({"max_diff": float(diff[worst]), "tol": tol, "x": pts[worst].tolist(),
                               "points_over": int((diff > tol).sum())})
    return pts


def _perturbed(drawn: Drawn, rng: np.random.Generator) -> Drawn:
    """A copy with a few weights (or biases) of one layer (often the last, whose change always
    shows) moved by 1e-5 to 1e-1 of the layer's scale; one entry at least."""
    layers = list(drawn.layers)
    li = len(layers) - 1 if rng.random() < 0.4 else int(rng.integers(0, len(layers)))
    kind, args, w, b = layers[li]
    scale = 10.0 ** rng.uniform(-5, -1) * (1e-12 + max(float(np.abs(w).max()), float(np.abs(b).max())))
    target = b if rng.random() < 0.3 else w
    mask = rng.random(target.shape) < 0.3
    mask.flat[int(rng.integers(0, target.size))] = True
    moved = target + scale * rng.normal(size=target.shape) * mask
    layers[li] = (kind, args, moved, b) if target is w else (kind, args, w, moved)
    return replace(drawn, layers=tuple(layers))


def soak_graph_one(kind: Kind, seed: int, index: int, samples: int = DEFAULT_GRAPH_SAMPLES,
                   time_limit: float = 2.0, query_time_limit: float = QUERY_TIME_LIMIT) -> GraphOutcome:
    """One network of the graph soak: compression claims, outputs, two queries."""
    import leo
    from leo.io.torch_io import from_module

    t0 = time.perf_counter()
    drawn = draw(kind, seed, index)
    rng = np.random.default_rng([seed, index, 23])
    options = list(OPTION_SETS)[int(rng.integers(0, len(OPTION_SETS)))]
    out = GraphOutcome(index, kind.value, options, drawn.traits)
    try:
        mod = module(drawn)
        graph = graph_of(drawn, mod)
        out.relus = graph.relus
        net = from_module(mod, drawn.shape)
        result = leo.compress(net, drawn.lower, drawn.upper, _options_for(options, time_limit, index),
                              check_points=2000)
        found = enumerate_regions(graph, drawn.lower, drawn.upper)  # the torch graph's regions: the queries' truth
        pts = _check_compression(out, drawn, mod, net, result, _points(drawn, samples, rng), found is not None)
        if found is None:  # the joint network of a query would not fit either
            out.queries += [QueryOutcome("property", Verdict.NO_TRUTH, None, ""),
                            QueryOutcome("equivalence", Verdict.NO_TRUTH, None, "")]
        else:
            _queries(out, drawn, mod, found, net, result.network, pts, rng, query_time_limit, index)
    except Exception as exc:  # noqa: BLE001 - recorded as a mismatch, with the network's index
        out.error = f"{type(exc).__name__}: {exc}"
        out.mismatches.append({"error": out.error, "traceback": traceback.format_exc(limit=6)})
    out.seconds = time.perf_counter() - t0
    return out


def _options_for(name: str, time_limit: float, index: int) -> Any:
    from types import SimpleNamespace

    return _options(SimpleNamespace(options=name), time_limit, index)


def _queries(out: GraphOutcome, drawn: Drawn, mod: Any, found: tuple[Any, Any], net: Any, compressed: Any,
             pts: np.ndarray, rng: np.random.Generator, time_limit: float, index: int) -> None:
    def forward(x: np.ndarray) -> np.ndarray:
        return torch_forward(mod, drawn.shape, x)

    graph = found[0].graph
    out.queries.append(property_query(rng, *found, forward, pts[:512], net, time_limit, index))
    if rng.random() < 0.3:  # leo's own compression: equivalent up to rounding
        g_graph, g_net, copy = from_leo(compressed), compressed, "compressed"

        def forward_g(x: np.ndarray) -> np.ndarray:
            return g_graph(x)
    else:
        from leo.io.torch_io import from_module

        g_drawn = _perturbed(drawn, rng)
        g_mod = module(g_drawn)
        g_graph, g_net, copy = graph_of(g_drawn, g_mod), from_module(g_mod, drawn.shape), "perturbed"

        def forward_g(x: np.ndarray) -> np.ndarray:
            return torch_forward(g_mod, drawn.shape, x)
    out.queries.append(equivalence_query(rng, graph, g_graph, drawn.lower, drawn.upper, forward, forward_g,
                                         (net, g_net), pts[:512], time_limit, copy))


def soak_graphs(networks: int, seed: int, samples: int = DEFAULT_GRAPH_SAMPLES, time_limit: float = 2.0,
                failures: Path | None = None, start: int = 0, log: Any = None,
                kinds: Sequence[Kind] = GENERATORS, max_seconds: float = float("inf")) -> dict[str, Any]:
    """Soak ``networks`` graph networks (round robin over ``kinds``; none started after
    ``max_seconds``); the counts per generator."""
    import json

    t0 = time.perf_counter()
    outcomes: list[GraphOutcome] = []
    for index in range(start, start + networks):
        if time.perf_counter() - t0 > max_seconds:
            break
        kind = kinds[index % len(kinds)]
        o = soak_graph_one(kind, seed, index, samples, time_limit)
        outcomes.append(o)
        if (o.failed or any(q.verdict is Verdict.OUTSIDE_BOX for q in o.queries)) and failures is not None:
            failures.mkdir(parents=True, exist_ok=True)
            (failures / f"soak-graph-seed{seed}-{kind.value}-net{index}.json").write_text(json.dumps(
                {"seed": seed, "index": index, "kind": kind.value, "false_claims": o.false_claims,
                 "mismatches": o.mismatches, "queries": [_query_json(q) for q in o.queries if q.verdict not in
                                                         (Verdict.RIGHT, Verdict.UNDECIDED)]}, default=str))
        if log is not None:
            log(f"[{index}] {kind.value} relus={o.relus} {o.options} exact={o.exact} claims={o.claims} "
                f"false={len(o.false_claims)} mismatch={len(o.mismatches)} "
                f"queries={','.join(f'{q.kind[0]}:{q.answer or q.verdict.value}/{q.verdict.value}' for q in o.queries)} "
                f"{o.seconds:.2f}s")
    return summarise_graphs(outcomes, seed, samples, time_limit, time.perf_counter() - t0, kinds)


def _query_json(q: QueryOutcome) -> dict[str, Any]:
    return {"kind": q.kind, "verdict": q.verdict.value, "truth": q.truth, "answer": q.answer, "how": q.how,
            "seconds": q.seconds, **q.detail}


def _counts(outcomes: Sequence[GraphOutcome]) -> dict[str, Any]:
    qs = [q for o in outcomes for q in o.queries]

    def n(kind: str, verdict: Verdict) -> int:
        return sum(1 for q in qs if q.kind == kind and q.verdict is verdict)

    row: dict[str, Any] = {
        "networks": len(outcomes), "relus": sum(o.relus for o in outcomes),
        "exact_networks": sum(o.exact for o in outcomes), "claims": sum(o.claims for o in outcomes),
        "false_claims": sum(len(o.false_claims) for o in outcomes),
        "violations_within_tol": sum(len(o.small_violations) for o in outcomes),
        "lp_unconfirmed": sum(len(o.lp_unconfirmed) for o in outcomes),
        "incomplete": sum(o.incomplete for o in outcomes),
        "mismatches": sum(len(o.mismatches) for o in outcomes),
        "errors": sum(o.error is not None for o in outcomes),
        "seconds": sum(o.seconds for o in outcomes),
    }
    for kind in ("property", "equivalence"):
        row[kind] = {v.value: n(kind, v) for v in Verdict}
        row[kind]["true"] = sum(1 for q in qs if q.kind == kind and q.truth is True)
        row[kind]["false"] = sum(1 for q in qs if q.kind == kind and q.truth is False)
    row["wrong_answers"] = row["property"]["wrong"] + row["equivalence"]["wrong"]
    row["outside_box"] = row["property"][Verdict.OUTSIDE_BOX.value] + row["equivalence"][Verdict.OUTSIDE_BOX.value]
    row["undecided"] = row["property"]["undecided"] + row["equivalence"]["undecided"]
    row["truth_disagreements"] = row["property"]["truth disagrees"] + row["equivalence"]["truth disagrees"]
    return row


def summarise_graphs(outcomes: Sequence[GraphOutcome], seed: int, samples: int, time_limit: float,
                     seconds: float, kinds: Sequence[Kind] = GENERATORS) -> dict[str, Any]:
    return {
        "seed": seed, "samples": samples, "time_limit": time_limit, "query_time_limit": QUERY_TIME_LIMIT,
        "enum_lp_cap": ENUM_LP_CAP, "claim_rtol": CLAIM_RTOL, "output_rtol": OUTPUT_RTOL,
        "total": _counts(outcomes),
        "by_generator": {k.value: _counts([o for o in outcomes if o.kind == k.value]) for k in kinds},
        "by_options": {name: sum(o.options == name for o in outcomes) for name in OPTION_SETS},
        "seconds": seconds,
        "failures": [{"index": o.index, "kind": o.kind, "options": o.options, "false_claims": o.false_claims,
                      "mismatches": o.mismatches,
                      "queries": [_query_json(q) for q in o.queries
                                  if q.verdict not in (Verdict.RIGHT, Verdict.UNDECIDED)]}
                     for o in outcomes if o.failed],
        "outside_box": [{"index": o.index, "kind": o.kind, **_query_json(q)} for o in outcomes for q in o.queries
                        if q.verdict is Verdict.OUTSIDE_BOX],
    }
