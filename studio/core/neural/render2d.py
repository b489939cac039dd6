"""The optional 2D branch: normal maps by volume rendering the SDF, L1 + adversarial losses.

Rendering (VolSDF / MonoSDF): orthographic rays along −z through a ``render_res``² image over
[-1, 1]², ``render_samples`` stratified samples per ray in z ∈ [-1, 1], the head yawed at random by up
to ±30°. Density σ(x) = α Ψ_β(−f(x)) with α = 1/β and Ψ_β the CDF of the zero-mean Laplace
distribution of scale β; weights w_i = T_i (1 − exp(−σ_i δ_i)); the pixel's normal is
Σ w_i ∇f(x_i)/|∇f(x_i)|.  β is a learnable scalar (initial 0.02, kept ≥ 1e-3).

Targets: normal maps of the training identities splatted from their surface samples (a z-buffer of
the nearest sample per pixel; background 0, which a ray missing the head also renders). Losses: L1
between rendered and target normal maps, and a non-saturating GAN on a small convolutional
discriminator (real: targets, fake: renders of codes drawn from a Gaussian fit of the training
codes) with the R1 gradient penalty γ/2 ‖∇D(real)‖².

The 2-D stage runs between the 3-D identity stage and the expression stage (``train.STAGES``). Its
generator side is not trained alone: the step adds the 3-D identity losses (``w_render_3d``) so the
adversarial term shapes the latent space without letting the surface drift from the data, and the
network and codes are stepped by the identity optimiser; this branch owns only the discriminator, its
optimiser and β. Logged per step: ``render_l1``, ``gan_g`` (generator), ``gan_d`` (discriminator,
R1 included), ``r1``, ``d_real`` / ``d_fake`` (mean logits: a discriminator that wins outright shows
as a widening gap) and ``beta``.

Cost: a 64² render with 32 samples is ~130k SDF queries with second-order gradients (12 s per 4
images on one CPU thread). ``render_fine > 0`` renders coarse to fine: the ``render_samples`` per ray
are evaluated without gradients to find where the ray first crosses the surface, and only
``render_fine`` samples in a band of ±``FINE_BAND`` around it carry the graph (the Laplace density
with β ≈ 0.02 is negligible outside the band).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from studio.core.neural.config import NeuralConfig
from studio.core.neural.model import NeuralHead


class Discriminator(nn.Module):
    def __init__(self, res: int, width: int = 32):
        super().__init__()
        layers, c, r = [], 3, res
        ch = width
        while r > 4:
            layers += [nn.Conv2d(c, ch, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c, ch, r = ch, min(ch * 2, 128), r // 2
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c * r * r, 1)

    def forward(self, img: Tensor) -> Tensor:
        return self.head(self.body(img).flatten(1)).squeeze(-1)


def yaw_matrix(angles: Tensor) -> Tensor:
    c, s = torch.cos(angles), torch.sin(angles)
    z, o = torch.zeros_like(c), torch.ones_like(c)
    return torch.stack([torch.stack([c, z, s], -1), torch.stack([z, o, z], -1),
                        torch.stack([-s, z, c], -1)], -2)  # (B, 3, 3)


def laplace_density(f: Tensor, beta: Tensor) -> Tensor:
    """σ = (1/β) Ψ_β(−f): the VolSDF density of a signed distance."""
    s = -f
    psi = torch.where(s <= 0, 0.5 * torch.exp(s.clamp(max=0) / beta), 1 - 0.5 * torch.exp(-s.clamp(min=0) / beta))
    return psi / beta


FINE_BAND = 0.12  # half-width (normalised units, ≈ 2.5 cm) of the fine samples around the first crossing


def render_normals(model: NeuralHead, planes: Tensor, rot: Tensor, res: int, n_samples: int, beta: Tensor,
                   generator: torch.Generator | None = None, n_fine: int = 0) -> Tensor:
    """Volume-rendered normal maps (B, 3, res, res), in the camera frame, differentiable.
    ``n_fine > 0``: coarse to fine (module docstring)."""
    b = planes.shape[0]
    dev = planes.device
    g = torch.linspace(-1, 1, res, device=dev)
    v, u = torch.meshgrid(-g, g, indexing="ij")  # image rows go down, y up
    t = (torch.arange(n_samples, device=dev) + torch.rand(n_samples, generator=generator).to(dev)) / n_samples
    z = (1.0 - 2.0 * t).expand(b, res * res, n_samples)  # from the camera (z = +1) into the scene
    delta = torch.full_like(z, 2.0 / n_samples)
    uv = torch.stack([u, v], -1).reshape(1, -1, 1, 2).expand(b, -1, -1, -1)  # (B, R², 1, 2)
    if n_fine > 0:
        z, delta = _fine_depths(model, planes, rot, uv, z, n_fine, generator)
    n = z.shape[-1]
    pts = torch.cat([uv.expand(-1, -1, n, -1), z[..., None]], -1).reshape(b, -1, 3)
    x = (pts @ rot).requires_grad_(True)  # camera → canonical: x_c = R^T x_cam (rows: x_cam R)
    f = model.sdf(x, planes)
    (grad,) = torch.autograd.grad(f, x, torch.ones_like(f), create_graph=True)
    n_cam = F.normalize(grad @ rot.transpose(1, 2), dim=-1)  # back to the camera frame
    sigma = laplace_density(f, beta).view(b, res * res, n)
    alpha = 1 - torch.exp(-sigma * delta)
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[..., :1]), 1 - alpha[..., :-1] + 1e-7], -1), -1)
    w = (alpha * trans)[..., None]
    img = (w * n_cam.view(b, res * res, n, 3)).sum(2)
    return img.view(b, res, res, 3).permute(0, 3, 1, 2)


@torch.no_grad()
def _fine_depths(model: NeuralHead, planes, rot, uv, z, n_fine: int, generator) -> tuple[Tensor, Tensor]:
    """Depths (B, R², n_fine) in a band around each ray's first sign change of the coarse samples
    ``z`` (rays that never cross: around their closest approach), and the sample spacing."""
    b, rays, s = z.shape
    pts = torch.cat([uv.expand(-1, -1, s, -1), z[..., None]], -1).reshape(b, -1, 3)
    f = model.sdf(pts @ rot, planes).view(b, rays, s)
    inside = f < 0
    first = torch.where(inside.any(-1), inside.float().argmax(-1), f.argmin(-1))
    hit = z.gather(-1, first[..., None])  # (B, R², 1): the first sample inside (z falls along the ray)
    hit = hit + 1.0 / s  # half a coarse step (2/s) back towards the camera: the crossing lies before it
    t = (torch.arange(n_fine, device=z.device) + torch.rand(n_fine, generator=generator).to(z.device)) / n_fine
    zf = hit + FINE_BAND * (1.0 - 2.0 * t)
    return zf, torch.full_like(zf, 2.0 * FINE_BAND / n_fine)


def splat_normals(points: Tensor, normals: Tensor, rot: Tensor, res: int) -> Tensor:
    """Target normal maps: per pixel the camera-frame normal of the sample nearest the camera."""
    b = points.shape[0]
    p = points @ rot.transpose(1, 2)  # canonical → camera
    n = normals @ rot.transpose(1, 2)
    ij = ((1 - p[..., 1]) / 2 * (res - 1)).round().long().clamp(0, res - 1) * res + \
        ((p[..., 0] + 1) / 2 * (res - 1)).round().long().clamp(0, res - 1)
    out = torch.zeros(b, res * res, 3, device=points.device)
    for k in range(b):
        order = torch.argsort(p[k, :, 2])  # far to near: the nearest sample is written last
        out[k, ij[k, order]] = n[k, order]
    return out.view(b, res, res, 3).permute(0, 3, 1, 2)


class RenderBranch:
    """The discriminator, β and the 2-D losses. ``losses`` steps the discriminator (non-saturating
    loss + R1) and returns the generator's terms as tensors: the trainer adds the 3-D identity losses
    and steps the network and codes with the identity optimiser (one optimiser per parameter: two
    Adams stepping the same weights would each follow stale moments)."""

    def __init__(self, cfg: NeuralConfig, model: NeuralHead, device):
        self.cfg, self.model, self.device = cfg, model, device
        self.disc = Discriminator(cfg.render_res).to(device)
        self.log_beta = torch.tensor(math.log(0.02), device=device, requires_grad=True)
        self.opt = torch.optim.Adam([self.log_beta], lr=cfg.lr_model)
        # β1 = 0 (StyleGAN's choice): momentum in the discriminator makes the game oscillate.
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=cfg.lr_model, betas=(0.0, 0.99))

    def beta(self) -> Tensor:
        return self.log_beta.exp().clamp_min(1e-3)

    def losses(self, idx: Tensor, id_codes: Tensor, data: dict, gen: torch.Generator):
        """(generator terms as tensors, discriminator-side figures as floats) for one batch."""
        cfg = self.cfg
        b = len(idx)
        # Several views per step: every identity at its own yaw within ±30°.
        angles = (torch.rand(b, generator=gen) * 2 - 1) * math.radians(30)
        rot = yaw_matrix(angles).to(self.device)
        i = idx.to(self.device)
        real = splat_normals(data["surface"][i], data["normals"][i], rot, cfg.render_res)
        codes = id_codes.detach()
        # Fake codes from a Gaussian fit of the training codes: the adversarial term regularises the
        # latent space around the training codes, where fits to unseen heads land.
        mean, std = codes.mean(0), codes.std(0) if len(codes) > 1 else torch.ones_like(codes[0])
        z_rand = mean + std * torch.randn(b, codes.shape[1], generator=gen).to(self.device)
        imgs = render_normals(self.model, self.model.planes(torch.cat([id_codes[i], z_rand])), rot.repeat(2, 1, 1),
                              cfg.render_res, cfg.render_samples, self.beta(), gen, cfg.render_fine)
        rec, fake = imgs[:b], imgs[b:]
        d_terms = self._step_discriminator(real, fake.detach())
        self.disc.requires_grad_(False)  # the generator's pass leaves no gradients on D
        try:
            adv = F.softplus(-self.disc(fake)).mean()
        finally:
            self.disc.requires_grad_(True)
        return {"render_l1": (rec - real).abs().mean(), "gan_g": adv}, d_terms

    def _step_discriminator(self, real: Tensor, fake: Tensor) -> dict[str, float]:
        # fp32 even under the trainer's CUDA autocast: this backward has no gradient scaler.
        with torch.autocast(real.device.type, enabled=False):
            real_d = real.detach().float().requires_grad_(True)
            d_real = self.disc(real_d)
            d_fake = self.disc(fake.float())
            (g_real,) = torch.autograd.grad(d_real.sum(), real_d, create_graph=True)
            r1 = g_real.pow(2).flatten(1).sum(1).mean()
            loss_d = F.softplus(d_fake).mean() + F.softplus(-d_real).mean() + self.cfg.r1_gamma / 2 * r1
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        return {"gan_d": float(loss_d.detach()), "r1": float(r1.detach()), "d_real": float(d_real.mean().detach()),
                "d_fake": float(d_fake.mean().detach()), "beta": float(self.beta().detach())}

    def state_dict(self) -> dict:
        return {"disc": self.disc.state_dict(), "log_beta": self.log_beta.detach().cpu(),
                "opt": self.opt.state_dict(), "opt_d": self.opt_d.state_dict()}

    def load_state_dict(self, s: dict) -> None:
        self.disc.load_state_dict(s["disc"])
        with torch.no_grad():
            self.log_beta.copy_(s["log_beta"])
        if len(s["opt"]["param_groups"]) == len(self.opt.param_groups):
            self.opt.load_state_dict(s["opt"])  # (states before the 3-D losses joined the stage: β's moments lost)
        self.opt_d.load_state_dict(s["opt_d"])
