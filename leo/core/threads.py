"""One thread policy for the CLI, the API and the benchmarks.

leo's hot loops are single-threaded by design: HiGHS's MILPs barely scale with
threads, torch only runs the local search and numpy's BLAS the forward passes of
witness points (small batched matrix products). Their defaults (one thread per core)
hurt on the 2-core development machine, shared with other processes: ``analyse`` of the
same network took 80.8 s with torch's default threads and 11.8 s with
``torch.set_num_threads(1)``, and one forward pass of 2,200 points through a 16x24 net
0.38 s with OpenBLAS's default threads and 0.058 s with one (oversubscribed threads
spin and wait on each other). So the default is ONE thread, for torch, BLAS (through
threadpoolctl, when installed) and HiGHS alike; ``--threads N``
(CLI), ``StabilityOptions.threads`` (API) and ``--threads`` of the benchmarks change it,
all through :func:`set_threads`. ``0`` means one per CPU core.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

#: Threads for torch and HiGHS unless told otherwise (see the module docstring).
DEFAULT_THREADS = 1

#: Help text of every ``--threads`` option.
THREADS_HELP = ("Threads for torch, BLAS and HiGHS; 0 = one per CPU core. Default 1: on a shared 2-core "
                "machine their default threads made the analysis 7x slower.")

_highs_threads = DEFAULT_THREADS


def resolve(threads: int | None) -> int:
    """The thread count ``threads`` stands for: None is the default, 0 one per core."""
    if threads is None:
        return DEFAULT_THREADS
    if threads < 0:
        from leo.errors import LeoInputError

        raise LeoInputError(f"threads must be 0 (one per core) or positive, got {threads}")
    return threads if threads > 0 else max(os.cpu_count() or 1, 1)


def _blas_limits(n: int):  # noqa: ANN202 - a threadpoolctl limiter, or None without it
    """Limit numpy's BLAS to ``n`` threads; the returned object can restore the old limits."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it BLAS keeps its own default (OPENBLAS_NUM_THREADS)
        return None
    return threadpool_limits(limits=n, user_api="blas")


def set_threads(threads: int | None = DEFAULT_THREADS) -> int:
    """Set torch's intra-op threads, its inter-op threads (only before torch has run
    parallel work: torch refuses later), numpy's BLAS threads and the threads of every
    HiGHS model leo creates from now on. Returns the count set."""
    global _highs_threads
    n = resolve(threads)
    _blas_limits(n)
    _highs_threads = n
    if "torch" not in sys.modules:
        # A command that never needs torch (a property on an ONNX file) should not pay its
        # import (4 s idle, 10 s loaded) to set threads: torch reads these when imported.
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(n)
        return n
    import torch

    torch.set_num_threads(n)
    try:
        if torch.get_num_interop_threads() != n:
            torch.set_num_interop_threads(n)
    except RuntimeError:  # torch already started its inter-op pool; intra-op threads are what matter
        pass
    return n


def highs_threads() -> int:
    """Threads for a new HiGHS model (the last :func:`set_threads`)."""
    return _highs_threads


@contextmanager
def using_threads(threads: int | None) -> Iterator[int]:
    """Run a block with ``threads`` for torch (intra-op) and HiGHS, then put back what
    was there, so that ``leo.verify`` in a notebook does not change torch for the rest
    of the session."""
    global _highs_threads
    import torch

    saved_torch, saved_highs = torch.get_num_threads(), _highs_threads
    n = resolve(threads)
    torch.set_num_threads(n)
    blas = _blas_limits(n)
    _highs_threads = n
    try:
        yield n
    finally:
        if blas is not None:  # first: threadpoolctl restores the OpenMP limit it saw too
            blas.restore_original_limits()
        torch.set_num_threads(saved_torch)
        _highs_threads = saved_highs


def threads_option(f):  # noqa: ANN001, ANN201 - a click decorator
    """``--threads N`` for a click command (default :data:`DEFAULT_THREADS`)."""
    import click

    return click.option("--threads", type=click.IntRange(min=0), default=DEFAULT_THREADS, show_default=True,
                        help=THREADS_HELP)(f)
