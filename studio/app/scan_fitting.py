"""File → Load scan… / Fit scan: a 3-D scan shown with the face, fitted on the worker thread.

Loading reads the scan and aligns it to the model (a worker job), then draws its points with
the face. Fitting runs ``studio.jobs.fit_scan.fit`` — the code ``studio fit scan`` runs — as a job
with progress and Cancel; every iteration's estimate comes back through a queued signal, so the
sliders and the face follow the fit as it improves (plain document updates, not undo steps).
At the end the face before the fit is restored and the result applied with ``edit_params``: one
undo step. A cancelled or failed fit puts the face back as it was. "Show fit error" colours the
scan points by their distance to the fitted surface.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import studio.app.pyside_fix  # noqa: F401  (first: PySide6 6.12 emit refcount bug; see the module)

# isort: split
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction

from studio.app import dialogs

SCAN_FILTER = ("Scans (*.obj *.ply *.stl *.glb *.gltf *.off *.xyz *.txt *.pts *.npy *.png);;"
               "Meshes (*.obj *.ply *.stl *.glb *.gltf *.off);;Point clouds (*.ply *.xyz *.txt *.pts *.npy);;"
               "Depth maps (*.png *.npy);;All files (*)")
SHOWN_POINTS = 30_000  # the viewport draws at most this many scan points
UPDATE_INTERVAL = 0.1  # seconds between intermediate estimates sent to the window


class ScanFitting(QObject):
    estimate = Signal(object)  # (params, to_model) from the worker while fitting
    loaded = Signal()  # a scan is shown
    fitted = Signal()  # a fit ended and its result is applied
    fitEnded = Signal(str)  # "done", "cancelled" or "failed"

    def __init__(self, window, file_menu):
        super().__init__(window)
        self.w = window
        self.scan = None
        self.scan_path: Path | None = None
        self.shown_idx: np.ndarray | None = None
        self.to_model = None  # scan → model similarity currently used to draw the scan
        self.model = None
        self.result = None
        self.report = None
        self.job = None
        self._before = None
        self.updates = 0
        self.load_action = file_menu.addAction("Load scan…")
        self.load_action.triggered.connect(self.load_dialog)
        self.fit_action = file_menu.addAction("Fit scan")
        self.fit_action.triggered.connect(lambda: self.fit())
        self.heat_action = QAction("Show fit error on the scan", window, checkable=True)
        self.heat_action.toggled.connect(self._show_heat)
        file_menu.addAction(self.heat_action)
        self.clear_action = file_menu.addAction("Remove scan")
        self.clear_action.triggered.connect(self.clear)
        self.estimate.connect(self._on_estimate)
        window.runner.jobCancelled.connect(self._on_cancelled)
        window.doc.modelChanged.connect(lambda _m: self.clear())
        self._sync_actions()

    # -- state -----------------------------------------------------------------------------------
    def _sync_actions(self) -> None:
        has_scan = self.scan is not None and self.w.doc.model is not None
        self.fit_action.setEnabled(has_scan and self.job is None)
        self.clear_action.setEnabled(self.scan is not None)
        self.heat_action.setEnabled(self.report is not None and self.job is None)

    def clear(self) -> None:
        if self.job is not None:
            self.job.cancel()
        self.scan = self.result = self.report = self.to_model = None
        self.heat_action.setChecked(False)
        self.w.viewport.set_overlay_points("scan", None)
        self._sync_actions()

    # -- loading ---------------------------------------------------------------------------------
    def load_dialog(self) -> None:
        path = dialogs.open_file(self.w, "Load a scan to fit", SCAN_FILTER)
        if path is not None:
            self.load(path)

    def load(self, path, unit: str | None = None) -> None:
        """Read and align the scan on the worker, then draw it with the face."""
        from studio.core.fitting import fit_options, initial_alignment
        from studio.jobs import fit_scan as jobs

        model = self.w.doc.model
        if model is None:
            self.w.notify("open a model first, then load a scan to fit to it", error=True)
            return
        path = Path(path)

        def job(progress):
            scan = jobs.load(model, path, unit)
            progress(0.3, "aligning")
            to_model = initial_alignment(model, scan, "face", fit_options(model), progress)
            return scan, to_model

        self.w.notify(f"loading scan {path.name}…")
        self.w.runner.submit(job, f"loading {path.name}", on_done=lambda r: self._loaded(path, model, *r),
                             on_error=lambda msg: self.w.notify(msg, error=True))

    def _loaded(self, path: Path, model, scan, to_model) -> None:
        if model is not self.w.doc.model:
            return
        self.scan, self.scan_path, self.model = scan, path, model
        self.result = self.report = None
        self.heat_action.setChecked(False)
        rng = np.random.default_rng(0)
        n = len(scan.points)
        self.shown_idx = np.arange(n) if n <= SHOWN_POINTS else np.sort(rng.choice(n, SHOWN_POINTS, replace=False))
        self._draw_scan(to_model)
        self.w.notify(f"loaded {path.name}: {n:,} points ({scan.kind}, unit {scan.unit}); File → Fit scan fits it")
        self._sync_actions()
        self.loaded.emit()

    def _draw_scan(self, to_model, rgb=None) -> None:
        self.to_model = to_model
        pts = to_model.apply(self.scan.points[self.shown_idx])
        self.w.viewport.set_overlay_points("scan", pts, rgb)

    # -- fitting ---------------------------------------------------------------------------------
    def fit(self, region: str = "face") -> None:
        from studio.jobs import fit_scan as jobs

        model, scan = self.w.doc.model, self.scan
        if model is None or scan is None or self.job is not None:
            return
        if model is not self.model:
            self.w.notify("the scan was aligned to another model; load it again", error=True)
            return
        self._before = self.w.doc.snapshot()
        self.heat_action.setChecked(False)
        self.updates = 0
        last = [0.0]

        def on_update(params, to_model):
            now = time.monotonic()
            if now - last[0] >= UPDATE_INTERVAL:
                last[0] = now
                self.estimate.emit(({k: v.copy() for k, v in params.items()}, to_model))

        def job(progress):
            return jobs.fit(model, scan, region, progress=progress, on_update=on_update)

        self.job = self.w.runner.submit(job, "fitting the scan", on_done=self._done, on_error=self._failed)
        self._sync_actions()

    def _on_estimate(self, item) -> None:
        params, to_model = item
        if self.job is None or self.w.doc.model is not self.model:
            return
        self.updates += 1
        self.w.doc.set_params(params)  # live, not an undo step: the final result is one
        self._draw_scan(to_model)

    def _done(self, outcome) -> None:
        self.job = None
        result, report = outcome
        if self.w.doc.model is not self.model:
            return
        self.result, self.report = result, report
        self.w.doc.set_params(self._before)
        self.w.doc.edit_params(result.params, "fit scan")
        self._draw_scan(result.to_model)
        m = report.metrics
        figures = (f"scan → fit median {m['scan_to_fit_median_mm']:.2f} mm, 95% {m['scan_to_fit_p95_mm']:.2f} mm")
        verdict = result.verdict
        if verdict is not None and not verdict.ok:
            # Shown, one undo step away, but not called "fitted": the fit judged itself wrong.
            self.w.notify(f"{self.scan_path.name}: {verdict.summary()} ({figures}); do not trust this result",
                          error=True)
        else:
            self.w.notify(f"fitted {self.scan_path.name} in {result.seconds:.2f} s: {figures}")
        self._sync_actions()
        self.fitted.emit()
        self.fitEnded.emit("done" if verdict is None or verdict.ok else "suspect")

    def _restore(self) -> None:
        if self._before is not None and self.w.doc.model is self.model:
            self.w.doc.set_params(self._before)
        if self.result is None and self.scan is not None and self.to_model is not None:
            self._draw_scan(self.to_model)

    def _failed(self, message: str) -> None:
        self.job = None
        self._restore()
        self.w.notify(f"fitting failed: {message}", error=True)
        self._sync_actions()
        self.fitEnded.emit("failed")

    def _on_cancelled(self, job) -> None:
        if job is not self.job:
            return
        self.job = None
        self._restore()
        self._sync_actions()
        self.fitEnded.emit("cancelled")

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    # -- error display ---------------------------------------------------------------------------
    def _show_heat(self, on: bool) -> None:
        if self.scan is None or self.to_model is None:
            return
        rgb = None
        if on and self.report is not None:
            from studio.core.fitting.report import heat_colors

            d = self.report.scan_distance_mm[self.shown_idx]
            rgb = np.clip(heat_colors(d) * 255 + 0.5, 0, 255).astype(np.uint8)
        self._draw_scan(self.to_model, rgb)


def install(window, file_menu) -> None:
    window.scan_fitting = ScanFitting(window, file_menu)
