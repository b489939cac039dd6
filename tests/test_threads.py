"""The CPU thread policy (studio.core.threads) and ``studio bench fit --busy``'s load process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from studio.core import threads


@pytest.fixture
def restore_threads():
    """Put torch's and the BLAS pools' thread counts back after a test that changes them."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    limiter = threadpool_limits(limits=None)  # records the current limits; restores them below
    yield
    torch.set_num_threads(before)
    limiter.restore_original_limits()


def test_available_cores_follow_the_affinity():
    n = threads.available_cores()
    assert 1 <= n <= (os.cpu_count() or 1)
    if hasattr(os, "sched_getaffinity"):
        assert n == len(os.sched_getaffinity(0))


def test_fit_threads_leave_a_core_and_are_capped():
    assert [threads.fit_threads(c) for c in (1, 2, 3, 4, 8, 64)] == [1, 1, 2, 3, 4, threads.MAX_FIT_THREADS]
    assert threads.fit_threads() == threads.fit_threads(threads.available_cores())


def test_set_threads_sets_torch_and_blas(restore_threads):
    import torch
    from threadpoolctl import threadpool_info

    assert threads.set_threads(1) == 1
    assert torch.get_num_threads() == 1
    assert all(p["num_threads"] == 1 for p in threadpool_info() if p["user_api"] in ("blas", "openmp"))
    assert threads.set_threads() == threads.fit_threads()
    assert torch.get_num_threads() == threads.fit_threads()
    threads.set_threads(2)  # inter-op threads can no longer change by now: skipped, not an error
    assert torch.get_num_threads() == 2
    with pytest.raises(ValueError):
        threads.set_threads(0)


def test_limited_restores_the_previous_counts(restore_threads):
    import torch

    torch.set_num_threads(2)
    with threads.limited(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError), threads.limited(1):
        raise RuntimeError("restored on errors too")
    assert torch.get_num_threads() == 2


def test_a_neural_scan_fit_runs_with_the_policys_threads(restore_threads, monkeypatch):
    import torch

    from studio.core import fitting
    from studio.core.fitting import neural_scan

    seen = []
    monkeypatch.setattr(neural_scan, "fit", lambda model, scan, **kw: seen.append(torch.get_num_threads()))
    torch.set_num_threads(2)
    fitting.fit_scan(type("M", (), {"kind": "neural", "as_linear": lambda self: None})(), None)
    assert seen == [threads.fit_threads()]
    assert torch.get_num_threads() == 2


def test_ensure_sets_each_thread_once(restore_threads):
    import torch

    torch.set_num_threads(2)
    seen = []

    def worker():
        threads.ensure(1)
        seen.append(torch.get_num_threads())
        torch.set_num_threads(2)
        threads.ensure(1)  # already applied in this thread: left alone
        seen.append(torch.get_num_threads())

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [1, 2]


def test_env_defaults_never_replace_the_users_values():
    env = {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": ""}
    added = threads.env_defaults(env, threads=1)  # the user's count for the others too
    assert env == {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3", "OPENBLAS_NUM_THREADS": "3"}
    assert added == {"MKL_NUM_THREADS": "3", "OPENBLAS_NUM_THREADS": "3"}
    env = {"OPENBLAS_NUM_THREADS": "1"}
    threads.env_defaults(env, threads=2)
    assert env == dict.fromkeys(threads.ENV_VARS, "1")
    env = {}
    assert threads.env_defaults(env) == env == dict.fromkeys(threads.ENV_VARS, str(threads.fit_threads()))


def test_cli_entry_sets_thread_env_before_torch_loads():
    """In a fresh interpreter the CLI entry's defaults reach torch; a user's OMP_NUM_THREADS stays."""
    code = ("import os, sys; from studio.cli.main import _thread_env_defaults; _thread_env_defaults(); "
            "import torch; print(os.environ['OMP_NUM_THREADS'], torch.get_num_threads())")
    env = {k: v for k, v in os.environ.items() if k not in threads.ENV_VARS}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    n = threads.fit_threads()
    assert out.stdout.split() == [str(n), str(n)]
    out = subprocess.run([sys.executable, "-c", code], env={**env, "OMP_NUM_THREADS": "2"}, capture_output=True,
                         text=True, check=True)
    assert out.stdout.split() == ["2", "2"]


def test_cli_entry_leaves_the_env_alone_once_numpy_is_loaded(monkeypatch):
    from studio.cli import main as cli_main

    for name in threads.ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    cli_main._thread_env_defaults()  # numpy is loaded in this process: too late to matter
    assert not any(name in os.environ for name in threads.ENV_VARS)


@pytest.fixture
def load_processes(monkeypatch):
    """Record the load process ``busy_load`` starts (and whether it ran while the fits did)."""
    from studio.bench import fit as bench_fit

    seen: list[dict] = []
    real_load, real_trials = bench_fit.busy_load, bench_fit.run_trials

    def busy_load(enabled=True):
        cm = real_load(enabled)
        proc = cm.__enter__()
        seen.append({"proc": proc})
        return _Exit(cm, proc)

    def run_trials(*args, **kwargs):
        for s in seen:
            s["alive_during_fits"] = s["proc"] is not None and s["proc"].is_alive()
        return real_trials(*args, **kwargs)

    monkeypatch.setattr(bench_fit, "busy_load", busy_load)
    monkeypatch.setattr(bench_fit, "run_trials", run_trials)
    return seen


class _Exit:
    def __init__(self, cm, proc):
        self.cm, self.proc = cm, proc

    def __enter__(self):
        return self.proc

    def __exit__(self, *exc):
        return self.cm.__exit__(*exc)


def test_bench_fit_busy_starts_and_stops_its_load(load_processes, capsys):
    from studio.cli.main import main

    assert main(["bench", "fit", "--busy", "--neural", "none", "--trials", "1", "--points", "2000", "--no-shapes",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["busy"] is True and result["fit_threads"] == threads.fit_threads()
    (load,) = load_processes
    assert load["alive_during_fits"]
    assert not load["proc"].is_alive() and load["proc"].exitcode is not None


def test_bench_fit_without_busy_starts_no_load(load_processes, capsys):
    from studio.cli.main import main

    assert main(["bench", "fit", "--neural", "none", "--trials", "1", "--points", "2000", "--no-shapes",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["busy"] is False
    assert [s["proc"] for s in load_processes] == [None]


def test_busy_load_is_stopped_on_errors_and_interrupts():
    from studio.bench.fit import busy_load

    for exc in (RuntimeError, KeyboardInterrupt):
        with pytest.raises(exc), busy_load() as proc:
            assert proc.is_alive()
            raise exc()
        assert not proc.is_alive() and proc.exitcode is not None
