"""Where the MILP phase runs: in this process, in a local process pool
(``workers``), or on a Dask distributed cluster (``scheduler``). Units of one layer
are independent tasks; chunks keep one persistent model per worker.

A ``Deadline`` is a point on the monotonic clock, which the processes of one machine share
(a local pool gets it as it is) but another machine's clock does not: a Dask worker gets
the seconds left when its chunk is sent and makes its own deadline from them
(``_prove_within``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import TypeVar

from leo.bounds.encoding import Encoding
from leo.core.deadline import Deadline
from leo.core.network import Network
from leo.stability.prove import Task, TaskResult, prove
from leo.stability.stages import StabilityOptions

T = TypeVar("T")


def _chunks(tasks: list[T], parts: int) -> list[list[T]]:
    parts = max(1, min(parts, len(tasks)))
    return [tasks[i::parts] for i in range(parts)]


def run_chunks(network: Network, encoding: Encoding, layer: int, tasks: list[Task], options: StabilityOptions,
               deadline: Deadline = Deadline.never(), on_result: Callable[[TaskResult], None] | None = None
               ) -> list[TaskResult]:
    """``prove`` on every task, wherever the options say. With a ``deadline`` there is one
    chunk per parallel slot: a second chunk queued behind the first on the same worker
    would find the deadline spent. ``on_result`` (progress) sees each result as it comes
    in this process, and each chunk's results as they come from workers."""
    if not tasks:
        return []
    per_slot = 1 if deadline.bounded else 2
    if options.scheduler:
        results = _on_dask(network, encoding, layer, tasks, options, deadline, on_result, per_slot)
    elif options.workers > 1 and len(tasks) > 1:
        chunks = _chunks(tasks, options.workers * per_slot)
        with ProcessPoolExecutor(max_workers=options.workers) as pool:
            futures = [pool.submit(prove, network, encoding, layer, c, options, deadline) for c in chunks]
            results = _collect((f.result() for f in as_completed(futures)), on_result)
    else:
        results = prove(network, encoding, layer, tasks, options, deadline, on_result)
    return sorted(results, key=lambda r: r.unit)


def _on_dask(network: Network, encoding: Encoding, layer: int, tasks: list[Task], options: StabilityOptions,
             deadline: Deadline, on_result: Callable[[TaskResult], None] | None, per_slot: int
             ) -> list[TaskResult]:
    """The chunks on the Dask cluster at ``options.scheduler``."""
    from distributed import Client  # optional extra: leo[distributed]; not a cycle

    with Client(options.scheduler, set_as_default=False) as client:
        parts = max(options.workers, sum(client.nthreads().values()))
        chunks = _chunks(tasks, parts * per_slot)
        net_f, enc_f = client.scatter([network, encoding], broadcast=True)
        futures = [client.submit(_prove_within, net_f, enc_f, layer, c, options, deadline.left(), pure=False)
                   for c in chunks]
        # in order (distributed's as_completed needs a default client, which this one is not)
        return _collect((f.result() for f in futures), on_result)


def _prove_within(network: Network, encoding: Encoding, layer: int, tasks: list[Task], options: StabilityOptions,
                  seconds: float) -> list[TaskResult]:
    """``prove`` in a worker, on a deadline ``seconds`` from when it starts there (inf: none)."""
    return prove(network, encoding, layer, tasks, options, Deadline.after(seconds))


def _collect(chunks: Iterable[list[TaskResult]], on_result: Callable[[TaskResult], None] | None
             ) -> list[TaskResult]:
    """The results of every chunk, passed to ``on_result`` as each chunk completes."""
    out: list[TaskResult] = []
    for chunk in chunks:
        out += chunk
        for r in chunk if on_result is not None else ():
            on_result(r)
    return out
