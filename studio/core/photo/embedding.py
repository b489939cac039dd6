"""Tie MediaPipe's 478 landmarks to a model's surface, automatically, once per model.

The model's mean face is rendered frontally (skin albedo, eyes and mouth tinted by region names,
soft light), MediaPipe runs on the render, and every detected point is back-projected onto the
mesh through the rasteriser's triangle-id and barycentric buffers: landmark i becomes
``Σ_k bary[i, k] · vertex[tri_vertices[i, k]]`` on any face of the model. A first render frames the
whole mesh to find the face; a second one frames the face so it fills most of the image.

That single render is only the start: calibration.py then moves every tie to where the detector
puts the point on photo-like renders of the model's faces, and measures its scatter there.

The result is stored beside the model (``models/<name>/photo_embedding.npz``, written atomically)
with the model file's size and modification time, and recomputed when missing or stale; models
that are not in the store (built in memory) keep it in a per-process cache.

Models that carry the 68 iBUG landmarks (ICT does, ``meta.landmarks["ibug68"]``) also get them
as exact vertex correspondences for the 68 points MediaPipe maps to by the standard table.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from studio.core import store
from studio.core.errors import StudioError
from studio.core.geometry.raster import Fragments
from studio.core.model_cache import PerModel
from studio.core.pca import PCAModel
from studio.core.photo import shading
from studio.core.photo.camera import Camera, default_focal
from studio.core.photo.contour import Contour
from studio.core.photo.landmarks import IBUG68_BROWS, MP_TO_IBUG68, N_POINTS, detect_faces

# 2: ties calibrated on photo-like renders (calibration.py), with per-point scatter;
# 3: those renders lit as photos are (key + sky, cast shadows, ambient occlusion)
VERSION = 3
FILE = "photo_embedding.npz"
RENDER_SIZE = 512
N_MESH_POINTS = 468  # 468..477 are the irises: they sit on the eyeballs, not on the face surface

_memory = PerModel()  # embeddings of models not in the store (built in memory), and of store models once read


@dataclass
class Embedding:
    tri_vertices: np.ndarray  # (478, 3) int vertex ids of the triangle each landmark lies on
    bary: np.ndarray  # (478, 3) barycentric weights
    valid: np.ndarray  # (478,) bool: landmark lies on the face surface of the model
    spread: np.ndarray | None = None  # (478,) the detector's scatter around each tie (model units; NaN: unknown)

    def points(self, vertices: np.ndarray) -> np.ndarray:
        """3-D positions of the 478 landmarks on a face of the model (invalid ones too)."""
        return np.einsum("lk,lkd->ld", self.bary, np.asarray(vertices)[self.tri_vertices])


def _first_region(model: PCAModel, names) -> np.ndarray | None:
    for n in names:
        ids = model.meta.regions.get(n)
        if ids is not None and len(ids):
            return np.asarray(ids, np.int64)
    return None


def fit_region(model: PCAModel) -> np.ndarray:
    """Vertices compared with the photo: the front of the face (ICT: "narrow_face_area")."""
    ids = _first_region(model, ("narrow_face_area", "face", "full_face_area", "front"))
    return np.arange(model.n_vertices) if ids is None else ids


def landmark_region(model: PCAModel) -> np.ndarray:
    """Vertices landmarks may land on: the face skin (ICT: "face"), not eyes, teeth or scalp shells."""
    ids = _first_region(model, ("face", "full_face_area", "narrow_face_area", "front"))
    return np.arange(model.n_vertices) if ids is None else ids


def landmark_mask(model: PCAModel) -> np.ndarray:
    """(n_vertices,) bool: ``landmark_region`` as a mask."""
    allowed = np.zeros(model.n_vertices, bool)
    allowed[landmark_region(model)] = True
    return allowed


def _frame(vertices, focal, size, centre, extent):
    d = focal * extent / (0.62 * size)
    return Camera(size, size, focal, np.zeros(3), np.array([-centre[0], -centre[1], -vertices[:, 2].max() - d]))


def _render(model: PCAModel, camera):
    v = np.asarray(model.mean, float)
    img, frags = shading.render_image(v, shading.drawable_faces(model), shading.default_albedo(model),
                                      shading.ambient_light(0.5, 0.55, (0.2, 0.3, 1.0)), camera)
    return (img * 255 + 0.5).astype(np.uint8), frags


def compute(model: PCAModel, progress=None) -> Embedding:
    """The mean face's ties (a second), then calibrated on photo-like renders (about half a minute)."""
    from studio.core.photo.calibration import calibrate
    from studio.core.progress import scaled

    first = _mean_face_embedding(model, scaled(progress, 0.0, 0.05))
    return calibrate(model, first, scaled(progress, 0.05, 1.0))


def _mean_face_embedding(model: PCAModel, progress=None) -> Embedding:
    """Render the mean face, detect, back-project (about a second)."""
    from studio.core.progress import report

    v = np.asarray(model.mean, float)
    faces = shading.drawable_faces(model)
    size = RENDER_SIZE
    f = default_focal(size, size)
    used = np.unique(faces)
    centre = (v[used].min(0) + v[used].max(0)) / 2
    camera = _frame(v, f, size, centre, float(np.ptp(v[used][:, :2], 0).max()) * 0.62)
    report(progress, 0.2, "finding the model's face")
    img, frags = _render(model, camera)
    found = detect_faces(img)
    if not found:
        raise StudioError(f"MediaPipe finds no face in a render of model '{model.name}''s mean face, so its "
                          "landmarks cannot be tied to the mesh; photo fitting needs a model of a human face")
    # Second pass: frame the detected face so it fills the render (better landmark accuracy).
    pts = found[0]
    lo, hi = pts.min(0), pts.max(0)
    mid = (lo + hi) / 2
    pc_mid = _unproject_depth(camera, frags, mid)
    if pc_mid is not None:
        ext_px = float(np.max(hi - lo))
        depth = -(camera.to_camera(pc_mid[None])[0, 2])
        extent = ext_px * depth / f
        camera = _frame(v, f, size, pc_mid, extent * 1.15)
        img, frags = _render(model, camera)
        again = detect_faces(img)
        if again:
            pts = again[0]
    report(progress, 0.8, "tying landmarks to the mesh")
    return back_project(pts, frags, faces, landmark_mask(model))


def _unproject_depth(camera, frags: Fragments, xy):
    """Model-space point under pixel ``xy`` (the surface there), or None off the mesh."""
    x, y = int(xy[0]), int(xy[1])
    if not (0 <= x < camera.width and 0 <= y < camera.height) or not np.isfinite(frags.depth[y, x]):
        return None
    d = frags.depth[y, x]
    cx, cy = camera.principal
    pc = np.array([(xy[0] - cx) * d / camera.focal, -(xy[1] - cy) * d / camera.focal, -d])
    return (pc - camera.translation) @ camera.R  # R orthonormal: inverse is transpose


def back_project(points: np.ndarray, frags: Fragments, faces: np.ndarray, allowed: np.ndarray) -> Embedding:
    H, W = frags.tri.shape
    tri_ok = np.zeros(len(faces) + 1, bool)  # last slot: "no triangle" (-1)
    tri_ok[:-1] = allowed[faces].all(1)
    good = tri_ok[frags.tri]  # (H, W) pixels showing an allowed triangle
    gy, gx = np.nonzero(good)
    tv = np.zeros((N_POINTS, 3), np.int64)
    bary = np.zeros((N_POINTS, 3))
    valid = np.zeros(N_POINTS, bool)
    if gx.size == 0:
        raise StudioError("the model's face region is not visible in a frontal render")
    from scipy.spatial import cKDTree

    tree = cKDTree(np.c_[gx + 0.5, gy + 0.5])
    d, nearest = tree.query(points[:N_MESH_POINTS], k=1)
    for i in range(min(N_MESH_POINTS, len(points))):
        if d[i] > 6.0:  # landmark falls on the eyeballs, the mouth opening or off the face region
            continue
        y, x = gy[nearest[i]], gx[nearest[i]]
        t = frags.tri[y, x]
        tv[i], bary[i], valid[i] = faces[t], frags.bary[y, x], True
    return Embedding(tv, bary, valid)


def _signature(name: str) -> np.ndarray:
    st = store.model_file(name).stat()
    return np.array([VERSION, st.st_size, st.st_mtime_ns], np.int64)


def _store_path(model: PCAModel):
    name = model.name
    try:
        if name and store.exists(name):
            return store.model_dir(name) / FILE
    except StudioError:
        pass
    return None


def load_or_compute(model: PCAModel, progress=None) -> Embedding:
    """The model's embedding: from the store when present and current, else computed (and stored)."""
    cached = _memory.get(model)
    if cached is not None:
        return cached
    path = _store_path(model)
    if path is not None and path.is_file():
        try:
            with np.load(path) as z:
                if np.array_equal(z["signature"], _signature(model.name)):
                    # no "spread": the single-render ties (calibration found too few faces)
                    spread = z["spread"] if "spread" in z.files else None
                    emb = Embedding(z["tri_vertices"], z["bary"], z["valid"].astype(bool), spread)
                    _memory.put(model, emb)
                    return emb
        except Exception:  # unreadable or old file: recompute below
            pass
    emb = compute(model, progress)
    if path is not None:
        from studio.core.atomic import write_bytes

        buf = io.BytesIO()
        arrays = {"tri_vertices": emb.tri_vertices, "bary": emb.bary, "valid": emb.valid,
                  "signature": _signature(model.name)}
        if emb.spread is not None:
            arrays["spread"] = emb.spread
        np.savez(buf, **arrays)  # type: ignore[arg-type]
        write_bytes(path, buf.getvalue(), force=True)
    _memory.put(model, emb)
    return emb


@dataclass
class Correspondences:
    """2-D photo points tied to model surface points: landmark i = Σ_k w[i,k]·V[vids[i,k]]."""

    vids: np.ndarray  # (L, 3) int
    w: np.ndarray  # (L, 3) float
    points: np.ndarray  # (L, 2) pixel positions in the photo
    weight: np.ndarray  # (L,) relative weight of each landmark in the fit
    contour: Contour | None = None  # rows on the face's outline, re-tied to the outline as the pose changes

    def follow_outline(self, vertices: np.ndarray, camera: Camera) -> None:
        """Tie the contour rows to the outline of face ``vertices`` (full topology) seen by ``camera``."""
        if self.contour is not None:
            from studio.core.photo import contour

            self.retie(self.contour.rows, contour.select(self.contour, vertices, camera.R, camera.translation,
                                                         camera.focal))

    def retie(self, rows: np.ndarray, vertex_ids: np.ndarray) -> None:
        """Tie ``rows`` to single vertices (the contour landmarks' current outline vertices)."""
        self.vids[rows] = np.asarray(vertex_ids, np.int64)[:, None]
        self.w[rows] = (1.0, 0.0, 0.0)


def correspondences(model: PCAModel, emb: Embedding, mp_points: np.ndarray | None, use_ibug68: bool = True,
                    ibug68_points: np.ndarray | None = None) -> Correspondences:
    """MediaPipe points of one face → correspondences for the fit.

    With a calibrated embedding (calibration.py) every Face Mesh point is tied where the detector
    puts it on the model's faces, weighted by 1/scatter²; for models with "ibug68" landmarks the
    jaw line (iBUG 0-16) is added, tied to the outline as the face turns (contour.py), and Face
    Mesh's own outline points are left out. Uncalibrated (the detector found too few faces in the
    calibration renders), the 68 iBUG points (from MediaPipe by the standard table) are tied to
    the model's own 68 vertices and the other embedded points added with half weight.

    ``ibug68_points``: the 68 points to tie instead of Face Mesh's (another detector's, or the mean
    of two). Without ``mp_points`` (dlib alone) only the 68 are tied, the brows to the model's own
    brow vertices.
    """
    from studio.core.photo.landmarks import FACE_OVAL, ibug68_from_mediapipe

    dense = mp_points is not None
    valid = emb.valid if dense else np.zeros(N_POINTS, bool)
    mp_points = np.asarray(mp_points, float) if dense else np.zeros((N_POINTS, 2))
    vids = [emb.tri_vertices[valid]]
    w = [emb.bary[valid]]
    pts = [mp_points[:N_POINTS][valid]]
    weight = [np.ones(int(valid.sum()))]
    lm68 = model.meta.landmarks.get("ibug68")
    with_68 = use_ibug68 and lm68 is not None and len(lm68) == 68
    if not dense and not with_68:
        raise StudioError(f"model '{model.name}' has no 68 iBUG landmarks to tie a 68-point detector's points to")
    spread = emb.spread if dense else None
    calibrated = spread is not None
    if calibrated:
        # Ties where the detector puts each point on photo-like faces (calibration.py), weighted by
        # how little it scatters there.
        weight[0] = scatter_weights(np.asarray(spread)[valid])
    if with_68:
        in_table = np.zeros(N_POINTS, bool)
        in_table[[i for ix in MP_TO_IBUG68 for i in ix]] = True
        brow = np.zeros(N_POINTS, bool)
        brow[[i for b in IBUG68_BROWS for i in MP_TO_IBUG68[b]]] = True
        oval = np.zeros(N_POINTS, bool)
        oval[list(FACE_OVAL)] = True
        if not calibrated:
            # The brows are Face Mesh's brow contours on both sides (the model's own brow vertices sit
            # where its artist put them, not where the 68-point convention does): full weight there.
            weight[0] = np.where(brow[valid], 1.0, np.where(in_table[valid] | oval[valid], 0.0, 0.5))
        lm68 = np.asarray(lm68, np.int64)
        vids.append(np.repeat(lm68[:, None], 3, 1))
        w.append(np.tile([1.0, 0.0, 0.0], (68, 1)))
        pts.append(np.asarray(ibug68_points, float) if ibug68_points is not None else ibug68_from_mediapipe(mp_points))
        w68 = np.ones(68)
        if calibrated:  # the calibrated dense ties carry the inner points; the jaw follows the outline
            w68[17:] = 0.0
            # Face Mesh's own outline points are left out: no fixed vertex matches them once the
            # face turns (the 68's jaw line, re-tied to the outline, stands for them)
            weight[0] = np.where(oval[valid], 0.0, weight[0])
        elif dense:
            w68[list(IBUG68_BROWS)] = 0.0
        weight.append(w68)
    keep = np.concatenate(weight) > 0
    corr = Correspondences(np.concatenate(vids)[keep], np.concatenate(w)[keep], np.concatenate(pts)[keep],
                           np.concatenate(weight)[keep])
    if with_68 and lm68 is not None:
        row_of = np.cumsum(keep) - 1  # input position → row after filtering (the jaw rows are all kept)
        jaw_rows = row_of[len(keep) - 68:len(keep) - 68 + 17]
        corr.contour = _contour(model, lm68, jaw_rows)
    return corr


def scatter_weights(spread: np.ndarray, clip: tuple[float, float] = (0.2, 3.0)) -> np.ndarray:
    """Relative fit weights 1/scatter², 1 at the median scatter, clipped so that no point dominates
    or vanishes (a scatter from 48 votes is itself uncertain); unknown scatter weighs 1."""
    s = np.asarray(spread, float)
    known = np.isfinite(s) & (s > 0)
    out = np.ones(len(s))
    if known.any():
        out[known] = np.clip((np.median(s[known]) / s[known]) ** 2, *clip)
    return out


def _contour(model: PCAModel, lm68: np.ndarray, rows: np.ndarray) -> Contour:
    from studio.core.photo import contour

    return contour.build(np.asarray(model.mean, float), lm68[list(contour.JAW)], landmark_region(model), rows,
                         np.asarray(model.mean, float)[lm68[30]])


def model_ibug68(model: PCAModel, emb: Embedding, vertices: np.ndarray,
                 embedded_brows: bool = True) -> np.ndarray | None:
    """The model's 68 iBUG points on a face of it (model coordinates): its own landmark vertices, the
    brows from the embedded Face Mesh brow contours (as the fit matches them, unless
    ``embedded_brows`` is off: a fit without Face Mesh ties them to the brow vertices); None
    without them."""
    lm68 = model.meta.landmarks.get("ibug68")
    if lm68 is None or len(lm68) != 68:
        return None
    vertices = np.asarray(vertices, float)
    out = vertices[np.asarray(lm68, np.int64)].copy()
    if not embedded_brows:
        return out
    on_face = emb.points(vertices)
    for b in IBUG68_BROWS:
        ix = list(MP_TO_IBUG68[b])
        if emb.valid[ix].all():
            out[b] = on_face[ix].mean(0)
    return out
