"""Where the MILP phase runs: in this process, in a local process pool
(``workers``), or on a Dask distributed cluster (``scheduler``). Units of one layer
are independent tasks; chunks keep one persistent model per worker."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

from leo.network import Network
from solvers.formulation import Formulation


def _chunks(tasks: list, parts: int) -> list[list]:
    parts = max(1, min(parts, len(tasks)))
    return [tasks[i::parts] for i in range(parts)]


def run_chunks(network: Network, formulation: Formulation, layer: int, tasks: list, options,  # noqa: ANN001
               deadline: float | None = None) -> list:
    """``prove`` on every task, wherever the options say. With a ``deadline`` there is one
    chunk per parallel slot: a second chunk queued behind the first on the same worker
    would find the deadline spent."""
    from leo.engine_unit import prove

    if not tasks:
        return []
    per_slot = 1 if deadline is not None else 2
    if options.scheduler:
        from distributed import Client  # optional extra: leo[distributed]

        with Client(options.scheduler, set_as_default=False) as client:
            parts = max(options.workers, sum(client.nthreads().values()))
            chunks = _chunks(tasks, parts * per_slot)
            net_f, form_f = client.scatter([network, formulation], broadcast=True)
            futures = [client.submit(prove, net_f, form_f, layer, c, options, deadline, pure=False) for c in chunks]
            results = [r for f in futures for r in f.result()]
    elif options.workers > 1 and len(tasks) > 1:
        chunks = _chunks(tasks, options.workers * per_slot)
        with ProcessPoolExecutor(max_workers=options.workers) as pool:
            futures = [pool.submit(prove, network, formulation, layer, c, options, deadline) for c in chunks]
            results = [r for f in futures for r in f.result()]
    else:
        results = prove(network, formulation, layer, tasks, options, deadline)
    return sorted(results, key=lambda r: r.unit)
