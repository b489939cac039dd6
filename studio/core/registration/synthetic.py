"""Scans with a known registered answer, beyond the model's span: a model face with a bump on
the cheek (a smooth 3-mm swelling no shape component makes), seen as a face-mask mesh with holes
and noise, in a random pose and unit. The tests and ``studio bench register`` use them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from studio.core.facemodel import UNIT_TO_MM
from studio.core.fitting.align import Similarity
from studio.core.fitting.linear_scan import region_vertices
from studio.core.fitting.scan_io import Scan, mesh_normals
from studio.core.fitting.synthetic import random_params
from studio.core.geometry import vertex_normals
from studio.core.geometry.surface import boundary_vertices
from studio.core.pca import PCAModel


@dataclass
class TruthScan:
    scan: Scan  # what a scanner delivers (its unit, a random pose)
    truth: np.ndarray  # the true registered vertices: model topology, frame and unit
    params: dict  # the model coefficients under the bump
    bump: np.ndarray  # vertex ids the bump raises by more than 10 % of its height


def cheek_centre(model: PCAModel) -> np.ndarray:
    """A vertex on the left cheek of the mean face: the one nearest the point between the jaw and
    the nose's wing (iBUG 68 landmarks 2 and 31; that point lies inside the head), or the face's
    leftmost-forward vertex for models without them."""
    mean = np.asarray(model.mean, np.float64)
    face = mean[region_vertices(model, "face")]
    ids = model.meta.landmarks.get("ibug68")
    if ids is not None and len(ids) == 68:
        lm = mean[np.asarray(ids, np.int64)]
        inside = 0.55 * lm[2] + 0.45 * lm[31]
        return face[np.argmin(np.linalg.norm(face - inside, axis=1))]
    return face[np.argmax(face[:, 0] + face[:, 2])]


def bumped(model: PCAModel, vertices: np.ndarray, height_mm: float = 3.0, radius_mm: float = 5.0):
    """``vertices`` raised along their normals by a Gaussian bump on the cheek: (new vertices, ids)."""
    mm = UNIT_TO_MM[model.meta.unit]
    face = region_vertices(model, "face")
    dist = np.linalg.norm(np.asarray(model.mean, float)[face] - cheek_centre(model), axis=1) * mm
    h = height_mm * np.exp(-0.5 * (dist / radius_mm) ** 2)
    out = np.array(vertices, np.float64)
    out[face] += (h / mm)[:, None] * vertex_normals(out, np.asarray(model.faces))[face]
    return out, face[h > 0.1 * height_mm]


def truth_scan(model: PCAModel, seed: int, bump_mm: float = 3.0, noise_mm: float = 0.2, holes: int = 3,
               expressions: int = 0, unit: str | None = None) -> TruthScan:
    """A face-mask mesh of a random face of ``model`` (``expressions`` blendshapes partly on) with
    the cheek bump (0: none), ``holes`` holes (not on the bump), vertex noise, random pose and unit."""
    rng = np.random.default_rng(seed)
    params = random_params(model, rng, expressions=expressions, expression_max=0.5)
    verts = np.asarray(model.vertices(params), np.float64)
    truth, bump = bumped(model, verts, bump_mm) if bump_mm > 0 else (verts, np.zeros(0, np.int64))
    mm = UNIT_TO_MM[model.meta.unit]
    faces = np.asarray(model.faces, np.int64)
    keep = np.zeros(len(verts), bool)
    keep[region_vertices(model, "face")] = True
    keep[bump] = True
    cut = np.zeros(len(verts), bool)  # holes: every vertex within 4-7 mm of a few random centres
    away = np.flatnonzero(keep & (np.linalg.norm(truth - cheek_centre(model), axis=1) * mm > 25))
    for c in rng.choice(away, size=min(holes, len(away)), replace=False):
        cut |= np.linalg.norm(truth - truth[c], axis=1) * mm < rng.uniform(4, 7)
    faces = faces[(keep & ~cut)[faces].all(axis=1)]
    used = np.unique(faces)
    remap = np.full(len(verts), -1)
    remap[used] = np.arange(len(used))
    scan_unit = unit or str(rng.choice(list(UNIT_TO_MM)))
    s = mm / UNIT_TO_MM[scan_unit]
    rot = Rotation.random(random_state=rng.integers(2**31)).as_matrix()
    to_scan = Similarity(s, rot, rng.normal(scale=0.2 * 1000 / UNIT_TO_MM[scan_unit], size=3))
    noisy = truth[used] + rng.normal(scale=noise_mm / mm, size=(len(used), 3))
    pts, f = to_scan.apply(noisy), remap[faces]
    scan = Scan(pts, mesh_normals(pts, f), boundary_vertices(f, len(pts)), f, unit=scan_unit, kind="mesh",
                oriented=True, source="synthetic")
    return TruthScan(scan, truth, params, bump)


def write_scan(ts: TruthScan, path) -> None:
    """The scan as a binary PLY mesh (the way a scanner's export arrives)."""
    import trimesh

    trimesh.Trimesh(ts.scan.points, ts.scan.faces, process=False).export(str(path))
