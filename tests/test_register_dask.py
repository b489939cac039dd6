"""``studio register --scheduler``: a real ``dask scheduler`` and two ``dask worker`` processes on
localhost give the same meshes as the local cluster, and a worker killed mid-run loses no scan
and damages no file."""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from studio.cli.main import main
from studio.core.objio import read_obj_vertices

pytestmark = pytest.mark.ict
DASK = str(Path(sys.executable).parent / "dask")
N_SCANS = 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def scans(ict_store, tmp_path_factory):
    from studio.core.modelfile import load_model
    from studio.core.registration.synthetic import truth_scan, write_scan

    model_path = ict_store / "models" / "ict" / "model.npz"
    model = load_model(model_path)
    folder = tmp_path_factory.mktemp("dask-scans")
    for seed in range(100, 100 + N_SCANS):
        write_scan(truth_scan(model, seed), folder / f"face{seed}.ply")
    return model_path, folder


@pytest.fixture
def cluster(tmp_path):
    port = _free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    start = dict(env=env, cwd=tmp_path, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], **start)]
    address = f"tcp://127.0.0.1:{port}"
    for _ in range(2):
        procs.append(subprocess.Popen([DASK, "worker", address, "--nthreads", "1", "--nworkers", "1",
                                       "--no-dashboard"], **start))
    from distributed import Client

    with Client(address, timeout="60s") as c:
        c.wait_for_workers(2, timeout=120)
    yield address, procs[1:]
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def test_scheduler_run_matches_local_and_survives_a_killed_worker(scans, cluster, tmp_path):
    model_path, folder = scans
    address, workers = cluster
    local, remote = tmp_path / "local", tmp_path / "remote"
    assert main(["register", str(folder), "--model", str(model_path), "-o", str(local), "--workers", "1"]) == 0

    killed = {}

    def kill_one_worker_mid_run():
        # Once the first scan is written the others are in flight: the first worker dies with its task.
        while not list((remote / "records").glob("*.json")) if (remote / "records").exists() else True:
            time.sleep(0.05)
        os.killpg(workers[0].pid, signal.SIGKILL)
        killed["after"] = len(list((remote / "records").glob("*.json")))

    t = threading.Thread(target=kill_one_worker_mid_run, daemon=True)
    t.start()
    assert main(["register", str(folder), "--model", str(model_path), "-o", str(remote), "--scheduler", address]) == 0
    t.join(timeout=5)
    assert killed and killed["after"] < N_SCANS  # the kill came while scans were still running

    rows = list(csv.DictReader((remote / "summary.csv").open()))
    assert len(rows) == N_SCANS and all(r["status"] == "ok" for r in rows)  # no scan lost
    assert not list(remote.rglob("*.tmp*"))  # no half-written file
    for name in (p.stem for p in folder.iterdir()):
        a = read_obj_vertices(local / "registered" / f"{name}.obj")
        b = read_obj_vertices(remote / "registered" / f"{name}.obj")  # every file parses whole
        assert np.abs(a - b).max() <= 1e-6
