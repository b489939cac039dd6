"""Surface-reconstruction metrics, as in the thesis §5.3 (and the usual occupancy-network
benchmark): Chamfer-L1, normal consistency and F-score at a distance threshold, computed on point
samples of two surfaces with KD-trees. Distances are in whatever unit the points are in; callers
convert to mm (``facemodel.UNIT_TO_MM``) before calling so reported figures are in mm.

Fitting and evaluation code (scan fitting, photo fitting, the neural model's eval) all report
through this one module so their figures are comparable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.spatial import cKDTree


@dataclass
class SurfaceMetrics:
    chamfer_l1: float  # mean of the two mean nearest-neighbour distances
    accuracy: float  # mean distance prediction → reference
    completeness: float  # mean distance reference → prediction
    normal_consistency: float  # mean |n_pred · n_ref| over nearest neighbours, both directions
    fscore: float  # harmonic mean of precision and recall at ``threshold``
    precision: float
    recall: float
    threshold: float

    def as_dict(self) -> dict:
        return asdict(self)


def nearest(source: np.ndarray, target: np.ndarray, tree: cKDTree | None = None):
    """Distance from every source point to its nearest target point, and that point's index."""
    tree = cKDTree(target) if tree is None else tree
    return tree.query(np.asarray(source, np.float64), k=1, workers=-1)


def surface_metrics(pred: np.ndarray, ref: np.ndarray, pred_normals: np.ndarray | None = None,
                    ref_normals: np.ndarray | None = None, threshold: float = 1.0) -> SurfaceMetrics:
    """Compare point samples ``pred`` (N, 3) and ``ref`` (M, 3) of two surfaces.

    Normal consistency needs both normal arrays (unit length); it is NaN without them.
    """
    pred = np.asarray(pred, np.float64)
    ref = np.asarray(ref, np.float64)
    if len(pred) == 0 or len(ref) == 0:
        raise ValueError("surface_metrics needs points on both surfaces")
    d_pr, i_pr = nearest(pred, ref)  # accuracy: how far predicted points are from the reference
    d_rp, i_rp = nearest(ref, pred)  # completeness: how much of the reference is covered
    accuracy, completeness = float(d_pr.mean()), float(d_rp.mean())
    precision = float((d_pr < threshold).mean())
    recall = float((d_rp < threshold).mean())
    fscore = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    nc = float("nan")
    if pred_normals is not None and ref_normals is not None:
        pn, rn = np.asarray(pred_normals, np.float64), np.asarray(ref_normals, np.float64)
        a = np.abs(np.einsum("ij,ij->i", pn, rn[i_pr])).mean()
        b = np.abs(np.einsum("ij,ij->i", rn, pn[i_rp])).mean()
        nc = float(0.5 * (a + b))
    return SurfaceMetrics(0.5 * (accuracy + completeness), accuracy, completeness, nc, fscore,
                          precision, recall, threshold)


def sample_surface(vertices: np.ndarray, faces: np.ndarray, count: int, seed: int = 0):
    """``count`` points uniformly by area on a triangle mesh, with the face normals there."""
    import trimesh

    mesh = trimesh.Trimesh(np.asarray(vertices, np.float64), np.asarray(faces, np.int64), process=False)
    points, face_index = trimesh.sample.sample_surface(mesh, count, seed=seed)
    return np.asarray(points), np.asarray(mesh.face_normals[face_index])


# -- shape error after alignment (the photo bench's headline) -------------------------------------
def aligned_rms(a: np.ndarray, b: np.ndarray, with_scale: bool) -> float:
    """RMS of a − b after the best rotation + translation (+ scale when ``with_scale``) of a onto b."""
    from studio.core.fitting.align import umeyama  # local: fitting.report imports this module

    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.sqrt(((umeyama(a, b, with_scale=with_scale).apply(a) - b) ** 2).sum(1).mean()))


def rigid_rms(a: np.ndarray, b: np.ndarray) -> float:
    """RMS of a − b after the best rotation + translation of a onto b (no scaling, so a wrong
    size counts as error)."""
    return aligned_rms(a, b, with_scale=False)


def similarity_rms(a: np.ndarray, b: np.ndarray) -> float:
    """RMS of a − b after the best similarity (rotation, translation, scale) of a onto b."""
    return aligned_rms(a, b, with_scale=True)
