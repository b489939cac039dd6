"""What each shape direction does, measured on the model itself: "PC1 · face height ↑, jaw width ↑".

A slider called PC7 says nothing. For a linear model with the 68 iBUG landmarks (ICT), every
direction is applied at +1σ to the mean face and a few anthropometric measures are taken before
and after (the distances an anthropologist would take between the landmarks, plus the head's
length front to back). The label names the two measures that it changes most, relative to their
variation across faces, with the direction of the change (a direction that carries 30 % of the
variation of nose length is a "nose length" direction, however small a nose is); the tooltip
lists those measures in mm per σ. Models without landmarks keep their plain names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence, cast

import numpy as np

from studio.core.facemodel import FaceModel, ParamGroup
from studio.core.model_cache import PerModel
from studio.core.pca import PCAModel

if TYPE_CHECKING:
    from studio.core.neural.facemodel import NeuralFaceModel

# name → (landmark ids of one end, landmark ids of the other end); an end is the mean of its ids
MEASURES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "face width": ((0,), (16,)),
    "face height": ((27,), (8,)),
    "jaw width": ((4,), (12,)),
    "nose length": ((27,), (33,)),
    "nose width": ((31,), (35,)),
    "lip thickness": ((51,), (57,)),
    "eye distance": ((36, 39), (42, 45)),
}
# What an expression moves (the neural head's expression directions are described with these)
EXPRESSION_MEASURES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "jaw drop": ((27,), (8,)),
    "mouth opening": ((50, 51, 52), (56, 57, 58)),  # outer lips: a closed mouth's inner lips coincide
    "mouth width": ((48,), (54,)),
    "brow height": ((17, 18, 19, 20, 21, 22, 23, 24, 25, 26), (37, 38, 43, 44)),
    "eye opening": ((37, 38, 43, 44), (40, 41, 46, 47)),
}
HEAD_LENGTH = "head length"  # front to back over the whole mesh
MIN_CHANGE = 0.002  # relative change per σ below which a measure is not named (0.2 %: a fraction of a mm)


@dataclass(frozen=True)
class DirectionLabel:
    name: str  # the model's own name (PC1)
    label: str  # "PC1 · face height ↑, jaw width ↑"
    changes: tuple[tuple[str, float, float], ...]  # (measure, mm per σ, relative per σ), largest first

    def tooltip(self, unit_mm: float = 1.0) -> str:
        if not self.changes:
            return f"{self.name}: changes none of the measured proportions by more than {100 * MIN_CHANGE:.1f} %"
        rows = [f"{m}: {d * unit_mm:+.1f} mm ({100 * r:+.1f} %) per +1σ" for m, d, r in self.changes]
        return f"{self.name} at +1σ:\n" + "\n".join(rows)


_cache = PerModel()


def labels(model: FaceModel, group_name: str) -> list[DirectionLabel]:
    """Labels for every direction of ``group_name`` (plain names when the model has no landmarks)."""
    hit = _cache.get(model, group_name)
    if hit is not None:
        return hit
    group = next(g for g in model.groups if g.name == group_name)
    lm = model.landmarks("ibug68")
    linear = model.as_linear()
    if model.kind == "neural":  # measured once, offline, and shipped beside the checkpoint
        from studio.core.neural.labels import shipped_labels

        out = shipped_labels(cast("NeuralFaceModel", model), group)
    elif lm is None or len(lm) != 68 or group.affects != "position" or linear is None:
        out = [DirectionLabel(n, n, ()) for n in group.names]
    else:
        out = _measure(linear, group, lm)
    _cache.put(model, out, group_name)
    return out


def _measures(points: np.ndarray, depth: np.ndarray,
              measures: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = MEASURES) -> np.ndarray:
    """(..., len(measures) + 1): the landmark distances and the head length for landmark sets
    ``points`` (..., 68, 3) and depth extents ``depth`` (...)."""
    cols = [np.linalg.norm(points[..., list(a), :].mean(-2) - points[..., list(b), :].mean(-2), axis=-1)
            for a, b in measures.values()]
    return np.stack(cols + [depth], -1)


def _measure(model: PCAModel, group: ParamGroup, lm: np.ndarray) -> list[DirectionLabel]:
    mean = np.asarray(model.mean, float)
    basis = np.asarray(model.basis(group.name), float).reshape(group.size, -1, 3)
    sigma = np.broadcast_to(np.asarray(group.sigma, float), (group.size,))
    step = basis * sigma[:, None, None]  # +1σ of each direction
    z = mean[:, 2]
    front, back = int(np.argmax(z)), int(np.argmin(z))  # the extreme points of the mean head
    depth0 = z[front] - z[back]
    depth1 = (z[front] + step[:, front, 2]) - (z[back] + step[:, back, 2])
    base = _measures(mean[lm], np.asarray(depth0))
    moved = _measures(mean[lm][None] + step[:, lm], depth1)
    delta = moved - base  # (k, measures): change per +1σ
    return described(group.names, list(MEASURES) + [HEAD_LENGTH], base, delta)


def described(direction_names: Sequence[str], names: list[str], base: np.ndarray,
              delta: np.ndarray) -> list[DirectionLabel]:
    """Labels from measured changes: ``base`` (m,) the measures on the mean face, ``delta`` (k, m)
    their change per +1σ of each direction (also used for the neural head's shipped table)."""
    base, delta = np.asarray(base, float), np.asarray(delta, float)
    # Each measure's variance over the prior is Σ_k Δ²: a direction is named by the measures whose
    # variation it carries the largest share of (relative change alone named the small measures,
    # lip thickness and nose width, for nearly every direction).
    share = delta ** 2 / np.maximum((delta ** 2).sum(0), 1e-30)
    out = []
    for k, name in enumerate(direction_names):
        rel = delta[k] / np.maximum(base, 1e-12)
        order = [i for i in np.argsort(-share[k]) if abs(rel[i]) >= MIN_CHANGE]
        changes = tuple((names[i], float(delta[k, i]), float(rel[i])) for i in order)
        words = [f"{names[i]} {'↑' if rel[i] > 0 else '↓'}" for i in order[:2]]
        if (np.all(rel > 0) or np.all(rel < 0)) and np.abs(rel).min() >= 0.4 * np.abs(rel).max() and words:
            # every proportion moves the same way by a similar share: the face grows or shrinks
            words = [f"size {'↑' if rel[0] > 0 else '↓'}", words[0]]
        top = ", ".join(words)
        label = f"{name} · {top}" if top else name
        out.append(DirectionLabel(name, label, changes))
    return out
