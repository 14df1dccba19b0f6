"""The Dask back-end on a local cluster of two worker processes gives the same verdicts."""

import numpy as np
import pytest

from leo.core.domain import make_box
from leo.stability.analysis import StabilityOptions, analyse
from tests.conftest import random_mlp

distributed = pytest.importorskip("distributed")


def test_dask_cluster_matches_local_run():
    rng = np.random.default_rng(7)
    net = random_mlp(rng, [5, 14, 12, 2], bias_shift=-0.3)
    box = make_box(0, 1, 5)
    opts = dict(samples=4, local_search=False, branch=False)  # solves that the workers run
    local = analyse(net, box, StabilityOptions(**opts))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        remote = analyse(net, box, StabilityOptions(scheduler=cluster.scheduler_address, **opts))
        assert len(cluster.workers) == 2
    assert remote.solves > 0
    for a, b in zip(local.layers, remote.layers):
        assert (a.active, a.inactive, a.unstable) == (b.active, b.inactive, b.unstable)
