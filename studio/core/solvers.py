"""The one bounded least-squares solver: the MAP steps of the scan and photo fitters.

Both fitters' steps are convex quadratics in a few hundred unknowns with box constraints (the
blendshape weights live in [0, 1], the shape coefficients within the slider range, the pose is
free): minimise ½xᵀHx − gᵀx subject to lo ≤ x ≤ hi, with H positive definite thanks to the
prior rows. A primal active-set method solves it exactly in a few dozen Cholesky solves
(milliseconds; scipy's BVLS is far slower). The scan fitter once used a copy that stopped after 12
passes and clipped, which is not the optimum when many weights touch their bounds.
"""

from __future__ import annotations

import numpy as np


def bounded_quadratic(h: np.ndarray, g: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """argmin ½xᵀHx − gᵀx subject to lo ≤ x ≤ hi (H symmetric positive definite; bounds may be ±inf).

    From the feasible start x = clip(0, lo, hi): solve for the free unknowns; if that leaves the
    box, step to the first bound hit and fix that unknown; once inside, release the fixed unknown
    whose gradient points most into the box, until none does (the KKT point)."""
    from scipy.linalg import cho_factor, cho_solve

    h, g = np.asarray(h, float), np.asarray(g, float)
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    n = len(g)
    if h.shape != (n, n) or lo.shape != (n,) or hi.shape != (n,):
        raise ValueError(f"bounded_quadratic: H {h.shape}, g {g.shape}, bounds {lo.shape}/{hi.shape} disagree")
    if np.any(lo > hi):
        raise ValueError("bounded_quadratic: a lower bound lies above its upper bound")
    # Jacobi scaling: pose and coefficient columns differ by orders of magnitude
    d = 1.0 / np.sqrt(np.maximum(np.diag(h), 1e-300))
    bounds = lo, hi
    h, g, lo, hi = h * d[:, None] * d[None, :], g * d, lo / d, hi / d
    x = np.clip(np.zeros(n), lo, hi)
    fixed = (x == lo) & (lo == hi)  # a zero-width box is fixed from the start
    for _ in range(4 * n + 10):
        free = ~fixed
        z = x.copy()
        if free.any():
            rhs = g[free] - h[np.ix_(free, fixed)] @ x[fixed]
            z[free] = cho_solve(cho_factor(h[np.ix_(free, free)]), rhs)
        out = free & ((z < lo) | (z > hi))
        if out.any():
            step = z - x  # the largest step along x → z that stays in the box
            with np.errstate(divide="ignore", invalid="ignore"):
                room = np.where(step < 0, (lo - x) / step, (hi - x) / step)
            room = np.where(out, room, np.inf)
            j = int(np.argmin(room))
            x = x + max(0.0, min(1.0, room[j])) * step
            x[j] = lo[j] if step[j] < 0 else hi[j]
            fixed[j] = True
            continue
        x = z
        grad = h @ x - g  # the descent direction is −grad
        inward = np.where(x <= lo, -grad, np.where(x >= hi, grad, 0.0))
        inward[~fixed] = 0.0
        j = int(np.argmax(inward))
        if inward[j] <= 1e-12 * (1.0 + np.abs(g).max()):
            break
        fixed[j] = False
    return np.clip(x * d, *bounds)  # clipped after unscaling: (hi / d) · d can round above hi


def bounded_least_squares(m: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """argmin |Mx − b|² subject to lo ≤ x ≤ hi (M of full column rank)."""
    m, b = np.asarray(m, float), np.asarray(b, float)
    return bounded_quadratic(m.T @ m, m.T @ b, lo, hi)
