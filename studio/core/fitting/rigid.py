"""The rigid stage of every scan fit: where is the face, how is it turned, and how large is it.

Steps, each named so a failure can say which one failed:

1. **search** — the landmark-free alignment (``align.global_align``): principal-axis orientation
   hypotheses refined by robust ICP. It needs no face detector but can settle in a wrong basin
   on a scan that differs from the model in shape (hair, shoulders, an open mouth).
2. **detect** — face landmarks on the scan (``scan_landmarks``): the scan rendered as relief from
   the search's best orientations in turn, until the detector finds a face.
3. **pose** — a similarity from the detected scan landmarks to the same landmarks on the
   model's mean surface (robust Umeyama). Its scale also checks the unit: a scan whose size no
   unit explains (a head stored at 4× metres) is fitted with a free scale, and the fit says so.
4. **refine** — robust ICP from the landmark pose.

With the user's own 3-D landmarks (``--landmarks``) steps 1-3 are replaced by them. When no view
shows a face the search's result stands, and the fit's verdict notes that the landmark check
could not be made.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from studio.core.errors import StudioError
from studio.core.fitting import align, scan_landmarks
from studio.core.fitting.align import Similarity, Target
from studio.core.progress import report

# A landmark scale outside this range (scan unit → model unit) means the unit is not the scan's.
UNIT_TOLERANCE = 1.5


@dataclass
class ModelSide:
    """What a scan is aligned to: the model's mean surface as an ICP target, its front face (the
    part any face scan shows) and its landmarks found the way the scan's are found."""

    target: Target
    front: np.ndarray  # target point ids of the front face
    landmarks: scan_landmarks.SurfaceLandmarks | None  # on the mean surface, model frame
    ibug68: np.ndarray | None = None  # (68, 3) iBUG points on the mean surface, for --landmarks


@dataclass
class RigidResult:
    sim: Similarity  # scan (already in the model's unit) → model
    method: str  # "landmarks given", "landmarks detected" or "shape only"
    free_scale: bool  # the scale was estimated (asked for, or no unit explained the scan's size)
    scan_landmarks: np.ndarray | None = None  # (468, 3) detected on the scan, NaN = none (the fitter
    # converts them to the scan's own coordinates before it returns)
    notes: list[str] = field(default_factory=list)

    def landmark_error_to(self, model_points: np.ndarray, to_model: Similarity) -> float | None:
        """Median distance of the scan's detected landmarks, placed by ``to_model``, to
        ``model_points`` (the fitted face's), as a fraction of their inter-ocular distance."""
        if self.scan_landmarks is None:
            return None
        keep = scan_landmarks.stable_mask() & np.isfinite(self.scan_landmarks).all(1) & np.isfinite(model_points).all(1)
        if keep.sum() < 6:
            return None
        d = np.linalg.norm(to_model.apply(self.scan_landmarks[keep]) - model_points[keep], axis=1)
        a, b = model_points[list(scan_landmarks.EYE_CORNERS)]
        return float(np.median(d) / max(np.linalg.norm(a - b), 1e-12))


@dataclass
class FaceArea:
    """Where "the scan's face area" is, in the model frame: inside the outline of the model's face
    landmarks seen from the front (an oval: the temples, hair line, ears and jaw's underside are
    outside), and not behind them (the back of a head, the inside of a mouth socket)."""

    outline: np.ndarray  # (K, 2) x, y of the landmarks' convex hull, grown by the margin
    z_min: float

    def contains(self, points_model: np.ndarray, model_mm: float = 1.0) -> np.ndarray:
        """Which points (model frame; ``model_mm`` mm per model unit) are in the face area: inside the
        outline and on the front surface there — within 3 mm of the front-most point of their 2-mm
        column, so a full head's mouth and eye sockets behind the lips and lids do not count."""
        from matplotlib.path import Path

        p = np.asarray(points_model, float)
        inside = Path(self.outline).contains_points(p[:, :2]) & (p[:, 2] >= self.z_min)
        if inside.sum() == 0:
            return inside
        q = p[inside] * model_mm
        cell = np.floor(q[:, :2] / 2.0).astype(np.int64)
        _, col = np.unique(cell, axis=0, return_inverse=True)
        front = np.full(col.max() + 1, -np.inf)
        np.maximum.at(front, col.ravel(), q[:, 2])
        out = inside.copy()
        out[inside] = q[:, 2] >= front[col.ravel()] - 3.0
        return out


def face_area(side: ModelSide, margin: float = 0.05) -> FaceArea | None:
    """The face area of ``side``'s landmarks, ``margin`` × the inter-ocular distance wider."""
    from scipy.spatial import ConvexHull

    lm = side.landmarks
    if lm is None or lm.valid.sum() < 100:
        return None
    p = lm.points[lm.valid]
    pad = margin * lm.interocular()
    xy = p[:, :2]
    hull = xy[ConvexHull(xy).vertices]
    c = hull.mean(axis=0)
    d = hull - c
    grown = c + d * (1 + pad / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12))
    return FaceArea(grown, float(p[:, 2].min() - pad))


def model_landmarks(points: np.ndarray, faces: np.ndarray,
                    normals: np.ndarray) -> scan_landmarks.SurfaceLandmarks | None:
    """Landmarks on a model's mean surface (model frame: the face looks along +z, y up)."""
    return scan_landmarks.find(points, faces, normals, np.eye(3))


def _distinct_views(rotations: list[np.ndarray], limit: int, min_angle_deg: float = 25.0) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for r in rotations:
        if all(align.rotation_angle_deg(r, o) > min_angle_deg for o in out):
            out.append(r)
        if len(out) >= limit:
            break
    return out


UPSIDE_DOWN = np.diag([-1.0, -1.0, 1.0])  # a view turned 180° about its axis
GOOD_DETECTION = 0.05  # median landmark residual / inter-ocular distance: accept this view at once
USABLE_DETECTION = 0.085  # … the best view's, if none was good: beyond it the "face" is a misdetection


def _detect(model_lm: scan_landmarks.SurfaceLandmarks, surface: tuple[np.ndarray, np.ndarray | None, np.ndarray],
            views: list[np.ndarray]):
    """The scan's landmarks from the view whose detection agrees best with the model's landmarks.

    Each view that shows a face gives a similarity to the model; the scan is then rendered again
    from that pose — upright and frontal — and detected once more, which is where the detector is
    most accurate (on an upside-down render it still "finds" a face, with scrambled points).
    Returns (landmarks, loose similarity with scale) or (None, None)."""
    stable = scan_landmarks.stable_mask()
    iod = model_lm.interocular()
    best: tuple[float, scan_landmarks.SurfaceLandmarks | None, Similarity | None] = (np.inf, None, None)
    poses: list[np.ndarray] = []  # the rotations the best detection was read from

    def judge(found):
        src = np.where(stable[:, None], found.points, np.nan)
        try:
            sim, err, _ = scan_landmarks.robust_similarity(src, model_lm.points, with_scale=True)
        except StudioError:
            return np.inf, None
        return float(np.median(err)) / iod, sim

    for view in views:
        found = scan_landmarks.find(*surface, view)
        if found is None:
            continue
        score, sim = judge(found)
        first = sim
        if sim is not None:
            again = scan_landmarks.find(*surface, sim.R)
            if again is not None:
                score2, sim2 = judge(again)
                if score2 <= score:
                    found, score, sim = again, score2, sim2
        if score < best[0]:
            best = (score, found, sim)
            poses = [p.R for p in (first, sim) if p is not None]
        if score < GOOD_DETECTION:
            break
    if GOOD_DETECTION <= best[0] <= USABLE_DETECTION and best[2] is not None:
        # A marginal detection may be a face misread on an upside-down render: it implies an
        # upside-down pose, whose re-render is misread alike (a neural fit came out 179° off).
        # Turned over, such a face is upright and read right: a pose turned over, with a smaller
        # residual, wins.
        for r in poses:
            over = scan_landmarks.find(*surface, UPSIDE_DOWN @ r)
            if over is None:
                continue
            score3, sim3 = judge(over)
            if sim3 is not None and score3 < best[0] and align.rotation_angle_deg(sim3.R, best[2].R) > 90.0:
                best = (score3, over, sim3)
    if best[0] > USABLE_DETECTION:
        return None, None
    return best[1], best[2]


def align_scan(side: ModelSide, surface: tuple[np.ndarray, np.ndarray | None, np.ndarray], sample: np.ndarray,
               normals: np.ndarray, border: np.ndarray, oriented: bool, free_scale: bool,
               given: Similarity | None = None, refine: int = 12, views: int = 12, progress=None) -> RigidResult:
    """The rigid stage (see the module docstring). ``surface``: the whole scan (points in the model's
    unit, triangles or None, normals) for rendering; ``sample``/``normals``/``border``: the scan
    subsample ICP works on."""
    if given is not None:
        sim = align.icp(sample, given, side.target, normals, oriented, iterations=10, with_scale=free_scale,
                        scale_range=(0.8 * given.s, 1.25 * given.s))
        return RigidResult(sim, "landmarks given", free_scale)
    report(progress, 0.0, "aligning: trying orientations")
    sub = (lambda f, m="": report(progress, 0.6 * f, m)) if progress else None
    sim, _, ranked = align.global_align(sample, side.target, normals, oriented, src_border=border,
                                        target_subset=side.front, with_scale=free_scale, refine=refine,
                                        progress=sub, return_ranked=True)
    result = RigidResult(sim, "shape only", free_scale)
    if side.landmarks is None:
        result.notes.append("the model's mean surface shows no detectable face; aligned by shape alone")
        return result
    report(progress, 0.65, "aligning: finding the face on the scan")
    found, loose = _detect(side.landmarks, surface, _distinct_views([sim.R] + ranked, views))
    if found is None:
        result.notes.append("no face found in renders of the scan; aligned by shape alone")
        return result
    if not free_scale and not 1 / UNIT_TOLERANCE <= loose.s <= UNIT_TOLERANCE:
        free_scale = True
        result.notes.append(f"the scan's face is {1 / loose.s:.2f}× the size a face has in its unit; its scale was "
                            "estimated (free scale)")
    src = np.where(scan_landmarks.stable_mask()[:, None], found.points, np.nan)
    pose, _, _ = scan_landmarks.robust_similarity(src, side.landmarks.points, with_scale=free_scale)
    report(progress, 0.8, "aligning: refining from the landmarks")
    refined = align.icp(sample, pose, side.target, normals, oriented, iterations=refine, trim=0.3,
                        with_scale=free_scale, scale_range=(0.85 * pose.s, 1.18 * pose.s), src_border=border,
                        target_subset=side.front)
    return RigidResult(refined, "landmarks detected", free_scale, found.points, result.notes)


MAX_RENDER_POINTS = 40_000  # a point cloud is splatted: more points add time, not detail at 448 px


def render_surface(scan, points: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """The scan as something to render: (points, triangles or None, normals), ``points`` being the
    scan's points already in the model's unit. A cloud without normals gets them estimated."""
    from scipy.spatial import cKDTree

    from studio.core.fitting.scan_io import local_geometry

    points = np.asarray(points, float)
    if scan.faces is not None and len(scan.faces):
        from studio.core.geometry import vertex_normals

        # a mesh's reader gave it vertex normals already (scaling the points does not turn them)
        normals = scan.normals if scan.normals is not None else vertex_normals(points, scan.faces)
        return points, np.asarray(scan.faces, np.int64), np.asarray(normals, float)
    idx = np.arange(len(points))
    if len(idx) > MAX_RENDER_POINTS:
        idx = np.sort(np.random.default_rng(seed).choice(len(points), MAX_RENDER_POINTS, replace=False))
    p = points[idx]
    tree = cKDTree(p)
    if scan.normals is not None:
        n = np.asarray(scan.normals, float)[idx]
    else:
        # a wide neighbourhood: smooth shading reads as a face; noisy normals read as gravel
        n, _, _ = local_geometry(p, tree, p, k=40, sensor=scan.sensor)
    # Stray points would be drawn as specks in front of the face, and the detector finds no face
    # behind 20 % of them: for the render, keep only points as densely surrounded as the surface.
    d, _ = tree.query(p, k=min(9, len(p)))
    spread = d[:, -1]
    keep = spread <= 1.5 * np.median(spread)
    return p[keep], None, n[keep]
