"""Synthetic scans with a known answer: a model face seen by a depth camera, made noisy.

Used by the tests and ``studio bench fit``. A face with known coefficients is rendered into a
depth map by a pinhole camera from a random direction in front of it (a z-buffer rasteriser,
perspective-correct depth at pixel centres), back-projected into points, given Gaussian noise
and uniformly scattered outliers, and moved by a random similarity transform into a random unit,
so the fitter faces what a real single-view scanner delivers: a partial, noisy surface in an
unknown pose, size and unit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from studio.core.facemodel import UNIT_TO_MM, FaceModel, Params
from studio.core.fitting.align import Similarity
from studio.core.fitting.scan_io import Scan
from studio.core.geometry.raster import rasterize
from studio.core.pca import PCAModel

# Regions a scanner sees on an ICT-like head (skin and eyes, not the inner mouth or the
# transparent eye shells); models without these regions are rendered whole.
SEEN_REGIONS = ("face", "head_and_neck", "eyeball_left", "eyeball_right")


@dataclass
class SyntheticScan:
    scan: Scan  # the points as the fitter gets them (scan unit, random pose)
    params: Params  # ground-truth coefficients
    vertices: np.ndarray  # ground-truth vertices in the model frame
    to_model: Similarity  # scan coordinates → model coordinates (the answer for the pose)
    depth: np.ndarray  # the clean depth map (model units, 0 = no surface) in the camera frame
    intrinsics: dict  # fx, fy, cx, cy (pixels) and depth_unit of ``depth``


def random_params(model: FaceModel, rng: np.random.Generator, expressions: int = 4,
                  expression_max: float = 0.6) -> Params:
    """A face the model has not seen: shape from the prior, a few blendshapes partly on."""
    p = model.sample(rng)
    for g in model.groups:
        if g.prior == "box" and g.affects == "position" and g.size:
            on = rng.choice(g.size, size=min(expressions, g.size), replace=False)
            v = np.zeros(g.size)
            v[on] = g.lower[on] + rng.uniform(0, expression_max, on.size) * (g.upper[on] - g.lower[on])
            p[g.name] = v
    return p


def seen_faces(model: PCAModel) -> np.ndarray:
    regions = model.meta.regions
    names = [r for r in SEEN_REGIONS if r in regions]
    if "face" not in names:
        return np.asarray(model.faces)
    keep = np.zeros(model.n_vertices, bool)
    for r in names:
        keep[np.asarray(regions[r])] = True
    return np.asarray(model.faces)[keep[model.faces].all(axis=1)]


def look_at(eye: np.ndarray, target: np.ndarray, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """Rows x, y, z of an OpenCV camera (x right, y down, z toward the target) at ``eye``."""
    z = target - eye
    z = z / np.linalg.norm(z)
    y = -(np.asarray(up, float) - np.dot(up, z) * z)
    y /= np.linalg.norm(y)
    return np.stack([np.cross(y, z), y, z])


def render_depth(vertices: np.ndarray, faces: np.ndarray, cam_r: np.ndarray, eye: np.ndarray, k: dict,
                 width: int, height: int) -> np.ndarray:
    """Depth (camera z) at every pixel centre, 0 where no triangle covers it (z-buffer)."""
    p = (np.asarray(vertices, float) - eye) @ cam_r.T
    z = p[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = k["fx"] * p[:, 0] / z + k["cx"]
        v = k["fy"] * p[:, 1] / z + k["cy"]
    # The one rasteriser samples pixel centres at +0.5; this depth map samples integer pixel
    # coordinates (backproject's convention), hence the half-pixel shift.
    xy = np.column_stack([u, v]) + 0.5
    frags = rasterize(np.where(np.isfinite(xy), xy, -1e9), np.where(z > 1e-9, z, -1.0), faces, height, width)
    return np.where(frags.mask, frags.depth, 0.0)


def backproject(depth: np.ndarray, k: dict) -> np.ndarray:
    v, u = np.nonzero(depth > 0)
    z = depth[v, u]
    return np.column_stack([(u - k["cx"]) * z / k["fx"], (v - k["cy"]) * z / k["fy"], z])


def synthetic_scan(model: PCAModel, params: Params | None = None, seed: int = 0, n_points: int = 50_000,
                   noise_mm: float = 0.5, outliers: float = 0.2, yaw: float = 25.0, pitch: float = 15.0,
                   transform: bool = True, unit: str | None = None,
                   scale_range: tuple[float, float] = (1.0, 1.0)) -> SyntheticScan:
    """A single-view depth scan of ``params`` (default: random, unseen) with noise and outliers.

    ``yaw``/``pitch``: the camera direction is drawn within ± these angles of straight ahead.
    ``transform``: move the result by a random similarity — any rotation, a translation, the
    change into ``unit`` (default: drawn from m, cm, mm) and a scale drawn from ``scale_range``
    (1: a metric scanner; wider for scans of arbitrary scale).
    """
    rng = np.random.default_rng(seed)
    params = random_params(model, rng) if params is None else model.check(params)
    verts = np.asarray(model.vertices(params), np.float64)
    faces = seen_faces(model)
    used = np.unique(faces)
    centre = (verts[used].min(0) + verts[used].max(0)) / 2
    radius = float(np.linalg.norm(verts[used] - centre, axis=1).max())
    a, b = np.radians(rng.uniform(-yaw, yaw)), np.radians(rng.uniform(-pitch, pitch))
    direction = np.array([np.sin(a) * np.cos(b), np.sin(b), np.cos(a) * np.cos(b)])
    eye = centre + 3.0 * radius * direction
    cam_r = look_at(eye, centre)
    n_surface = max(int(round(n_points * (1 - outliers))), 1)
    size = 256
    for _ in range(3):  # pick the resolution that gives about n_surface valid pixels
        f = 0.5 * size / np.tan(np.arcsin(1 / 3.0)) * 0.98
        k = {"fx": f, "fy": f, "cx": (size - 1) / 2, "cy": (size - 1) / 2}
        depth = render_depth(verts, faces, cam_r, eye, k, size, size)
        valid = int((depth > 0).sum())
        if valid >= n_surface and valid < 1.6 * n_surface:
            break
        size = int(np.ceil(size * np.sqrt(1.2 * n_surface / max(valid, 1))))
    cam_pts = backproject(depth, k)
    pts = cam_pts @ cam_r + eye  # camera → model frame
    pick = rng.choice(len(pts), size=min(n_surface, len(pts)), replace=False)
    pts = pts[pick]
    mm = UNIT_TO_MM[model.meta.unit]
    pts = pts + rng.normal(scale=noise_mm / mm, size=pts.shape)
    n_out = int(round(len(pts) * outliers / max(1 - outliers, 1e-9)))
    if n_out:
        lo, hi = pts.min(0), pts.max(0)
        pad = 0.1 * (hi - lo)
        pts = np.vstack([pts, rng.uniform(lo - pad, hi + pad, size=(n_out, 3))])
    pts = pts[rng.permutation(len(pts))]
    scan_unit = unit or (rng.choice(list(UNIT_TO_MM)) if transform else model.meta.unit)
    to_scan = Similarity(UNIT_TO_MM[model.meta.unit] / UNIT_TO_MM[scan_unit], np.eye(3), np.zeros(3))
    if transform:
        rot = Rotation.random(random_state=rng.integers(2**31)).as_matrix()
        s = float(np.exp(rng.uniform(np.log(scale_range[0]), np.log(scale_range[1]))))
        t = rng.normal(scale=3 * radius, size=3)
        to_scan = to_scan.compose(Similarity(s, rot, t))
    scan = Scan(to_scan.apply(pts), unit=scan_unit, kind="points", source="synthetic")
    intr = dict(k, depth_unit=model.meta.unit, width=size, height=size)
    return SyntheticScan(scan, params, verts, to_scan.inverse(), depth, intr)


def face_like_model(subdivisions: int = 4, name: str = "synthetic-head", n_shape: int = 10, n_expr: int = 4):
    """A small head-like linear model (mm): an ellipsoid with a nose, smooth random shape
    components and box-prior 'expressions'. Tests and the bench use it when no real model is
    imported; unlike a sphere it has one right pose."""
    import trimesh

    from studio.core.facemodel import ModelMeta, ParamGroup
    from studio.core.pca import LinearGroup, PCAModel

    rng = np.random.default_rng(0)
    s = trimesh.creation.icosphere(subdivisions=subdivisions, radius=100.0)
    v = np.asarray(s.vertices) * np.array([0.75, 1.0, 0.85])
    v[:, 2] += 25 * np.exp(-((v[:, 0] / 18) ** 2 + ((v[:, 1] + 5) / 30) ** 2)) * (v[:, 2] > 0)  # nose
    v[:, 2] += 8 * np.exp(-(((np.abs(v[:, 0]) - 35) / 15) ** 2 + ((v[:, 1] - 20) / 10) ** 2)) * (v[:, 2] > 0)

    def smooth(freq):
        phase = rng.uniform(0, 2 * np.pi, 3)
        d = np.stack([np.sin(freq[0] * v[:, 0] / 100 + phase[0]) * np.cos(freq[1] * v[:, 1] / 100 + phase[1])
                      * np.cos(freq[2] * v[:, 2] / 100 + phase[2]) for _ in range(3)], -1)
        return d * rng.normal(size=3)

    shape = np.stack([smooth(rng.uniform(0.5, 2, 3)) * 3 / (1 + i / 3) for i in range(n_shape)])
    expr = np.stack([smooth(rng.uniform(1, 3, 3)) * 4 * (v[:, 2:3] > 0) for _ in range(n_expr)])
    face = np.flatnonzero(v[:, 2] > 20).astype(np.int32)
    return PCAModel(name, v, np.asarray(s.faces), [
        LinearGroup(ParamGroup("shape", tuple(f"PC{i + 1}" for i in range(n_shape))), shape),
        LinearGroup(ParamGroup("expression", tuple(f"E{i}" for i in range(n_expr)), "box"), expr)],
        meta=ModelMeta(unit="mm", regions={"face": face}))


# Strong expressions for face-mask scans (ARKit blendshape names; models without them get random
# blendshapes instead): what a scanning session of one person's expressions captures.
EXPRESSIONS = {
    "smile": {"mouthSmile_L": 1.0, "mouthSmile_R": 1.0, "cheekSquint_L": 0.6, "cheekSquint_R": 0.6,
              "eyeSquint_L": 0.4, "eyeSquint_R": 0.4, "jawOpen": 0.15},
    "disgust": {"noseSneer_L": 1.0, "noseSneer_R": 1.0, "mouthUpperUp_L": 0.8, "mouthUpperUp_R": 0.8,
                "browDown_L": 0.7, "browDown_R": 0.7, "mouthFrown_L": 0.5, "mouthFrown_R": 0.5},
    "surprise": {"browInnerUp_L": 1.0, "browInnerUp_R": 1.0, "browOuterUp_L": 0.9, "browOuterUp_R": 0.9,
                 "eyeWide_L": 0.8, "eyeWide_R": 0.8, "jawOpen": 0.6},
}


def expression_params(model: PCAModel, rng: np.random.Generator, expression: str | None) -> Params:
    """A face from the prior with a named strong expression (``EXPRESSIONS``), or neutral (None)."""
    p = model.sample(rng)
    for g in model.groups:
        if g.prior == "box" and g.affects == "position" and g.size:
            v = np.zeros(g.size)
            if expression is not None:
                named = {g.names.index(n): w for n, w in EXPRESSIONS[expression].items() if n in g.names}
                v[list(named)] = list(named.values())
                if not named:  # not an ARKit model: a few random blendshapes, strongly on
                    on = rng.choice(g.size, size=min(3, g.size), replace=False)
                    v[on] = 0.8
            p[g.name] = g.lower + v * (g.upper - g.lower) if np.isfinite(g.lower).all() else v
    return p


def mesh_scan(model: PCAModel, params: Params, part: str = "head", seed: int = 0, unit: str = "mm",
              scale: float = 1.0, noise_mm: float = 0.0) -> SyntheticScan:
    """A scan as a modelling tool or a scanner's mesh export delivers it, in a random pose.

    ``part`` "head": every triangle of the model, interior parts included (eyeballs, teeth, mouth
    socket, eye shells — what ``studio sample`` writes); "mask": only the face region (a face-mask
    scan, forehead to chin). ``scale``: the scan is that many times larger than its ``unit`` says
    (a non-metric export, e.g. a head at 4× metres). ``noise_mm``: Gaussian noise on the vertices.
    """
    rng = np.random.default_rng(seed)
    verts = np.asarray(model.vertices(model.check(params)), np.float64)
    faces = np.asarray(model.faces, np.int64)
    if part == "mask":
        regions = model.meta.regions
        ids = next((regions[r] for r in ("full_face_area", "face") if r in regions), None)
        if ids is not None:
            keep = np.zeros(model.n_vertices, bool)
            keep[np.asarray(ids)] = True
            faces = faces[keep[faces].all(axis=1)]
    used = np.unique(faces)
    remap = np.full(model.n_vertices, -1)
    remap[used] = np.arange(len(used))
    rot = Rotation.random(random_state=rng.integers(2**31)).as_matrix()
    radius = float(np.ptp(verts[used], axis=0).max())
    to_scan = Similarity(UNIT_TO_MM[model.meta.unit] / UNIT_TO_MM[unit] * scale, rot,
                         rng.normal(scale=radius, size=3) * UNIT_TO_MM[model.meta.unit] / UNIT_TO_MM[unit] * scale)
    from studio.core.fitting.scan_io import mesh_normals
    from studio.core.geometry.surface import boundary_vertices

    noisy = verts[used] + rng.normal(scale=noise_mm / UNIT_TO_MM[model.meta.unit], size=(len(used), 3))
    pts = to_scan.apply(noisy)
    f = remap[faces]
    scan = Scan(pts, mesh_normals(pts, f), boundary_vertices(f, len(pts)), f, unit=unit, kind="mesh", oriented=True,
                source="synthetic")
    return SyntheticScan(scan, params, verts, to_scan.inverse(), np.zeros((0, 0)), {})
