"""Fitting a linear morphable model to one photo, coarse to fine (Blanz & Vetter 1999).

1. **Camera and pose from landmarks.** The mean face's landmark points against the detected 2-D
   points: rotation and translation of a perspective camera (focal length assumed, see
   camera.py), by L-BFGS on the reprojection error from a few frontal/turned starts.
2. **Pose, shape and expression MAP from landmarks, jointly.** Bounded Gauss-Newton on the pixel
   reprojection error: each step linearises the projection in the coefficients (shape α with
   prior N(0, 1), expression β in its box with a weak pull to neutral) and a small pose update, and
   is one bounded linear least-squares solve. Pose and shape move together because alternating
   them converges slowly (a turned head ≈ an asymmetric face, a far face ≈ a small one). The
   landmark noise σ_L is estimated from the fit's own residual (empirical Bayes: weighted residual
   sum of squares over observations minus effective parameters), capped by the default for a face
   detector, so exact landmarks are trusted as much as they deserve and noisy ones no more than
   a detector.
3. **Analysis by synthesis.** The model is rendered (perspective camera, Lambertian albedo, second
   order SH light per channel, z-buffer visibility) and compared with the photo over the visible
   face region: E = E_I/σ_I² + E_L/σ_L² + |α|² + priors on β, light and albedo. σ_I starts high (the
   prior and the landmarks dominate) and decreases (the image dominates); the shape components
   are released in order of variance, first ones first. Torch autograd + Adam.

   E_I compares the photo with the model at the visible vertices of the face region (one bilinear
   sample of the photo per vertex; the photo is blurred in the early phases so the energy is
   smooth), which costs O(vertices) per iteration instead of O(pixels × overdraw): the fit stays at
   a few seconds on a CPU. Visibility (z-buffer, raster.py) is recomputed every few iterations.
   Albedo: the model's colour PCA when it has one; otherwise one albedo per vertex with a
   smoothness (graph Laplacian) and a left-right symmetry prior, so shading detail has to be
   explained by geometry and light, not painted into the albedo.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from studio.core.errors import StudioError
from studio.core.geometry import vertex_normals
from studio.core.geometry.raster import rasterize, visible_vertices
from studio.core.geometry.transforms import axis_angle_to_matrix
from studio.core.pca import PCAModel
from studio.core.photo import outline
from studio.core.photo.camera import Camera, default_focal, project_camera
from studio.core.photo.embedding import Correspondences, fit_region, landmark_region
from studio.core.photo.shading import sh_basis
from studio.core.progress import report
from studio.core.solvers import bounded_least_squares

SIGMA_LANDMARK_FLOOR = 0.5  # px: below this, sub-pixel effects (rasterisation, blur) dominate


@dataclass
class PhotoFitOptions:
    focal: float | None = None  # pixels; default_focal() when None
    landmarks_only: bool = False  # stop after stage 2
    sigma_landmark: float | None = None  # px; default from the face size
    expression_sigma: float = 0.15  # half-normal pull of blendshape weights towards neutral
    iterations: int = 150  # analysis-by-synthesis iterations (more change the shape by < 0.01 mm)
    sigma_image: tuple[float, float] = (0.3, 0.06)  # σ_I from high to low
    effective_samples: float = 1500.0  # vertex samples are correlated; this many count as independent
    # A detector's errors are correlated across its points (a whole jaw line or brow is off
    # together), so its ~460 points carry about the information of the 68 an annotator would
    # place; counted as independent they outvote the prior (the fit came out worse than the mean
    # face on rendered photos, with 9× the true blendshape weight).
    effective_landmarks: float = 40.0
    albedo_smoothness: float = 30.0
    albedo_symmetry: float = 3.0
    # The outline (outline.py): its points are as correlated as a detector's, so all of them
    # together count as this many independent ones; 0 turns the cue off.
    effective_outline: float = 30.0
    seed: int = 0
    preview_every: int = 0  # iterations between preview callbacks (0: none)


@dataclass
class PhotoFitResult:
    params: dict  # group name → coefficients (all of the model's groups)
    camera: Camera
    light: np.ndarray  # (9, 3)
    albedo: np.ndarray | None  # (n_vertices, 3) estimated per-vertex albedo (None: landmarks only)
    points_px: np.ndarray  # (L, 2) the landmarks that were fitted
    fitted_px: np.ndarray  # (L, 2) the model's landmark points projected with the result
    timings: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    landmark_sigma_px: float = 0.0  # the landmark noise the fit assumed (given or estimated)

    @property
    def landmark_error_px(self) -> np.ndarray:
        return np.linalg.norm(self.fitted_px - self.points_px, axis=1)


class _Sub:
    """The part of the model the fit evaluates: face region + landmark vertices, all position groups."""

    def __init__(self, model: PCAModel, corr: Correspondences):
        region = fit_region(model)
        jaw_lines = corr.contour.all_vertices() if corr.contour is not None else np.zeros(0, np.int64)
        face = landmark_region(model)  # wider than the fit region: the cheeks and temples make the outline
        ids = np.unique(np.concatenate([region, face, corr.vids.reshape(-1), jaw_lines]))
        self.ids = ids
        remap = np.full(model.n_vertices, -1, np.int64)
        remap[ids] = np.arange(len(ids))
        faces = np.asarray(model.faces, np.int64)
        keep = (remap[faces] >= 0).all(1)
        self.faces_np = remap[faces[keep]]
        self.faces = torch.as_tensor(self.faces_np)
        inreg = np.zeros(model.n_vertices, bool)
        inreg[region] = True
        self.photo_mask = torch.as_tensor(inreg[ids])  # vertices compared with the photo
        inface = np.zeros(model.n_vertices, bool)
        inface[face] = True
        self.outline_ok = inface[ids]  # vertices that may form the outline matched to the photo's edges
        self.mean = torch.as_tensor(np.asarray(model.mean, np.float32)[ids])
        self.groups = [g for g in model.groups if g.affects == "position"]
        self.bases = {g.name: torch.as_tensor(model.basis(g.name)[:, ids].reshape(g.size, -1)) for g in self.groups}
        self.lm_vids = torch.as_tensor(remap[corr.vids])
        self.lm_w = torch.as_tensor(corr.w, dtype=torch.float32)
        self.model = model
        self.corr = corr
        self.contour = None
        if corr.contour is not None:  # the same candidate lines, in this subset's vertex numbering
            from dataclasses import replace

            c = corr.contour
            self.contour = replace(c, anchors=remap[c.anchors], candidates=[remap[x] for x in c.candidates])

    def retie_contour(self, v: torch.Tensor, R: np.ndarray, t: np.ndarray, focal: float) -> None:
        """Move the jaw-line landmarks to the outline of face ``v`` (subset vertices) in this pose."""
        if self.contour is None:
            return
        from studio.core.photo import contour

        chosen = contour.select(self.contour, v.detach().double().numpy(), R, t, focal)
        rows = self.contour.rows
        self.corr.retie(rows, self.ids[chosen])
        self.lm_vids[rows] = torch.as_tensor(chosen)[:, None]
        self.lm_w[rows] = torch.tensor([1.0, 0.0, 0.0])

    def vertices(self, coeffs: dict) -> torch.Tensor:
        v = self.mean.reshape(-1)
        for g in self.groups:
            c = coeffs.get(g.name)
            if c is not None and c.numel():
                v = v + c.to(torch.float32) @ self.bases[g.name]
        return v.reshape(-1, 3)

    def landmarks(self, v: torch.Tensor) -> torch.Tensor:
        return (v[self.lm_vids] * self.lm_w[..., None]).sum(1)


def _scale_of(model: PCAModel) -> float:
    """A length that says how big the model's face is in its own unit (for step sizes)."""
    v = np.asarray(model.mean)[fit_region(model)]
    return float(np.ptp(v[:, 0])) or 1.0


# -- stage 1 + 2: landmarks ------------------------------------------------------------------------

def _pose_from_landmarks(P: np.ndarray, x: np.ndarray, wts: np.ndarray, cam: Camera, init=None):
    """Rotation (axis-angle) and translation minimising the weighted reprojection error."""
    cx, cy = cam.principal
    P_t = torch.as_tensor(P, dtype=torch.float64)
    x_t = torch.as_tensor(x, dtype=torch.float64)
    w_t = torch.as_tensor(wts, dtype=torch.float64)
    if init is None:
        # Frontal start: distance from the spread of the points, x/y from their centroid.
        c3 = P.mean(0)
        spread3 = np.sqrt(((P[:, :2] - c3[:2]) ** 2).sum(1).mean())
        spread2 = np.sqrt(((x - x.mean(0)) ** 2).sum(1).mean())
        d = cam.focal * spread3 / max(spread2, 1e-6)
        tx = (x.mean(0)[0] - cx) * d / cam.focal - c3[0]
        ty = -(x.mean(0)[1] - cy) * d / cam.focal - c3[1]
        inits = [(np.array([0.0, a, 0.0]), np.array([tx, ty, -d - c3[2]])) for a in (0.0, -0.5, 0.5)]
    else:
        inits = [init]
    best = None
    for r0, t0 in inits:
        r = torch.tensor(r0, dtype=torch.float64, requires_grad=True)
        t = torch.tensor(t0, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([r, t], lr=1.0, max_iter=60, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()  # noqa: B023  (the closure runs inside this iteration's opt.step)
            pc = P_t @ axis_angle_to_matrix(r).T + t  # noqa: B023
            xy, _ = project_camera(pc, cam.focal, cx, cy)
            loss = (w_t[:, None] * (xy - x_t) ** 2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            pc = P_t @ axis_angle_to_matrix(r).T + t
            xy, depth = project_camera(pc, cam.focal, cx, cy)
            loss = float((w_t[:, None] * (xy - x_t) ** 2).sum())
        if (depth > 0).all() and (best is None or loss < best[0]):
            best = (loss, r.detach().numpy().copy(), t.detach().numpy().copy())
    if best is None:
        raise StudioError("could not find a head pose that matches the landmarks")
    return best[1], best[2]


def _landmark_system(sub: _Sub, corr: Correspondences, cam: Camera, coeffs: dict, expr_sigma: float):
    """The landmark reprojection residual (pixels) linearised in (coefficients θ, rotation ω, translation τ).

    Camera-space point c = R(m + Aθ) + t is linear in θ for a fixed pose and, to first order, in a
    small rotation ω (δc = ω × Rp) and translation τ; the projection's Jacobian at the current
    point chains onto that, so one Gauss-Newton step for pose, shape and expression together is
    one linear least-squares solve. (The depth-multiplied residual f·c_x − (cx − u)·c_z is linear
    in c, but divided by a frozen depth it rewards moving a shrunken face closer: its fixed point
    is biased in distance and size.)
    Returns (data rows (2L, K+6), data rhs, prior rows (K, ) weights, bounds, group names/sizes).
    """
    R, t = cam.R, cam.translation
    cx, cy = cam.principal
    f = cam.focal
    w = torch.as_tensor(corr.w, dtype=torch.float64)
    vids = sub.lm_vids
    cols, lower, upper, prior_w, names, theta_parts = [], [], [], [], [], []
    for g in sub.groups:
        B = sub.bases[g.name].double().reshape(g.size, -1, 3)
        cols.append((B[:, vids] * w[None, ..., None]).sum(2).numpy())  # (k, L, 3)
        lower.append(g.lower)  # normal groups: the slider range, ±3σ
        upper.append(g.upper)
        prior_w.append(1.0 / np.asarray(g.sigma, float) if g.prior == "normal" else np.full(g.size, 1.0 / expr_sigma))
        names.append((g.name, g.size))
        theta_parts.append(np.asarray(coeffs[g.name], float))
    A = np.concatenate(cols, 0)  # (K, L, 3) model-space basis at the landmarks
    theta0 = np.concatenate(theta_parts)
    mean_lm = (sub.mean.double()[vids] * w[..., None]).sum(1).numpy()
    p0 = mean_lm + np.einsum("k,klj->lj", theta0, A)  # current landmark points (model space)
    rp = p0 @ R.T
    c0 = rp + t
    Jt = np.einsum("ij,klj->kli", R, A)  # (K, L, 3) ∂c/∂θ
    # ∂(ω × Rp)/∂ω = −[Rp]×, column by column (ω_x, ω_y, ω_z); ∂c/∂τ = I
    zero = np.zeros(len(rp))
    Jw = np.stack([np.stack([zero, -rp[:, 2], rp[:, 1]], 1), np.stack([rp[:, 2], zero, -rp[:, 0]], 1),
                   np.stack([-rp[:, 1], rp[:, 0], zero], 1)])
    Jtau = np.stack([np.tile(e, (len(rp), 1)) for e in np.eye(3)])
    J = np.concatenate([Jt, Jw, Jtau], 0)  # (K+6, L, 3)
    d = -c0[:, 2]
    uh, vh = cx + f * c0[:, 0] / d, cy - f * c0[:, 1] / d  # where the landmarks project now
    s = np.sqrt(corr.weight) / d
    # ∂(projection)/∂c at the current point: (f, 0, (û − cx)) / d for x, (0, −f, (v̂ − cy)) / d for y
    rows_x = (f * J[:, :, 0] + (uh - cx)[None] * J[:, :, 2]).T * s[:, None]
    rows_y = (-f * J[:, :, 1] + (vh - cy)[None] * J[:, :, 2]).T * s[:, None]
    res_x = (uh - corr.points[:, 0]) * np.sqrt(corr.weight)  # pixels × √weight
    res_y = (vh - corr.points[:, 1]) * np.sqrt(corr.weight)
    return (np.concatenate([rows_x, rows_y]), -np.concatenate([res_x, res_y]), np.concatenate(prior_w),
            np.concatenate(lower), np.concatenate(upper), names, theta0)


def _landmark_gauss_newton(sub: _Sub, corr: Correspondences, cam: Camera, coeffs: dict, sigma_lm: float,
                           options: PhotoFitOptions, steps: int = 6):
    """Pose, shape and expression MAP from the landmarks, jointly (bounded Gauss-Newton).

    Alternating pose and shape converges slowly here (a turned head and an asymmetric face, a far
    face and a small one explain the landmarks almost equally well), so both move together.
    Returns the coefficients, the camera (pose updated in place) and the data residual's
    statistics (weighted sum of squares in px², effective number of fitted parameters)."""
    from scipy.spatial.transform import Rotation

    for _ in range(steps):
        if sub.contour is not None:
            with torch.no_grad():
                v = sub.vertices({k: torch.as_tensor(c) for k, c in coeffs.items()})
            sub.retie_contour(v, cam.R, cam.translation, cam.focal)
        D, r, pw, lo, hi, names, theta0 = _landmark_system(sub, corr, cam, coeffs, options.expression_sigma)
        K = len(pw)
        # prior rows on the absolute coefficients (θ0 + δ), a light damping on the pose increments
        scale = np.abs(cam.translation[2]) or 1.0
        damp = np.concatenate([np.full(3, 1e-2), np.full(3, 1e-2 / scale)])
        M = np.concatenate([D / sigma_lm, np.diag(np.concatenate([pw, damp]))])
        b = np.concatenate([r / sigma_lm, np.concatenate([-pw * theta0, np.zeros(6)])])
        big = np.full(6, np.inf)
        delta = bounded_least_squares(M, b, np.concatenate([lo - theta0, -big]), np.concatenate([hi - theta0, big]))
        theta = theta0 + delta[:K]
        i = 0
        for name, k in names:
            coeffs[name] = theta[i:i + k]
            i += k
        rot = Rotation.from_rotvec(delta[K:K + 3]) * Rotation.from_rotvec(cam.rotation)
        cam.rotation = rot.as_rotvec()
        cam.translation = cam.translation + delta[K + 3:]
        step = float(np.abs(delta[K:K + 3]).max())
        if step < 1e-6 and np.abs(delta[:K]).max() < 1e-4:
            break
    D, r, pw, *_ = _landmark_system(sub, corr, cam, coeffs, options.expression_sigma)
    rss = float((r ** 2).sum())
    # effective parameters: trace of the hat matrix of the last (linearised) solve
    Gd = D.T @ D / sigma_lm ** 2
    G = Gd + np.diag(np.concatenate([pw ** 2, np.full(6, 1e-8)]))
    dof = float(np.trace(np.linalg.solve(G, Gd)))
    return coeffs, cam, rss, dof


def fit_landmarks(model: PCAModel, corr: Correspondences, width: int, height: int, options: PhotoFitOptions,
                  sub: _Sub | None = None, progress=None):
    """Stages 1 and 2: pose from the mean face, then pose, shape and expression together.

    The landmark noise σ: the caller's, else estimated from the fit's own residual (empirical
    Bayes) between a floor and the default for a face detector (about 1 % of the face's size),
    so clean landmarks are trusted as much as they deserve and noisy ones no more than a detector.
    Returns (coefficients, camera, σ in px)."""
    sub = sub or _Sub(model, corr)
    k = float(getattr(corr, "count_factor", 1.0))
    focal = options.focal or default_focal(height, width)
    cam = Camera(width, height, focal)
    face_px = float(np.ptp(corr.points, axis=0).max())
    # Detector error on real photos is ~1 % of the face size (MediaPipe: 2-3 % of the eye distance)
    sigma_max = max(1.0, 0.012 * face_px)
    sigma = options.sigma_landmark or sigma_max
    coeffs = {g.name: np.zeros(g.size) for g in sub.groups}
    with torch.no_grad():
        P = sub.landmarks(sub.vertices({})).double().numpy()
    cam.rotation, cam.translation = _pose_from_landmarks(P, corr.points, corr.weight, cam)
    report(progress, 0.15, "shape from landmarks")
    coeffs, cam, rss, dof = _landmark_gauss_newton(sub, corr, cam, coeffs, sigma, options)
    if options.sigma_landmark is None:
        for _ in range(2):
            # weighted RSS / (observations − effective parameters): the noise of a weight-1 point
            n_obs = 2 * len(corr.points)
            # the weights carry the effective-count factor k; the noise of one point is judged without it
            est = float(np.sqrt(rss / k / max(n_obs - dof, 1.0)))
            sigma = float(np.clip(est, SIGMA_LANDMARK_FLOOR, sigma_max))
            coeffs, cam, rss, dof = _landmark_gauss_newton(sub, corr, cam, coeffs, sigma, options)
    report(progress, 0.3, "shape from landmarks")
    return coeffs, cam, sigma


# -- stage 3: analysis by synthesis ----------------------------------------------------------------

def _laplacian_pairs(faces: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e = np.unique(np.sort(e, 1), axis=0)
    return torch.as_tensor(e[:, 0]), torch.as_tensor(e[:, 1])


def _mirror_pairs(mean: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Vertex pairs mirrored across x = (the face's mid-plane), matched by nearest neighbour."""
    from scipy.spatial import cKDTree

    mid = np.median(mean[:, 0])
    m = mean.copy()
    m[:, 0] = 2 * mid - m[:, 0]
    d, j = cKDTree(mean).query(m)
    scale = np.ptp(mean[:, 0]) or 1.0
    ok = d < 0.02 * scale
    i = np.flatnonzero(ok)
    return torch.as_tensor(i), torch.as_tensor(j[ok])


def _image_tensor(img: np.ndarray, blur: float) -> torch.Tensor:
    from skimage.filters import gaussian

    f = img.astype(np.float32) / 255.0
    if blur > 0:
        f = gaussian(f, sigma=blur, channel_axis=2, preserve_range=True).astype(np.float32)
    return torch.as_tensor(f).permute(2, 0, 1)[None].contiguous()


def _sample(img_t: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    H, W = img_t.shape[2:]
    g = torch.stack([2 * xy[:, 0] / W - 1, 2 * xy[:, 1] / H - 1], 1)[None, None]
    return torch.nn.functional.grid_sample(img_t, g.to(img_t.dtype), mode="bilinear", padding_mode="border",
                                           align_corners=False)[0, :, 0].T


def fit_photo(model: PCAModel, image: np.ndarray, corr: Correspondences, options: PhotoFitOptions | None = None,
              progress=None, preview: Callable[[np.ndarray], None] | None = None) -> PhotoFitResult:
    """Fit ``model`` to ``image`` (H, W, 3 uint8) given landmark correspondences."""
    from studio.core import threads

    options = options or PhotoFitOptions()
    # The tensors are small (a face region, a few hundred parameters): one thread is as fast and
    # does not spin-wait against other processes on a busy machine.
    with threads.limited(1):
        return _fit_photo(model, image, corr, options, progress, preview)


def _fit_photo(model: PCAModel, image, corr, options, progress, preview) -> PhotoFitResult:
    torch.manual_seed(options.seed)
    t_start = time.perf_counter()
    H, W = image.shape[:2]
    from dataclasses import replace

    # a copy: the fit re-ties the contour landmarks as the pose changes
    corr = replace(corr, vids=corr.vids.copy(), w=corr.w.copy())
    total = float(np.sum(corr.weight))
    if options.effective_landmarks and total > options.effective_landmarks:
        corr.weight = corr.weight * (options.effective_landmarks / total)
        corr.count_factor = options.effective_landmarks / total
    sub = _Sub(model, corr)
    report(progress, 0.05, "pose from landmarks")
    coeffs, cam, sigma_lm = fit_landmarks(model, corr, W, H, options, sub, progress)
    timings = {"landmarks_s": time.perf_counter() - t_start}
    light = np.zeros((9, 3))
    light[0] = 1.0 / 0.282095
    albedo_full = None
    if not options.landmarks_only:
        coeffs, cam, light, albedo_full = _analysis_by_synthesis(model, sub, image, corr, coeffs, cam, sigma_lm,
                                                                 options, progress, preview)
    timings["total_s"] = time.perf_counter() - t_start
    params = {g.name: np.zeros(g.size) for g in model.groups}
    for k, c in coeffs.items():
        params[k] = np.asarray(c, float)
    if albedo_full is not None and isinstance(albedo_full, dict):  # colour PCA coefficients
        params.update(albedo_full["params"])
        albedo_full = albedo_full["albedo"]
    with torch.no_grad():
        v = sub.vertices({k: torch.as_tensor(c) for k, c in coeffs.items()})
        P = sub.landmarks(v).double().numpy()
    fitted, _ = cam.project(P)
    report(progress, 1.0, "done")
    return PhotoFitResult(params, cam, light, albedo_full, corr.points.copy(), fitted, timings,
                     landmark_sigma_px=float(sigma_lm))


def _analysis_by_synthesis(model: PCAModel, sub: _Sub, image, corr, coeffs, cam: Camera, sigma_lm, options, progress,
                           preview):
    dt = torch.float32
    n_iter = max(int(options.iterations), 10)
    scale = _scale_of(model)
    cx, cy = cam.principal
    f = cam.focal
    groups = sub.groups
    var = {g.name: torch.tensor(coeffs[g.name], dtype=dt, requires_grad=True) for g in groups}
    rot = torch.tensor(cam.rotation, dtype=torch.float64, requires_grad=True)
    trans0 = torch.tensor(cam.translation, dtype=torch.float64)
    dtrans = torch.zeros(3, dtype=torch.float64, requires_grad=True)  # in units of the face width
    light = torch.zeros(9, 3, dtype=dt)
    light[0] = 1.0 / 0.282095
    light.requires_grad_(True)
    x_t = torch.as_tensor(corr.points, dtype=dt)
    w_t = torch.as_tensor(corr.weight, dtype=dt)
    n_sub = len(sub.ids)
    photo_mask = sub.photo_mask
    # Albedo: colour PCA if the model has one, else per vertex with smoothness + symmetry priors.
    colour_groups = [g for g in model.groups if g.affects == "color"] if model.has_colors else []
    if colour_groups:
        cmean = torch.as_tensor(np.asarray(model.color_mean, np.float32)[sub.ids])
        cbases = {g.name: torch.as_tensor(model.basis(g.name)[:, sub.ids].reshape(g.size, -1)) for g in colour_groups}
        cvar = {g.name: torch.zeros(g.size, dtype=dt, requires_grad=True) for g in colour_groups}
        a_free = None
    else:
        cvar = {}
        a_free = torch.zeros(n_sub, 3, dtype=dt)
    ei, ej = _laplacian_pairs(sub.faces_np)
    mi, mj = _mirror_pairs(sub.mean.numpy())

    def albedo_of():
        if colour_groups:
            a = cmean.reshape(-1)
            for g in colour_groups:
                a = a + cvar[g.name] @ cbases[g.name]
            return a.reshape(-1, 3)
        return a_free

    face_px = float(np.ptp(corr.points, axis=0).max())
    blur_px = max(1.0, face_px / 250.0)
    # the photo blurred for the coarse phases (σ in units of ~1/250 of the face's size)
    imgs = {k: _image_tensor(image, k * blur_px) for k in (3.0, 1.5, 0.0)}
    edges = outline.edge_field(image, 1.5 * blur_px) if options.effective_outline > 0 else None
    sigma_out, reach_out = 2.0 * blur_px, outline.REACH * face_px

    def geometry():
        v = sub.vertices(var)
        R = axis_angle_to_matrix(rot).to(dt)
        t = (trans0 + dtrans * scale).to(dt)
        vc = v @ R.T + t
        xy, depth = project_camera(vc, f, cx, cy)
        return v, vc, xy, depth

    def visibility(vc, xy, depth):
        xy_np = xy.detach().double().numpy()
        d_np = depth.detach().double().numpy()
        frags = rasterize(xy_np, d_np, sub.faces_np, cam.height, cam.width)
        vis = visible_vertices(xy_np, d_np, frags, tolerance=0.01 * scale)
        n = vertex_normals(vc.detach(), sub.faces)
        view = -vc.detach() / vc.detach().norm(dim=1, keepdim=True)
        facing = (n * view).sum(1) > 0.25
        rim = np.zeros(0, np.int64)
        if options.effective_outline > 0:
            rim = outline.outline_vertices(xy_np, n.double().numpy(), view.double().numpy(), vis, frags.mask,
                                           sub.outline_ok)
        return torch.as_tensor(vis) & facing & photo_mask, rim

    # Initial albedo: observed colour / initial shading, spread smoothly (per-vertex case only).
    with torch.no_grad():
        v, vc, xy, depth = geometry()
        vis, rim = visibility(vc, xy, depth)
        obs = _sample(imgs[3.0], xy)
        if vis.sum() < 30:
            raise StudioError("too little of the face is visible to compare with the photo")
        mean_col = obs[vis].median(0).values
        if a_free is not None:
            a_free[:] = mean_col
    if a_free is not None:
        a_free.requires_grad_(True)

    # Phases: (fraction of iterations, blur level, shape components released, σ_I)
    n_shape = {g.name: g.size for g in groups if g.prior == "normal"}
    phases = [(0.25, 3.0, 0.0), (0.35, 1.5, 0.3), (0.40, 0.0, 1.0)]
    sig_hi, sig_lo = options.sigma_image
    opt = torch.optim.Adam([
        {"params": list(var.values()), "lr": 0.03},
        {"params": [rot], "lr": 0.003},
        {"params": [dtrans], "lr": 0.002},
        {"params": [light], "lr": 0.03},
        {"params": list(cvar.values()) + ([a_free] if a_free is not None else []), "lr": 0.01},
    ])
    it = 0
    history = []
    starts = np.cumsum([0] + [int(round(p[0] * n_iter)) for p in phases])
    vis = None
    for phase, (_frac, blur, release) in enumerate(phases):
        img_t = imgs[blur]
        p_iters = starts[phase + 1] - starts[phase]
        for _ in range(p_iters):
            progress_frac = it / n_iter
            sigma_i = sig_hi * (sig_lo / sig_hi) ** progress_frac  # geometric decay high → low
            if vis is None or it % 20 == 0:  # visibility changes slowly; the z-buffer is the costly part
                with torch.no_grad():
                    v, vc, xy, depth = geometry()
                    vis, rim = visibility(vc, xy, depth)
                    R_now = axis_angle_to_matrix(rot).double().numpy()
                    sub.retie_contour(v, R_now, (trans0 + dtrans * scale).numpy(), f)
            opt.zero_grad()
            v, vc, xy, depth = geometry()
            n = vertex_normals(vc, sub.faces)
            albedo = albedo_of()
            pred = albedo * (sh_basis(n) @ light)
            obs = _sample(img_t, xy)
            r = (pred - obs)[vis]
            # Robust (pseudo-Huber) photometric error: hair, glasses, eyes and specular highlights
            # are outliers to a Lambertian skin model.
            delta = 0.1
            rho = (delta ** 2) * (torch.sqrt(1 + (r / delta) ** 2) - 1)
            e_img = options.effective_samples * rho.sum(1).mean() / sigma_i ** 2
            lm = sub.landmarks(v)
            lm_c = lm @ axis_angle_to_matrix(rot).to(dt).T + (trans0 + dtrans * scale).to(dt)
            lm_xy, _ = project_camera(lm_c, f, cx, cy)
            e_lm = 0.5 * (w_t[:, None] * (lm_xy - x_t) ** 2).sum() / sigma_lm ** 2
            e_prior = torch.zeros((), dtype=dt)
            for g in groups:
                c = var[g.name]
                if g.prior == "normal":
                    e_prior = e_prior + 0.5 * ((c / torch.as_tensor(g.sigma, dtype=dt)) ** 2).sum()
                else:
                    e_prior = e_prior + 0.5 * (c / options.expression_sigma).pow(2).sum()
            for c in cvar.values():
                e_prior = e_prior + 0.5 * (c ** 2).sum()
            # light prior: stay near white and near the band-0 level (ρ has a prior too)
            e_light = 0.5 * ((light - light.mean(1, keepdim=True)) ** 2).sum() * 10.0
            e_alb = 0.0
            if a_free is not None:
                e_alb = (options.albedo_smoothness * ((a_free[ei] - a_free[ej]) ** 2).sum(1).mean() * n_sub
                         + options.albedo_symmetry * ((a_free[mi] - a_free[mj]) ** 2).sum(1).mean() * n_sub) / 10.0
            e_out = _outline_energy(edges, rim, xy, n, options.effective_outline, sigma_out, reach_out)
            loss = e_img + e_lm + e_prior + e_light + e_alb + e_out
            loss.backward()
            # First components first: the gradient of components not yet released is dropped.
            for g in groups:
                gr = var[g.name].grad
                if gr is None:
                    continue
                if g.name in n_shape:
                    kept = int(np.ceil(release * n_shape[g.name]))
                    gr[kept:] = 0
                elif release == 0:
                    gr.zero_()
            if release == 0:
                for p in (rot, dtrans):
                    if p.grad is not None:  # set by backward()
                        p.grad.zero_()
            opt.step()
            with torch.no_grad():
                for g in groups:
                    # Box groups stay in their box; normal groups within the slider range (±3σ):
                    # a real photo (glasses, hair, hat shadows) would otherwise push components
                    # to implausible values to explain what a skin model cannot.
                    var[g.name].clamp_(torch.as_tensor(g.lower, dtype=dt), torch.as_tensor(g.upper, dtype=dt))
                if a_free is not None:
                    a_free.clamp_(0.0, 1.0)
            it += 1
            if it % 10 == 0 or it == n_iter:
                history.append({"iteration": it, "image": float(e_img.detach()), "landmarks": float(e_lm.detach()),
                                "prior": float(e_prior.detach()), "visible": int(vis.sum())})
                report(progress, 0.3 + 0.65 * it / n_iter, f"analysis by synthesis {it}/{n_iter}")
            if preview is not None and options.preview_every and it % options.preview_every == 0:
                preview(_preview_image(image, sub, vc.detach(), xy.detach(), depth.detach(),
                                       pred.detach(), cam))
    coeffs = {k: v_.detach().double().numpy() for k, v_ in var.items()}
    cam = Camera(cam.width, cam.height, cam.focal, rot.detach().numpy().copy(),
                 (trans0 + dtrans * scale).detach().numpy().copy())
    # Full-size albedo: fitted values on the region, the region's median elsewhere.
    with torch.no_grad():
        a = albedo_of().double().numpy()
    full = np.tile(np.median(a, 0), (model.n_vertices, 1))
    full[sub.ids] = a
    out: np.ndarray | dict = full
    if colour_groups:
        out = {"albedo": full, "params": {k: c.detach().double().numpy() for k, c in cvar.items()}}
    return coeffs, cam, light.detach().double().numpy(), out


def _outline_energy(edges, rim: np.ndarray, xy: torch.Tensor, normals: torch.Tensor, effective: float,
                    sigma_px: float, reach_px: float):
    """½Σ|x − nearest edge|²/σ² over the outline vertices whose match is accepted, scaled so that
    all of them together count as ``effective`` independent points."""
    if edges is None or len(rim) == 0:
        return 0.0
    x = xy[rim]
    n2 = outline.normal_2d(x.detach().double().numpy(), normals[rim].detach().double().numpy())
    target, ok = edges.match(x.detach().double().numpy(), n2, reach_px)
    k = int(ok.sum())
    if k == 0:
        return 0.0
    d = x[ok] - torch.as_tensor(target[ok], dtype=x.dtype)
    return 0.5 * (effective / max(k, effective)) * (d ** 2).sum() / sigma_px ** 2


def _preview_image(image, sub: _Sub, vc, xy, depth, colours, cam: Camera, alpha: float = 0.6) -> np.ndarray:
    """The current model render blended over the photo (uint8), for progress displays."""
    from studio.core.geometry.raster import interpolate

    frags = rasterize(xy.double().numpy(), depth.double().numpy(), sub.faces_np, cam.height, cam.width)
    rend = interpolate(np.clip(colours.double().numpy(), 0, 1), sub.faces_np, frags)
    out = image.astype(np.float64) / 255.0
    m = frags.mask[..., None]
    out = np.where(m, (1 - alpha) * out + alpha * rend, out)
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)
