"""The one robust scale: how far residuals typically lie from zero, unmoved by outliers."""

from __future__ import annotations

import numpy as np


def robust_scale(residuals: np.ndarray) -> float:
    """σ of residuals about zero from their median absolute value (scaled to match a normal σ).

    About zero, not about the median: fit residuals are zero-mean by construction, and a scan
    whose residuals are all shifted one way (a wrong unit, a bad pose) should show a large σ."""
    from scipy.stats import median_abs_deviation

    r = np.asarray(residuals, float).ravel()
    if r.size == 0:
        return float("nan")
    return float(median_abs_deviation(r, center=lambda x, axis=0: 0.0, scale="normal"))
