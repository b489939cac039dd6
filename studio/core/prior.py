"""Priors over parameter groups, written once for every ``FaceModel``.

p(α) ∝ exp(−½ Σ (α_i/σ_i)²) for normal groups, uniform on [lower, upper] for box groups.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np
from scipy import stats

from studio.core import expressions
from studio.core.errors import StudioError
from studio.core.facemodel import ParamGroup, Params


def zeros(groups: Iterable[ParamGroup]) -> Params:
    return {g.name: np.zeros(g.size) for g in groups}


def check_params(groups: Iterable[ParamGroup], params: Mapping[str, np.ndarray], complete: bool = False) -> Params:
    """Return a full, validated copy of ``params`` (missing groups filled with zeros unless ``complete``)."""
    groups = list(groups)
    known = {g.name: g for g in groups}
    for name in params:
        if name not in known:
            raise StudioError(f"unknown parameter group '{name}' (model has: {', '.join(known)})")
    out: Params = {}
    for g in groups:
        if g.name not in params:
            if complete:
                raise StudioError(f"parameter group '{g.name}' is missing")
            out[g.name] = np.zeros(g.size)
            continue
        try:
            v = np.asarray(params[g.name], dtype=float).reshape(-1)
        except (TypeError, ValueError):
            raise StudioError(f"parameter group '{g.name}' is not a list of numbers") from None
        if v.size != g.size:
            raise StudioError(f"parameter group '{g.name}' has {v.size} values, the model expects {g.size}")
        if not np.all(np.isfinite(v)):
            raise StudioError(f"parameter group '{g.name}' contains NaN or infinite values")
        out[g.name] = v.copy()
    return out


def log_prior(groups: Iterable[ParamGroup], params: Mapping[str, np.ndarray]) -> float:
    """Unnormalised log prior: −½ Σ (α/σ)² over normal groups; −inf if a box group leaves its box."""
    total = 0.0
    for g in groups:
        v = np.asarray(params[g.name], float)
        if g.prior == "normal":
            total -= 0.5 * float(np.sum((v / g.sigma) ** 2))
        elif np.any(v < g.lower - 1e-12) or np.any(v > g.upper + 1e-12):
            return float("-inf")
    return total


def mahalanobis(groups: Iterable[ParamGroup], params: Mapping[str, np.ndarray]) -> tuple[float, float]:
    """Mahalanobis distance over normal groups and its χ² percentile (0–100).

    The percentile says which fraction of faces drawn from the prior lie closer to the mean.
    """
    sq, dof = _squared_distance(groups, params)
    if dof == 0:
        return 0.0, 0.0
    return float(np.sqrt(sq)), float(100.0 * stats.chi2.cdf(sq, dof))


def _squared_distance(groups: Iterable[ParamGroup], params: Mapping[str, np.ndarray]) -> tuple[float, int]:
    """Σ (α/σ)² over the normal groups, and how many components that sums."""
    sq, dof = 0.0, 0
    for g in groups:
        if g.prior == "normal":
            sq += float(np.sum((np.asarray(params[g.name], float) / g.sigma) ** 2))
            dof += g.size
    return sq, dof


def sample(groups: Iterable[ParamGroup], rng: np.random.Generator, scale: float = 1.0,
           only: Iterable[str] | None = None) -> Params:
    """Draw from the prior: normal groups with σ·scale, box groups uniform in their box.

    By default only normal groups are drawn; name groups in ``only`` to choose. A box group (the
    blendshapes) drawn gets a plausible expression — a few blendshapes at moderate weights, never
    two that oppose each other (core/expressions.py): every blendshape at a uniform random weight
    at once made a self-intersecting, grotesque face. Groups not drawn stay at zero.
    """
    groups = list(groups)
    only = {g.name for g in groups if g.prior == "normal"} if only is None else set(only)
    out: Params = {}
    for g in groups:
        if g.name not in only:
            out[g.name] = np.zeros(g.size)
        elif g.prior == "normal":
            out[g.name] = rng.standard_normal(g.size) * g.sigma * scale
        else:
            out[g.name] = expressions.plausible_random(g.names, g.lower, g.upper, rng)
    return out


def readout(groups: Iterable[ParamGroup], params: Mapping[str, np.ndarray]) -> dict:
    """What a person can read about a face's plausibility (the window's one-line readout).

    * ``typical_percent`` — the share of faces drawn from the prior that lie further from the mean
      face than this one (the χ² upper tail of the squared Mahalanobis distance): 100 % at the
      mean, about 50 % for an ordinary random face, near 0 only for a face far out in many
      directions at once;
    * ``extreme`` — the single most unusual component (name, value in σ, "1 in N" faces at least as
      far along it, two-sided): the χ² tail misses one slider pushed far (PC1 at 2.5σ is 1 in 81);
    * ``expression`` — blendshapes on (above 0.05) and opposed pairs both on (what no face does).
    """
    groups = list(groups)
    sq, dof = _squared_distance(groups, params)
    extreme, active, opposed = None, 0, []
    for g in groups:
        v = np.asarray(params[g.name], float)
        if g.prior == "normal" and g.size:
            z = v / np.broadcast_to(np.asarray(g.sigma, float), (g.size,))
            i = int(np.argmax(np.abs(z)))
            if extreme is None or abs(z[i]) > abs(extreme[1]):
                extreme = (g.names[i], float(z[i]))
        elif g.prior == "box" and g.affects == "position":
            active += int(np.sum(v > 0.05))
            opposed += expressions.opposed_both_on(g.names, v, threshold=0.3)
    out: dict[str, Any] = {"typical_percent": float(100.0 * stats.chi2.sf(sq, dof)) if dof else 100.0,
           "extreme": None, "expression_active": active, "expression_opposed": opposed}
    if extreme is not None and abs(extreme[1]) >= 1.0:
        tail = float(2 * stats.norm.sf(abs(extreme[1])))
        out["extreme"] = {"name": extreme[0], "sigma": extreme[1], "one_in": 1.0 / max(tail, 1e-300)}
    return out
