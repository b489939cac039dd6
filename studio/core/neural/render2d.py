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

Off in the shipped model (``render_steps = 0``): on two CPU cores a 64² render with 32 samples is
~130k SDF queries with second-order gradients, so an hour buys few steps; the 3D losses already pin
the surface. With a GPU, set ``render_steps`` and a ``stage_time_fractions[2]`` share.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from studio.core.neural.config import NeuralConfig


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


def render_normals(model, planes: Tensor, rot: Tensor, res: int, n_samples: int, beta: Tensor,
                   generator: torch.Generator | None = None) -> Tensor:
    """Volume-rendered normal maps (B, 3, res, res), in the camera frame, differentiable."""
    b = planes.shape[0]
    dev = planes.device
    g = torch.linspace(-1, 1, res, device=dev)
    v, u = torch.meshgrid(-g, g, indexing="ij")  # image rows go down, y up
    t = (torch.arange(n_samples, device=dev) + torch.rand(n_samples, generator=generator).to(dev)) / n_samples
    z = 1.0 - 2.0 * t  # from the camera (z = +1) into the scene
    delta = 2.0 / n_samples
    pts = torch.stack(torch.broadcast_tensors(u[..., None], v[..., None], z), -1)  # (R, R, S, 3) camera frame
    pts = pts.reshape(1, -1, 3).expand(b, -1, -1)
    x = (pts @ rot).requires_grad_(True)  # camera → canonical: x_c = R^T x_cam (rows: x_cam R)
    f = model.sdf(x, planes)
    (grad,) = torch.autograd.grad(f, x, torch.ones_like(f), create_graph=True)
    n_cam = F.normalize(grad @ rot.transpose(1, 2), dim=-1)  # back to the camera frame
    sigma = laplace_density(f, beta).view(b, res * res, n_samples)
    alpha = 1 - torch.exp(-sigma * delta)
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[..., :1]), 1 - alpha[..., :-1] + 1e-7], -1), -1)
    w = (alpha * trans)[..., None]
    img = (w * n_cam.view(b, res * res, n_samples, 3)).sum(2)
    return img.view(b, res, res, 3).permute(0, 3, 1, 2)


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
    def __init__(self, cfg: NeuralConfig, model, device):
        self.cfg, self.model, self.device = cfg, model, device
        self.disc = Discriminator(cfg.render_res).to(device)
        self.log_beta = torch.tensor(math.log(0.02), device=device, requires_grad=True)
        self.opt = torch.optim.Adam([{"params": model.generator.parameters(), "lr": cfg.lr_model * 0.3},
                                     {"params": model.decoder.parameters(), "lr": cfg.lr_model * 0.3},
                                     {"params": [self.log_beta], "lr": cfg.lr_model}])
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=cfg.lr_model, betas=(0.0, 0.99))

    def beta(self) -> Tensor:
        return self.log_beta.exp().clamp_min(1e-3)

    def step(self, idx: Tensor, id_codes: Tensor, data: dict, gen: torch.Generator):
        cfg = self.cfg
        b = len(idx)
        angles = (torch.rand(b, generator=gen) * 2 - 1) * math.radians(30)
        rot = yaw_matrix(angles).to(self.device)
        real = splat_normals(data["surface"][idx.to(self.device)], data["normals"][idx.to(self.device)], rot,
                             cfg.render_res)
        codes = id_codes.detach()
        z = codes[idx.to(self.device)]
        # fake codes: a Gaussian fit of the training codes
        mean, std = codes.mean(0), codes.std(0) if len(codes) > 1 else torch.ones_like(codes[0])
        z_rand = mean + std * torch.randn(b, codes.shape[1], generator=gen).to(self.device)
        imgs = render_normals(self.model, self.model.planes(torch.cat([z, z_rand])), rot.repeat(2, 1, 1),
                              cfg.render_res, cfg.render_samples, self.beta(), gen)
        rec, fake = imgs[:b], imgs[b:]
        # discriminator: non-saturating loss + R1 on real images
        real_d = real.detach().requires_grad_(True)
        d_real = self.disc(real_d)
        d_fake = self.disc(fake.detach())
        (g_real,) = torch.autograd.grad(d_real.sum(), real_d, create_graph=True)
        r1 = g_real.pow(2).flatten(1).sum(1).mean()
        loss_d = F.softplus(d_fake).mean() + F.softplus(-d_real).mean() + cfg.r1_gamma / 2 * r1
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        # generator (the SDF model): L1 to the target maps + fool the discriminator
        l1 = (rec - real).abs().mean()
        adv = F.softplus(-self.disc(fake)).mean()
        total = cfg.w_render_normal * l1 + cfg.w_gan * adv
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        self.opt.step()
        terms = {"render_l1": float(l1.detach()), "gan_g": float(adv.detach()), "gan_d": float(loss_d.detach()),
                 "r1": float(r1.detach()), "beta": float(self.beta().detach())}
        return terms, float(total.detach())

    def state_dict(self) -> dict:
        return {"disc": self.disc.state_dict(), "log_beta": self.log_beta.detach().cpu(),
                "opt": self.opt.state_dict(), "opt_d": self.opt_d.state_dict()}

    def load_state_dict(self, s: dict) -> None:
        self.disc.load_state_dict(s["disc"])
        with torch.no_grad():
            self.log_beta.copy_(s["log_beta"])
        self.opt.load_state_dict(s["opt"])
        self.opt_d.load_state_dict(s["opt_d"])
