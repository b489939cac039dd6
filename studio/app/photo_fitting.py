"""File → Load photo…: fit the open model to a portrait in the worker, show it, set the sliders.

The fit runs as a ``window.runner`` job (progress bar + Cancel in the status bar). While it runs,
the "Photo" dock shows the photo with the current model render blended over it (the fit's preview
callback, every few iterations, handed to the UI thread through a queued signal). When it is done
the result's coefficients become one undoable edit of the document (the sliders move, Ctrl+Z goes
back), the dock shows the final overlay with the landmarks, and the viewport shows the face with
the colours taken from the photo (per-vertex texture) until another model is opened or the
"Show photo texture" box is cleared.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import studio.app.pyside_fix  # noqa: F401  (first: PySide6 6.12 emit refcount bug; see the module)

# isort: split
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QDockWidget,
    QFileDialog,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

PHOTO_FILTER = "Photos (*.png *.jpg *.jpeg *.bmp *.tif *.tiff *.webp);;All files (*)"


def _pixmap(img: np.ndarray) -> QPixmap:
    img = np.ascontiguousarray(img, np.uint8)
    h, w = img.shape[:2]
    q = QImage(img.data, w, h, 3 * w, QImage.Format.Format_RGB888)
    return QPixmap.fromImage(q.copy())


PLACEHOLDER = "File → Load photo… fits the open model to a portrait."


class PhotoPanel(QWidget):
    """The photo with the fit blended over it, a status line, Cancel and a texture toggle."""

    previewReady = Signal(object)  # emitted from the worker thread; queued to the UI thread

    def __init__(self, parent=None):
        super().__init__(parent)
        self.image = QLabel(PLACEHOLDER)
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image.setMinimumSize(120, 120)
        self.image.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.image.setWordWrap(True)
        self.info = QLabel("")
        self.info.setWordWrap(True)
        self.cancel = QPushButton("Cancel fit")
        self.cancel.setEnabled(False)
        self.texture = QCheckBox("Show photo texture")
        self.texture.setEnabled(False)
        lay = QVBoxLayout(self)
        lay.addWidget(self.image, 1)
        lay.addWidget(self.info)
        lay.addWidget(self.texture)
        lay.addWidget(self.cancel)
        self._last = None
        self.previewReady.connect(self.show_image)

    def show_image(self, img: np.ndarray) -> None:
        self._last = img
        self._rescale()

    def clear(self) -> None:
        self._last = None
        self.image.clear()
        self.image.setText(PLACEHOLDER)
        self.info.setText("")

    def _rescale(self) -> None:
        if self._last is None:
            return
        pm = _pixmap(self._last)
        self.image.setPixmap(pm.scaled(self.image.size(), Qt.AspectRatioMode.KeepAspectRatio,
                                       Qt.TransformationMode.SmoothTransformation))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._rescale()


class PhotoFitting(QObject):
    """The controller: the File-menu action, the job, and what happens with its result."""

    fitted = Signal(object)  # the PhotoFit, after the sliders were set
    failed = Signal(str)

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.panel = PhotoPanel()
        self.dock = QDockWidget("Photo", window)
        self.dock.setObjectName("dock-Photo")
        self.dock.setWidget(self.panel)
        window.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.dock)
        window.docks["Photo"] = self.dock  # so View lists it beside the others
        faces_dock = window.docks.get("Faces")
        if faces_dock is not None:  # a tab beside "Faces": the photo gets the dock's full height
            window.tabifyDockWidget(faces_dock, self.dock)
        self.dock.hide()
        self.job = None
        self.result = None
        self.panel.cancel.clicked.connect(self.cancel)
        self.panel.texture.toggled.connect(self._show_texture)
        window.doc.modelChanged.connect(self._model_changed)
        window.runner.jobCancelled.connect(self._cancelled)

    # -- actions ---------------------------------------------------------------------------------
    def load_dialog(self) -> None:
        refusal = self._refusal()  # said before the dialog: a file picked for nothing is time lost
        if refusal:
            self.window.notify(refusal, error=True)
            return
        path, _ = QFileDialog.getOpenFileName(self.window, "Load photo", "", PHOTO_FILTER)
        if path:
            self.fit(path)

    def _refusal(self) -> str | None:
        model = self.window.doc.model
        if model is None:
            return "open a model before loading a photo"
        if not model.supports_photo_fit:
            return (f"{model.name} cannot be fitted to photos: photo fitting needs a linear (PCA) model "
                    "such as ICT-FaceKit")
        if self.job is not None and self.job.state in ("queued", "running"):
            return "a photo fit is already running"
        return None

    def fit(self, photo, iterations: int = 250, preview_every: int = 25):
        """Start fitting the open model to ``photo`` (a path or an RGB array); returns the Job."""
        from studio.core.photo.fit import PhotoFitOptions
        from studio.jobs.fit_photo import fit_photo_job, overlay_image

        w = self.window
        model = w.doc.model
        refusal = self._refusal()
        if refusal:
            w.notify(refusal, error=True)
            return None
        name = Path(photo).name if isinstance(photo, (str, Path)) else "photo"
        self.dock.show()
        self.dock.raise_()
        self.panel.info.setText(f"fitting {model.name} to {name}…")
        self.panel.cancel.setEnabled(True)
        options = PhotoFitOptions(iterations=iterations, preview_every=preview_every)
        emit = self.panel.previewReady.emit

        def job(progress):
            fit = fit_photo_job(model, photo, None, options, progress, preview=emit)
            return fit, overlay_image(model, fit)

        self.job = w.runner.submit(job, f"Fitting {model.name} to {name}",
                                   on_done=lambda r: self._done(model, name, *r), on_error=self._error)
        return self.job

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    # -- results (UI thread) -------------------------------------------------------------------
    def _done(self, model, name, fit, overlay) -> None:
        w = self.window
        self.panel.cancel.setEnabled(False)
        if model is not w.doc.model:
            return  # the user opened another model meanwhile
        self.result = fit
        self.panel.show_image(overlay)
        params = {g.name: fit.result.params[g.name] for g in model.groups}
        w.doc.edit_params(params, f"Fit photo {name}")
        s = fit.summary()
        cam = fit.result.camera.as_json()
        text = (f"{name}: {s['landmarks_fitted']} landmarks, rms {s['landmark_rms_px']:.1f} px, "
                f"yaw {cam['yaw_pitch_roll_deg'][0]:.0f}°, {s['timings_s']['total_s']:.1f} s")
        if "landmark68_mean_error_iod" in s:
            text += f"; 68 landmarks within {100 * s['landmark68_mean_error_iod']:.1f}% of the eye distance"
        if not fit.verdict.ok:
            text = f"⚠ {fit.verdict.summary()} — {text}"
        self.panel.info.setText(text)
        self.panel.texture.setEnabled(True)
        if self.panel.texture.isChecked():
            self._show_texture(True)
        else:
            self.panel.texture.setChecked(True)  # → _show_texture
        if fit.verdict.ok:
            w.notify(f"fitted {model.name} to {name}")
        else:
            w.notify(f"photo fit of {name}: {fit.verdict.summary()}", error=True)
        self.fitted.emit(fit)

    def _show_texture(self, on: bool) -> None:
        from studio.core.photo.texture import photo_texture

        w = self.window
        fit = self.result
        if fit is None or w.doc.model is None or w.doc.model.name != fit.model_name:
            return
        if on:
            tex = photo_texture(w.doc.model, fit.vertices, fit.result.camera, fit.image, uv_texture=False)
            w.viewport.set_vertex_colors(np.clip(tex.vertex_colors * 255 + 0.5, 0, 255).astype(np.uint8))
        else:
            w.viewport.set_vertex_colors(None)

    def _error(self, message: str) -> None:
        self.panel.cancel.setEnabled(False)
        self.panel.info.setText(f"photo fit failed: {message}")
        self.failed.emit(message)

    def _cancelled(self, job) -> None:
        if job is self.job:
            self.panel.cancel.setEnabled(False)
            self.panel.info.setText("photo fit cancelled")
            self.window.notify("photo fit cancelled")
            self.failed.emit("cancelled")

    def _model_changed(self, _model) -> None:
        self.result = None  # the last fit belongs to the model that was open; its overlay goes too
        self.panel.clear()
        self.panel.texture.blockSignals(True)
        self.panel.texture.setChecked(False)
        self.panel.texture.blockSignals(False)
        self.panel.texture.setEnabled(False)


def install(window, file_menu) -> None:
    window.photo_fitting = PhotoFitting(window)
    action = file_menu.addAction("Load photo…")
    action.triggered.connect(window.photo_fitting.load_dialog)
    window.photo_fitting.action = action
    from studio.app import detail_view  # the Detail toggle and strength slider in the Photo dock

    detail_view.install(window)
