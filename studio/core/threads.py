"""How many CPU threads torch and the BLAS/OpenMP libraries use: one policy, set in one place.

Why it matters: torch's intra-op pool (OpenMP) and OpenBLAS default to one thread per core the
machine *has*, whatever else runs. On the 2-core development machine, with one other busy process,
a neural scan fit with torch's default 2 threads took 167 s (165 s of CPU time, mostly OpenMP
threads spin-waiting at barriers for a sibling the kernel had descheduled) against 16 s with one
thread; in the window it also competed with the UI thread (98 s). Our networks are small (≤ 128
units wide, a few thousand points per call), so a second thread gains little even on an idle
machine and costs ten times the time on a busy one (figures in ``fit_threads``).

``available_cores()`` counts the cores this process may run on (its CPU affinity: a container or
``taskset`` may allow fewer than the machine has). ``set_threads(n)`` sets torch's intra-op threads,
its inter-op threads (only possible before the first inter-op work, so it is tried and skipped
afterwards) and every BLAS/OpenMP pool threadpoolctl finds, to ``n`` (default: ``fit_threads()``).
``limited(n)`` does the same for a ``with`` block and restores the previous counts; ``ensure()``
applies it once per thread as soon as torch is loaded (for a long-lived worker thread that should not
import torch just to set a count).
``env_defaults()`` puts the same count into OMP_NUM_THREADS & co. for a process that has not
loaded torch or numpy yet (the CLI entry), never replacing a value the user set.

Per-thread caveat: torch's ``set_num_threads`` (like ``omp_set_num_threads``) takes effect for the
calling thread and for threads that have not run any parallel torch op yet; a thread that already
did keeps its count. So a long-lived worker thread calls ``ensure()`` itself (the window's worker
does, before every job), and a neural fit sets its count around itself (``limited``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

# Variables read by the OpenMP runtime (torch's libgomp), MKL (inside torch) and OpenBLAS (numpy,
# scipy) when they load. The pools are sized from them at load time; ``set_threads`` resizes later.
ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

# Above this many cores the default is capped: the networks are too small to feed more threads, and
# a fit shares the machine with the UI, the viewport and whatever else runs. Not measured beyond 2.
MAX_FIT_THREADS = 4


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity where the OS reports it, else the CPU count."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):  # macOS, Windows: no affinity call
        return max(os.cpu_count() or 1, 1)


def fit_threads(cores: int | None = None) -> int:
    """The thread count for our torch and numpy work (fits, previews, benches) on ``cores`` cores.

    One core is left for everything else (the window's UI thread, another process). Measured on
    the 2-core machine (torch 2.13, neural scan fits of the ``studio bench fit`` scans, 2026-11-30):
    idle, 1 thread 8.6 s against 8.8 s with 2, which burn 60 % more CPU time (batches of a few
    thousand points split badly); beside one busy process, 9.9 s against 95 s (no spin-waiting for a
    descheduled sibling thread). Beyond 2 cores this is not measured; the cap is ``MAX_FIT_THREADS``.
    """
    n = available_cores() if cores is None else int(cores)
    return max(1, min(n - 1, MAX_FIT_THREADS))


def env_defaults(environ=None, threads: int | None = None) -> dict[str, str]:
    """Set OMP_NUM_THREADS, MKL_NUM_THREADS and OPENBLAS_NUM_THREADS where they are not set; returns
    what was set. A user's value stays, and is the one the others get (torch reads MKL_NUM_THREADS
    over OMP_NUM_THREADS: a user's OMP_NUM_THREADS=4 must not meet our MKL_NUM_THREADS=1); with none
    set, ``threads`` (default ``fit_threads()``). Only useful before torch, numpy or scipy are
    imported: their pools read these when they load."""
    env = os.environ if environ is None else environ
    users = [env[name] for name in ENV_VARS if env.get(name)]
    value = users[0] if users else str(fit_threads() if threads is None else max(int(threads), 1))
    added = {}
    for name in ENV_VARS:
        if not env.get(name):
            env[name] = value
            added[name] = value
    return added


def _blas_limit(n: int):
    """Limit every BLAS and OpenMP pool threadpoolctl finds to ``n`` threads; returns the limiter
    (its ``restore_original_limits()`` undoes it). None when threadpoolctl is unavailable."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # a dependency, but this must never stop a fit
        return None
    return threadpool_limits(limits=n)


def _interop(n: int) -> None:
    import torch

    if torch.get_num_interop_threads() == n:
        return
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:  # only allowed before the first inter-op work (and only once): keep torch's
        pass


def set_threads(n: int | None = None) -> int:
    """Use ``n`` threads (default ``fit_threads()``) in torch (intra-op; inter-op where still
    allowed) and in every BLAS/OpenMP pool loaded; returns ``n``. For the calling thread and
    threads that start later (see the module docstring for threads already running torch ops)."""
    n = fit_threads() if n is None else int(n)
    if n < 1:
        raise ValueError("thread count must be at least 1")
    import torch

    torch.set_num_threads(n)
    _interop(n)
    _blas_limit(n)
    return n


_applied = threading.local()


def ensure(n: int | None = None) -> None:
    """``set_threads(n)`` in the calling thread the first time this is called once torch is loaded;
    nothing before that (torch is not imported for it) nor after (cheap: call it before every job)."""
    if "torch" not in sys.modules or getattr(_applied, "threads", None) is not None:
        return
    try:
        _applied.threads = set_threads(n)
    except Exception:  # a thread count is never worth failing a job for
        _applied.threads = 0


@contextlib.contextmanager
def limited(n: int | None = None):
    """``set_threads(n)`` for a ``with`` block (yields ``n``); torch's and the BLAS pools' previous
    counts are restored afterwards."""
    import torch

    n = fit_threads() if n is None else int(n)
    before = torch.get_num_threads()
    limiter = _blas_limit(n)
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)
        if limiter is not None:
            limiter.restore_original_limits()
