"""Interpolation dock: blend two saved faces A and B with t in [−0.5, 1.5] (outside [0, 1] it
extrapolates: a caricature of A away from B, or of B away from A), play t as an animation, and
export the sequence as meshes or as a GIF/MP4 turntable through studio.jobs.faces.
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QElapsedTimer, Qt, QTimer
from PySide6.QtWidgets import QComboBox, QFormLayout, QHBoxLayout, QPushButton, QSpinBox, QVBoxLayout, QWidget
from superqt import QLabeledDoubleSlider

from studio.app import dialogs, identities
from studio.core.errors import StudioError
from studio.core.interpolate import lerp
from studio.core.progress import report
from studio.core.render import render
from studio.jobs.faces import MESH_FORMATS, interpolate_job, write_animation

T_RANGE = (-0.5, 1.5)
PLAY_SECONDS = 2.0  # t runs 0 → 1 in this time, then back, whatever the frame rate


class InterpolationPanel(QWidget):
    def __init__(self, doc, runner, library, notify, thumbnail_faces, parent=None):
        super().__init__(parent)
        self.doc, self.runner, self.library, self.notify = doc, runner, library, notify
        self._faces = thumbnail_faces
        self._cache: dict[str, dict] = {}
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        form = QFormLayout()
        self.combo_a, self.combo_b = QComboBox(), QComboBox()
        for c in (self.combo_a, self.combo_b):
            c.currentIndexChanged.connect(lambda _i: self.apply_t())
        form.addRow("A", self.combo_a)
        form.addRow("B", self.combo_b)
        self.t_slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.t_slider.setRange(*T_RANGE)
        self.t_slider.setDecimals(2)
        self.t_slider.setValue(0.0)
        self.t_slider.setToolTip("0 = A, 1 = B; below 0 or above 1 extrapolates")
        self.t_slider.valueChanged.connect(lambda _v: self.apply_t())
        form.addRow("t", self.t_slider)
        lay.addLayout(form)
        row = QHBoxLayout()
        self.play_button = QPushButton("Play")
        self.play_button.setCheckable(True)
        self.play_button.toggled.connect(self.set_playing)
        row.addWidget(self.play_button)
        self.fps = _spin(1, 60, 25, " fps", "frames per second of Play and of the GIF/MP4")
        self.fps.valueChanged.connect(lambda v: self._timer.setInterval(round(1000 / v)))
        row.addWidget(self.fps)
        lay.addLayout(row)
        row1 = QHBoxLayout()
        self.steps = _spin(2, 500, 9, "", "meshes written by Export frames… (t = 0 … 1)", prefix="steps ")
        self.format = QComboBox()
        self.format.addItems(MESH_FORMATS)
        self.size = _spin(64, 1024, 256, " px", "width and height of the GIF/MP4 frames")
        row1.addWidget(self.steps)
        row1.addWidget(self.format)
        row1.addWidget(self.size)
        lay.addLayout(row1)
        row2 = QHBoxLayout()
        self.export_frames_button = QPushButton("Export frames…")
        self.export_frames_button.setToolTip("meshes + parameters JSON for t = 0 … 1 (studio interpolate)")
        self.export_frames_button.clicked.connect(self.export_frames)
        self.export_anim_button = QPushButton("Export GIF/MP4…")
        self.export_anim_button.setToolTip("A → B → A while the head turns (software-rendered turntable)")
        self.export_anim_button.clicked.connect(self.export_animation)
        row2.addWidget(self.export_frames_button)
        row2.addWidget(self.export_anim_button)
        lay.addLayout(row2)
        lay.addStretch(1)
        self._timer = QTimer(self)
        self._timer.setInterval(round(1000 / self.fps.value()))
        self._timer.timeout.connect(self._tick)
        self._clock = QElapsedTimer()
        self._direction = 1.0
        self._b_chosen = False  # B follows the library (a face other than A) until the user picks one
        self.combo_b.activated.connect(lambda _i: setattr(self, "_b_chosen", True))
        library.changed.connect(self.refresh)
        self.setEnabled(False)

    def refresh(self) -> None:
        """Refill A/B from the library, keeping the choices that still exist."""
        self._cache.clear()
        names = self.library.names()
        for combo, fallback in ((self.combo_a, 0), (self.combo_b, 1)):
            keep = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            if keep in names:
                combo.setCurrentText(keep)
            elif names:
                combo.setCurrentIndex(min(fallback, len(names) - 1))
            combo.blockSignals(False)
        a = self.combo_a.currentText()
        if len(names) >= 2 and self.combo_b.currentText() == a and not self._b_chosen:
            # A and B the same face make t do nothing: B becomes another face
            self.combo_b.blockSignals(True)
            self.combo_b.setCurrentText(next(n for n in names if n != a))
            self.combo_b.blockSignals(False)
        self.setEnabled(len(names) >= 1 and self.doc.model is not None)

    def faces_ab(self):
        """The parameters of A and B (read once per library change), or None when not chosen."""
        model = self.doc.model
        out = []
        for combo in (self.combo_a, self.combo_b):
            name = combo.currentText()
            if not name or model is None:
                return None
            if name not in self._cache:
                try:
                    self._cache[name] = identities.load(model, identities.entry(model.name, name))
                except StudioError as e:
                    self.notify(str(e), error=True)
                    return None
            out.append(self._cache[name])
        return out

    @property
    def t(self) -> float:
        return float(self.t_slider.value())

    def set_t(self, t: float) -> None:
        self.t_slider.setValue(float(t))

    def apply_t(self) -> None:
        ab = self.faces_ab()
        if ab is None:
            return
        self.doc.edit_params(lerp(ab[0], ab[1], self.t), "interpolate", merge_key="interpolate")

    def set_playing(self, on: bool) -> None:
        self.play_button.setText("Pause" if on else "Play")
        if on:
            self._clock.start()
            self._timer.start()
        else:
            self._timer.stop()

    def _tick(self) -> None:
        # The step follows the clock, not the tick count: when a frame takes longer than the
        # interval the motion keeps its speed (frames drop) instead of slowing down.
        dt = self._clock.restart() / 1000.0
        t = self.t + self._direction * dt / PLAY_SECONDS
        if t >= 1.0 or t <= 0.0:
            self._direction = -self._direction
            t = min(max(t, 0.0), 1.0)
        self.set_t(t)

    # -- exports (worker jobs) -----------------------------------------------------------------
    def export_frames(self) -> None:
        ab = self.faces_ab()
        if ab is None:
            self.notify("choose faces A and B first (save faces in the library)", error=True)
            return
        out = dialogs.open_folder(self, "Folder for the interpolation frames")
        if out is None:
            return
        steps, fmt = self.steps.value(), self.format.currentText()
        targets = [out / f"frame_{i:03d}.{ext}" for i in range(steps) for ext in (fmt, "json")]
        existing = [p for p in targets if p.exists()]
        force = False
        if existing:
            if not dialogs.confirm_replace(self, f"{len(existing)} frame file(s) in {out}"):
                return
            force = True
        model = self.doc.model
        self.runner.submit(lambda progress: interpolate_job(model, ab[0], ab[1], out, steps, fmt, force=force,
                                                            progress=progress),
                           f"exporting {steps} frames", on_done=lambda paths: self.notify(
                               f"wrote {len(paths)} frames to {out}"))

    def export_animation(self) -> None:
        ab = self.faces_ab()
        if ab is None:
            self.notify("choose faces A and B first (save faces in the library)", error=True)
            return
        path = dialogs.save_path(self, "Export animation", "GIF (*.gif);;MP4 video (*.mp4)", "")
        if path is None:
            return
        if path.suffix.lower() not in (".gif", ".mp4"):
            path = path.with_name(path.name + ".gif")
        force = False
        if path.exists():
            if not dialogs.confirm_replace(self, path):
                return
            force = True
        model, faces = self.doc.model, self._faces()
        size, fps = self.size.value(), float(self.fps.value())
        self.runner.submit(lambda progress: turntable(model, ab[0], ab[1], path, faces, size=size, fps=fps,
                                                      force=force, progress=progress),
                           f"rendering {path.name}", on_done=lambda p: self.notify(f"wrote {p}"))


def _spin(lo: int, hi: int, value: int, suffix: str, tip: str, prefix: str = "") -> QSpinBox:
    box = QSpinBox()
    box.setRange(lo, hi)
    box.setValue(value)
    box.setSuffix(suffix)
    box.setPrefix(prefix)
    box.setToolTip(tip)
    return box


def turntable(model, a, b, path, faces=None, frames: int = 48, size: int = 256, fps: float = 16.0,
              force: bool = False, progress=None):
    """A → B → A while the head swings ±35° about the vertical: one loop, framed on the first face."""
    images, framing = [], None
    for i in range(frames):
        phase = 2 * math.pi * i / frames
        mesh = model.mesh(lerp(a, b, 0.5 - 0.5 * math.cos(phase)))
        tri = mesh.faces if faces is None else faces
        if framing is None:
            used = mesh.vertices[np.unique(tri)]
            c = (used.min(0) + used.max(0)) / 2
            framing = (c, float(np.linalg.norm(used - c, axis=1).max()) * 1.02)
        images.append(render(mesh.vertices, tri, mesh.colors, size, yaw=35.0 * math.sin(phase), frame=framing))
        report(progress, 0.95 * (i + 1) / frames, f"frame {i + 1}/{frames}")
    write_animation(path, images, fps, force)
    report(progress, 1.0, "done")
    return path
