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

In the code (after eos): ``fit`` orchestrates ``_sample`` → ``_align`` → ``_fit_coefficients``, whose
iterations run ``_schedule`` (active columns, pose unknowns) → ``_correspond`` → ``_weight`` (robust
trimming, row weights) → ``_solve`` (one bounded step), with σ_N in ``_NoiseSchedule``. Every
threshold and count is a ``FitOptions`` field, with the reason beside it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.spatial import cKDTree

from studio.core.errors import FitFailed, StudioError
from studio.core.expressions import opposed_pairs
from studio.core.facemodel import UNIT_TO_MM, Params
from studio.core.fitting import align, expression_prior, rigid
from studio.core.fitting.align import Similarity, Target
from studio.core.fitting.result import FitResult
from studio.core.fitting.scan_io import Scan, scan_samples
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
    # -- the steps' thresholds (correspond → weight → solve → schedule), once inline in the loop --
    min_points: int = 50  # fewer usable (non-isolated) scan samples than this: no surface to fit
    min_matches: int = 30  # fewer surviving correspondences than this: the scan is not on the face
    # Correspondences whose normals differ by more than 60° (cos 60° = 0.5) join different surfaces
    # (the far side of a nose, an ear's back); either sign counts when the scan's normals are unoriented.
    normal_cos: float = 0.5
    # A closest point farther from the scan point, along the surface, than this × the local edge
    # length is a point beyond the region's edge or over a hole, not on the surface there.
    tangent_reach: float = 0.5
    cut_sigmas: float = 3.0  # residuals beyond this × their robust σ (and ``cut_floor_mm``) are outliers
    # σ_N holds at ``sigma_start_mm`` for the first iterations (the coarse face settles under a strong
    # prior), then falls geometrically to ``sigma_final_mm`` by the last.
    sigma_hold: int = 2
    # The fitted vertices' KD-tree: rebuilt every iteration while the face still moves (the first few),
    # then every ``tree_every``-th: late on it moves little and the nearest vertex only seeds the exact
    # closest-point search among its triangles.
    tree_fresh_until: int = 4
    tree_every: int = 3
    # After the rigid stage the closest ``overlap_percentile`` % of the scan lies within
    # ``overlap_reach`` × the model's size of it, or the scan is not a face (a scan may show much
    # besides the face: hair, shoulders, so only the closest quarter is asked to).
    overlap_percentile: float = 25.0
    overlap_reach: float = 0.04


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


# -- the fit -----------------------------------------------------------------------------------------
_RIGID_SHARE = 0.25  # of the progress bar: the rigid stage; the iterations share the rest


@dataclass
class _Samples:
    """The scan's subsample the fit works with: points (model unit, scan frame), normals, border."""

    points: np.ndarray
    normals: np.ndarray
    border: np.ndarray
    oriented: bool  # the normals point out of the surface (else only their line counts)

    def __getitem__(self, sel) -> _Samples:
        return _Samples(self.points[sel], self.normals[sel], self.border[sel], self.oriented)


@dataclass
class _Matches:
    """One iteration's correspondences: scan → model (every sample to the fitted surface) and, when
    ``FitOptions.model_weight`` is on, model → scan (region vertices to their nearest sample)."""

    p: np.ndarray  # (n, 3) the samples placed by the current pose (model frame)
    n_s: np.ndarray  # (n, 3) their normals, rotated alike
    d: np.ndarray  # (n,) distance to the nearest fitted vertex
    tri: np.ndarray  # (n,) the closest point's triangle
    bary: np.ndarray  # (n, 3) and its barycentric coordinates there
    normal: np.ndarray  # (n, 3) the fitted surface's normal at the closest point
    r: np.ndarray  # (n,) point-to-plane residual
    keep: np.ndarray  # (n,) bool: the match counts
    msub: np.ndarray  # region vertices matched model → scan
    j: np.ndarray  # their nearest sample
    dm: np.ndarray  # and its distance
    rm: np.ndarray  # residual along the scan's normal
    keep_m: np.ndarray


@dataclass
class _Weights:
    """Which matches enter the solve, and with what weight."""

    ks: np.ndarray  # kept scan → model matches
    km: np.ndarray  # kept model → scan matches
    corner: np.ndarray  # the dominant vertex of each kept scan match's triangle
    rows: np.ndarray  # per-row weight (scan → model rows, then model → scan rows)
    noise: float  # the residuals' robust σ (model unit)


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
    samples, usable = _sample(scan, pts, opt, rng)
    # 1. rigid before non-rigid: a similarity that puts the scan onto the model mean.
    rig, side = _align(model, prep, scan, pts, samples, usable, landmarks, unit_scale, opt, rng, progress)
    if _align_only:
        return Similarity(rig.sim.s * unit_scale, rig.sim.R, rig.sim.t)
    # 2. non-rigid: alternate correspondences and one regularised least-squares solve.
    # Isolated points never take part: drop them from the per-iteration work altogether.
    alpha, sim, residuals = _fit_coefficients(model, prep, samples[usable], rig, opt, rng, mm, unit_scale,
                                              progress, on_update)
    report(progress, 1.0, "fitted")
    params = _params(prep, model, alpha)
    fitted = np.asarray(model.vertices(params), np.float64)
    if rig.scan_landmarks is not None:
        rig.scan_landmarks = rig.scan_landmarks / unit_scale  # into the scan's own coordinates
    lm = None
    if side.landmarks is not None:  # the mean's landmarks carried to the fitted face (same triangles)
        from studio.core.photo.shading import drawable_faces

        lm = side.landmarks.on(fitted, drawable_faces(model))
    return FitResult(model.name, params, Similarity(sim.s * unit_scale, sim.R, sim.t), region, scan.unit,
                     model.meta.unit, fitted, prep.verts, opt.iterations, time.perf_counter() - t0, residuals,
                     free_scale=rig.free_scale, rigid=rig, face_area=rigid.face_area(side), model_landmarks=lm)


def _sample(scan: Scan, pts: np.ndarray, opt: FitOptions, rng: np.random.Generator) -> tuple[_Samples, np.ndarray]:
    """The scan's subsample and which of it is usable (not isolated outlier points)."""
    idx, s_nrm, s_border, isolated, oriented = scan_samples(scan, pts, opt.samples, rng)
    usable = ~isolated
    if usable.sum() < opt.min_points:
        raise StudioError("the scan has too few surface points to fit (most are isolated outliers)")
    return _Samples(pts[idx], s_nrm, s_border, oriented), usable


def _align(model: PCAModel, prep: _Prepared, scan: Scan, pts: np.ndarray, samples: _Samples, usable: np.ndarray,
           landmarks: dict | None, unit_scale: float, opt: FitOptions, rng: np.random.Generator,
           progress) -> tuple[rigid.RigidResult, rigid.ModelSide]:
    """The rigid stage (``rigid.align_scan``, shared with the neural fitter), checked for overlap."""
    align_progress = (lambda f, m="": report(progress, _RIGID_SHARE * f, m)) if progress else None
    given = _landmark_pose(model, landmarks, unit_scale, opt.free_scale) if landmarks is not None else None
    cand = np.flatnonzero(usable)
    # the user's landmarks: refine on the whole sample; the search ranks hypotheses on a few hundred
    pick = cand if given is not None or len(cand) <= opt.align_samples else \
        rng.choice(cand, opt.align_samples, replace=False)
    side = model_side(model, prep)
    chosen = samples[pick]
    rig = rigid.align_scan(side, rigid.render_surface(scan, pts), chosen.points, chosen.normals, chosen.border,
                           chosen.oriented, opt.free_scale, given, opt.align_iterations, progress=align_progress)
    _check_overlap(samples.points[usable], rig.sim, prep, opt)
    return rig, side


def _fit_coefficients(model: PCAModel, prep: _Prepared, samples: _Samples, rig: rigid.RigidResult,
                      opt: FitOptions, rng: np.random.Generator, mm: float, unit_scale: float, progress,
                      on_update) -> tuple[np.ndarray, Similarity, list[float]]:
    """The non-rigid loop: schedule → correspond → weight → solve, ``opt.iterations`` times.
    Returns the coefficients, the pose (model-unit scan → model) and the robust residual per iteration."""
    alpha = np.zeros(prep.basis.shape[2])
    centre = prep.mean.mean(axis=0)
    sim = rig.sim
    residuals: list[float] = []
    noise_level = _NoiseSchedule.start(opt, mm)
    inner = np.flatnonzero(~prep.border)
    msub = inner if len(inner) <= opt.model_samples else np.sort(rng.choice(inner, opt.model_samples, replace=False))
    tree = None
    for it in range(opt.iterations):
        report(progress, _RIGID_SHARE + (1 - _RIGID_SHARE) * it / opt.iterations,
               f"fitting: iteration {it + 1}/{opt.iterations}")
        active, npose = _schedule(prep, opt, it, rig.free_scale)
        verts = prep.mean + (prep.basis @ alpha.astype(np.float32)).T.astype(np.float64)
        if tree is None or it < opt.tree_fresh_until or it % opt.tree_every == 0:
            tree = cKDTree(verts)
        matches = _correspond(prep, opt, verts, tree, sim, samples, msub)
        weights = _weight(prep, opt, matches, mm)
        residuals.append(float(np.sqrt(np.mean(matches.r[matches.keep] ** 2)) * mm))
        x = _solve(prep, opt, matches, weights, alpha, active, npose, noise_level.sigma, centre)
        alpha[active] += x[:len(active)]
        sim = sim.compose(align.pose_step(x[len(active):], centre))
        noise_level.step(opt, it, weights.noise)
        if on_update is not None:
            on_update(_params(prep, model, alpha), Similarity(sim.s * unit_scale, sim.R, sim.t))
    return alpha, sim, residuals


def _schedule(prep: _Prepared, opt: FitOptions, it: int, free_scale: bool) -> tuple[np.ndarray, int]:
    """Coarse to fine: the columns iteration ``it`` solves for (the first ``opt.coarse`` fraction of
    each normal group; box groups, the blendshapes, from ``opt.expressions_from``) and how many pose
    unknowns go with them. Rotation and translation always (unless held), the scale only while it is
    free — a metric scan's scale is its unit's; a free one is refined while the face is still coarse
    (few components, no expressions), later the many components could trade size for shape."""
    frac = opt.coarse[min(it, len(opt.coarse) - 1)]
    active = np.flatnonzero(np.where(prep.normal_cols, prep.rank < np.ceil(frac * prep.group_size),
                                     it >= opt.expressions_from))
    npose = 0 if not opt.fit_pose else (7 if free_scale and it < opt.scale_until else 6)
    return active, npose


@dataclass
class _NoiseSchedule:
    """σ_N, the data term's noise level: high at first (the prior keeps the face plausible), falling
    geometrically toward ``sigma_final_mm`` but never below the noise the residuals show."""

    sigma: float
    floor: float
    decay: float

    @classmethod
    def start(cls, opt: FitOptions, mm: float) -> _NoiseSchedule:
        sigma, floor = opt.sigma_start_mm / mm, opt.sigma_final_mm / mm
        span = opt.iterations - opt.sigma_hold
        return cls(sigma, floor, (floor / sigma) ** (1.0 / max(span, 1)) if span > 0 else 1.0)

    def step(self, opt: FitOptions, it: int, noise: float) -> None:
        if it >= opt.sigma_hold:
            self.sigma = max(self.sigma * self.decay, opt.noise_weight * noise, self.floor)


def _correspond(prep: _Prepared, opt: FitOptions, verts: np.ndarray, tree: cKDTree, sim: Similarity,
                samples: _Samples, msub: np.ndarray) -> _Matches:
    """Correspondences with the current face and pose, and the geometric rejections: matches on the
    region's border, with incompatible normals, or off the surface along it."""
    vn = vertex_normals(verts, prep.faces)
    p = sim.apply(samples.points)
    n_s = sim.rotate(samples.normals)
    # scan → model: every usable scan point to the closest point of the fitted surface
    # (among the triangles around its nearest vertex; exact, so no bias from the vertex grid).
    d, i = tree.query(p)
    tri, bary, q = project_to_surface(p, verts, prep.faces, prep.incident, i)
    nq = np.einsum("nk,nki->ni", bary, vn[tri])
    nq /= np.maximum(np.linalg.norm(nq, axis=1, keepdims=True), 1e-12)
    keep = ~prep.border[i]
    keep &= _compatible(n_s, nq, samples.oriented, opt.normal_cos)
    off = p - q
    r = np.einsum("ij,ij->i", nq, off)
    keep &= np.linalg.norm(off - r[:, None] * nq, axis=1) <= opt.tangent_reach * prep.spacing[i]
    # model → scan: region vertices to their nearest scan point; keeps a partial scan from
    # shrinking onto a patch of the face (scan borders are no evidence: rejected).
    if opt.model_weight > 0:
        dm, j = cKDTree(p).query(verts[msub])
        keep_m = ~samples.border[j] & _compatible(n_s[j], vn[msub], samples.oriented, opt.normal_cos)
        rm = np.einsum("ij,ij->i", n_s[j], verts[msub] - p[j])
    else:  # one-sided (the default): nothing to compute
        dm, j, keep_m, rm = np.zeros(0), np.zeros(0, np.int64), np.zeros(0, bool), np.zeros(0)
    return _Matches(p, n_s, d, tri, bary, nq, r, keep, msub, j, dm, rm, keep_m)


def _weight(prep: _Prepared, opt: FitOptions, m: _Matches, mm: float) -> _Weights:
    """Robust weights: correspondences far beyond the residuals' robust scale, and the worst
    ``opt.trim`` fraction, go (``m.keep`` and ``m.keep_m`` are narrowed in place); unreliable zones
    count ``opt.unreliable_weight``; all rows together as at most ``opt.independent`` observations
    (correlated residuals, see FitOptions)."""
    if m.keep.sum() < opt.min_matches or (opt.model_weight > 0 and m.keep_m.sum() < opt.min_matches):
        raise FitFailed("the scan does not match the model's face: too few points land on it "
                        "(is this a face scan, and in the unit given?)")
    noise = robust_scale(m.r[m.keep])
    cut = max(opt.cut_sigmas * noise, opt.cut_floor_mm / mm)
    m.keep &= np.abs(m.r) <= cut
    m.keep &= m.d <= np.quantile(m.d[m.keep], 1 - opt.trim)
    m.keep_m &= np.abs(m.rm) <= cut
    m.keep_m &= m.dm <= np.quantile(m.dm[m.keep_m], 1 - opt.trim) if m.keep_m.sum() > opt.min_matches else True
    ks, km = np.flatnonzero(m.keep), np.flatnonzero(m.keep_m)
    # The derivative through the dominant corner's basis row (a third of the gathers of the
    # exact barycentric blend; the residual itself is exact, so the fixed point is unchanged).
    corner = m.tri[ks, np.argmax(m.bary[ks], axis=1)]
    rows = np.r_[np.where(prep.unreliable[corner], opt.unreliable_weight, 1.0), np.ones(len(km))]
    rows *= min(1.0, opt.independent / max(float(rows.sum()), 1.0))
    return _Weights(ks, km, corner, rows, noise)


def _solve(prep: _Prepared, opt: FitOptions, m: _Matches, wt: _Weights, alpha: np.ndarray, active: np.ndarray,
           npose: int, sigma: float, centre: np.ndarray) -> np.ndarray:
    """One bounded regularised least-squares step in the active coefficients and ``npose`` pose
    unknowns: (Δα_active, ω, τ, σ), the pose part padded with zeros to 7."""
    # Rows: d r/d(α_active, ω, τ, σ). Scan→model: r = n·(T(s) − v(α)); model→scan with
    # the scan's normal: r = n_s·(v(α) − T(s)).
    ks, km = wt.ks, wt.km
    ns = m.normal[ks]
    a1 = -_rows(prep.basis, wt.corner, ns, active)
    jp1 = align.pose_jacobian(m.p[ks], ns, centre)
    vm, nm = m.msub[km], m.n_s[m.j[km]]
    a2 = _rows(prep.basis, vm, nm, active)
    jp2 = -align.pose_jacobian(m.p[m.j[km]], nm, centre)
    jac = np.vstack([np.hstack([a1, jp1[:, :npose]]), opt.model_weight * np.hstack([a2, jp2[:, :npose]])])
    res = np.r_[m.r[ks], opt.model_weight * m.rm[km]]
    rw = wt.rows
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
    lever = float(np.sum((m.p[ks] - centre) ** 2))
    h[na:, na:] += opt.pose_damping * w * lever * np.eye(npose)
    lo = np.r_[prep.lower[active] - alpha[active], np.full(npose, -np.inf)]
    hi = np.r_[prep.upper[active] - alpha[active], np.full(npose, np.inf)]
    x = bounded_quadratic(h, g, lo, hi)
    return np.r_[x, np.zeros(7 - npose)]


def _compatible(a: np.ndarray, b: np.ndarray, oriented: bool, cos: float = 0.5) -> np.ndarray:
    """Normals within arccos(``cos``), 60° by default (either sign when the scan's normals have no
    reliable orientation)."""
    dots = np.einsum("ij,ij->i", a, b)
    return dots > cos if oriented else np.abs(dots) > cos


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


def _check_overlap(p: np.ndarray, sim: Similarity, prep: _Prepared, opt: FitOptions) -> None:
    """After alignment most scan points should lie near the model; a cube or a chair does not."""
    d, _ = prep.align_target.tree.query(sim.apply(p))
    extent = float(np.ptp(prep.align_target.points, axis=0).max())
    near = float(np.percentile(d, opt.overlap_percentile))  # a scan may show much besides the face
    if near > opt.overlap_reach * extent:
        raise FitFailed("the scan does not look like a face: after the best alignment even its closest "
                          f"quarter of points lies {near / extent * 100:.0f}% of the face's size away from the model "
                          "(check the file, the unit, or give --landmarks)")
