"""Status bar: one-line messages, and a progress bar with Cancel while a long job runs.

Cancel only sets the job's flag; the job stops at its next progress call, where the runner's
callback raises Cancelled (the core's contract), so no thread is ever killed.
"""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QProgressBar, QPushButton, QStatusBar

MESSAGE_MS = 8000
ERROR_MS = 20000


class StatusBar(QStatusBar):
    def __init__(self, runner, parent=None):
        super().__init__(parent)
        self.runner = runner
        self.job = None
        self.last_message = ""
        self.last_error = ""
        self.title = QLabel("")
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setMaximumWidth(220)
        self.bar.setTextVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        for w in (self.title, self.bar, self.cancel_button):
            self.addPermanentWidget(w)
        self._show_job(False)
        runner.jobStarted.connect(self._started)
        runner.jobProgress.connect(self._progress)
        runner.jobFinished.connect(lambda job, _r: self._ended(job))
        runner.jobFailed.connect(self._failed)
        runner.jobCancelled.connect(self._cancelled)
        runner.followUpFailed.connect(lambda _job, msg: self.error(msg))
        runner.evalFailed.connect(self.error)

    def _show_job(self, on: bool) -> None:
        for w in (self.title, self.bar, self.cancel_button):
            w.setVisible(on)

    def message(self, text: str) -> None:
        self.last_message = text
        self.showMessage(text, MESSAGE_MS)

    def error(self, text: str) -> None:
        self.last_message = self.last_error = text
        self.showMessage(f"⚠ {text}", ERROR_MS)

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.title.setText(f"{self.job.title}: cancelling…")

    def _started(self, job) -> None:
        if job.quiet:
            return
        self.job = job
        self.title.setText(job.title)
        self.bar.setValue(0)
        self._show_job(True)

    def _progress(self, job, fraction: float, message: str) -> None:
        if job is self.job:
            self.bar.setValue(int(fraction * 1000))
            if message:
                self.title.setText(f"{job.title}: {message}")

    def _ended(self, job) -> None:
        if job is self.job:
            self.job = None
            self._show_job(False)

    def _failed(self, job, message: str) -> None:
        self._ended(job)
        self.error(f"{job.title} failed: {message}")

    def _cancelled(self, job) -> None:
        self._ended(job)
        self.message(f"{job.title}: cancelled")
