"""Lambertian shading under second-order spherical-harmonics light (Ramamoorthi & Hanrahan 2001).

Colour of a surface point = albedo ⊙ (Y(n) · L), with Y(n) the 9 real SH basis functions of the
unit normal (camera coordinates) and L a (9, 3) light: one 9-vector per colour channel. The
clamped-cosine convolution is folded into L, so L is the irradiance directly; ``ambient_light``
gives a plausible default (a uniform term plus a frontal key light).
"""

from __future__ import annotations

import numpy as np
import torch

from studio.core.pca import PCAModel

_C0, _C1, _C2, _C3, _C4 = 0.282095, 0.488603, 1.092548, 0.315392, 0.546274


def sh_basis(n):
    """(n, 9) SH basis of unit normals (n, 3); torch or numpy."""
    x, y, z = n[:, 0], n[:, 1], n[:, 2]
    lib = torch if isinstance(n, torch.Tensor) else np
    one = lib.ones_like(x)
    return lib.stack([_C0 * one, _C1 * y, _C1 * z, _C1 * x, _C2 * x * y, _C2 * y * z,
                      _C3 * (3 * z * z - 1), _C2 * x * z, _C4 * (x * x - y * y)], 1)


def shade(albedo, normals, light):
    """albedo (n, 3) ⊙ irradiance: Y(normals) (n, 9) @ light (9, 3)."""
    return albedo * (sh_basis(normals) @ light)


def ambient_light(ambient: float = 0.55, key: float = 0.5, direction=(0.3, 0.35, 1.0)) -> np.ndarray:
    """A (9, 3) white light: irradiance ``ambient + key·(1 + n·d)/2`` (a soft "wrapped" key light
    from ``direction``), which lies exactly in SH bands 0 and 1."""
    d = np.asarray(direction, float)
    d = d / np.linalg.norm(d)
    L = np.zeros((9, 3))
    L[0] = (ambient + 0.5 * key) / _C0
    L[1] = 0.5 * key * d[1] / _C1
    L[2] = 0.5 * key * d[2] / _C1
    L[3] = 0.5 * key * d[0] / _C1
    return L


# -- rendering a model as a photo-like image ---------------------------------------------------------

SKIN_ALBEDO = np.array([0.78, 0.57, 0.47])
_REGION_TINTS = {"iris": (0.25, 0.16, 0.10), "sclera": (0.85, 0.83, 0.80), "teeth": (0.85, 0.82, 0.72),
                 "gums": (0.60, 0.25, 0.25), "tongue": (0.60, 0.25, 0.25), "mouth_socket": (0.35, 0.12, 0.12)}
# Translucent overlay shells (ICT's eye occlusion, tear film, eyelash cards) would cover the eyes
# in an opaque renderer; they are left out of every render.
OVERLAY_WORDS = ("eyelash", "occlusion", "lacrimal", "eye_blend")


def default_albedo(model: PCAModel) -> np.ndarray:
    """Per-vertex albedo for models without colour: skin, with eyes/teeth/mouth tinted by region name."""
    n = model.n_vertices
    if model.has_colors:
        return np.asarray(model.color_mean, float).copy()
    albedo = np.tile(SKIN_ALBEDO, (n, 1))
    for name, ids in model.meta.regions.items():
        for word, tint in _REGION_TINTS.items():
            if word in name:
                albedo[ids] = tint
    return albedo


def paint_pupils(albedo: np.ndarray, vertices: np.ndarray, model: PCAModel, iris=(0.25, 0.15, 0.08)) -> None:
    """An iris and a dark pupil on the front of each eyeball, in place (a model's own iris regions
    are not the front cap, so its eyes render blank): a disc about 40 % of the eyeball's width, the
    pupil a third of it."""
    v = np.asarray(vertices, float)
    for side in ("left", "right"):
        ball = regions_named(model, (f"eyeball_{side}",))
        if not ball.any():
            continue
        ids = np.flatnonzero(ball)
        p = v[ids]
        front = p[np.argmax(p[:, 2])]
        r = 0.2 * float(np.ptp(p[:, 0]))
        d = np.linalg.norm(p[:, :2] - front[:2], axis=1)
        near = p[:, 2] > front[2] - r
        albedo[ids[near & (d < r)]] = iris
        albedo[ids[near & (d < r / 3)]] = 0.03


def regions_named(model: PCAModel, words) -> np.ndarray:
    """(n,) bool: the vertices of every region whose name contains one of ``words``."""
    mask = np.zeros(model.n_vertices, bool)
    for name, ids in model.meta.regions.items():
        if any(w in name for w in words):
            mask[ids] = True
    return mask


def drawable_faces(model: PCAModel) -> np.ndarray:
    """The model's triangles minus translucent overlay shells (see ``OVERLAY_WORDS``)."""
    faces = np.asarray(model.faces, np.int64)
    hide = regions_named(model, OVERLAY_WORDS)
    return faces[~hide[faces].any(1)] if hide.any() else faces


def render_image(vertices: np.ndarray, faces: np.ndarray, albedo: np.ndarray, light: np.ndarray, camera,
                 background=None):
    """Render a shaded mesh through a ``Camera``: (image (H, W, 3) float in [0, 1], Fragments)."""
    from studio.core.geometry import vertex_normals
    from studio.core.geometry.raster import interpolate, rasterize

    pc = camera.to_camera(vertices)
    xy, depth = camera.project(vertices)
    frags = rasterize(xy, depth, faces, camera.height, camera.width)
    normals = vertex_normals(pc, faces)
    normals = normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    colour = np.clip(shade(np.asarray(albedo, float), normals, np.asarray(light, float)), 0, 1)
    img = interpolate(colour, faces, frags)
    if background is None:
        background = np.array([0.35, 0.38, 0.42])
    bg = np.broadcast_to(np.asarray(background, float), img.shape) if np.ndim(background) < 3 else background
    img = np.where(frags.mask[..., None], img, bg)
    return np.clip(img, 0, 1), frags
