"""The one Gaussian blur of the UV maps, normalised by a weight (a masked blur), in torch so that
the shape from shading can blur its own prediction under autograd exactly as it blurred the photo.

A masked blur averages only where the weight is: blur(x·w) / blur(w). Texels outside the face,
unseen or untrusted ones then neither pull the average towards zero nor leak across the mask's
edge. Separable, mirrored at the grid's border and truncated at 4 σ, as scipy.ndimage.gaussian_filter.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def gaussian_kernel(sigma: float, dtype=torch.float64) -> torch.Tensor:
    r = max(1, int(4 * sigma + 0.5))
    t = torch.arange(-r, r + 1, dtype=dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def blur(grid: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """(S, S) grid blurred by the 1-D ``kernel`` along both axes, mirrored about the border
    (scipy.ndimage's "reflect": the edge texel repeats)."""
    r = len(kernel) // 2
    g = grid
    for axis in (0, 1):
        g = _symmetric_pad(g, r, axis)
    g = F.conv2d(g[None, None], kernel.view(1, 1, 1, -1))
    g = F.conv2d(g, kernel.view(1, 1, -1, 1))
    return g[0, 0]


def _symmetric_pad(g: torch.Tensor, r: int, axis: int) -> torch.Tensor:
    n = g.shape[axis]
    while r > 0:  # a pad wider than the grid mirrors again, as scipy does
        k = min(r, n)
        g = torch.cat([g.narrow(axis, 0, k).flip(axis), g, g.narrow(axis, g.shape[axis] - k, k).flip(axis)], axis)
        r -= k
        n = g.shape[axis]
    return g


def masked_blur_grid(values: np.ndarray, weight: np.ndarray, sigma: float) -> np.ndarray:
    """(S, S) weighted Gaussian average of ``values`` (S, S) under ``weight`` (S, S); where the blurred
    weight vanishes, 0."""
    if sigma <= 0:
        return np.where(weight > 0, values, 0.0)
    k = gaussian_kernel(sigma)
    v, w = torch.as_tensor(values, dtype=torch.float64), torch.as_tensor(weight, dtype=torch.float64)
    with torch.no_grad():
        num, den = blur(v * w, k), blur(w, k)
    return np.where(den.numpy() > 1e-9, (num / den.clamp_min(1e-9)).numpy(), 0.0)
