"""``compress``'s options of the approximate methods: one table, the flags made from it, the
values given read back per method, and a help page that groups them per method."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from leo.cli.inputs import fail

#: compress's options for the approximate methods: name -> (method, options field, click type, help).
#: Defaults live in the options dataclasses (leo.approx); a value out of range is refused there.
APPROX_OPTIONS: dict[str, tuple[str, str, Any, str]] = {
    "rate": ("linearity", "rate", float, "Fixed-size mode (the paper's): lower the activation-rate threshold "
             "until the paper-counted size (all weights but the first layer's) is at most this share."),
    "step": ("linearity", "step", float, "Fixed-size mode: the threshold goes down from 1 in steps of this."),
    "threshold": ("linearity", "threshold", float, "Threshold mode instead: fuse units active on at least this "
                  "share of the data (excludes --rate/--step)."),
    "layer_rule": ("linearity", "layer_rule", click.Choice(["cost", "count", "fraction"]),
                   "Threshold mode: when a layer is rewritten (the fixed-size mode always uses cost)."),
    "layer_min": ("linearity", "layer_min", float, "Threshold mode, rules count/fraction: rewrite a layer only "
                  "with more linear units than this (a count, or a share of its width)."),
    "only_proven": ("linearity", "only_proven", bool, "Fuse only units the exact step before proved active "
                    "(exact on the box; use --method exact,linearity)."),
    "structure": ("pq-index", "structure", click.Choice(["weights", "units"]),
                  "weights: the paper's SAP (unstructured); units: our structured variant."),
    "scope": ("pq-index", "scope", click.Choice(["global", "layer", "neuron"]),
              "Weights over which each PQ index is computed."),
    "rounds": ("pq-index", "rounds", int, "Pruning rounds (without retraining, later rounds prune what is left)."),
    "p": ("pq-index", "p", float, "The PQ index's p (0 < p < q)."),
    "q": ("pq-index", "q", float, "The PQ index's q."),
    "eta_r": ("pq-index", "eta", float, "eta_r >= 0: loosens the retain bound r."),
    "gamma": ("pq-index", "gamma", float, "gamma > 0: scales the pruned share 1 - r/d."),
    "beta": ("pq-index", "beta", float, "At most this share of a scope pruned per round, in (0, 1]."),
    "budget": ("dependence", "budget", float, "Largest accepted drop of validation accuracy (agreement "
               "without labels), in [0, 1]: the first round past it is undone and the search stops."),
    "tol_start": ("dependence", "tol_start", float, "First tolerance on a unit's relative residual."),
    "tol_factor": ("dependence", "tol_factor", float, "The tolerance is multiplied by this (> 1) each round."),
    "tol_max": ("dependence", "tol_max", float, "Largest tolerance tried."),
    "metric": ("dependence", "metric", click.Choice(["auto", "accuracy", "agreement"]),
               "What the budget is measured on (auto: accuracy when --data has labels)."),
    "validation": ("dependence", "validation", float, "Share of the fitting data used for the stopping rule."),
    "holdout": ("approximate", "holdout", float, "Share of --data held out for the report when it has no test "
                "split (mnist has one)."),
}
TITLES = {"linearity": "Options of --method linearity (Dobler & Lemmerich 2025)",
          "pq-index": "Options of --method pq-index (Diao et al. 2023)",
          "dependence": "Options of --method dependence (Shah, Olivier, Raj 2020)",
          "approximate": "Options of every approximate method"}


def option_defaults() -> dict[str, Any]:
    """Each approximate option's default, read from its options dataclass (imported only for --help)."""
    from leo.reduction.compose import ChainOptions

    chain = ChainOptions()
    owners = {"linearity": chain.linearity, "pq-index": chain.pq_index, "dependence": chain.dependence,
              "approximate": chain}
    return {name: getattr(owners[method], field) for name, (method, field, _, _) in APPROX_OPTIONS.items()}


class GroupedHelp(click.Command):
    """``leo compress --help`` with the approximate methods' options grouped per method."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        defaults = option_defaults()
        groups: dict[str, list[tuple[str, str]]] = {"Options": []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.name in APPROX_OPTIONS:
                method = APPROX_OPTIONS[param.name][0]
                default = defaults[param.name]
                record = (record[0], f"{record[1]}  [default: {'off' if default is False else default}]")
                groups.setdefault(TITLES[method], []).append(record)
            else:
                groups["Options"].append(record)
        for title, rows in groups.items():
            with formatter.section(title):
                formatter.write_dl(rows)


def approx_option_flags(f: Callable[..., Any]) -> Callable[..., Any]:
    for name, (_, _, kind, text) in reversed(APPROX_OPTIONS.items()):
        flag = "--" + name.replace("_", "-")
        f = (click.option(flag, name, is_flag=True, default=False, help=text)(f) if kind is bool
             else click.option(flag, name, type=kind, default=None, help=text)(f))
    return f


def method_options(methods: list[str], kw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The approximate methods' options given on the command line (taken out of ``kw``),
    per method; an option of a method that is not in the chain is bad input."""
    given: dict[str, dict[str, Any]] = {}
    for name, (method, field, _, _) in APPROX_OPTIONS.items():
        value = kw.pop(name)
        if value is None or value is False:
            continue
        if method not in methods and not (method == "approximate" and set(methods) - {"exact"}):
            owner = "linearity, pq-index or dependence" if method == "approximate" else method
            fail(f"--{name.replace('_', '-')} is an option of --method {owner}, not of --method {','.join(methods)}")
        given.setdefault(method, {})[field] = value
    lin = given.get("linearity", {})
    if "threshold" in lin:
        if {"rate", "step"} & set(lin):
            fail("--threshold (threshold mode) and --rate/--step (fixed-size mode) exclude each other: give one")
        lin["mode"] = "threshold"
    elif {"layer_rule", "layer_min"} & set(lin):
        fail("--layer-rule/--layer-min belong to linearity's threshold mode: give --threshold T too "
             "(the fixed-size mode uses the paper's cost rule)")
    return given
