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
from studio.core.geometry.transforms import axis_angle_to_matrix
from studio.core.pca import PCAModel
from studio.core.photo import synthesis
from studio.core.photo.camera import Camera, default_focal, project_camera
from studio.core.photo.embedding import Correspondences, fit_region, landmark_mask, landmark_region
from studio.core.progress import report
from studio.core.solvers import bounded_least_squares

SIGMA_LANDMARK_FLOOR = 0.5  # px: below this, sub-pixel effects (rasterisation, blur) dominate


@dataclass
class PhotoFitOptions:
    focal: float | None = None  # pixels; default_focal() when None
    landmarks_only: bool = False  # stop after stage 2
    sigma_landmark: float | None = None  # px; default from the face size
    expression_sigma: float = 0.08  # half-normal pull of blendshape weights towards neutral
    iterations: int = 150  # analysis-by-synthesis iterations (more change the shape by < 0.01 mm)
    sigma_image: tuple[float, float] = (0.3, 0.06)  # σ_I from high to low
    effective_samples: float = 1500.0  # vertex samples are correlated; this many count as independent
    # A detector's errors are correlated across its points (a whole jaw line or brow is off
    # together), so its ~460 points carry about the information of the 68 an annotator would
    # place; counted as independent they outvote the prior (the fit came out worse than the mean
    # face on rendered photos, with 9× the true blendshape weight).
    effective_landmarks: float = 40.0
    albedo_smoothness: float = 30.0  # on changes of hue between neighbouring vertices
    # On changes of brightness along the skin's own colour. That is what shading looks like (the
    # light is near white, so a shape's shading is nearly colourless), and an albedo free to brighten
    # and darken smoothly explains shading the shape should. Stiffer than the hue it helps on the
    # renders (20 renders, ratio to the mean face: 30 0.905x, 200 0.891x, 300 0.888x, 1000 1.05x;
    # bench 0.816x → 0.798x at 200) but costs the real portrait (takeo 68-point NME 4.16 % → 4.27 %
    # at 200, 4.37 % with the jaw over 8 % at 300), and the renders' skin blotches are colour by
    # construction, which favours it. Until real photos say otherwise: as stiff as the hue.
    albedo_luminance_smoothness: float = 30.0
    albedo_symmetry: float = 3.0
    # The face's albedo when it is known ((n_vertices, 3) in 0..1, e.g. a scan's texture baked to the
    # model's vertices): held fixed, so all of the photo's shading is left to the shape and the light.
    # ``studio bench photo --oracle`` uses the render's true albedo to measure what estimating it costs.
    albedo: np.ndarray | None = None
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
        self.outline_ok = landmark_mask(model)[ids]  # vertices that may form the outline matched to the photo's edges
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


# -- the whole fit (stage 3, analysis by synthesis, is synthesis.py) --------------------------------

def fit_photo(model: PCAModel, image: np.ndarray, corr: Correspondences, options: PhotoFitOptions | None = None,
              progress=None, preview: Callable[[np.ndarray], None] | None = None) -> PhotoFitResult:
    """Fit ``model`` to ``image`` (H, W, 3 uint8) given landmark correspondences."""
    from studio.core import threads

    options = options or PhotoFitOptions()
    if options.albedo is not None and np.shape(options.albedo) != (model.n_vertices, 3):
        raise StudioError(f"a known albedo needs one RGB colour per vertex, ({model.n_vertices}, 3), "
                          f"not {np.shape(options.albedo)}")
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
        coeffs, cam, light, albedo_full = synthesis.run(model, sub, image, corr, coeffs, cam, sigma_lm,
                                                        _scale_of(model), options, progress, preview)
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
