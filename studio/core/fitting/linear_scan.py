"""Fitting a linear (PCA) model to a scan: non-rigid MAP estimate of shape and expression.

The model is linear, vertices = mean + B·α (``studio.core.pca``), so once every scan point has a
corresponding model vertex i with normal n_i the point-to-plane residual

    r_j = n_i · (T(s_j) − mean_i − B_i·α)

is linear in α, and — linearised around the current pose — in a small rigid update (ω, τ) of
T as well (plus a scale σ when the scan's scale is unknown). Each iteration therefore solves one
regularised linear least squares

    min  Σ_j w_j r_j² / σ_N²  +  Σ_normal α_i²        (box groups: lower ≤ α ≤ upper)

in k ≤ (number of coefficients) + 7 unknowns through its k×k normal equations (box bounds by
a small active-set solve), and recomputes the correspondences with the new face. What makes it
robust and fast (the seed's recipe):

* correspondences from a subsample of the scan (a few thousand points) to the closest point of
  the fitted region's surface (nearest vertex by KD-tree, then the closest point on its
  triangles, so the residual is exact and the fit unbiased by the vertex spacing); the scan's
  own KD-tree is built once, for its normals and to flag isolated outlier points;
* robust weights: isolated points dropped, matches on the region's border rejected (scan points
  beyond the modelled region: hair, neck, shoulders; the rejection of boundary correspondences
  for partial scans), normals must agree, the worst fraction trimmed;
* coarse to fine: the first shape components first, then more; the prior weight σ_N starts
  high (a plausible average face) and decreases toward the measured noise level;
* rigid before non-rigid: a similarity alignment first (``align``); then the pose is
  re-estimated with the coefficients in every solve, alternating with new correspondences.
  A scan in a known or detected unit is metric, so its scale stays the unit's and the shape
  components carry the face's size (``FitOptions.free_scale`` for scans of arbitrary scale).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy.spatial import cKDTree

from studio.core.errors import FitFailed, StudioError
from studio.core.expressions import opposed_pairs
from studio.core.facemodel import UNIT_TO_MM, Params
from studio.core.fitting import align, expression_prior, rigid
from studio.core.fitting.align import Similarity, Target
from studio.core.fitting.rigid import FaceArea
from studio.core.fitting.scan_io import Scan, local_geometry
from studio.core.geometry import vertex_normals
from studio.core.geometry.robust import robust_scale
from studio.core.geometry.surface import boundary_vertices, incident_triangles, project_to_surface
from studio.core.pca import PCAModel
from studio.core.progress import report
from studio.core.solvers import bounded_quadratic

REGIONS = ("face", "head")


@dataclass
class FitOptions:
    iterations: int = 16
    samples: int = 5000  # scan points used for correspondences
    align_samples: int = 600  # scan points used for the global alignment
    align_iterations: int = 12  # ICP iterations refining each of the best orientation hypotheses
    model_samples: int = 2000  # region vertices matched to the scan (model → scan term)
    # Model → scan rows (region vertices to their nearest scan sample, on the scan's tangent
    # plane). Off by default: against a few thousand scan samples that plane is a coarse
    # stand-in for the surface, which biased the fit more than the term helped (measured on
    # ICT); the alignment uses it to fix the scale of scans with a free scale.
    model_weight: float = 0.0
    # A scan in a known (or detected) unit is metric: its scale is the unit's, and the model's
    # shape components account for the face's size. ``free_scale`` is for scans of arbitrary
    # scale (photogrammetry): the scale is then estimated, while the face is still coarse.
    free_scale: bool = False
    scale_until: int = 3  # iterations in which a free scale is re-estimated
    expressions_from: int = 4  # iteration from which box-prior (expression) groups are fitted
    fit_pose: bool = True  # re-estimate the pose jointly with the coefficients in every solve
    pose_damping: float = 1e-5  # Levenberg damping of the pose update (see the loop)
    trim: float = 0.05  # worst fraction of correspondences dropped each iteration
    cut_floor_mm: float = 2.0  # residuals beyond max(3 robust σ, this) are outliers
    sigma_start_mm: float = 8.0  # prior weight schedule: σ_N from this …
    sigma_final_mm: float = 0.05  # … down to the measured residual noise, not below this
    noise_weight: float = 1.0  # σ_N ≥ this × the residuals' robust σ (the noise level)
    coarse: tuple[float, ...] = (0.1, 0.1, 0.3, 0.3, 0.6, 1.0)  # active fraction of each normal group
    seed: int = 0
    # Scan residuals are correlated (a hair line, a model's missing wrinkle span many points), so
    # thousands of correspondences are not thousands of independent observations. The data term
    # counts as at most this many, so the prior keeps its say (shape vectors of length 14-18 over
    # 100 components, where about 10 is expected, came from trusting every point).
    independent: int = 300
    expression_sigma: float = 0.3  # Gaussian shrinkage of blendshape weights toward neutral
    expression_l1: float = 2.0  # sparsity price per unit of blendshape weight (see expression_prior)
    expression_exclusion: float = 8.0  # price of opposed blendshapes together
    unreliable_weight: float = 0.2  # weight of eyes, inner lips, nostrils (scanners capture them badly)


@dataclass
class FitResult:
    model_name: str
    params: Params
    to_model: Similarity  # scan coordinates (scan unit) → model coordinates
    region: str
    scan_unit: str
    model_unit: str
    vertices: np.ndarray  # fitted vertices, model coordinates (all of the model's vertices)
    region_vertices: np.ndarray  # the vertex indices that were fitted
    iterations: int
    seconds: float
    residual_mm: list[float] = field(default_factory=list)  # robust residual per iteration
    # The fitted mesh's triangles when its topology depends on the parameters (a neural model's
    # marching-cubes mesh); None for a fixed-topology model (the model's own triangles).
    faces: np.ndarray | None = None
    free_scale: bool = False  # the scan's scale was estimated (its unit's scale was not trusted)
    rigid: "rigid.RigidResult | None" = None  # how the pose was found (method, detected landmarks, notes)
    verdict: "object | None" = None  # the fit's own judgement (``verdict.judge``), set by the job
    face_area: "FaceArea | None" = None  # where the scan's face area is, model frame
    model_landmarks: np.ndarray | None = None  # (468, 3) the fitted face's landmarks (model frame)

    def scan_to_mm(self) -> float:
        """Millimetres per scan coordinate: the unit's, or — with a free scale — the estimated one
        (the scan's nominal unit then says nothing about its size)."""
        if self.free_scale:
            return float(self.to_model.s) * UNIT_TO_MM[self.model_unit]
        return UNIT_TO_MM[self.scan_unit]

    def vertices_in_scan(self) -> np.ndarray:
        """The fitted face placed on the scan (scan coordinates and unit)."""
        return self.to_model.inverse().apply(self.vertices)

    def pose_json(self) -> dict:
        """How to place the model on the scan: x_scan = s·R·x_model + t (scan unit)."""
        d = self.to_model.inverse().as_dict()
        d.update({"maps": "model -> scan", "scan_unit": self.scan_unit, "model_unit": self.model_unit})
        return d


# -- model preparation (cached on the model: the restricted basis is tens of MB for ICT) ------------
@dataclass
class _Prepared:
    verts: np.ndarray  # region vertex indices into the model
    faces: np.ndarray  # region triangles, indices into ``verts``
    border: np.ndarray  # (len(verts),) bool: on (or one ring inside) the region's open border
    spacing: np.ndarray  # (len(verts),) mean length of the edges at each vertex (mean face)
    incident: np.ndarray  # (len(verts), K) triangles around each vertex, padded with the first
    mean: np.ndarray  # (r, 3)
    basis: np.ndarray  # (3, r, k) float32: x, y, z rows of the position columns, region only
    columns: list  # (group, start, stop)
    lower: np.ndarray
    upper: np.ndarray
    prior: np.ndarray  # per-column quadratic prior weight (1/σ² normal, small ridge box)
    normal_cols: np.ndarray  # bool: column has a normal prior
    rank: np.ndarray  # per-column index within its group (coarse-to-fine order)
    group_size: np.ndarray  # per-column size of its group
    align_target: Target
    align_face: np.ndarray  # target points a scan of the face covers (for two-sided ICP)
    unreliable: np.ndarray  # (len(verts),) bool: eyes, inner lips, nostrils (expression_prior)
    box_cols: np.ndarray  # column ids of box-prior (blendshape) columns
    opposed: np.ndarray  # (P, 2) column ids of opposed blendshapes


def _forward(model: PCAModel) -> np.ndarray:
    """The direction the face looks: the models here look along +z (see studio.app.viewport)."""
    return np.array([0.0, 0.0, 1.0])


def region_vertices(model: PCAModel, region: str) -> np.ndarray:
    """Vertex ids of the fitted region: ``face`` (the model's face area) or ``head`` (face + head
    and neck skin); models without such regions are fitted whole."""
    regions = model.meta.regions
    if region not in REGIONS:
        raise StudioError(f"unknown region '{region}' (use: {', '.join(REGIONS)})")
    face = next((regions[r] for r in ("face", "full_face_area") if r in regions), None)
    if region == "head" and face is not None and "head_and_neck" in regions:
        return np.union1d(face, regions["head_and_neck"]).astype(np.int64)
    if region == "head" or face is None:
        return np.arange(model.n_vertices)
    return np.unique(np.asarray(face, np.int64))


def _submesh(model: PCAModel, verts: np.ndarray):
    keep = np.zeros(model.n_vertices, bool)
    keep[verts] = True
    faces = np.asarray(model.faces)[keep[model.faces].all(axis=1)]
    remap = np.full(model.n_vertices, -1)
    remap[verts] = np.arange(len(verts))
    faces = remap[faces]
    border = boundary_vertices(faces, len(verts))
    used = np.zeros(len(verts), bool)
    used[faces.ravel()] = True
    border |= ~used  # vertices on no triangle (loose points) give no reliable normal
    # Grow the border by one ring: a scan point just beyond the region's edge is often nearest
    # to a vertex one ring inside it, and would pull the face outward.
    ring = border.copy()
    ring[faces[border[faces].any(axis=1)].ravel()] = True
    # Typical edge length at each vertex: a match farther than that along the surface is a
    # point beyond the region's edge (or in a hole), not on it.
    el = np.linalg.norm(model.mean[faces[:, [1, 2, 0]]] - model.mean[faces], axis=2).mean(axis=1)
    cnt = np.bincount(faces.ravel(), minlength=len(verts))
    spacing = np.bincount(faces.ravel(), weights=np.repeat(el, 3), minlength=len(verts)) / np.maximum(cnt, 1)
    return faces, ring, spacing


def prepare(model: PCAModel, region: str = "face") -> _Prepared:
    cache = model.__dict__.setdefault("_scan_fit_cache", {})
    if region in cache:
        return cache[region]
    verts = region_vertices(model, region)
    faces, border, spacing = _submesh(model, verts)
    if len(faces) == 0:
        raise StudioError(f"the model's {region} region has no triangles; cannot fit it to a scan")
    blocks, columns, lower, upper, prior, normal, rank, gsize = [], [], [], [], [], [], [], []
    start = 0
    for lg in model.linear:
        g = lg.group
        if g.affects != "position" or g.size == 0:
            continue
        blocks.append(np.asarray(lg.basis[:, verts, :], np.float64))
        columns.append((g, start, start + g.size))
        start += g.size
        lower.append(g.lower if g.prior == "box" else np.full(g.size, -np.inf))
        upper.append(g.upper if g.prior == "box" else np.full(g.size, np.inf))
        prior.append(1.0 / g.sigma**2 if g.prior == "normal" else np.full(g.size, 1.0))  # box: set per fit
        normal.append(np.full(g.size, g.prior == "normal"))
        rank.append(np.arange(g.size))
        gsize.append(np.full(g.size, g.size))
    # (3, r, k): one (r, k) matrix per axis, so the rows of matched vertices are one gather each.
    # float32 like the model itself: half the memory traffic; products are summed in float64.
    basis = (np.concatenate(blocks, axis=0).transpose(2, 1, 0).astype(np.float32) if blocks
             else np.zeros((3, len(verts), 0), np.float32))
    mean = np.asarray(model.mean, np.float64)[verts]
    # Alignment target: the head when the model has one (a scan usually shows more than the face),
    # else the face: the part every face scan shows.
    regions = model.meta.regions
    av = region_vertices(model, "head" if "head_and_neck" in regions else "face")
    af, ab, _ = _submesh(model, av)
    amean = np.asarray(model.mean, np.float64)[av]
    target = Target.build(amean, vertex_normals(amean, af), ab)
    # The front of the face (inner vertices of the fitted region) — what any face scan shows.
    inner = np.flatnonzero(np.isin(av, verts) & ~ab)
    front = inner[(target.normals[inner] @ _forward(model)) > 0.3] if len(inner) else inner
    step = max(len(front) // 800, 1)
    face_subset = front[::step] if len(front) >= 30 else inner[:: max(len(inner) // 800, 1)]
    cat = (lambda xs, dt=float: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt))
    ids = model.meta.landmarks.get("ibug68")
    lm = None if ids is None or len(ids) != 68 else np.asarray(model.mean, float)[np.asarray(ids, np.int64)]
    unreliable = expression_prior.unreliable_vertices(mean, lm)
    box_cols = np.concatenate([np.arange(a, b) for g, a, b in columns if g.prior == "box"] or [np.zeros(0, int)])
    opposed = np.concatenate([opposed_pairs(g.names) + a for g, a, b in columns if g.prior == "box"]
                             or [np.zeros((0, 2), int)])
    prep = _Prepared(verts, faces, border, spacing, incident_triangles(faces, len(verts)), mean, basis, columns,
                     cat(lower), cat(upper), cat(prior),
                     cat(normal, bool), cat(rank, int), cat(gsize, int), target, face_subset, unreliable,
                     box_cols.astype(np.int64), opposed.astype(np.int64))
    cache[region] = prep
    return prep


# -- the bounded solve -------------------------------------------------------------------------------
# -- the fit -----------------------------------------------------------------------------------------
def scan_samples(scan: Scan, pts: np.ndarray, n: int, rng: np.random.Generator):
    """Indices of a random subsample plus its normals, border and isolation flags."""
    tree = cKDTree(pts)
    idx = np.sort(rng.choice(len(pts), size=min(n, len(pts)), replace=False))
    nrm, border, isolated = local_geometry(pts, tree, pts[idx], sensor=scan.sensor)
    oriented = scan.sensor is not None
    if scan.normals is not None:
        nrm, oriented = np.asarray(scan.normals, float)[idx], scan.oriented
    if scan.boundary is not None:
        border = np.asarray(scan.boundary, bool)[idx]
    return idx, nrm, border, isolated, oriented


def _landmark_pose(model: PCAModel, landmarks: dict, scale: float, with_scale: bool) -> Similarity:
    """Umeyama from the user's 3-D landmarks (scan coordinates) to the model mean's landmarks."""
    scan_pts = np.asarray(landmarks["points"], float) * scale
    if "vertices" in landmarks:
        ids = np.asarray(landmarks["vertices"], np.int64)
    else:
        name = landmarks.get("set")
        sets = model.meta.landmarks
        if name is None and len(sets) == 1:
            name = next(iter(sets))
        if name not in sets:
            raise StudioError(f"the model has no landmark set '{name}' (it has: {', '.join(sets) or 'none'})")
        ids = np.asarray(sets[name], np.int64)
    if len(ids) != len(scan_pts):
        raise StudioError(f"{len(scan_pts)} landmark points for {len(ids)} model landmarks")
    if ids.size and (ids.min() < 0 or ids.max() >= model.n_vertices):
        raise StudioError("landmark vertex ids are out of the model's range")
    return align.landmark_align(scan_pts, np.asarray(model.mean, float)[ids], with_scale)


def fit(model: PCAModel, scan: Scan, region: str = "face", landmarks: dict | None = None,
        options: FitOptions | None = None, progress=None,
        on_update: Callable[[Params, Similarity], None] | None = None, _align_only: bool = False):
    """Fit ``model`` (a PCAModel) to ``scan``; see the module docstring.

    ``progress(fraction, message)`` is called at least once per iteration (it may raise
    ``Cancelled``); ``on_update(params, to_model)`` receives every intermediate estimate.
    """
    t0 = time.perf_counter()
    opt = options or FitOptions()
    rng = np.random.default_rng(opt.seed)
    prep = prepare(model, region)
    mm = UNIT_TO_MM[model.meta.unit]
    if scan.unit is None:
        raise StudioError("the scan's unit is not known (scans are read with scan_io.load_scan)")
    unit_scale = UNIT_TO_MM[scan.unit] / mm  # scan unit → model unit
    pts = np.asarray(scan.points, float) * unit_scale
    report(progress, 0.0, "reading the scan")
    idx, s_nrm, s_border, isolated, oriented = scan_samples(scan, pts, opt.samples, rng)
    usable = ~isolated
    if usable.sum() < 50:
        raise StudioError("the scan has too few surface points to fit (most are isolated outliers)")
    sample = pts[idx]

    # 1. rigid before non-rigid: a similarity that puts the scan onto the model mean.
    align_progress = (lambda f, m="": report(progress, 0.25 * f, m)) if progress else None
    given = _landmark_pose(model, landmarks, unit_scale, opt.free_scale) if landmarks is not None else None
    cand = np.flatnonzero(usable)
    # the user's landmarks: refine on the whole sample; the search ranks hypotheses on a few hundred
    pick = cand if given is not None or len(cand) <= opt.align_samples else \
        rng.choice(cand, opt.align_samples, replace=False)
    side = model_side(model, prep)
    rig = rigid.align_scan(side, rigid.render_surface(scan, pts), sample[pick], s_nrm[pick],
                           s_border[pick], oriented, opt.free_scale, given, opt.align_iterations,
                           progress=align_progress)
    sim = rig.sim
    free_scale = rig.free_scale
    _check_overlap(sample[usable], sim, prep)
    if _align_only:
        return Similarity(sim.s * unit_scale, sim.R, sim.t)

    # 2. non-rigid: alternate correspondences and one regularised least-squares solve.
    k = prep.basis.shape[2]
    alpha = np.zeros(k)
    centre = prep.mean.mean(axis=0)
    residuals: list[float] = []
    sigma = opt.sigma_start_mm / mm
    floor = opt.sigma_final_mm / mm
    decay = (floor / sigma) ** (1.0 / max(opt.iterations - 2, 1)) if opt.iterations > 2 else 1.0
    inner = np.flatnonzero(~prep.border)
    msub = inner if len(inner) <= opt.model_samples else np.sort(rng.choice(inner, opt.model_samples, replace=False))
    # Isolated points never take part: drop them from the per-iteration work altogether.
    sample, s_nrm, s_border = sample[usable], s_nrm[usable], s_border[usable]
    usable = np.ones(len(sample), bool)
    u_idx = np.arange(len(sample))
    tree = None
    for it in range(opt.iterations):
        report(progress, 0.25 + 0.75 * it / opt.iterations, f"fitting: iteration {it + 1}/{opt.iterations}")
        frac = opt.coarse[min(it, len(opt.coarse) - 1)]
        active = np.flatnonzero(np.where(prep.normal_cols, prep.rank < np.ceil(frac * prep.group_size),
                                         it >= opt.expressions_from))
        verts = prep.mean + (prep.basis @ alpha.astype(np.float32)).T.astype(np.float64)
        vn = vertex_normals(verts, prep.faces)
        p = sim.apply(sample)
        n_s = sim.rotate(s_nrm)
        # scan → model: every usable scan point to the closest point of the fitted surface
        # (among the triangles around its nearest vertex; exact, so no bias from the vertex grid).
        if tree is None or it < 4 or it % 3 == 0:  # the face moves little late on: reuse the tree
            tree = cKDTree(verts)
        d, i = tree.query(p)
        tri, bary, q = project_to_surface(p, verts, prep.faces, prep.incident, i)
        nq = np.einsum("nk,nki->ni", bary, vn[tri])
        nq /= np.maximum(np.linalg.norm(nq, axis=1, keepdims=True), 1e-12)
        keep = usable & ~prep.border[i]
        keep &= _compatible(n_s, nq, oriented)
        off = p - q
        r = np.einsum("ij,ij->i", nq, off)
        keep &= np.linalg.norm(off - r[:, None] * nq, axis=1) <= 0.5 * prep.spacing[i]
        # model → scan: region vertices to their nearest scan point; keeps a partial scan from
        # shrinking onto a patch of the face (scan borders are no evidence: rejected).
        if opt.model_weight > 0:
            dm, j = cKDTree(p[u_idx]).query(verts[msub])
            j = u_idx[j]
            keep_m = ~s_border[j] & _compatible(n_s[j], vn[msub], oriented)
            rm = np.einsum("ij,ij->i", n_s[j], verts[msub] - p[j])
        else:  # one-sided (the default): nothing to compute
            dm, j, keep_m, rm = np.zeros(0), np.zeros(0, np.int64), np.zeros(0, bool), np.zeros(0)
        if keep.sum() < 30 or (opt.model_weight > 0 and keep_m.sum() < 30):
            raise FitFailed("the scan does not match the model's face: too few points land on it "
                              "(is this a face scan, and in the unit given?)")
        # Robust scale of the residuals; correspondences far beyond it (and the worst fraction) go.
        scale = robust_scale(r[keep])
        cut = max(3.0 * scale, opt.cut_floor_mm / mm)
        keep &= np.abs(r) <= cut
        keep &= d <= np.quantile(d[keep], 1 - opt.trim)
        keep_m &= np.abs(rm) <= cut
        keep_m &= dm <= np.quantile(dm[keep_m], 1 - opt.trim) if keep_m.sum() > 30 else True
        residuals.append(float(np.sqrt(np.mean(r[keep] ** 2)) * mm))
        # Rows: d r/d(α_active, ω, τ, σ). Scan→model: r = n·(T(s) − v(α)); model→scan with
        # the scan's normal: r = n_s·(v(α) − T(s)).
        ks, km = np.flatnonzero(keep), np.flatnonzero(keep_m)
        ns = nq[ks]
        # The derivative through the dominant corner's basis row (a third of the gathers of the
        # exact barycentric blend; the residual itself is exact, so the fixed point is unchanged).
        corner = tri[ks, np.argmax(bary[ks], axis=1)]
        a1 = -_rows(prep.basis, corner, ns, active)
        jp1 = align.pose_jacobian(p[ks], ns, centre)
        vm, nm = msub[km], n_s[j[km]]
        a2 = _rows(prep.basis, vm, nm, active)
        jp2 = -align.pose_jacobian(p[j[km]], nm, centre)
        # Pose unknowns: rotation and translation always (unless held), the scale only while it
        # is free — a metric scan's scale is its unit's; a free one is refined while the face is
        # still coarse (few components, no expressions), later the many components could trade
        # size for shape.
        npose = 0 if not opt.fit_pose else (7 if free_scale and it < opt.scale_until else 6)
        jac = np.vstack([np.hstack([a1, jp1[:, :npose]]), opt.model_weight * np.hstack([a2, jp2[:, :npose]])])
        res = np.r_[r[ks], opt.model_weight * rm[km]]
        # Per-row weights: unreliable zones count less; all rows together as at most
        # ``independent`` observations (correlated residuals, see FitOptions).
        rw = np.r_[np.where(prep.unreliable[corner], opt.unreliable_weight, 1.0), np.ones(len(km))]
        rw *= min(1.0, opt.independent / max(float(rw.sum()), 1.0))
        w = 1.0 / sigma**2
        h = w * (jac.T @ (jac * rw[:, None]))
        g = -w * (jac.T @ (res * rw))
        na = len(active)
        pw = prep.prior[active].copy()
        box = np.isin(active, prep.box_cols)
        pw[box] = 1.0 / opt.expression_sigma**2
        h[np.arange(na), np.arange(na)] += pw
        g[:na] -= pw * alpha[active]
        if box.any():  # sparsity and exclusion: a price per unit of weight, linearised here
            price = expression_prior.linear_terms(alpha, prep.opposed, opt.expression_l1,
                                                  opt.expression_exclusion)
            g[:na][box] -= price[active[box]]
        # Damp the pose step in proportion to the scan's spread about the centre: near-symmetric
        # surfaces (a round cranium) barely fix a rotation, and an undamped step there spins the
        # face while the coefficients chase it; well-posed directions hardly notice the damping.
        lever = float(np.sum((p[ks] - centre) ** 2))
        h[na:, na:] += opt.pose_damping * w * lever * np.eye(npose)
        lo = np.r_[prep.lower[active] - alpha[active], np.full(npose, -np.inf)]
        hi = np.r_[prep.upper[active] - alpha[active], np.full(npose, np.inf)]
        x = bounded_quadratic(h, g, lo, hi)
        x = np.r_[x, np.zeros(7 - npose)]
        alpha[active] += x[:na]
        sim = sim.compose(align.pose_step(x[na:], centre))
        if it >= 2:  # σ_N: high → low, but never below the noise the residuals show
            sigma = max(sigma * decay, opt.noise_weight * scale, floor)
        if on_update is not None:
            on_update(_params(prep, model, alpha), Similarity(sim.s * unit_scale, sim.R, sim.t))
    report(progress, 1.0, "fitted")
    params = _params(prep, model, alpha)
    to_model = Similarity(sim.s * unit_scale, sim.R, sim.t)
    fitted = np.asarray(model.vertices(params), np.float64)
    if rig.scan_landmarks is not None:
        rig.scan_landmarks = rig.scan_landmarks / unit_scale  # into the scan's own coordinates
    lm = None
    if side.landmarks is not None:  # the mean's landmarks carried to the fitted face (same triangles)
        from studio.core.photo.shading import drawable_faces

        lm = side.landmarks.on(fitted, drawable_faces(model))
    return FitResult(model.name, params, to_model, region, scan.unit, model.meta.unit, fitted, prep.verts,
                     opt.iterations, time.perf_counter() - t0, residuals, free_scale=free_scale, rigid=rig,
                     face_area=rigid.face_area(side), model_landmarks=lm)


def _compatible(a: np.ndarray, b: np.ndarray, oriented: bool) -> np.ndarray:
    """Normals within 60° (either sign when the scan's normals have no reliable orientation)."""
    dots = np.einsum("ij,ij->i", a, b)
    return dots > 0.5 if oriented else np.abs(dots) > 0.5


def _rows(basis: np.ndarray, vi: np.ndarray, n: np.ndarray, active: np.ndarray) -> np.ndarray:
    """n_jᵀ·B_{v_j} for the active columns: (len(vi), len(active))."""
    every = len(active) == basis.shape[2]
    out = np.zeros((len(vi), len(active)))
    for axis in range(3):
        rows = basis[axis][vi] if every else basis[axis][np.ix_(vi, active)]
        out += rows * n[:, axis, None]
    return out


def initial_alignment(model: PCAModel, scan: Scan, region: str = "face", landmarks: dict | None = None,
                      options: FitOptions | None = None, progress=None) -> Similarity:
    """Only the rigid stage of ``fit``: scan coordinates → model coordinates."""
    return fit(model, scan, region, landmarks, options, progress, _align_only=True)


def model_side(model: PCAModel, prep: _Prepared) -> rigid.ModelSide:
    """The alignment target with the landmarks of the model's mean head (cached with ``prep``)."""
    cache = model.__dict__.setdefault("_scan_fit_cache", {})
    if "side" not in cache:
        from studio.core.photo.shading import drawable_faces

        mean = np.asarray(model.mean, float)
        faces = drawable_faces(model)
        lm = rigid.model_landmarks(mean, faces, vertex_normals(mean, faces))
        ids = model.meta.landmarks.get("ibug68")
        cache["side"] = rigid.ModelSide(prep.align_target, prep.align_face, lm,
                                        None if ids is None else mean[np.asarray(ids, np.int64)])
    side = cache["side"]
    return rigid.ModelSide(prep.align_target, prep.align_face, side.landmarks, side.ibug68)


def _params(prep: _Prepared, model: PCAModel, alpha: np.ndarray) -> Params:
    out = model.zeros()
    for g, a, b in prep.columns:
        out[g.name] = np.clip(alpha[a:b], g.lower, g.upper) if g.prior == "box" else alpha[a:b].copy()
    return out


def _check_overlap(p: np.ndarray, sim: Similarity, prep: _Prepared) -> None:
    """After alignment most scan points should lie near the model; a cube or a chair does not."""
    d, _ = prep.align_target.tree.query(sim.apply(p))
    extent = float(np.ptp(prep.align_target.points, axis=0).max())
    near = float(np.percentile(d, 25))  # a scan may show much besides the face (hair, shoulders)
    if near > 0.04 * extent:
        raise FitFailed("the scan does not look like a face: after the best alignment even its closest "
                          f"quarter of points lies {near / extent * 100:.0f}% of the face's size away from the model "
                          "(check the file, the unit, or give --landmarks)")
