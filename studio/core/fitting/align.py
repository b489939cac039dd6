"""Similarity alignment of a scan to a model: x_model = s·R·x_scan + t.

With 3-D landmark pairs: Umeyama's closed form (least squares over s, R, t). Without them the
scan may arrive in any pose, size and unit, so a global initialisation tries a small set of
rotations — the 24 proper rotations that map the scan's principal axes onto those of the model
mean, and 24 more onto those of its front face (the axes' order and signs are unknown, and a
single-view scan's axes are the face's, not the head's) — each with the centroid and a scale from
the principal extents, refines them briefly by robust ICP (successive halving: two steps for all,
more for the best quarter) and keeps the few best by trimmed residual for a full refinement.

The ICP is point-to-plane (the model's normals), linearised in a small similarity update
(rotation ω, translation τ, log-scale σ) and solved as a 7×7 least squares per iteration;
robustness comes from trimming the worst fraction of correspondences, rejecting those that land
on the model's border (scan points beyond the modelled region) and those whose normals disagree.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from studio.core.errors import StudioError
from studio.core.geometry.transforms import similarity_from_covariance
from studio.core.progress import report


@dataclass
class Similarity:
    """x ↦ s·R·x + t."""

    s: float
    R: np.ndarray
    t: np.ndarray

    def apply(self, x: np.ndarray) -> np.ndarray:
        return self.s * (np.asarray(x, float) @ self.R.T) + self.t

    def rotate(self, n: np.ndarray) -> np.ndarray:
        return np.asarray(n, float) @ self.R.T

    def inverse(self) -> "Similarity":
        return Similarity(1.0 / self.s, self.R.T.copy(), -(self.R.T @ self.t) / self.s)

    def compose(self, then: "Similarity") -> "Similarity":
        """Apply ``self`` first, then ``then``."""
        return Similarity(then.s * self.s, then.R @ self.R, then.s * (then.R @ self.t) + then.t)

    def as_dict(self) -> dict:
        return {"scale": float(self.s), "rotation": self.R.tolist(), "translation": self.t.tolist()}

    @staticmethod
    def identity() -> "Similarity":
        return Similarity(1.0, np.eye(3), np.zeros(3))


def umeyama(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None,
            with_scale: bool = True) -> Similarity:
    """The similarity minimising Σ w‖s·R·src + t − dst‖² (Umeyama 1991)."""
    src, dst = np.asarray(src, float), np.asarray(dst, float)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, float)
    w = w / w.sum()
    mu_s, mu_d = w @ src, w @ dst
    a, b = src - mu_s, dst - mu_d
    cov = (b * w[:, None]).T @ a
    var = float(w @ np.einsum("ij,ij->i", a, a))
    s, r = similarity_from_covariance(cov, np.asarray(var), with_scale)
    s = float(s)
    return Similarity(s, r, mu_d - s * r @ mu_s)


def rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """The angle of the rotation between rotation matrices ``a`` and ``b``, in degrees."""
    return float(np.degrees(np.arccos(np.clip((np.trace(a @ b.T) - 1) / 2, -1, 1))))


def rodrigues(w: np.ndarray) -> np.ndarray:
    """Rotation matrix of the axis-angle vector w (radians)."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(np.asarray(w, float)).as_matrix()


def pose_jacobian(p: np.ndarray, n: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """d(n·p')/d(ω, τ, σ) for p' = c + e^σ·(I + [ω]×)(p − c) + τ at 0: rows [(p−c)×n, n, n·(p−c)]."""
    q = p - centre
    return np.column_stack([np.cross(q, n), n, np.einsum("ij,ij->i", q, n)])


def pose_step(delta: np.ndarray, centre: np.ndarray) -> Similarity:
    """The small similarity p ↦ c + e^σ·R(ω)(p − c) + τ for delta = (ω, τ, σ)."""
    s = float(np.exp(np.clip(delta[6], -0.5, 0.5)))
    r = rodrigues(delta[:3])
    return Similarity(s, r, centre - s * r @ centre + delta[3:6])


@dataclass
class Target:
    """What the scan is aligned to: surface points with normals, a KD-tree and border flags."""

    points: np.ndarray
    normals: np.ndarray
    boundary: np.ndarray
    tree: cKDTree

    @staticmethod
    def build(points: np.ndarray, normals: np.ndarray, boundary: np.ndarray | None = None) -> "Target":
        points = np.asarray(points, float)
        b = np.zeros(len(points), bool) if boundary is None else np.asarray(boundary, bool)
        return Target(points, np.asarray(normals, float), b, cKDTree(points))


def correspondences(p: np.ndarray, target: Target, scan_normals: np.ndarray | None, oriented: bool,
                    trim: float, max_dist: float | None = None, eps: float = 0.0):
    """Nearest target point per scan point and a robust keep-mask (border, normals, trimming).
    ``eps`` > 0: approximate neighbours (within 1 + eps of the nearest), much faster far from the
    surface — enough to rank rough hypotheses."""
    d, i = target.tree.query(p, eps=eps)
    keep = ~target.boundary[i]
    if scan_normals is not None:
        dots = np.einsum("ij,ij->i", scan_normals, target.normals[i])
        keep &= (dots > 0.5) if oriented else (np.abs(dots) > 0.5)
    if max_dist is not None:
        keep &= d < max_dist
    if keep.sum() > 10 and trim > 0:
        keep &= d <= np.quantile(d[keep], 1 - trim)
    return d, i, keep


def trimmed_score(p: np.ndarray, target: Target, scan_normals, oriented: bool, trim: float,
                  eps: float = 0.0) -> float:
    """Mean distance of the best (1 − trim) fraction; border and normal-incompatible matches count
    as infinitely far, so a hypothesis that explains few points loses."""
    d, i = target.tree.query(p, eps=eps)
    bad = target.boundary[i].copy()
    if scan_normals is not None:
        dots = np.einsum("ij,ij->i", scan_normals, target.normals[i])
        bad |= (dots <= 0.3) if oriented else (np.abs(dots) <= 0.3)
    d = np.where(bad, np.inf, d)
    keep = max(int(len(d) * (1 - trim)), 1)
    return float(np.mean(np.partition(d, keep - 1)[:keep]))


def icp(src: np.ndarray, sim: Similarity, target: Target, src_normals: np.ndarray | None = None,
        oriented: bool = False, iterations: int = 10, trim: float = 0.3, with_scale: bool = True,
        scale_range: tuple[float, float] | None = None, src_border: np.ndarray | None = None,
        target_subset: np.ndarray | None = None, progress=None, eps: float = 0.0) -> Similarity:
    """Robust point-to-plane similarity ICP of ``src`` (scan coordinates) onto ``target``.

    One-sided (scan → model) by default. With ``target_subset`` (model points that the scan
    should cover, e.g. the face) and ``src_border`` it is two-sided: those model points are also
    matched to their nearest scan point (on the scan's tangent plane), except where that point
    is on the scan's border. The second side fixes the scale: a trimmed one-sided ICP can shrink
    a partial scan into a small patch of the model, where it fits as well. ``scale_range``
    bounds the scale in any case.
    """
    centre = target.points.mean(axis=0)
    two_sided = target_subset is not None and src_normals is not None and src_border is not None
    for it in range(iterations):
        if progress is not None:
            progress(it / iterations, "aligning")
        p = sim.apply(src)
        n_src = None if src_normals is None else sim.rotate(src_normals)
        d, i, keep = correspondences(p, target, n_src, oriented, trim, eps=eps)
        if keep.sum() < 10:
            break
        n = target.normals[i[keep]]
        r = np.einsum("ij,ij->i", n, p[keep] - target.points[i[keep]])
        j = pose_jacobian(p[keep], n, centre)
        if two_sided:
            assert n_src is not None and src_border is not None  # what two_sided means
            q = target.points[target_subset]
            dm, jm = cKDTree(p).query(q)
            km = ~src_border[jm]
            dots = np.einsum("ij,ij->i", n_src[jm], target.normals[target_subset])
            km &= (dots > 0.5) if oriented else (np.abs(dots) > 0.5)
            if km.sum() > 10:
                km &= dm <= np.quantile(dm[km], 1 - trim)
                nm = n_src[jm[km]]
                r = np.r_[r, np.einsum("ij,ij->i", nm, q[km] - p[jm[km]])]
                j = np.vstack([j, -pose_jacobian(p[jm[km]], nm, centre)])
        if not with_scale:
            j = j[:, :6]
        h = j.T @ j
        h += 1e-6 * np.trace(h) / len(h) * np.eye(len(h))
        delta = np.linalg.solve(h, -j.T @ r)
        if not with_scale:
            delta = np.r_[delta, 0.0]
        sim = sim.compose(pose_step(delta, centre))
        if scale_range is not None and not scale_range[0] <= sim.s <= scale_range[1]:
            c = sim.apply(src).mean(axis=0)  # clamp the scale about the scan's centre
            s = float(np.clip(sim.s, *scale_range))
            sim = sim.compose(Similarity(s / sim.s, np.eye(3), c - s / sim.s * c))
        if np.linalg.norm(delta[:3]) < 1e-5 and abs(delta[6]) < 1e-5 and np.linalg.norm(delta[3:6]) < 1e-6:
            break
    return sim


def principal_axes(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c = x.mean(axis=0)
    evals, evecs = np.linalg.eigh(np.cov((x - c).T))
    return c, np.sqrt(np.maximum(evals[::-1], 0)), evecs[:, ::-1]


def rotation_hypotheses(scan_axes: np.ndarray, model_axes: np.ndarray) -> list[np.ndarray]:
    """Rotations taking the scan's principal axes onto the model's, every order and sign (24)."""
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            m = model_axes[:, perm] * np.array(signs)
            r = m @ scan_axes.T
            if np.linalg.det(r) > 0:
                out.append(r)
    return out


QUICK_EPS = 1.0  # approximate neighbours while ranking hypotheses: far-off starts query 10× faster


def global_align(src: np.ndarray, target: Target, src_normals: np.ndarray | None = None,
                 oriented: bool = False, keep_best: int = 3, src_border: np.ndarray | None = None,
                 target_subset: np.ndarray | None = None, with_scale: bool = True, refine: int = 12,
                 quick_iterations: int = 6, progress=None, return_ranked: bool = False):
    """Alignment without landmarks: principal-axis hypotheses (24, or 48 with a front subset), brief ICP
    each, the best few refined.

    ``with_scale`` False: the scan is metric (its unit is known), so the scale stays 1.
    ``quick_iterations``: ICP steps per hypothesis before ranking (a third for every start, the
    rest for the best quarter). A partial scan's principal axes can sit ~30° off the model's, and
    3 steps left the right hypothesis outside the best few (a neural fit came out 172° flipped).
    Returns (similarity, score), and with ``return_ranked`` also every hypothesis' rotation, best
    first (the rigid stage renders the scan from them to look for a face).
    """
    if len(src) < 10:
        raise StudioError("too few scan points to align")
    c_s, sd_s, ax_s = principal_axes(src)
    if not sd_s[1] > 0:
        raise StudioError("the scan's points lie on a line; cannot align it to a face")
    # The scan's axes against the whole model's (a complete head) and, when given, against the
    # front subset's (a single-view face scan: its axes are the face's, not the head's, and from
    # the whole head's hypotheses ICP often settles on the back of the head).
    starts = []
    for pts in (target.points,) + (() if target_subset is None else (target.points[target_subset],)):
        c_m, sd_m, ax_m = principal_axes(pts)
        # Scale from the two largest extents: robust to the missing depth of a single-view scan.
        s0 = float(np.sqrt(sd_m[0] * sd_m[1] / (sd_s[0] * sd_s[1]))) if with_scale else 1.0
        starts += [Similarity(s0, r, c_m - s0 * r @ c_s) for r in rotation_hypotheses(ax_s, ax_m)]
    s0 = starts[0].s
    quick = slice(None, None, max(len(src) // 300, 1))  # a few hundred points rank the hypotheses
    qn = None if src_normals is None else src_normals[quick]
    hyps = [(0.0, k, sim) for k, sim in enumerate(starts)]
    # Successive halving: a couple of ICP steps for every start, more for the best quarter, so the
    # extra starts cost little (the right basin ranks in the best quarter after two steps).
    first = max(quick_iterations // 3, 1)
    rounds = (first, quick_iterations - first)
    first_ranking: list = []
    for j, iters in enumerate(rounds):
        if j > 0:
            first_ranking = hyps
            hyps = hyps[: max(len(hyps) // 4, keep_best)]
        ranked = []
        for i, (_, k, sim) in enumerate(hyps):
            report(progress, 0.25 * j + 0.25 * i / len(hyps), "aligning: trying orientations")
            sim = icp(src[quick], sim, target, qn, oriented, iterations=iters, trim=0.4, with_scale=False,
                      eps=QUICK_EPS)
            n = None if qn is None else sim.rotate(qn)
            ranked.append((trimmed_score(sim.apply(src[quick]), target, n, oriented, 0.4, eps=QUICK_EPS), k, sim))
        hyps = sorted(ranked, key=lambda h: h[0])
    best = []
    for j, (_, _, sim) in enumerate(hyps[:keep_best]):
        report(progress, 0.5 + 0.5 * j / keep_best, "aligning: refining")
        sim = icp(src, sim, target, src_normals, oriented, iterations=refine, trim=0.3, with_scale=with_scale,
                  scale_range=(0.6 * s0, 1.6 * s0), src_border=src_border, target_subset=target_subset)
        n = None if src_normals is None else sim.rotate(src_normals)
        best.append((trimmed_score(sim.apply(src), target, n, oriented, 0.3), sim))
    best.sort(key=lambda b: b[0])
    score, sim = best[0]
    if not return_ranked:
        return sim, score
    ranked = [b[1].R for b in best] + [h[2].R for h in hyps] + [h[2].R for h in first_ranking]
    return sim, score, ranked


def landmark_align(scan_points: np.ndarray, model_points: np.ndarray, with_scale: bool = True) -> Similarity:
    """Umeyama from ≥ 3 landmark pairs (scan coordinates → model coordinates)."""
    a, b = np.asarray(scan_points, float), np.asarray(model_points, float)
    ok = np.isfinite(a).all(axis=1) & np.isfinite(b).all(axis=1)
    a, b = a[ok], b[ok]
    if len(a) < 3:
        raise StudioError("landmark alignment needs at least 3 landmarks with coordinates")
    if np.linalg.matrix_rank(a - a.mean(0), tol=1e-9 * max(np.abs(a).max(), 1)) < 2:
        raise StudioError("the landmarks lie on a line; give at least 3 that span a triangle")
    return umeyama(a, b, with_scale=with_scale)
