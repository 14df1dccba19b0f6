"""Benchmarks write where they are told, and their pictures have no empty panel.

``python -m benchmarks.speed --quick`` (the README's command) replaced the committed
``benchmarks/results/speed.*``; one-network runs drew an empty panel. Truth: the paths
the argument parser returns, and every panel of the saved figure holding drawn data
(matplotlib's own record of its artists).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import pytest

from benchmarks.common import RESULTS

matplotlib.use("Agg")


@pytest.mark.parametrize("argv", [["--quick"], ["--networks", "5x100-l1=1e-4"], ["--methods", "leo"]])
def test_partial_speed_runs_never_default_to_the_committed_results(argv):
    from benchmarks import speed

    args = speed.parse_args(argv)
    for path in (args.json, args.markdown, args.plot):
        assert RESULTS not in Path(path).resolve().parents, f"{argv} would write {path}"


def test_named_paths_are_kept(tmp_path):
    from benchmarks import speed

    args = speed.parse_args(["--quick", "--json", str(tmp_path / "a.json"), "--markdown", str(tmp_path / "a.md")])
    assert (args.json, args.markdown, args.plot) == (tmp_path / "a.json", tmp_path / "a.md", tmp_path / "a.png")


def _panels(monkeypatch, draw) -> list:  # noqa: ANN001
    """The axes of the figure ``draw`` saves, and how many drawn artists each holds."""
    from matplotlib.figure import Figure

    seen: list = []
    real = Figure.savefig

    def spy(self, *args, **kwargs):  # noqa: ANN001, ANN202
        seen.extend(len(ax.lines) + len(ax.collections) for ax in self.axes if ax.get_visible())
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    draw()
    return seen


@pytest.mark.parametrize("name", ["speed", "speed-5x100", "speed-budget"])
def test_speed_plots_have_no_empty_panel(monkeypatch, tmp_path, name):
    from benchmarks import speed

    data = json.loads((RESULTS / f"{name}.json").read_text())
    panels = _panels(monkeypatch, lambda: speed.plot(data, tmp_path / "p.png"))
    assert panels and all(n > 0 for n in panels), panels


def test_seeds_plot_keeps_whole_labels(monkeypatch, tmp_path):
    from matplotlib.figure import Figure

    from benchmarks import seeds

    rows = json.loads((RESULTS / "seeds.json").read_text())
    labels: list[str] = []
    real = Figure.savefig

    def spy(self, *args, **kwargs):  # noqa: ANN001, ANN202
        for ax in self.axes:
            legend = ax.get_legend()
            labels.extend(t.get_text() for t in legend.get_texts()) if legend else None
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    seeds.plot({"rows": rows}, tmp_path / "s.png")
    models = {r["model"].split(" (")[0] for r in rows}
    assert labels and all(label.split(" | ")[1] in models for label in labels)
