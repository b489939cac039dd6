"""JobRunner (studio/app/runner.py) without a window: it is a QObject with a QThread and queued signals,
so it needs a Qt event loop, a QCoreApplication, and nothing else: no display, no QtWidgets.

The checks run in a child process (this file run as a script) with the display variables removed and
no platform plugin: a QCoreApplication made inside the test session would stay the session's one
application and break the GUI tests that follow (they need a QApplication)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_the_job_runner_runs_without_a_window_or_a_display():
    pytest.importorskip("PySide6", reason="PySide6 is not installed (pip install -e '.[test]')")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    proc = subprocess.run([sys.executable, __file__], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split() == ["ok"] * len(_CHECKS), proc.stdout + proc.stderr


# -- the child ------------------------------------------------------------------------------------
def _wait(app, cond, timeout=10.0) -> None:
    """Spin the event loop (queued signals are delivered there) until ``cond()``."""
    import time

    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for the runner")
        app.processEvents()
        time.sleep(0.002)


def _results_and_failures(app, runner) -> None:
    """A job's result reaches on_done on the UI thread; failures arrive as one line."""
    import threading

    from studio.core.errors import StudioError

    seen: dict = {}
    progress_seen: list = []
    runner.jobProgress.connect(lambda job, f, m: progress_seen.append((f, m)))

    def work(progress):
        seen["worker"] = threading.get_ident()
        progress(0.5, "half")
        progress(1.0, "done")
        return 42

    def bad(progress):
        raise StudioError("the scan is empty")

    def broken(progress):
        raise ValueError("no")

    ok = runner.submit(work, "work", on_done=lambda r: seen.update(result=r, ui=threading.get_ident()))
    errors: list = []
    failed = runner.submit(bad, "bad", on_error=errors.append)
    crashed = runner.submit(broken, "broken", on_error=errors.append)
    _wait(app, lambda: len(errors) == 2 and not runner.busy)
    assert seen["result"] == 42 and seen["ui"] == threading.get_ident() != seen["worker"]
    assert seen["worker"] == runner.worker_thread_id
    assert (1.0, "done") in progress_seen  # the last progress always gets through the throttle
    assert errors == ["the scan is empty", "ValueError: no"]  # StudioErrors as they are, others typed
    assert (ok.state, failed.state, crashed.state) == ("done", "failed", "failed")


def _cancel(app, runner) -> None:
    """Cancel stops a running job at its next progress call and a queued one before it starts."""
    import threading

    started = threading.Event()
    ran: list = []

    def forever(progress):
        started.set()
        while True:
            progress(0.1, "spinning")

    cancelled: list = []
    runner.jobCancelled.connect(cancelled.append)
    spin = runner.submit(forever, "spin")
    queued = runner.submit(lambda progress: ran.append(1), "queued")
    assert started.wait(10)
    queued.cancel()
    spin.cancel()
    _wait(app, lambda: len(cancelled) == 2 and not runner.busy)
    assert cancelled == [spin, queued] and ran == []
    assert spin.state == queued.state == "cancelled"


def _follow_up_failure(app, runner) -> None:
    """A job that worked but whose on_done raised is reported like a failure, on the UI thread."""
    errors: list = []
    follow: list = []
    runner.followUpFailed.connect(lambda job, msg: follow.append(msg))

    def on_done(result):
        raise RuntimeError("the view is gone")

    job = runner.submit(lambda progress: 1, "follow", on_done=on_done, on_error=errors.append)
    _wait(app, lambda: errors and not runner.busy)
    assert job.state == "done"
    assert errors == follow == ["RuntimeError: the view is gone"]


def _latest_wins(app, runner) -> None:
    """Evaluation requests made while the worker is busy collapse to the last one; one result."""
    import threading

    class Evaluator:  # stands in for MeshEvaluator: no model needed to test the scheduling
        def __init__(self):
            self.seen: list = []

        def evaluate(self, req):
            self.seen.append(req)
            return ("result", req)

    runner.evaluator = fake = Evaluator()
    gate = threading.Event()
    job = runner.submit(lambda progress: gate.wait(10), "hold the worker")  # no progress call: no servicing
    _wait(app, lambda: job.state == "running")
    for serial in range(5):
        runner.request_eval(serial)  # type: ignore[arg-type]  (any object: the fake reads nothing)
    ready: list = []
    runner.resultReady.connect(lambda: ready.append(runner.take_result()))
    gate.set()
    _wait(app, lambda: ready and not runner.busy)
    assert fake.seen == [4] and ready == [("result", 4)]
    assert runner.requests == 5 and runner.evaluations == 1


_CHECKS = (_results_and_failures, _cancel, _follow_up_failure, _latest_wins)


def _child() -> int:
    from PySide6.QtCore import QCoreApplication

    app = QCoreApplication([])
    from studio.app.runner import JobRunner

    runner = JobRunner()
    try:
        for check in _CHECKS:
            check(app, runner)
            print("ok", flush=True)
    finally:
        runner.shutdown()
    assert "PySide6.QtWidgets" not in sys.modules and "PySide6.QtGui" not in sys.modules, \
        "the runner pulled in Qt's GUI modules"
    assert type(QCoreApplication.instance()) is QCoreApplication
    return 0


if __name__ == "__main__":
    sys.exit(_child())
