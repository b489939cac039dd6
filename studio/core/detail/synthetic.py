"""Known displacement maps for the detail bench and tests: procedural wrinkles whose depth follows
the expression, placed on the model's face by its iBUG-68 landmarks (mean face).

- forehead lines, with browInnerUp: 3-4 horizontal grooves above the brows, gently curved;
- crow's feet, with eyeSquint: 4 grooves fanning out from each outer eye corner;
- nasolabial folds, with mouthSmile: one broad groove from each nostril wing past the mouth corner;
- a static part: faint band-passed bumps all over the face (the person's own skin relief).

Depth is in model units, negative into the skin; each family's depth is the driving blendshape's
weight (left and right separately) times its pattern, so d(β) = static + Σ β_k · pattern_k.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from studio.core.detail.uv_raster import UVRaster
from studio.core.pca import PCAModel

FAMILIES = {"forehead": "browInnerUp", "crows_feet": "eyeSquint", "nasolabial": "mouthSmile"}


@dataclass
class TrueDetail:
    static: np.ndarray  # (S, S)
    patterns: dict  # blendshape name (e.g. "browInnerUp_L") → (S, S) depth at weight 1
    names: tuple  # the model's expression names

    def at(self, expression: np.ndarray) -> np.ndarray:
        d = self.static.copy()
        for name, pat in self.patterns.items():
            d += float(expression[self.names.index(name)]) * pat
        return d


def _groove(dist, width):
    return np.exp(-0.5 * (dist / width) ** 2)


def wrinkle_detail(model: PCAModel, raster: UVRaster, rng: np.random.Generator, depth_mm: float = 0.6) -> TrueDetail:
    """Random wrinkle patterns (spacing, angles, depths vary with ``rng``) on ``model``'s face."""
    from studio.core.facemodel import UNIT_TO_MM

    mm = 1.0 / UNIT_TO_MM[model.meta.unit]  # one millimetre in model units
    mean = np.asarray(model.mean, float)
    lm = mean[np.asarray(model.meta.landmarks["ibug68"])]
    p = raster.blend(mean, model.faces)  # texel positions on the mean face
    m = raster.mask
    names = tuple(next(g for g in model.groups if g.name == "expression").names)
    sides = _sides(model, names)
    pats: dict[str, np.ndarray] = {}

    def put(name, values):
        grid = pats.setdefault(name, np.zeros(m.shape))
        grid[m] += values

    A = depth_mm * mm * rng.uniform(0.8, 1.2)
    # forehead: grooves at heights above the brow line, across the forehead, curving down at the sides
    brow_top = lm[17:27, 1].max()
    spacing = rng.uniform(7, 9) * mm
    for k in range(rng.integers(3, 5)):
        y = brow_top + (9 * mm) + k * spacing + 0.15 * p[:, 0] ** 2 / (60 * mm)
        band = _groove(p[:, 1] - y, rng.uniform(1.0, 1.4) * mm) * _groove(p[:, 0], 28 * mm)
        front = p[:, 2] > lm[27, 2] - 40 * mm
        for side, name in sides["browInnerUp"].items():
            put(name, -A * band * front * _side(p, side, lm, 12 * mm))
    # crow's feet: rays from the outer eye corners (iBUG 36 and 45)
    for corner, outward in ((lm[36], np.sign(lm[36, 0] - lm[27, 0])), (lm[45], np.sign(lm[45, 0] - lm[27, 0]))):
        name = sides["eyeSquint"][int(outward)]
        for ang in np.deg2rad(rng.uniform(-40, 40, 4)):
            direction = np.array([outward * np.cos(ang), np.sin(ang)])
            rel = p[:, :2] - (corner[:2] + direction * 4 * mm)
            along = rel @ direction
            across = rel @ np.array([-direction[1], direction[0]])
            seg = (along > 0) & (along < rng.uniform(14, 20) * mm)
            put(name, -0.7 * A * seg * _groove(across, 0.9 * mm) * np.clip(along / (3 * mm), 0, 1)
                * (p[:, 2] > corner[2] - 25 * mm))
    # nasolabial folds: from the nostril wing (31 / 35) to beside the mouth corner (48 / 54)
    for top, bottom in ((lm[31], lm[48]), (lm[35], lm[54])):
        outward = np.sign(top[0] - lm[27, 0])
        a = top[:2] + np.array([outward * 4 * mm, 2 * mm])
        b = bottom[:2] + np.array([outward * 6 * mm, -4 * mm])
        axis = (b - a) / np.linalg.norm(b - a)
        rel = p[:, :2] - a
        t = np.clip(rel @ axis, 0, np.linalg.norm(b - a))
        dist = np.linalg.norm(rel - t[:, None] * axis, axis=1)
        put(sides["mouthSmile"][int(outward)], -2.0 * A * _groove(dist, 1.5 * mm) * (p[:, 2] > top[2] - 30 * mm))
    static = np.zeros(m.shape)
    static[m] = _static_relief(p, rng, mm)
    return TrueDetail(static, pats, names)


def _side(p, side, lm, soft):
    """Weight of the texels on one side of the face's midline (a soft step across it)."""
    return 1.0 / (1.0 + np.exp(-side * (p[:, 0] - lm[27, 0]) / soft))


def _sides(model: PCAModel, names) -> dict:
    """family blendshape → {+1: name of the one moving the +x side, -1: the −x side}."""
    basis = model.basis("expression")
    mean = np.asarray(model.mean, float)
    out = {}
    for stem in FAMILIES.values():
        pair = {}
        for suffix in ("_L", "_R"):
            i = names.index(stem + suffix)
            mag = np.linalg.norm(basis[i], axis=1)
            x = float((mag * mean[:, 0]).sum() / max(mag.sum(), 1e-12))
            pair[1 if x > 0 else -1] = stem + suffix
        out[stem] = pair
    return out


def _static_relief(p, rng, mm):
    """Faint bumps: a sum of random plane waves of 4-8 mm wavelength, 0.05 mm deep."""
    out = np.zeros(len(p))
    for _ in range(12):
        k = rng.normal(size=3)
        k *= 2 * np.pi / (rng.uniform(4, 8) * mm * np.linalg.norm(k))
        out += np.cos(p @ k + rng.uniform(0, 2 * np.pi))
    return out * 0.05 * mm / np.sqrt(6)
