"""Fine detail in the window: a "Detail" toggle and a strength slider in the Photo dock, the
viewport drawn with VTK's PBR shading and the detail as a normal texture.

After a photo fit, ticking *Detail* recovers the displacement map in the worker (jobs/detail.py,
about ten seconds); the viewport then shows the face with its tangent-space normal map (the same
image ``--detail`` writes into face.glb). A tangent-space map rides on whatever surface is under
it, so the detail stays on the face when identity sliders move; when the expression changes, the
map is recomputed in the worker at the new expression (wrinkles deepen or fade with the skin's
compression, core/detail/animate.py), half a second after the last slider move.
"""

from __future__ import annotations

import numpy as np

import studio.app.pyside_fix  # noqa: F401  (first: PySide6 6.12 emit refcount bug; see the module)

# isort: split
from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QSlider, QWidget

REFRESH_MS = 500  # after the last slider move: recomputing the map takes about a second


def point_uvs(model, size: int) -> np.ndarray:
    """(n, 2) one texture coordinate per model vertex: its UV where it carries detail, else the
    centre of the map's corner texel, which ``viewer_image`` keeps flat (the viewport has one
    point per vertex; ICT's face tile has no seams inside the face)."""
    from studio.core.detail.uv_raster import detail_triangles

    keep = detail_triangles(model)
    faces, fuv = np.asarray(model.faces, np.int64)[keep], np.asarray(model.face_uv, np.int64)[keep]
    out = np.full((model.n_vertices, 2), 0.5 / size)
    out[faces.ravel()] = np.asarray(model.uv, float)[fuv.ravel()]
    return out


def viewer_image(img: np.ndarray) -> np.ndarray:
    from studio.core.detail.normalmap import FLAT

    out = img.copy()
    out[-1, 0] = FLAT  # the corner texel (u, v) ≈ (0, 0) that every vertex without detail samples
    return out


def point_tangents(model, vertices: np.ndarray, uvs: np.ndarray) -> np.ndarray:
    """(n, 3) unit tangents per viewport point (∂P/∂u made orthogonal to the normal)."""
    from studio.core.detail.normalmap import orthonormal_tangents, uv_tangents
    from studio.core.geometry import vertex_normals

    faces = np.asarray(model.faces, np.int64)
    T, B = uv_tangents(vertices, faces, uvs, faces)
    return orthonormal_tangents(T, B, vertex_normals(vertices, faces))[:, :3]


def show_normal_map(viewport, model, img: np.ndarray, strength: float) -> None:
    """Draw the viewport's face with ``img`` as its normal texture (PBR shading)."""
    import pyvista as pv
    from vtkmodules.util.numpy_support import numpy_to_vtk

    poly, actor = viewport.poly, viewport.actor
    if poly is None or actor is None or len(viewport.points) != model.n_vertices:
        return
    uvs = point_uvs(model, img.shape[0])
    poly.active_texture_coordinates = np.ascontiguousarray(uvs, np.float32)
    tan = numpy_to_vtk(np.ascontiguousarray(point_tangents(model, np.asarray(viewport.points, float), uvs),
                                            np.float32), deep=True)
    tan.SetName("Tangents")
    poly.GetPointData().SetTangents(tan)
    prop = actor.GetProperty()
    prop.SetInterpolationToPBR()
    prop.SetMetallic(0.0)
    prop.SetRoughness(0.55)
    prop.SetNormalTexture(pv.Texture(viewer_image(img)))
    prop.SetNormalScale(float(strength))
    poly.Modified()
    viewport.request_render()


def hide_normal_map(viewport) -> None:
    actor = viewport.actor
    if actor is None:
        return
    prop = actor.GetProperty()
    prop.RemoveTexture("normalTex")
    prop.SetInterpolationToPhong()
    viewport.request_render()


class DetailControls(QObject):
    """The toggle, the slider and the jobs behind them (one per window, inside the Photo dock)."""

    def __init__(self, window, photo_fitting):
        super().__init__(window)
        self.window, self.photo = window, photo_fitting
        self.detail = None  # FaceDetail of the last fit
        self.image = None  # the normal map on screen
        self.toggle = QCheckBox("Detail (wrinkles from the photo)")
        self.toggle.setEnabled(False)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 200)
        self.slider.setValue(100)
        self.slider.setEnabled(False)
        row = QWidget()
        lay = QHBoxLayout(row)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(QLabel("Strength"))
        lay.addWidget(self.slider, 1)
        panel_layout = photo_fitting.panel.layout()
        at = panel_layout.indexOf(photo_fitting.panel.texture) + 1
        panel_layout.insertWidget(at, self.toggle)
        panel_layout.insertWidget(at + 1, row)
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        self.toggle.toggled.connect(self._toggled)
        self.slider.valueChanged.connect(self._strength)
        photo_fitting.fitted.connect(self._fitted)
        window.doc.modelChanged.connect(self._model_changed)
        window.doc.paramsChanged.connect(lambda _=None: self.timer.start() if self.toggle.isChecked() else None)

    def export_image(self):
        """The normal map on screen, or None when Detail is off (File → Export adds it to a GLB)."""
        return self.image if self.toggle.isChecked() and self.detail is not None else None

    @property
    def strength(self) -> float:
        return self.slider.value() / 100.0

    def _fitted(self, _fit) -> None:
        self.detail = None
        self.toggle.setEnabled(True)
        if self.toggle.isChecked():
            self._toggled(True)

    def _toggled(self, on: bool) -> None:
        self.slider.setEnabled(on)
        if not on:
            hide_normal_map(self.window.viewport)
            return
        if self.detail is None:
            self._recover()
        else:
            self.refresh()

    def _recover(self) -> None:
        from studio.jobs.detail import detail_job

        fit, model = self.photo.result, self.window.doc.model
        if fit is None or model is None:
            return
        self.window.runner.submit(lambda progress: detail_job(model, fit, progress=progress),
                                  f"Recovering detail for {model.name}", on_done=self.set_detail,
                                  on_error=lambda m: self.window.notify(f"detail failed: {m}", error=True))

    def set_detail(self, detail) -> None:
        """Show ``detail`` (a jobs.detail.FaceDetail for the open model) at the current parameters."""
        self.detail = detail
        note = detail.resolution_note()
        if note:
            self.window.notify(f"detail: {note}")
        if not self.toggle.isChecked():
            self.toggle.blockSignals(True)
            self.toggle.setChecked(True)
            self.toggle.blockSignals(False)
            self.slider.setEnabled(True)
        self.refresh()

    def refresh(self) -> None:
        """Recompute the map at the document's parameters in the worker, then show it."""
        from studio.core.detail.normalmap import normal_map_image

        w, detail = self.window, self.detail
        model = w.doc.model
        if detail is None or model is None or not self.toggle.isChecked():
            return
        params = w.doc.snapshot()

        def job(progress):
            v = model.vertices(params)
            d = detail.at(model, params)
            return normal_map_image(detail.raster, v, model.faces, model.uv, model.face_uv, d)

        w.runner.submit(job, "Detail at this expression", on_done=self._show)

    def _show(self, img) -> None:
        self.image = img
        if self.toggle.isChecked() and self.window.doc.model is not None:
            show_normal_map(self.window.viewport, self.window.doc.model, img, self.strength)

    def _strength(self, _value) -> None:
        actor = self.window.viewport.actor
        if actor is not None and self.toggle.isChecked():
            actor.GetProperty().SetNormalScale(self.strength)
            self.window.viewport.request_render()

    def _model_changed(self, _model) -> None:
        self.detail = self.image = None
        self.toggle.blockSignals(True)
        self.toggle.setChecked(False)
        self.toggle.blockSignals(False)
        self.toggle.setEnabled(False)
        self.slider.setEnabled(False)


def install(window) -> None:
    window.detail_controls = DetailControls(window, window.photo_fitting)
