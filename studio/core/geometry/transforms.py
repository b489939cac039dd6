"""Rotations and similarity transforms: the one copy of each, for numpy and torch callers.

* ``similarity_from_covariance`` — the closed form of Umeyama (1991): rotation and scale from the
  weighted cross-covariance of two centred point sets, for one pair or a batch (the fitters align
  one scan; model building aligns hundreds at once with the same formula);
* ``axis_angle_to_matrix`` — exp([r]×) in torch, differentiable (photo and neural fits).
"""

from __future__ import annotations

import numpy as np


def similarity_from_covariance(cov: np.ndarray, var: np.ndarray, with_scale: bool = True):
    """Rotation(s) R and scale(s) s maximising tr(Rᵀ·cov) for cov = Σ w·(dst − μ_d)(src − μ_s)ᵀ.

    ``cov`` (3, 3) or (b, 3, 3); ``var`` the weighted mean square radius of the centred source(s).
    The sign fix on the smallest singular direction keeps det R = +1: a reflection would mirror a
    face, which is a different face, not the same one in another pose. Returns (s, R) with the
    shapes of ``var`` and ``cov``."""
    cov = np.asarray(cov, float)
    var = np.asarray(var, float)
    if cov.shape[-2:] != (3, 3) or var.shape != cov.shape[:-2]:
        raise ValueError(f"similarity_from_covariance: cov {cov.shape} and var {var.shape} disagree")
    u, d, vt = np.linalg.svd(cov)
    sign = np.ones_like(d)
    sign[..., 2] = np.where(np.linalg.det(u @ vt) < 0, -1.0, 1.0)
    r = u @ (sign[..., :, None] * vt)
    s = np.ones_like(var)
    if with_scale:
        ok = var > 0
        s = np.where(ok, (d * sign).sum(axis=-1) / np.where(ok, var, 1.0), 1.0)
    return s, r


def axis_angle_to_matrix(r):
    """The rotation exp([r]×) of an axis-angle vector, in torch, so fits differentiate through the
    pose (numpy code uses scipy's ``Rotation.from_rotvec``). The matrix exponential of the skew
    matrix is exact and smooth at r = 0; Rodrigues' formula needs an epsilon there, which bent the
    neural fit's pose steps enough to move its surface RMS by up to 0.05 mm."""
    import torch

    zero = torch.zeros((), dtype=r.dtype, device=r.device)
    skew = torch.stack([torch.stack([zero, -r[2], r[1]]), torch.stack([r[2], zero, -r[0]]),
                        torch.stack([-r[1], r[0], zero])])
    return torch.linalg.matrix_exp(skew)
