"""Fitting the neural head's identity code to a point cloud (thesis eq. 4.23).

    z* = argmin_z  (1/N) Σ_i |F_id(x_i, z)|  +  λ · (z − μ)ᵀ Σ⁻¹ (z − μ) / D

The points x_i lie on the surface, so the SDF should vanish there; the latent prior is the Gaussian
of the trained identity codes (mean μ, covariance Σ from the checkpoint; the thesis writes λ‖z‖² for
codes trained towards N(0, I) — this is the same prior in the codes' own metric, divided by D so λ
does not depend on the code size). Adam from z = μ, a random minibatch of points per step. The points
must already be in the model's canonical (normalised, neutral) frame; no rigid alignment here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from studio.core.errors import StudioError
from studio.core.progress import ProgressFn, report


@dataclass
class LatentFit:
    z_id: np.ndarray  # (D,) fitted identity code
    loss: list[float]  # data term per step (mean |sdf|, model units)
    mean_abs_sdf: float  # over all points at the end, model units


def _precision(cov: np.ndarray, ridge: float = 1e-6) -> np.ndarray:
    """Σ⁻¹ with a small ridge (a code covariance from a few hundred codes can be near-singular)."""
    cov = np.asarray(cov, np.float64)
    eps = ridge * float(np.trace(cov)) / len(cov)
    return np.linalg.inv(cov + eps * np.eye(len(cov)))


def fit_identity(net, points: np.ndarray, mean: np.ndarray, cov: np.ndarray, *, steps: int = 300,
                 lam: float = 1e-4, lr: float = 0.02, batch: int = 4096, seed: int = 0, device="cpu",
                 progress: ProgressFn | None = None) -> LatentFit:
    """Fit z_id to ``points`` (n, 3) in model units; ``net`` is a NeuralHead."""
    points = np.asarray(points, np.float32)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise StudioError(f"points to fit must be an (n, 3) array with n > 0, got shape {points.shape}")
    if steps < 1:
        raise StudioError("fitting needs at least one step")
    gen = torch.Generator().manual_seed(seed)
    x_all = torch.from_numpy(points).to(device)
    mu = torch.as_tensor(np.asarray(mean, np.float32), device=device)
    prec = torch.as_tensor(_precision(cov).astype(np.float32), device=device)
    z = mu.clone()[None].requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr * 0.05)
    for p in net.parameters():
        p.requires_grad_(False)
    history = []
    try:
        for step in range(steps):
            idx = torch.randint(len(points), (min(batch, len(points)),), generator=gen).to(device)
            planes = net.planes(z)
            data = net.sdf(x_all[idx][None], planes).abs().mean()
            d = z[0] - mu
            loss = data + lam * (d @ prec @ d) / len(d)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            history.append(float(data.detach()))
            if step % 10 == 0 or step == steps - 1:
                report(progress, (step + 1) / steps, f"latent fit {step + 1}/{steps}")
    finally:
        for p in net.parameters():
            p.requires_grad_(True)
    with torch.inference_mode():
        planes = net.planes(z.detach())
        err = torch.cat([net.sdf(x_all[a:a + 65536][None], planes)[0].abs()
                         for a in range(0, len(points), 65536)])
    return LatentFit(z.detach()[0].cpu().numpy().astype(np.float64), history, float(err.mean()))
