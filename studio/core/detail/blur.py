"""The one Gaussian blur of the UV maps, normalised by a weight (a masked blur), in torch so that
the shape from shading can blur its own prediction under autograd exactly as it blurred the photo.

A masked blur averages only where the weight is: blur(x·w) / blur(w). Texels outside the face,
unseen or untrusted ones then neither pull the average towards zero nor leak across the mask's
edge. Mirrored at the grid's border and truncated at 4 σ, as scipy.ndimage.gaussian_filter; the
convolution runs as a product of Fourier transforms (the shape from shading blurs a 512² map about
a hundred times per photo: half the time of two 1-D convolutions at σ = 5 texels).
"""

from __future__ import annotations

import numpy as np
import torch


def gaussian_kernel(sigma: float, dtype=torch.float64) -> torch.Tensor:
    """The 1-D kernel, normalised, of radius round(4 σ)."""
    r = max(1, int(4 * sigma + 0.5))
    t = torch.arange(-r, r + 1, dtype=dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


class GaussianBlur:
    """Blurs (H, W) grids of one shape by one σ; the kernel's transform is computed once."""

    def __init__(self, sigma: float, shape: tuple[int, int], dtype=torch.float64):
        kernel = gaussian_kernel(sigma, dtype)
        self.r = len(kernel) // 2
        self.shape = (int(shape[0]), int(shape[1]))
        padded = (_fast_size(self.shape[0] + 2 * self.r), _fast_size(self.shape[1] + 2 * self.r))
        k2 = torch.zeros(padded, dtype=dtype)
        k2[:2 * self.r + 1, :2 * self.r + 1] = kernel[:, None] * kernel[None, :]
        self.spectrum = torch.fft.rfft2(k2)
        self.padded = padded

    def __call__(self, grid: torch.Tensor) -> torch.Tensor:
        if tuple(grid.shape) != self.shape:
            raise ValueError(f"GaussianBlur made for {self.shape} grids, given {tuple(grid.shape)}")
        p = _symmetric_pad(_symmetric_pad(grid, self.r, 0), self.r, 1)
        # circular convolution of the padded grid; its last H × W samples are the linear one's
        out = torch.fft.irfft2(torch.fft.rfft2(p, s=self.padded) * self.spectrum, s=self.padded)
        return out[2 * self.r:2 * self.r + self.shape[0], 2 * self.r:2 * self.r + self.shape[1]]


def _fast_size(n: int) -> int:
    """The smallest m ≥ n whose only prime factors are 2, 3 and 5 (the FFT is fast there)."""
    m = n
    while True:
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1


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
    weight vanishes, 0. Under a non-negative weight each average lies within the weighted values'
    range, as it must: the transform's round-off (about 1e-12 far from the data) would otherwise
    make the average of a square slightly negative and its square root NaN, and one NaN texel
    turns the whole map NaN."""
    if sigma <= 0:
        return np.where(weight > 0, values, 0.0)
    v, w = torch.as_tensor(values, dtype=torch.float64), torch.as_tensor(weight, dtype=torch.float64)
    blur = GaussianBlur(sigma, (int(v.shape[0]), int(v.shape[1])))
    with torch.no_grad():
        num, den = blur(v * w), blur(w)
    out = np.where(den.numpy() > 1e-9, (num / den.clamp_min(1e-9)).numpy(), 0.0)
    held = np.asarray(weight) > 0
    if held.any() and (np.asarray(weight) >= 0).all():
        seen = np.asarray(values, float)[held]
        out = np.clip(out, min(seen.min(), 0.0), max(seen.max(), 0.0))  # 0: where the weight vanishes
    return out
