"""Loss terms of the neural head model (thesis Table 4.1 for identity, §4.3.3 for expression).

Each function returns a scalar tensor; the training loop weights and sums them (weights in
``NeuralConfig.w_*``) and logs every term separately.
"""

from __future__ import annotations

import torch
from torch import Tensor


def gradient(f: Tensor, x: Tensor) -> Tensor:
    """∇_x f for a batch of points, keeping the graph (the eikonal/normal losses differentiate it)."""
    (g,) = torch.autograd.grad(f, x, torch.ones_like(f), create_graph=True)
    return g


def surface_sdf(f_surface: Tensor) -> Tensor:
    """|f| on surface points: the zero level set passes through the data."""
    return f_surface.abs().mean()


def surface_normal(grad_surface: Tensor, normals: Tensor) -> Tensor:
    """1 − cos(∇f, n) on surface points."""
    return (1.0 - torch.nn.functional.cosine_similarity(grad_surface, normals, dim=-1)).mean()


def eikonal(grad: Tensor) -> Tensor:
    """(|∇f| − 1)²: f is a distance function."""
    return (grad.norm(dim=-1) - 1.0).pow(2).mean()


def non_surface(f_free: Tensor, alpha: float = 100.0) -> Tensor:
    """exp(−α|f|) on points off the surface: no spurious zero crossings away from the data."""
    return torch.exp(-alpha * f_free.abs()).mean()


def sdf_supervision(f: Tensor, target: Tensor) -> Tensor:
    """Explicit L1 supervision where the signed distance is known (near-surface and ball samples)."""
    return (f - target).abs().mean()


def tv(planes: Tensor) -> Tensor:
    """Total variation of the tri-planes (B, 3, C, R, R): smooth feature planes generalise better."""
    dx = (planes[..., 1:, :] - planes[..., :-1, :]).abs().mean()
    dy = (planes[..., :, 1:] - planes[..., :, :-1]).abs().mean()
    return dx + dy


def plane_l2(planes: Tensor) -> Tensor:
    return planes.pow(2).mean()


def latent_l2(z: Tensor) -> Tensor:
    """‖z‖² per code (the Gaussian latent prior of the auto-decoder), averaged over the batch."""
    return z.pow(2).sum(dim=-1).mean()


def correspondence(x: Tensor, delta: Tensor, x_posed: Tensor) -> Tensor:
    """‖x + F_ex(x) − x_posed‖₂ over corresponding points."""
    return (x + delta - x_posed).norm(dim=-1).mean()


def deformation_penalty(delta: Tensor) -> Tensor:
    """‖Δ‖₂ where no correspondence says anything moves (far from the surface, neutral code)."""
    return delta.norm(dim=-1).mean()
