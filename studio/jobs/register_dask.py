"""Running one task per scan on Dask distributed.

Without ``--scheduler`` an in-process ``LocalCluster`` is started with one single-threaded worker
process per free core; with ``tcp://HOST:PORT`` the same tasks go to an existing cluster (its
workers must see the scan files and the model file at the same paths). Results come back to this
process, which writes them as they finish: a worker that dies has its tasks rerun elsewhere by the
scheduler, and since only this process writes, and once per scan, nothing is written twice.
"""

from __future__ import annotations

import contextlib
import logging
import os

from studio.core.errors import StudioError
from studio.core.threads import available_cores


def free_cores() -> int:
    """The cores not already busy: those this process may use, less the 1-minute load average."""
    cores = available_cores()
    try:
        busy = int(os.getloadavg()[0] + 0.5)
    except OSError:
        busy = 0
    return max(1, min(cores, cores - busy))


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None):
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="15s")
        except (OSError, TimeoutError) as e:
            raise StudioError(f"cannot reach the Dask scheduler at {scheduler}: {e}") from None
        with client:
            if not client.scheduler_info()["workers"]:
                client.wait_for_workers(1, timeout=60)
            yield client
        return
    if workers is not None and workers < 1:
        raise StudioError("--workers must be at least 1")
    n = workers or free_cores()
    # Worker processes, one thread each: a fit is single-threaded numpy and Python (the GIL).
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        yield client


def run_tasks(client, fn, model_path: str, todo: list, options, done) -> None:
    """Submit ``fn(model_path, path, options)`` per (name, path) and call ``done(name, result, k)``
    as each finishes (k: how many have). A task the cluster gave up on (its workers kept dying:
    ``KilledWorker``) comes back as ``result`` None: nothing is written, a later run retries it."""
    from distributed import as_completed

    futures = {client.submit(fn, model_path, str(path), options, key=f"register-{name}-{os.getpid()}",
                             pure=False): name for name, path in todo}
    try:
        for k, fut in enumerate(as_completed(futures), 1):
            try:
                result = fut.result()
            except Exception as e:  # noqa: BLE001 - the cluster's failure, not the scan's
                logging.getLogger(__name__).warning("%s: %s: %s", futures[fut], e.__class__.__name__, e)
                result = None
            fut.release()  # the worker may drop it now: memory stays bounded by the tasks in flight
            done(futures[fut], result, k)
    finally:
        for fut in futures:
            if not fut.done():
                fut.cancel()
