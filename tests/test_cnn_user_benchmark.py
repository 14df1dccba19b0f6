"""benchmarks/cnn_user.py's measuring parts: the peak memory and seconds it records are the
process's (checked against an allocation of known size), its memory limit stops a run,
its points lie in the ball, and the markdown shows the figures it was given."""

from __future__ import annotations

import sys

import numpy as np

from benchmarks.cnn_user import EPS, _ball, markdown, timed

ALLOCATE = "import numpy as np; a = np.ones(50_000_000); print(a.sum())"  # 400 MB


def test_timed_records_the_peak_memory_of_the_run() -> None:
    run = timed([sys.executable, "-c", ALLOCATE], memory_gib=8.0)
    assert run["exit_code"] == 0
    assert 380 <= run["peak_rss_mib"] <= 1500
    assert run["seconds"] > 0 and run["cpu_seconds"] > 0


def test_the_memory_limit_stops_a_run_that_exceeds_it() -> None:
    run = timed([sys.executable, "-c", ALLOCATE], memory_gib=0.3)
    assert run["exit_code"] != 0 and any("MemoryError" in line for line in run["stderr_tail"])


def test_ball_points_lie_in_the_clipped_ball_and_a_tenth_are_corners() -> None:
    centre = np.random.default_rng(0).uniform(0, 1, (2, 3, 3))
    centre[0, 0, 0] = 0.0
    pts = _ball(centre, 1000)
    lo, hi = np.clip(centre - EPS, 0, 1), np.clip(centre + EPS, 0, 1)
    assert pts.shape == (1000, 2, 3, 3) and np.all(pts >= lo) and np.all(pts <= hi)
    corners = pts[:100]
    assert np.all((corners == lo) | (corners == hi))


def test_markdown_shows_every_run() -> None:
    run = {"command_kind": "compress --form flat", "exit_code": 0, "seconds": 31.5, "cpu_seconds": 12.25,
           "load_average": 2.0, "peak_rss_mib": 977.0, "output_kib": 120.5, "ratio": 3.5, "certificate_kib": 40.0,
           "max_diff": 1.5e-5}
    text = markdown({"command": "python -m benchmarks.cnn_user", "commit": "abc", "memory_limit_gib": 8.0,
                     "seconds": 40.0, "rows": [{"model": "lenet", "user_file_kib": 34.4, "parameters": 4258,
                                                "budget": 30.0, "runs": [run]}]})
    assert "| lenet | 34.4 | 4,258 | 30 | compress --form flat | 0 | 31.5 | 12.25 | 2.0 | 977.0 | 120.5 | 3.5 " in text
    assert "1.50e-05" in text
