"""The 3D viewport: one pyvista PolyData per model, updated in place.

The actor, mapper and PolyData are made once per model. A worker result is copied into numpy
views of the PolyData's own VTK arrays (points, normals, colours) followed by Modified(), so a
slider step costs a memcpy on the UI thread and never rebuilds an actor or re-uploads topology.
Normals come from the worker (smooth shading without a VTK normals filter running on the UI
thread). Region visibility only swaps the cell array (the points stay shared), and renders are
coalesced: many results arriving in one event-loop turn cause one draw.
"""

from __future__ import annotations

import functools
import time

import numpy as np
import pyvista as pv
import shiboken6
from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QVBoxLayout, QWidget
from pyvistaqt import QtInteractor
from vtkmodules.util.numpy_support import vtk_to_numpy

from studio.core.render import SKIN

# Camera directions (from the focal point towards the camera); models look along +z with +y up.
PRESETS = {
    "front": (0.0, 0.0, 1.0),
    "side": (1.0, 0.0, 0.0),
    "three-quarter": (np.sin(np.radians(35.0)), 0.0, np.cos(np.radians(35.0))),
}
# How much closer than "the bounding sphere fits" the presets frame: faces fill the view better.
PRESET_ZOOM = 1.3
PORTRAIT = 1.45  # frame height / upper-body width above which a mesh is framed as a portrait

# Models without vertex colours still read better with a few anatomical tints, chosen by region
# name (ICT's regions); later entries win where regions overlap (iris over eyeball).
REGION_TINTS = (
    ("eyeball", (0.92, 0.91, 0.89)),
    ("sclera", (0.92, 0.91, 0.89)),
    ("mouth_socket", (0.55, 0.30, 0.30)),
    ("gums", (0.72, 0.40, 0.40)),
    ("teeth", (0.93, 0.91, 0.84)),
    ("eyelash", (0.22, 0.17, 0.14)),
)
IRIS, PUPIL = (0.36, 0.25, 0.16), (0.05, 0.04, 0.04)
# Shells that the original renderers draw transparent (ICT's eye occlusion / tear film / blend
# meshes) would cover the eyes when drawn opaque, and eyelash cards (alpha-textured there) read
# as thick dark bands without their texture; all start hidden (the View dock shows them).
HIDDEN_BY_DEFAULT = ("occlusion", "lacrimal", "eye_blend", "eyelash")
BACKGROUND = ("#24262b", "#4a505a")  # bottom, top of the gradient


def default_hidden(region_names) -> set[str]:
    return {r for r in region_names if any(k in r for k in HIDDEN_BY_DEFAULT)}


class Viewport(QWidget):
    applied = Signal(object)  # an EvalResult whose arrays are now in the PolyData
    cameraChanged = Signal()  # the user finished moving the camera (for the session)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.plotter = QtInteractor(self, auto_update=False)  # we render when data changed
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.plotter)
        self.plotter.set_background(BACKGROUND[0], top=BACKGROUND[1])
        if getattr(self.plotter, "iren", None) is not None:
            self.plotter.iren.add_observer("EndInteractionEvent", lambda *_: self.cameraChanged.emit())
        self.model = None
        self.poly: pv.PolyData | None = None
        self.actor = None
        self.auto_render = True  # the GUI bench turns this off to time data updates without drawing
        self.applied_serial = -1
        self.applied_params = None
        self.last_apply_time = 0.0
        self.wireframe = False
        self._hidden: set[str] = set()
        self._render_pending = False
        self._closed = False
        self._badge = None  # the "preview" text actor, made on first use
        self.preview_shown = False  # the coarse preview mesh is on screen

    # -- model -----------------------------------------------------------------------------------
    def set_model(self, model, vertices: np.ndarray, faces: np.ndarray) -> None:
        """Build the one PolyData/actor for ``model``; later updates only write into its arrays.

        ``vertices``/``faces`` are a first mesh the worker computed (the UI thread evaluates none).
        """
        self.model = model
        faces = np.asarray(faces, np.int64)
        self._faces = faces
        self._remove_actor()  # not plotter.clear(): that also removes the lights
        poly = pv.PolyData(np.ascontiguousarray(vertices, np.float32), faces=_cells(faces))
        normals = np.zeros((len(vertices), 3), np.float32)
        normals[:, 2] = 1.0
        poly.point_data["Normals"] = normals
        poly.point_data.active_normals_name = "Normals"
        rgb = self._base_colors(model, np.asarray(vertices))
        kwargs = dict(smooth_shading=False, specular=0.12, specular_power=18.0, diffuse=0.85, ambient=0.12,
                      show_scalar_bar=False, reset_camera=False, render=False)
        self.actor = self.plotter.add_mesh(poly, color=tuple(SKIN), **kwargs)
        if rgb is not None:
            # Colours straight from a uint8 point array. Not add_mesh(scalars=..., rgb=True): that
            # inserts a pipeline algorithm whose output (not our PolyData) feeds the mapper.
            poly.point_data["RGB"] = rgb
            poly.point_data.active_scalars_name = "RGB"
            mapper = self.actor.mapper
            mapper.SetScalarModeToUsePointData()
            mapper.SetColorModeToDirectScalars()
            mapper.SetScalarVisibility(True)
        self.actor.prop.interpolation = "phong"
        self.poly = poly
        # numpy views onto the VTK arrays themselves: writing into them is the in-place update.
        self._vtk_points = poly.GetPoints()
        self._points = vtk_to_numpy(self._vtk_points.GetData())
        self._vtk_normals = poly.GetPointData().GetNormals()
        self._normals = vtk_to_numpy(self._vtk_normals)
        self._vtk_rgb = poly.GetPointData().GetArray("RGB") if rgb is not None else None
        self._rgb = vtk_to_numpy(self._vtk_rgb) if self._vtk_rgb is not None else None
        self._has_model_colors = model.has_colors
        self.applied_serial = -1
        self.applied_params = None
        self.set_hidden_regions(default_hidden(model.meta.regions))
        self.set_wireframe(self.wireframe)

    def _base_colors(self, model, vertices: np.ndarray) -> np.ndarray | None:
        linear = model.as_linear()
        if model.has_colors and linear is not None:
            return np.clip(np.asarray(linear.color_mean) * 255 + 0.5, 0, 255).astype(np.uint8)
        regions = model.meta.regions
        if not regions:
            return None
        col = np.tile(np.asarray(SKIN, np.float32), (len(vertices), 1))
        for key, tint in REGION_TINTS:
            for name, idx in regions.items():
                if key in name:
                    col[np.asarray(idx)] = tint
        _paint_irises(col, np.asarray(linear.mean if linear is not None else vertices), regions)
        return np.clip(col * 255 + 0.5, 0, 255).astype(np.uint8)

    def set_vertex_colors(self, rgb: np.ndarray | None) -> None:
        """Show per-vertex colours (uint8 (n, 3), e.g. a face textured from a photo); None puts the
        model's own colours back. Used by photo fitting."""
        if self.poly is None:
            return
        if rgb is None:
            rgb = self._base_colors(self.model, self._points)
            if rgb is None:
                rgb = np.tile(np.clip(np.asarray(SKIN) * 255 + 0.5, 0, 255).astype(np.uint8), (len(self._points), 1))
        if len(rgb) != len(self._points):
            return
        if self._rgb is None:
            self.poly.point_data["RGB"] = np.ascontiguousarray(rgb, np.uint8)
            self.poly.point_data.active_scalars_name = "RGB"
            mapper = self.actor.mapper
            mapper.SetScalarModeToUsePointData()
            mapper.SetColorModeToDirectScalars()
            mapper.SetScalarVisibility(True)
            self._vtk_rgb = self.poly.GetPointData().GetArray("RGB")
            self._rgb = vtk_to_numpy(self._vtk_rgb)
        else:
            np.copyto(self._rgb, np.asarray(rgb, np.uint8))
        self._vtk_rgb.Modified()
        self.poly.Modified()
        self.request_render()

    def _remove_actor(self) -> None:
        if self.actor is not None:
            self.plotter.remove_actor(self.actor, render=False)
        self.actor = None

    def clear(self) -> None:
        self._remove_actor()
        self.model = self.poly = None

    # -- data ------------------------------------------------------------------------------------
    def apply(self, res) -> None:
        """Write a worker result into the PolyData in place (UI thread; a few memcpys)."""
        if self.poly is None:
            return
        faces = getattr(res, "faces", None)
        if faces is not None and (faces.shape != self._faces.shape or not np.array_equal(faces, self._faces)):
            self._set_topology(res.vertices, faces)  # a neural mesh: new triangles, same actor
        if res.vertices.shape != self._points.shape:
            return
        np.copyto(self._points, res.vertices)
        self._vtk_points.Modified()
        np.copyto(self._normals, res.normals)
        self._vtk_normals.Modified()
        if res.colors is not None and self._rgb is not None and self._has_model_colors:
            np.copyto(self._rgb, np.clip(res.colors * 255 + 0.5, 0, 255).astype(np.uint8))
            self._vtk_rgb.Modified()
        self.poly.Modified()
        self.last_apply_time = time.perf_counter()
        self.applied_serial = res.serial
        self.applied_params = res.params
        self.set_preview_badge(bool(getattr(res, "preview", False)))
        self.applied.emit(res)
        if self.auto_render:
            self.request_render()

    def set_preview_badge(self, on: bool) -> None:
        """A small "preview" label while the coarse mesh of a neural model is on screen (eyes and
        ears dissolve at that resolution: it must not pass for the model's real shape). Drawn by
        VTK, not a Qt label, so it shows over the native GL surface and in screenshots."""
        if on == self.preview_shown:
            return
        self.preview_shown = on
        if self._badge is None:
            if not on:
                return
            self._badge = self.plotter.add_text("preview — release to refine", position="upper_right",
                                                font_size=10, color="#f0c040", name="preview-badge",
                                                render=False)
        self._badge.SetVisibility(on)

    def _set_topology(self, vertices: np.ndarray, faces: np.ndarray) -> None:
        """Replace points and triangles (models whose topology changes with the parameters, like the
        neural head's marching-cubes meshes); the actor, camera and display options stay."""
        self._faces = np.asarray(faces, np.int64)
        poly = self.poly
        poly.points = np.ascontiguousarray(vertices, np.float32)
        normals = np.zeros((len(vertices), 3), np.float32)
        normals[:, 2] = 1.0
        poly.point_data["Normals"] = normals
        poly.point_data.active_normals_name = "Normals"
        if self._vtk_rgb is not None:  # per-vertex tints belong to the old vertices: plain skin now
            poly.point_data["RGB"] = np.tile(np.clip(np.asarray(SKIN) * 255 + 0.5, 0, 255).astype(np.uint8),
                                             (len(vertices), 1))
            self._vtk_rgb = poly.GetPointData().GetArray("RGB")
            self._rgb = vtk_to_numpy(self._vtk_rgb)
        self._vtk_points = poly.GetPoints()
        self._points = vtk_to_numpy(self._vtk_points.GetData())
        self._vtk_normals = poly.GetPointData().GetNormals()
        self._normals = vtk_to_numpy(self._vtk_normals)
        self.set_hidden_regions(self._hidden)  # sets the (visible) cells

    @property
    def points(self) -> np.ndarray:
        """The displayed vertex positions (a view of the PolyData's points)."""
        return self._points

    def request_render(self) -> None:
        if not self._render_pending and not self._closed:
            self._render_pending = True
            QTimer.singleShot(0, self._render_now)

    def _render_now(self) -> None:
        self._render_pending = False
        if not self._closed:
            self.plotter.render()

    # -- display options -------------------------------------------------------------------------
    @property
    def hidden_regions(self) -> set[str]:
        return set(self._hidden)

    def set_hidden_regions(self, names) -> None:
        """Show only the triangles not entirely inside a hidden region (the points stay shared)."""
        if self.model is None:
            return
        regions = self.model.meta.regions
        self._hidden = {n for n in names if n in regions}
        hidden_v = np.zeros(len(self._points), bool)
        for name in self._hidden:
            hidden_v[np.asarray(regions[name])] = True
        keep = ~hidden_v[self._faces].all(axis=1)
        self.visible_faces = np.flatnonzero(keep)
        self.poly.faces = _cells(self._faces[keep])
        self.request_render()

    def set_wireframe(self, on: bool) -> None:
        self.wireframe = bool(on)
        if self.actor is not None:
            self.actor.prop.style = "wireframe" if on else "surface"
            self.request_render()

    def visible_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        used = np.unique(self._faces[self.visible_faces]) if len(self.visible_faces) else slice(None)
        p = self._points[used]
        return p.min(0), p.max(0)

    def frame_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """What the presets frame: the visible mesh, cut to a portrait when it is a bust.

        Head models often carry neck and shoulders (ICT, FLAME); framing all of it leaves the
        face small. When the mesh is much taller than its upper half is wide, the frame keeps
        the top 1.45 × that width (crown to chin and a little neck).
        """
        lo, hi = self.visible_bounds()
        used = np.unique(self._faces[self.visible_faces]) if len(self.visible_faces) else slice(None)
        p = self._points[used]
        upper = p[p[:, 1] >= (lo[1] + hi[1]) / 2]
        if len(upper):
            width = float(np.ptp(upper[:, 0]))
            if hi[1] - lo[1] > PORTRAIT * width > 0:
                lo = lo.copy()
                lo[1] = hi[1] - PORTRAIT * width
                keep = p[p[:, 1] >= lo[1]]
                lo[0], hi[0] = keep[:, 0].min(), keep[:, 0].max()
        return lo, hi

    def set_view(self, preset: str = "front") -> None:
        """A camera preset framed on the visible mesh (front, side, three-quarter)."""
        if self.poly is None:
            return
        lo, hi = self.frame_bounds()
        centre = (lo + hi) / 2
        cam = self.plotter.camera
        cam.focal_point = tuple(centre)
        cam.position = tuple(centre + np.asarray(PRESETS[preset]) * float(np.linalg.norm(hi - lo)))
        cam.up = (0.0, 1.0, 0.0)
        bounds = (lo[0], hi[0], lo[1], hi[1], lo[2], hi[2])
        self.plotter.reset_camera(render=False, bounds=bounds)
        cam.zoom(PRESET_ZOOM)
        self.plotter.reset_camera_clipping_range()
        self.request_render()
        self.cameraChanged.emit()

    @property
    def camera(self) -> list[list[float]]:
        pos = self.plotter.camera_position
        return [list(map(float, pos[0])), list(map(float, pos[1])), list(map(float, pos[2]))]

    def set_camera(self, cam) -> None:
        self.plotter.camera_position = [tuple(map(float, c)) for c in cam]
        self.plotter.reset_camera_clipping_range()
        self.request_render()

    def image(self) -> np.ndarray:
        """The viewport as an (h, w, 3) uint8 array (what plotter.screenshot draws)."""
        return self.plotter.screenshot(return_img=True)

    def set_overlay_points(self, name: str, points: np.ndarray | None, rgb: np.ndarray | None = None,
                           size: float = 3.0) -> None:
        """Show a point set (a scan) with the face, updated in place; ``points`` None removes it.
        ``rgb``: (n, 3) uint8 per-point colours (default a flat blue-grey)."""
        overlays = self.__dict__.setdefault("_overlays", {})
        old = overlays.get(name)
        if points is None:
            if old is not None:
                self.plotter.remove_actor(old[1], render=False)
                del overlays[name]
                self.request_render()
            return
        pts = np.ascontiguousarray(points, np.float32)
        if rgb is None:
            rgb = np.tile(np.array([110, 170, 230], np.uint8), (len(pts), 1))
        if old is not None and old[0].n_points == len(pts):
            old[0].points = pts
            old[0].point_data["RGB"] = np.ascontiguousarray(rgb, np.uint8)
            old[0].Modified()
        else:
            if old is not None:
                self.plotter.remove_actor(old[1], render=False)
            cloud = pv.PolyData(pts)
            cloud.point_data["RGB"] = np.ascontiguousarray(rgb, np.uint8)
            actor = self.plotter.add_mesh(cloud, scalars="RGB", rgb=True, point_size=size,
                                          render_points_as_spheres=False, show_scalar_bar=False,
                                          reset_camera=False, render=False, lighting=False)
            overlays[name] = (cloud, actor)
        self.request_render()

    def close_plotter(self) -> None:
        self._closed = True
        # pyvistaqt keeps the GL context's surface as a QSurface wrapper. QSurface is no QObject, so
        # PySide never learns when Qt frees it with the widget, and the stale wrapper stays mapped
        # to the freed address: the next object Qt puts there (a menu action of a later window)
        # then comes back to Python as that QSurface ("no attribute 'triggered'"). Forget it once
        # the widget is gone.
        surface = getattr(self.plotter, "_surface", None)
        self.plotter.close()
        if surface is not None:
            self.plotter.destroyed.connect(functools.partial(_forget_wrapper, surface))


def _forget_wrapper(obj, *_) -> None:
    shiboken6.invalidate(obj)


def _paint_irises(col: np.ndarray, v: np.ndarray, regions: dict) -> None:
    """Paint iris and pupil onto the front of each eyeball.

    ICT's eyeball shell includes a cornea dome in front of the iris (drawn transparent by its
    own renderer); opaque, it hides the iris, so the iris/pupil disc is painted onto whatever
    eye vertices lie in front of it (the model looks along +z).
    """
    eye = np.zeros(len(v), bool)
    for name, idx in regions.items():
        if any(k in name for k in ("sclera", "eyeball", "iris")):
            eye[np.asarray(idx)] = True
    for name, idx in regions.items():
        if "iris" not in name or len(idx) < 8:
            continue
        p = v[np.asarray(idx)]
        z0, z1 = p[:, 2].min(), p[:, 2].max()
        front = p[p[:, 2] >= z1 - 0.1 * (z1 - z0)]
        c = front.mean(0)
        r = float(np.percentile(np.linalg.norm(front[:, :2] - c[:2], axis=1), 90))
        if r <= 0:
            continue
        d = np.linalg.norm(v[:, :2] - c[:2], axis=1)
        sel = eye & (v[:, 2] >= c[2] - r) & (d < r)
        col[sel] = IRIS
        col[sel & (d < 0.4 * r)] = PUPIL


def _cells(faces: np.ndarray) -> np.ndarray:
    """pyvista's padded cell array: [3, a, b, c, 3, …]."""
    faces = np.asarray(faces, np.int64)
    return np.hstack([np.full((len(faces), 1), 3, np.int64), faces]).ravel()
