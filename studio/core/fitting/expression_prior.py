"""What makes blendshape weights plausible, and where a scanner's surface cannot be trusted.

Blendshape weights live in a box ([0, 1]); the box says nothing about which weights go together.
A neutral scan fitted under a box alone saturates weights to soak up whatever the identity
components cannot explain (eyeBlink 1.0 on open eyes, eyeWide and eyeSquint both at 1.0).
Three terms make the MAP estimate prefer what faces do:

* sparsity — an L1 term λ₁·Σwⱼ (weights are ≥ 0, so it is linear): an expression is a few
  active muscles, not all of them a little;
* a Gaussian shrinkage wⱼ²/σ_e² toward neutral;
* exclusion — pairs that oppose each other (core/expressions.py: eyeWide/eyeSquint, …) pay
  μ·wₐ·w_b, linearised at the current estimate each iteration (the weight of one raises the
  price of the other).

``unreliable_vertices`` marks the model's eyes, inner lips and nostrils: scanners capture them
badly (wet, dark, occluded), so there they weigh little and cannot drive the expression.
"""

from __future__ import annotations

import numpy as np


def linear_terms(w: np.ndarray, pairs: np.ndarray, l1: float, exclusion: float) -> np.ndarray:
    """Gradient of λ₁Σw + μΣ wₐw_b at ``w`` (the price per unit of each weight this iteration)."""
    g = np.full(len(w), float(l1))
    if len(pairs):
        np.add.at(g, pairs[:, 0], exclusion * np.clip(w[pairs[:, 1]], 0, None))
        np.add.at(g, pairs[:, 1], exclusion * np.clip(w[pairs[:, 0]], 0, None))
    return g


# iBUG-68 ids: eye contours, inner lips, nostrils — and the radius (× inter-ocular distance) of each zone.
UNRELIABLE_ZONES = ((tuple(range(36, 48)), 0.12), (tuple(range(60, 68)), 0.06), ((31, 32, 33, 34, 35), 0.05))


def unreliable_vertices(vertices: np.ndarray, ibug68: np.ndarray | None) -> np.ndarray:
    """(n,) bool: vertices within the eye, inner-mouth and nostril zones around the landmarks."""
    out = np.zeros(len(vertices), bool)
    if ibug68 is None or len(ibug68) != 68:
        return out
    from scipy.spatial import cKDTree

    iod = float(np.linalg.norm(ibug68[36] - ibug68[45]))
    tree = cKDTree(vertices)
    for ids, r in UNRELIABLE_ZONES:
        for i in ids:
            out[tree.query_ball_point(ibug68[i], r * iod)] = True
    return out
