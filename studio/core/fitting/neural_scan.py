"""Fitting the neural head model to a scan: rigid first, then the latent codes (thesis eq. 4.23).

1. Rigid: the scan is aligned to the mean head (the all-zero parameters' mesh, extracted at a coarse
   grid) by ``align.global_align`` — the same orientation search and robust ICP as for a linear
   model, so no landmarks are needed.
2. Identity: MAP estimate of the identity parameters α (coordinates along the principal directions
   of the trained codes, in σ units, so the prior is N(0, I): exactly the codes' Gaussian of eq.
   4.23) jointly with a small pose correction (rotation about the scan's centre, translation):

       E(α, ω, τ) = Σ_i r_i² / σ_N²  +  ½‖α‖²,   r_i = SDF(T_ωτ(p_i), z_id(α)) in mm

   Scan points lie on the surface, so their signed distance should vanish. Adam from α = 0 (the mean
   code), a random minibatch of the scan per step; the active directions grow coarse to fine and σ_N
   falls from high (the prior dominates) to the residuals' noise level (the scan dominates).
   Outliers: every few steps the correspondences are re-judged on all samples — residuals beyond
   3 robust σ (at least ``cut_floor_mm``), the worst ``trim`` fraction, points whose scan normal
   disagrees with the SDF gradient, and points outside the model's box are left out.
3. Expression (optional): the expression parameters β as well, through the posed SDF. The forward
   deformation field is inverted by fixed-point iteration without gradients, then one
   differentiable step x_c = x_p − Δ(x_c) carries the gradient to β (the implicit-function
   gradient to first order, at a fifth of the cost of differentiating every iteration).

The fitted mesh is the model's own ``mesh(params)`` (full resolution), so the parameters JSON
reproduces it exactly; its vertex count depends on the identity.

In the code (after eos): ``fit`` orchestrates ``_align`` → ``_fit_codes``, whose Adam steps run
``_Schedule`` (active directions, learning rate, σ_N) → every ``rejudge_every`` steps ``_correspond``
(signed distances, normal agreement) → ``_weight`` (inliers) → ``_solve`` (one ``_Adam`` step on a
minibatch, through ``_WarmSDF``). Every threshold and count is a ``NeuralFitOptions`` field.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from studio.core.errors import FitFailed, StudioError
from studio.core.facemodel import UNIT_TO_MM
from studio.core.fitting import align, rigid
from studio.core.fitting.align import Similarity, Target
from studio.core.fitting.result import FitResult
from studio.core.fitting.scan_io import scan_samples
from studio.core.geometry import vertex_normals
from studio.core.geometry.robust import robust_scale
from studio.core.geometry.transforms import axis_angle_to_matrix
from studio.core.neural.facemodel import NeuralFaceModel
from studio.core.progress import report


@dataclass
class NeuralFitOptions:
    samples: int = 6000  # scan points the fit sees (drawn once)
    batch: int = 3000  # of those, per Adam step
    align_samples: int = 600
    align_iterations: int = 12
    align_resolution: int = 96  # grid of the mean head the scan is aligned to
    identity_steps: int = 240
    expression_steps: int = 60
    fit_expression: bool = True
    # Fixed-point steps inverting the expression field per Adam step, warm-started from each sample's
    # last offset (4 from a cold start before; 1 gives the same fits over 10 bench scans, 0.4 s faster).
    deform_iterations: int = 1
    # Adam steps at the start; all decay (cosine) to ``lr_final`` × over the fit. The pose steps are
    # large enough to undo an alignment tens of degrees off (the mean head can differ from the
    # scanned one by centimetres, and the rigid stage then settles on a compromise).
    lr: float = 0.08  # α, β (σ units)
    lr_rotation: float = 0.01  # radians
    lr_shift_mm: float = 1.0
    lr_final: float = 0.05
    sigma_start_mm: float = 4.0
    sigma_final_mm: float = 0.3
    noise_weight: float = 1.0  # σ_N ≥ this × the residuals' robust σ
    # active fraction of the identity directions, one entry per equal share of the identity steps (thirds)
    coarse: tuple[float, ...] = (0.15, 0.4, 1.0)
    rejudge_every: int = 10
    trim: float = 0.05
    cut_floor_mm: float = 2.0
    free_scale: bool = False
    seed: int = 0
    # -- the steps' thresholds (correspond → weight → solve → schedule), once inline in the loop --
    min_points: int = 50  # fewer usable (non-isolated) scan samples than this: no surface to fit
    min_matches: int = 30  # fewer inliers than this: the scan is not on the head
    cut_sigmas: float = 3.0  # residuals beyond this × their robust σ (and ``cut_floor_mm``) are outliers
    # A scan normal more than 60° (cos 60° = 0.5) from the SDF's gradient is on another surface (an ear's
    # back, hair); either sign counts when the scan's normals are unoriented.
    normal_cos: float = 0.5
    # Samples posed beyond this fraction of the model's normalised box [-1, 1]³ are outside the domain
    # the SDF was trained on: their distances mean nothing.
    box_margin: float = 0.98
    # σ_N holds at ``sigma_start_mm`` over the first ``sigma_hold`` of the identity steps (the codes move
    # under a strong prior first), then falls geometrically to ``sigma_final_mm`` over ``sigma_fall`` of them.
    sigma_hold: float = 0.1
    sigma_fall: float = 0.7
    adam_betas: tuple[float, float] = (0.9, 0.999)  # torch's defaults (the moments' decay rates)
    update_every: int = 20  # steps between the intermediate estimates handed to ``on_update``
    # After the rigid stage the closest ``overlap_percentile`` % of the scan lies within
    # ``overlap_reach`` × the mean head's size of it, or the scan is not a head.
    overlap_percentile: float = 25.0
    overlap_reach: float = 0.04


def model_side(model: NeuralFaceModel, resolution: int) -> rigid.ModelSide:
    """The mean head's surface (mm), the front-facing subset any face scan shows and the mean head's
    landmarks (cached on the model: extraction and detection take about a second)."""
    cache = model.__dict__.setdefault("_scan_fit_cache", {})
    key = ("side", resolution)
    if key not in cache:
        mesh = model.mesh(model.zeros(), resolution, model.preview_margin)
        v = np.asarray(mesh.vertices, float)
        n = vertex_normals(v, mesh.faces)
        target = Target.build(v, n)
        front = np.flatnonzero((n[:, 2] > 0.3) & (v[:, 2] > np.median(v[:, 2])))
        step = max(len(front) // 800, 1)
        lm = rigid.model_landmarks(v, np.asarray(mesh.faces, np.int64), n)
        ibug = None
        if lm is not None:
            from studio.core.photo.landmarks import ibug68_from_mediapipe

            ibug = ibug68_from_mediapipe(np.vstack([lm.points, np.full((10, 3), np.nan)]))
        cache[key] = rigid.ModelSide(target, front[::step], lm, ibug)
    return cache[key]


def _landmark_pose(side: rigid.ModelSide, landmarks: dict, scale: float, with_scale: bool) -> Similarity:
    """The user's 3-D iBUG-68 landmarks (scan coordinates) against the mean head's."""
    if "vertices" in landmarks:
        raise StudioError("landmarks by vertex id need a model with a fixed mesh; give the neural head "
                          "{\"set\": \"ibug68\", \"points\": [...]}")
    if landmarks.get("set", "ibug68") != "ibug68":
        raise StudioError(f"the neural head knows the landmark set 'ibug68', not '{landmarks.get('set')}'")
    if side.ibug68 is None:
        raise StudioError("the neural head's mean face shows no detectable landmarks; fit without --landmarks")
    pts = np.asarray(landmarks["points"], float) * scale
    if len(pts) != 68:
        raise StudioError(f"{len(pts)} landmark points for the 68 of the ibug68 set")
    return align.landmark_align(pts, side.ibug68, with_scale)


class _Problem:
    """The scan samples in the model's normalised frame and the differentiable SDF of (α, β, pose)."""

    def __init__(self, model: NeuralFaceModel, points_mm: np.ndarray, normals: np.ndarray, oriented: bool):
        self.model, self.net = model, model.net
        dev = model.device
        self.scale = float(model.scale)
        self.p = torch.as_tensor((points_mm - model.center) / self.scale, dtype=torch.float32, device=dev)
        self.n = torch.as_tensor(normals, dtype=torch.float32, device=dev)
        self.oriented = oriented
        self.centre = self.p.mean(0)
        t = lambda a: torch.as_tensor(np.asarray(a, np.float32), device=dev)  # noqa: E731
        self.id_mean, self.id_basis = t(model.id_mean), t(model.id_dirs * model.id_sigmas[:, None])
        self.ex_basis = t(model.ex_dirs * model.ex_sigmas[:, None])
        self.alpha = torch.zeros(len(model.id_sigmas), device=dev, requires_grad=True)
        self.beta = torch.zeros(len(model.ex_sigmas), device=dev, requires_grad=True)
        self.omega = torch.zeros(3, device=dev, requires_grad=True)
        self.shift = torch.zeros(3, device=dev, requires_grad=True)  # normalised units

    def rotation(self) -> torch.Tensor:
        return axis_angle_to_matrix(self.omega)

    def posed(self, idx=None) -> torch.Tensor:
        p = self.p if idx is None else self.p[idx]
        return (p - self.centre) @ self.rotation().T + self.centre + self.shift

    def sdf_mm(self, idx=None, expression: bool = False, iterations: int = 4) -> torch.Tensor:
        x = self.posed(idx)[None]
        z_id = (self.id_mean + self.alpha @ self.id_basis)[None]
        planes = self.net.planes(z_id)
        if expression:
            z_ex = (self.beta @ self.ex_basis)[None]
            with torch.no_grad():
                xc = x
                for _ in range(iterations):
                    xc = x - self.net.deform(xc, z_ex, z_id)
            x = x - self.net.deform(xc, z_ex, z_id)
        return self.net.sdf(x, planes)[0] * self.scale

    def normal_agreement(self, expression: bool, iterations: int) -> np.ndarray:
        """|cos| (or cos, for oriented scans) between scan normals and the SDF gradient, per sample."""
        x = self.posed().detach().requires_grad_(True)
        z_id = (self.id_mean + self.alpha @ self.id_basis).detach()[None]
        with torch.enable_grad():
            planes = self.net.planes(z_id)
            f = self.net.sdf(x[None], planes)[0]
            (g,) = torch.autograd.grad(f.sum(), x)
        n = self.n @ self.rotation().detach().T
        cos = (torch.nn.functional.normalize(g, dim=1) * n).sum(1)
        return (cos if self.oriented else cos.abs()).cpu().numpy()

    def params(self) -> dict:
        return {"identity": self.alpha.detach().cpu().numpy().astype(np.float64),
                "expression": self.beta.detach().cpu().numpy().astype(np.float64)}

    def pose(self, sim: Similarity) -> Similarity:
        """The initial similarity followed by the fitted correction (both in mm)."""
        r = self.rotation().detach().cpu().numpy().astype(np.float64)
        c = self.centre.cpu().numpy().astype(np.float64) * self.scale + self.model.center
        t = self.shift.detach().cpu().numpy().astype(np.float64) * self.scale
        return sim.compose(Similarity(1.0, r, c - r @ c + t))


def _weight(r: np.ndarray, agree: np.ndarray, inside: np.ndarray, opt: NeuralFitOptions) -> tuple[np.ndarray, float]:
    """The inliers among all samples, and the residuals' robust σ (mm): inside the model's box, normals
    agreeing with the SDF's gradient, residuals within ``cut_sigmas`` robust σ, the worst ``trim`` out."""
    ok = inside & (agree > opt.normal_cos)
    if ok.sum() < opt.min_matches:
        raise FitFailed("the scan does not match the model's head: too few points land on it "
                        "(is this a face or head scan, and in the unit given?)")
    noise = robust_scale(r[ok])
    ok &= np.abs(r) <= max(opt.cut_sigmas * noise, opt.cut_floor_mm)
    if ok.sum() > opt.min_matches:
        ok &= np.abs(r) <= np.quantile(np.abs(r[ok]), 1 - opt.trim)
    return ok, noise


class _Adam:
    """Adam exactly as torch.optim.Adam computes it on a CPU (its single-tensor form, per-parameter step
    counts, parameters without a gradient skipped), written out: creating a torch optimiser imports
    torch._dynamo, about 1 s idle (3 s on a busy machine) the first time a process fits."""

    def __init__(self, groups: list[tuple[tuple[torch.Tensor, ...], float]], betas: tuple[float, float],
                 eps: float = 1e-8):
        self.groups, (self.beta1, self.beta2), self.eps = groups, betas, eps
        self.state: dict[int, list] = {}

    def step(self, lr_scale: float) -> None:
        beta1, beta2 = self.beta1, self.beta2
        for params, lr0 in self.groups:
            for p in params:
                if p.grad is None:
                    continue
                st = self.state.setdefault(id(p), [0, torch.zeros_like(p), torch.zeros_like(p)])
                st[0] += 1
                k, m, v = st
                m.lerp_(p.grad, 1 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                denom = (v.sqrt() / (1 - beta2 ** k) ** 0.5).add_(self.eps)
                p.addcdiv_(m, denom, value=-lr0 * lr_scale / (1 - beta1 ** k))


class _WarmSDF:
    """The posed samples' signed distance (mm) through the expression field's inverse, warm-started:
    every sample keeps the offset Δ at its canonical pre-image from its last evaluation, and the
    fixed-point iterations x_c ← x_p − Δ(x_c) start from it (β, α and the pose move little between two
    steps) instead of from Δ = 0, so ``deform_iterations`` can be 1 where the cold start needed 4 (each
    a pass of the deformation MLP over the batch: an expression step cost 5 identity steps)."""

    def __init__(self, prob: _Problem, iterations: int):
        self.prob, self.iterations = prob, iterations
        self.offset = torch.zeros_like(prob.p)

    def __call__(self, sel, expression: bool) -> torch.Tensor:
        prob = self.prob
        if not expression:
            return prob.sdf_mm(sel)
        x = prob.posed(sel)[None]
        z_id = (prob.id_mean + prob.alpha @ prob.id_basis)[None]
        z_ex = (prob.beta @ prob.ex_basis)[None]
        with torch.no_grad():
            d = (self.offset if sel is None else self.offset[sel])[None]
            for _ in range(self.iterations):
                d = prob.net.deform(x - d, z_ex, z_id)
            xc = x - d
        d = prob.net.deform(xc, z_ex, z_id)  # the one differentiable step (the gradient to β, first order)
        with torch.no_grad():
            if sel is None:
                self.offset.copy_(d[0])
            else:
                self.offset[sel] = d[0]
        return prob.net.sdf(x - d, prob.net.planes(z_id))[0] * prob.scale


class _Schedule:
    """Per Adam step: the active identity directions (coarse to fine, by equal shares of the identity
    steps), the learning rate (cosine decay to ``lr_final``) and σ_N (high, then falling to the
    residuals' noise level)."""

    def __init__(self, opt: NeuralFitOptions, steps_id: int, total: int):
        self.opt, self.steps_id, self.total = opt, steps_id, total
        self.sigma, self.floor = opt.sigma_start_mm, opt.sigma_final_mm
        self.decay = (self.floor / self.sigma) ** (1.0 / max(int(opt.sigma_fall * steps_id), 1))

    def active(self, step: int, n_id: int, expression: bool) -> int:
        """How many leading (σ-ordered) identity directions move; the rest stay at zero."""
        shares = len(self.opt.coarse)
        frac = self.opt.coarse[min(shares * step // self.steps_id, shares - 1)] if not expression else 1.0
        return max(1, int(np.ceil(frac * n_id)))

    def lr_scale(self, step: int) -> float:
        lr_final = self.opt.lr_final
        return lr_final + (1 - lr_final) * 0.5 * (1 + np.cos(np.pi * step / self.total))

    def step(self, step: int, noise: float) -> None:
        if step >= self.opt.sigma_hold * self.steps_id:
            self.sigma = max(self.sigma * self.decay, self.opt.noise_weight * noise, self.floor)


@contextmanager
def _fitting_mode(model: NeuralFaceModel):
    """Denormal floats flushed to zero for the rest of the fit (mesh extraction included): the
    networks' softplus(β = 100) units give exp(−β|x|) far below 1e-38 for most inputs, and the CPU's
    slow path for denormals made them ~10× slower (logaddexp over 3,000 × 128 values: 8 ms → 0.75 ms
    on one thread); the fit's results do not change. The setting belongs to the calling thread (the
    CPU's control register), so it is made and undone here, on the thread that fits. The networks'
    own weights are frozen while the codes are fitted (the caller thaws them before extracting the
    mesh; here they are thawed again in any case)."""
    flush = torch.set_flush_denormal(True)
    for p in model.net.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in model.net.parameters():
            p.requires_grad_(True)
        if flush:
            torch.set_flush_denormal(False)


def fit(model: NeuralFaceModel, scan, region: str = "face", landmarks: dict | None = None,
        options: NeuralFitOptions | None = None, progress=None, on_update=None,
        _align_only: bool = False):
    """Fit ``model`` (a NeuralFaceModel) to ``scan``; returns a ``FitResult`` whose ``faces`` hold the
    fitted mesh's triangles. ``progress`` may raise ``Cancelled`` (checked every step)."""
    t0 = time.perf_counter()
    opt = options or NeuralFitOptions()
    rng = np.random.default_rng(opt.seed)
    torch.manual_seed(opt.seed)
    unit_scale = UNIT_TO_MM[scan.unit]  # scan unit → mm (the neural model's unit)
    pts = np.asarray(scan.points, float) * unit_scale
    report(progress, 0.0, "reading the scan")
    idx, s_nrm, s_border, isolated, oriented = scan_samples(scan, pts, opt.samples, rng)
    usable = np.flatnonzero(~isolated)
    if len(usable) < opt.min_points:
        raise StudioError("the scan has too few surface points to fit (most are isolated outliers)")
    # 1. rigid: onto the mean head (the rigid stage shared with the linear fitter).
    rig, side = _align(model, scan, pts, idx, s_nrm, s_border, oriented, usable, landmarks, unit_scale, opt, rng,
                       progress)
    sim = rig.sim
    if _align_only:
        return Similarity(sim.s * unit_scale, sim.R, sim.t)
    # 2./3. latent codes and pose, coarse to fine, the prior's weight falling.
    prob = _Problem(model, sim.apply(pts[idx[usable]]), sim.rotate(s_nrm[usable]), oriented)
    with _fitting_mode(model):
        residuals, total = _fit_codes(prob, opt, sim, unit_scale, progress, on_update)
        for p in model.net.parameters():
            p.requires_grad_(True)
        report(progress, 0.93, "extracting the fitted head")
        params = model.check(prob.params())
        mesh = model.mesh(params)
    report(progress, 1.0, "fitted")
    verts = np.asarray(mesh.vertices, np.float64)
    if rig.scan_landmarks is not None:
        rig.scan_landmarks = rig.scan_landmarks / unit_scale  # into the scan's own coordinates
    lm = _fitted_landmarks(side, verts, np.asarray(mesh.faces, np.int64))
    return FitResult(model.name, params, _scan_to_model(prob.pose(sim), unit_scale), region, scan.unit, "mm",
                     verts, np.arange(len(verts)), total, time.perf_counter() - t0, residuals,
                     faces=np.asarray(mesh.faces, np.int64), free_scale=rig.free_scale, rigid=rig,
                     face_area=rigid.face_area(side), model_landmarks=lm)


def _align(model: NeuralFaceModel, scan, pts: np.ndarray, idx: np.ndarray, s_nrm: np.ndarray, s_border: np.ndarray,
           oriented: bool, usable: np.ndarray, landmarks: dict | None, unit_scale: float, opt: NeuralFitOptions,
           rng: np.random.Generator, progress) -> tuple[rigid.RigidResult, rigid.ModelSide]:
    """The rigid stage (``rigid.align_scan``, shared with the linear fitter), checked for overlap."""
    report(progress, 0.01, "extracting the mean head")
    side = model_side(model, opt.align_resolution)
    given = None if landmarks is None else _landmark_pose(side, landmarks, unit_scale, opt.free_scale)
    pick = usable if len(usable) <= opt.align_samples or given is not None else \
        rng.choice(usable, opt.align_samples, replace=False)
    align_progress = (lambda f, m="": report(progress, 0.02 + 0.18 * f, m)) if progress else None
    rig = rigid.align_scan(side, rigid.render_surface(scan, pts), pts[idx[pick]], s_nrm[pick], s_border[pick],
                           oriented, opt.free_scale, given, opt.align_iterations, progress=align_progress)
    target = side.target
    d, _ = target.tree.query(rig.sim.apply(pts[idx[usable]]))
    if np.percentile(d, opt.overlap_percentile) > opt.overlap_reach * float(np.ptp(target.points, axis=0).max()):
        raise FitFailed("the scan does not look like a head: after the best alignment even its closest quarter "
                        "of points lies far from the model (check the file and the unit)")
    return rig, side


def _fit_codes(prob: _Problem, opt: NeuralFitOptions, sim: Similarity, unit_scale: float, progress,
               on_update) -> tuple[list[float], int]:
    """The latent codes and the pose correction: per Adam step schedule → (every ``rejudge_every``
    steps: correspond → weight) → solve. Returns the inliers' RMS residual (mm) at every re-judging
    and the number of steps."""
    n_id, n_ex = len(prob.alpha), len(prob.beta)
    steps_id = max(int(opt.identity_steps), 1)
    steps_ex = int(opt.expression_steps) if opt.fit_expression and n_ex else 0
    total = steps_id + steps_ex
    adam = _Adam([((prob.alpha, prob.beta), opt.lr), ((prob.omega,), opt.lr_rotation),
                  ((prob.shift,), opt.lr_shift_mm / prob.scale)], opt.adam_betas)
    sdf = _WarmSDF(prob, opt.deform_iterations)
    schedule = _Schedule(opt, steps_id, total)
    gen = torch.Generator().manual_seed(opt.seed)
    residuals: list[float] = []
    noise = float("inf")
    for step in range(total):
        expression = step >= steps_id
        report(progress, 0.2 + 0.72 * step / total,
               f"fitting {'expression' if expression else 'identity'}: step {step + 1}/{total}")
        if step % opt.rejudge_every == 0:
            r_all, agree, inside = _correspond(prob, sdf, expression, opt)
            keep, noise = _weight(r_all, agree, inside, opt)
            kept = torch.as_tensor(np.flatnonzero(keep), device=prob.p.device)
            residuals.append(float(np.sqrt(np.mean(r_all[keep] ** 2))))
        k_id = schedule.active(step, n_id, expression)
        _solve(prob, sdf, kept, gen, opt, schedule.sigma, k_id, expression, adam, schedule.lr_scale(step))
        schedule.step(step, noise)
        if on_update is not None and (step % opt.update_every == opt.update_every - 1 or step == total - 1):
            on_update(prob.params(), _scan_to_model(prob.pose(sim), unit_scale))
    return residuals, total


def _correspond(prob: _Problem, sdf: _WarmSDF, expression: bool,
                opt: NeuralFitOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every sample's signed distance (mm), its normal's agreement with the SDF's gradient and whether
    it lies inside the model's box (the SDF's correspondences are implicit: the surface point below)."""
    with torch.no_grad():
        r_all = sdf(None, expression).cpu().numpy()
        inside = (prob.posed().abs().amax(1) < opt.box_margin).cpu().numpy()
    agree = prob.normal_agreement(expression, opt.deform_iterations)
    return r_all, agree, inside


def _solve(prob: _Problem, sdf: _WarmSDF, kept: torch.Tensor, gen: torch.Generator, opt: NeuralFitOptions,
           sigma: float, k_id: int, expression: bool, adam: _Adam, lr_scale: float) -> None:
    """One Adam step on a random minibatch of the inliers: E = Σ r²/σ_N² (scaled to all inliers) + ½‖α‖²
    (+ ½‖β‖² while fitting the expression), the identity beyond ``k_id`` held at zero."""
    b = kept[torch.randint(len(kept), (min(opt.batch, len(kept)),), generator=gen).to(kept.device)]
    r = sdf(b, expression)
    data = (r ** 2).sum() * (len(kept) / len(b)) / sigma ** 2
    prior = 0.5 * (prob.alpha ** 2).sum() + (0.5 * (prob.beta ** 2).sum() if expression else 0.0)
    loss = (data + prior) / len(kept)
    for p in (prob.alpha, prob.beta, prob.omega, prob.shift):
        p.grad = None
    loss.backward()
    with torch.no_grad():
        assert prob.alpha.grad is not None  # set by backward()
        prob.alpha.grad[k_id:] = 0.0
        if not expression:
            prob.beta.grad = None
        adam.step(lr_scale)
        prob.alpha[k_id:] = 0.0


def _fitted_landmarks(side: rigid.ModelSide, verts: np.ndarray, faces: np.ndarray) -> np.ndarray | None:
    """The fitted head's own landmarks, found as the mean head's were (a render and the detector):
    its mesh has a topology of its own, and the mean head's points do not follow an expression
    (a surprise's raised brows and open jaw put them 11 % of the eye distance off a right pose)."""
    if side.landmarks is None:
        return None
    found = rigid.model_landmarks(verts, faces, vertex_normals(verts, faces))
    if found is not None:
        return found.points
    from scipy.spatial import cKDTree  # no face found on the fitted head: the mean's points, moved onto it

    lm = side.landmarks.points.copy()
    ok = side.landmarks.valid
    lm[ok] = verts[cKDTree(verts).query(lm[ok])[1]]
    return lm


def _scan_to_model(sim_mm: Similarity, unit_scale: float) -> Similarity:
    """A similarity from mm-scaled scan points to one from the scan's own coordinates."""
    return Similarity(sim_mm.s * unit_scale, sim_mm.R, sim_mm.t)
