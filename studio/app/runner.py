"""The ONE background worker: every mesh evaluation and every long job runs on its QThread.

Two kinds of work, one thread (so the stateful IncrementalEvaluator is only ever touched here):

* Evaluation requests are latest-wins. The UI thread overwrites a single "pending" slot; a
  request that was not started before the next one arrived is dropped, never queued. Results are
  latest-wins too: the worker keeps one undelivered result and signals only when the slot was
  empty, so a busy UI thread never faces a backlog of stale meshes either.
* Jobs (import, export, thumbnails, GIFs …) are plain functions ``fn(progress)`` run in order.
  ``progress(fraction, message)`` raises ``Cancelled`` once Cancel was pressed (the core's
  cancellation contract), forwards throttled progress to the status bar, and services a pending
  evaluation between steps so the viewport stays live during a long job.

Results, progress and errors reach the UI thread through queued signals: the runner object lives
on the UI thread, so Qt delivers signals emitted from the worker via the UI event loop.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import traceback
from collections import deque
from typing import Any, Callable

import studio.app.pyside_fix  # noqa: F401  (first: PySide6 6.12 emit refcount bug; see the module)

# isort: split
from PySide6.QtCore import QObject, QThread, Signal

from studio.app.evaluation import EvalRequest, EvalResult, MeshEvaluator
from studio.core import threads
from studio.core.errors import StudioError
from studio.core.progress import Cancelled

log = logging.getLogger(__name__)
_ids = itertools.count(1)


def one_line(exc: BaseException) -> str:
    """What the status bar shows for a failure: StudioErrors as they are, others with their type."""
    text = str(exc) if isinstance(exc, StudioError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split()) or type(exc).__name__


class Job:
    """A handle for one queued job; ``cancel()`` may be called from the UI thread at any time."""

    def __init__(self, fn: Callable[[Callable], Any], title: str, on_done=None, on_error=None,
                 quiet: bool = False):
        self.id = next(_ids)
        self.fn = fn
        self.title = title
        self.on_done = on_done
        self.on_error = on_error
        self.quiet = quiet  # short jobs (thumbnails, model loads) do not flash a progress bar
        self.cancel_requested = False
        self.state = "queued"  # queued → running → done | failed | cancelled

    def cancel(self) -> None:
        self.cancel_requested = True

    def __repr__(self):
        return f"<Job {self.id} {self.title!r} {self.state}>"


class _Thread(QThread):
    def __init__(self, runner: "JobRunner"):
        super().__init__()
        self._runner = runner
        self.setObjectName("studio-worker")

    def run(self):
        self._runner._loop()


class JobRunner(QObject):
    resultReady = Signal()  # take it with take_result(); emitted once per empty→full transition
    evalFailed = Signal(str)
    jobStarted = Signal(object)
    jobProgress = Signal(object, float, str)
    jobFinished = Signal(object, object)
    jobFailed = Signal(object, str)
    jobCancelled = Signal(object)
    followUpFailed = Signal(object, str)  # the job worked but its on_done (UI thread) raised

    PROGRESS_INTERVAL = 0.05  # seconds between progress signals (the bar need not see every step)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._cond = threading.Condition()
        self._pending: EvalRequest | None = None
        self._jobs: deque[Job] = deque()
        self._current: Job | None = None
        self._result: EvalResult | None = None
        self._result_signalled = False
        self._stopping = False
        self.evaluator = MeshEvaluator()  # worker-thread only
        self.requests = 0  # evaluation requests received
        self.evaluations = 0  # evaluations actually run (≤ requests: stale ones are dropped)
        self.worker_thread_id: int | None = None
        self._undelivered = 0  # job outcomes emitted by the worker, not yet handled on the UI thread
        self.jobFinished.connect(self._deliver_done)
        self.jobFailed.connect(self._deliver_error)
        self.jobCancelled.connect(lambda _job: self._delivered())
        self._thread = _Thread(self)
        self._thread.start()

    # -- UI thread API -------------------------------------------------------------------------
    def request_eval(self, req: EvalRequest) -> None:
        """Replace whatever evaluation is pending with ``req`` (latest wins)."""
        with self._cond:
            self.requests += 1
            self._pending = req
            self._cond.notify()

    def take_result(self) -> EvalResult | None:
        with self._cond:
            res, self._result = self._result, None
            self._result_signalled = False
            return res

    def submit(self, fn: Callable[[Callable], Any], title: str, on_done=None, on_error=None,
               quiet: bool = False) -> Job:
        job = Job(fn, title, on_done, on_error, quiet)
        with self._cond:
            self._jobs.append(job)
            self._cond.notify()
        return job

    @property
    def busy(self) -> bool:
        """A job is queued or running, or its outcome has not reached the UI thread yet."""
        with self._cond:
            return self._current is not None or bool(self._jobs) or self._undelivered > 0

    def shutdown(self, timeout_ms: int = 10000) -> None:
        """Stop after the running job notices its cancellation (at its next progress call)."""
        with self._cond:
            self._stopping = True
            for job in self._jobs:
                job.cancel()
            if self._current is not None:
                self._current.cancel()
            self._cond.notify_all()
        self._thread.wait(timeout_ms)

    # -- worker thread -------------------------------------------------------------------------
    def _loop(self) -> None:
        self.worker_thread_id = threading.get_ident()
        while True:
            with self._cond:
                while not self._stopping and self._pending is None and not self._jobs:
                    self._cond.wait()
                if self._stopping:
                    return
                req, self._pending = self._pending, None
                job = None
                if req is None:
                    job = self._current = self._jobs.popleft()
            if req is not None:
                self._evaluate(req)
            else:
                self._run(job)

    def _evaluate(self, req: EvalRequest) -> None:
        threads.ensure()  # see _run
        try:
            res = self.evaluator.evaluate(req)
        except Exception as e:  # never let a bad request kill the worker
            log.debug("evaluation failed", exc_info=True)
            self.evalFailed.emit(one_line(e))
            return
        self.evaluations += 1
        with self._cond:
            self._result = res
            notify = not self._result_signalled
            self._result_signalled = True
        if notify:
            self.resultReady.emit()

    def _service_pending(self) -> None:
        with self._cond:
            req, self._pending = self._pending, None
        if req is not None:
            self._evaluate(req)

    def _run(self, job: Job) -> None:
        # torch's thread count is per thread: this one's follows the policy (one thread on 2 cores, so
        # the worker never competes with the UI thread) from the first job or evaluation after torch
        # is loaded (a neural fit sets its own count as well).
        threads.ensure()
        last = [0.0]

        def progress(fraction: float, message: str = "") -> None:
            if job.cancel_requested:
                raise Cancelled()
            now = time.monotonic()
            if now - last[0] >= self.PROGRESS_INTERVAL or fraction >= 1.0:
                last[0] = now
                self.jobProgress.emit(job, float(fraction), str(message))
            self._service_pending()
            if job.cancel_requested:
                raise Cancelled()

        job.state = "running"
        self.jobStarted.emit(job)
        with self._cond:
            self._undelivered += 1  # exactly one of finished / failed / cancelled follows
        try:
            if job.cancel_requested:
                raise Cancelled()
            result = job.fn(progress)
        except Cancelled:
            job.state = "cancelled"
            self.jobCancelled.emit(job)
        except Exception as e:
            # One line for the user; the traceback goes to the log for a developer, never a dialog.
            if not isinstance(e, StudioError):
                log.warning("job %r failed:\n%s", job.title, traceback.format_exc())
            job.state = "failed"
            self.jobFailed.emit(job, one_line(e))
        else:
            job.state = "done"
            self.jobFinished.emit(job, result)
        finally:
            with self._cond:
                self._current = None

    # -- delivered on the UI thread ------------------------------------------------------------
    def _delivered(self) -> None:
        with self._cond:
            self._undelivered -= 1

    def _deliver_done(self, job: Job, result) -> None:
        self._delivered()
        if job.on_done is None:
            return
        try:
            job.on_done(result)
        except Exception as e:  # a failing follow-up is reported like a failing job
            log.warning("after job %r:\n%s", job.title, traceback.format_exc())
            self.followUpFailed.emit(job, one_line(e))
            if job.on_error is not None:
                job.on_error(one_line(e))

    def _deliver_error(self, job: Job, message: str) -> None:
        self._delivered()
        if job.on_error is not None:
            job.on_error(message)
