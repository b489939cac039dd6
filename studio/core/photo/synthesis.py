"""Stage 3 of the photo fit: analysis by synthesis, as named steps under a short schedule.

The model is rendered (perspective camera, Lambertian albedo, second-order SH light per channel,
z-buffer visibility) and compared with the photo at the visible vertices of the face region; the
energy (``_Synthesis.energy``) adds the landmarks, the outline against the photo's edges
(outline.py) and the priors on the coefficients, the light and the albedo. ``run`` is the
schedule: coarse to fine in image blur, σ_I from high to low, shape components released in order
of variance (first ones first). Torch autograd + Adam. fit.py's docstring says why each piece is
there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from studio.core.errors import StudioError
from studio.core.geometry import vertex_normals
from studio.core.geometry.raster import rasterize, visible_vertices
from studio.core.geometry.transforms import axis_angle_to_matrix
from studio.core.photo import outline
from studio.core.photo.camera import Camera, project_camera
from studio.core.photo.shading import sh_basis
from studio.core.progress import report

if TYPE_CHECKING:
    from studio.core.pca import PCAModel
    from studio.core.photo.embedding import Correspondences
    from studio.core.photo.fit import PhotoFitOptions, _Sub

DT = torch.float32
# (share of the iterations, image blur in units of ~1/250 of the face's size, share of each shape
# group's components released): pose, light and albedo settle on a blurred photo before the shape
# moves, then the first components, then all.
PHASES = ((0.25, 3.0, 0.0), (0.35, 1.5, 0.3), (0.40, 0.0, 1.0))
# Adam step sizes per kind of unknown (coefficients in σ units, axis-angle, translation in face
# widths, SH light, albedo).
LEARNING_RATES = {"coefficients": 0.03, "rotation": 0.003, "translation": 0.002, "light": 0.03, "albedo": 0.01}
VISIBILITY_EVERY = 20  # iterations: visibility changes slowly; the z-buffer is the costly part
ROBUST_DELTA = 0.1  # pseudo-Huber scale of the photometric residual (hair, glasses, highlights)
FACING = 0.25  # n·view above this: the vertex faces the camera enough to be compared with the photo
LIGHT_PRIOR = 10.0  # weight of the pull of the light towards white


class _Synthesis:
    """The unknowns of the fit and the energy over them."""

    def __init__(self, model: PCAModel, sub: _Sub, image: np.ndarray, corr: Correspondences, coeffs: dict,
                 cam: Camera, sigma_lm: float, scale: float, options: PhotoFitOptions):
        self.model, self.sub, self.cam, self.options = model, sub, cam, options
        self.sigma_lm, self.scale = sigma_lm, scale
        self.var = {g.name: torch.tensor(coeffs[g.name], dtype=DT, requires_grad=True) for g in sub.groups}
        self.rot = torch.tensor(cam.rotation, dtype=torch.float64, requires_grad=True)
        self.trans0 = torch.tensor(cam.translation, dtype=torch.float64)
        self.dtrans = torch.zeros(3, dtype=torch.float64, requires_grad=True)  # in units of the face width
        self.light = torch.zeros(9, 3, dtype=DT)
        self.light[0] = 1.0 / 0.282095
        self.light.requires_grad_(True)
        self.x_t = torch.as_tensor(corr.points, dtype=DT)
        self.w_t = torch.as_tensor(corr.weight, dtype=DT)
        self._albedo_unknowns(model, sub)
        face_px = float(np.ptp(corr.points, axis=0).max())
        blur_px = max(1.0, face_px / 250.0)
        # the photo blurred for the coarse phases (σ in units of ~1/250 of the face's size)
        self.imgs = {k: _image_tensor(image, k * blur_px) for k in (3.0, 1.5, 0.0)}
        lo, hi = np.min(corr.points, axis=0), np.max(corr.points, axis=0)
        margin = 0.4 * face_px  # the outline lies within the landmarks' box but for the temples and the chin
        box = (int(lo[0] - margin), int(lo[1] - margin), int(hi[0] + margin) + 1, int(hi[1] + margin) + 1)
        self.edges = outline.edge_field(image, 1.5 * blur_px, box) if options.effective_outline > 0 else None
        self.sigma_out, self.reach_out = 2.0 * blur_px, outline.REACH * face_px

    def _albedo_unknowns(self, model: PCAModel, sub: _Sub) -> None:
        """Colour PCA if the model has one, else one albedo per vertex with smoothness and symmetry priors."""
        known = self.options.albedo
        self.colour_groups = ([g for g in model.groups if g.affects == "color"]
                              if model.has_colors and known is None else [])
        self.cvar: dict[str, torch.Tensor] = {}
        self.a_free: torch.Tensor | None = None  # an albedo to estimate, one per vertex
        self.a_known: torch.Tensor | None = None  # the caller's albedo, held fixed (no unknowns, no prior)
        if known is not None:
            self.a_known = torch.as_tensor(np.clip(np.asarray(known, np.float32)[sub.ids], 0.0, 1.0))
        elif self.colour_groups:
            self.cmean = torch.as_tensor(np.asarray(model.color_mean, np.float32)[sub.ids])
            self.cbases = {g.name: torch.as_tensor(model.basis(g.name)[:, sub.ids].reshape(g.size, -1))
                           for g in self.colour_groups}
            self.cvar = {g.name: torch.zeros(g.size, dtype=DT, requires_grad=True) for g in self.colour_groups}
        else:
            self.a_free = torch.zeros(len(sub.ids), 3, dtype=DT)
        self.ei, self.ej = _laplacian_pairs(sub.faces_np)
        self.mi, self.mj = _mirror_pairs(sub.mean.numpy())

    def albedo(self) -> torch.Tensor:
        if self.a_known is not None:
            return self.a_known
        if self.colour_groups:
            a = self.cmean.reshape(-1)
            for g in self.colour_groups:
                a = a + self.cvar[g.name] @ self.cbases[g.name]
            return a.reshape(-1, 3)
        assert self.a_free is not None
        return self.a_free

    def translation(self) -> torch.Tensor:
        return self.trans0 + self.dtrans * self.scale

    def geometry(self):
        v = self.sub.vertices(self.var)
        R = axis_angle_to_matrix(self.rot).to(DT)
        vc = v @ R.T + self.translation().to(DT)
        cx, cy = self.cam.principal
        xy, depth = project_camera(vc, self.cam.focal, cx, cy)
        return v, vc, xy, depth

    def visibility(self, vc, xy, depth) -> tuple[torch.Tensor, np.ndarray]:
        """Vertices compared with the photo (visible, facing the camera, in the face region) and the
        outline vertices matched to the photo's edges."""
        sub = self.sub
        xy_np = xy.detach().double().numpy()
        d_np = depth.detach().double().numpy()
        frags = rasterize(xy_np, d_np, sub.faces_np, self.cam.height, self.cam.width)
        vis = visible_vertices(xy_np, d_np, frags, tolerance=0.01 * self.scale)
        n = vertex_normals(vc.detach(), sub.faces)
        view = -vc.detach() / vc.detach().norm(dim=1, keepdim=True)
        facing = (n * view).sum(1) > FACING
        rim = np.zeros(0, np.int64)
        if self.options.effective_outline > 0:
            rim = outline.outline_vertices(xy_np, n.double().numpy(), view.double().numpy(), vis, frags.mask,
                                           sub.outline_ok)
        return torch.as_tensor(vis) & facing & sub.photo_mask, rim

    def update_visibility(self) -> tuple[torch.Tensor, np.ndarray]:
        """Visibility for the current state, and the jaw-line landmarks re-tied to its outline."""
        with torch.no_grad():
            v, vc, xy, depth = self.geometry()
            vis, rim = self.visibility(vc, xy, depth)
            R_now = axis_angle_to_matrix(self.rot).double().numpy()
            self.sub.retie_contour(v, R_now, self.translation().numpy(), self.cam.focal)
        return vis, rim

    def start_albedo(self, vis: torch.Tensor) -> None:
        """The per-vertex albedo starts at the median colour the visible face (``vis``) shows."""
        with torch.no_grad():
            _, _, xy, _ = self.geometry()
            obs = _sample(self.imgs[3.0], xy)
            if vis.sum() < 30:
                raise StudioError("too little of the face is visible to compare with the photo")
            mean_col = obs[vis].median(0).values
            if self.a_free is not None:
                self.a_free[:] = mean_col
        if self.a_free is not None:
            self.a_free.requires_grad_(True)

    def optimiser(self) -> torch.optim.Optimizer:
        lr = LEARNING_RATES
        albedo = list(self.cvar.values()) + ([self.a_free] if self.a_free is not None else [])
        return torch.optim.Adam([{"params": list(self.var.values()), "lr": lr["coefficients"]},
                                 {"params": [self.rot], "lr": lr["rotation"]},
                                 {"params": [self.dtrans], "lr": lr["translation"]},
                                 {"params": [self.light], "lr": lr["light"]},
                                 {"params": albedo, "lr": lr["albedo"]}])

    def energy(self, img_t, vis, rim, sigma_i: float) -> tuple[Any, dict]:
        """The total energy and its terms (photo, landmarks, priors, outline) for the current state."""
        v, vc, xy, depth = self.geometry()
        n = vertex_normals(vc, self.sub.faces)
        pred = self.albedo() * (sh_basis(n) @ self.light)
        terms = {"image": self._photometric(pred, _sample(img_t, xy), vis, sigma_i),
                 "landmarks": self._landmarks(v), "prior": self._coefficient_prior(),
                 "light": 0.5 * ((self.light - self.light.mean(1, keepdim=True)) ** 2).sum() * LIGHT_PRIOR,
                 "albedo": self._albedo_prior(),
                 "outline": _outline_energy(self.edges, rim, xy, n, self.options.effective_outline,
                                            self.sigma_out, self.reach_out)}
        loss = (terms["image"] + terms["landmarks"] + terms["prior"] + terms["light"] + terms["albedo"]
                + terms["outline"])
        return loss, {"terms": terms, "vc": vc, "xy": xy, "depth": depth, "pred": pred}

    def _photometric(self, pred, obs, vis, sigma_i: float):
        # Robust (pseudo-Huber) photometric error: hair, glasses, eyes and specular highlights
        # are outliers to a Lambertian skin model.
        r = (pred - obs)[vis]
        delta = ROBUST_DELTA
        rho = (delta ** 2) * (torch.sqrt(1 + (r / delta) ** 2) - 1)
        return self.options.effective_samples * rho.sum(1).mean() / sigma_i ** 2

    def _landmarks(self, v):
        lm = self.sub.landmarks(v)
        lm_c = lm @ axis_angle_to_matrix(self.rot).to(DT).T + self.translation().to(DT)
        cx, cy = self.cam.principal
        lm_xy, _ = project_camera(lm_c, self.cam.focal, cx, cy)
        return 0.5 * (self.w_t[:, None] * (lm_xy - self.x_t) ** 2).sum() / self.sigma_lm ** 2

    def _coefficient_prior(self):
        e = torch.zeros((), dtype=DT)
        for g in self.sub.groups:
            c = self.var[g.name]
            if g.prior == "normal":
                e = e + 0.5 * ((c / torch.as_tensor(g.sigma, dtype=DT)) ** 2).sum()
            else:
                e = e + 0.5 * (c / self.options.expression_sigma).pow(2).sum()
        for c in self.cvar.values():
            e = e + 0.5 * (c ** 2).sum()
        return e

    def _albedo_prior(self):
        a = self.a_free
        if a is None:
            return 0.0
        n_sub = len(self.sub.ids)
        o = self.options
        # neighbour differences split into brightness along the skin's colour and hue across it
        skin = a.detach()[self.sub.photo_mask].median(0).values
        u = skin / skin.norm().clamp_min(1e-6)
        d = a[self.ei] - a[self.ej]
        bright = d @ u
        hue = (d ** 2).sum(1) - bright ** 2
        return (o.albedo_luminance_smoothness * (bright ** 2).mean() * n_sub + o.albedo_smoothness * hue.mean() * n_sub
                + o.albedo_symmetry * ((a[self.mi] - a[self.mj]) ** 2).sum(1).mean() * n_sub) / 10.0

    def hold(self, release: float) -> None:
        """First components first: drop the gradient of the components not yet released (and of
        the pose and the blendshapes until the shape moves)."""
        for g in self.sub.groups:
            gr = self.var[g.name].grad
            if gr is None:
                continue
            if g.prior == "normal":
                gr[int(np.ceil(release * g.size)):] = 0
            elif release == 0:
                gr.zero_()
        if release == 0:
            for p in (self.rot, self.dtrans):
                if p.grad is not None:  # set by backward()
                    p.grad.zero_()

    def clamp(self) -> None:
        """Box groups stay in their box; normal groups within the slider range (±3σ): a real photo
        (glasses, hair, hat shadows) would otherwise push components to implausible values to
        explain what a skin model cannot."""
        with torch.no_grad():
            for g in self.sub.groups:
                self.var[g.name].clamp_(torch.as_tensor(g.lower, dtype=DT), torch.as_tensor(g.upper, dtype=DT))
            if self.a_free is not None:
                self.a_free.clamp_(0.0, 1.0)

    def result(self):
        """(coefficients, camera, light, albedo): the albedo full-size, the fitted values on the
        region and the region's median elsewhere (with the colour coefficients when the model has
        a colour model)."""
        coeffs = {k: v_.detach().double().numpy() for k, v_ in self.var.items()}
        cam = Camera(self.cam.width, self.cam.height, self.cam.focal, self.rot.detach().numpy().copy(),
                     self.translation().detach().numpy().copy())
        if self.a_known is not None:  # as given, everywhere
            full = np.clip(np.asarray(self.options.albedo, float), 0.0, 1.0)
        else:
            with torch.no_grad():
                a = self.albedo().double().numpy()
            full = np.tile(np.median(a, 0), (self.model.n_vertices, 1))
            full[self.sub.ids] = a
        out: np.ndarray | dict = full
        if self.colour_groups:
            out = {"albedo": full, "params": {k: c.detach().double().numpy() for k, c in self.cvar.items()}}
        return coeffs, cam, self.light.detach().double().numpy(), out


def run(model: PCAModel, sub: _Sub, image, corr, coeffs, cam: Camera, sigma_lm, scale: float, options,
        progress, preview):
    """The schedule: phases of blur and released components, σ_I decaying geometrically."""
    s = _Synthesis(model, sub, image, corr, coeffs, cam, sigma_lm, scale, options)
    vis, rim = s.update_visibility()  # iteration 0's, and what the albedo starts from
    s.start_albedo(vis)
    n_iter = max(int(options.iterations), 10)
    sig_hi, sig_lo = options.sigma_image
    opt = s.optimiser()
    starts = np.cumsum([0] + [int(round(p[0] * n_iter)) for p in PHASES])
    it = 0
    for phase, (_share, blur, release) in enumerate(PHASES):
        for _ in range(starts[phase + 1] - starts[phase]):
            sigma_i = sig_hi * (sig_lo / sig_hi) ** (it / n_iter)  # geometric decay high → low
            if it > 0 and it % VISIBILITY_EVERY == 0:
                vis, rim = s.update_visibility()
            opt.zero_grad()
            loss, state = s.energy(s.imgs[blur], vis, rim, sigma_i)
            loss.backward()
            s.hold(release)
            opt.step()
            s.clamp()
            it += 1
            _report(it, n_iter, progress)
            if preview is not None and options.preview_every and it % options.preview_every == 0:
                preview(_preview_image(image, sub, state["vc"].detach(), state["xy"].detach(),
                                       state["depth"].detach(), state["pred"].detach(), cam))
    return s.result()


def _report(it: int, n_iter: int, progress) -> None:
    if it % 10 == 0 or it == n_iter:
        report(progress, 0.3 + 0.65 * it / n_iter, f"analysis by synthesis {it}/{n_iter}")


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
