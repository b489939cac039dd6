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


def directional_light(ambient: float, key: float, direction) -> np.ndarray:
    """The (9, 3) SH description of a white light: irradiance ``ambient + key·max(0, n·d)`` (a
    uniform sky plus a distant key light), projected on bands 0-2. Clamped cosine in Legendre terms
    is 1/4 + t/2 + (5/16)·P2(t) + (bands ≥ 4, about 1 % of it), so 9 coefficients hold it all but
    that rest; the shadows it casts they do not hold at all (``occluded_shading`` renders both)."""
    d = np.asarray(direction, float)
    d = d / np.linalg.norm(d)
    L = np.zeros((9, 3))
    L[0] = (ambient + 0.25 * key) / _C0
    L[1], L[2], L[3] = 0.5 * key * d[1] / _C1, 0.5 * key * d[2] / _C1, 0.5 * key * d[0] / _C1
    L[4:] = (key * np.pi / 4 * sh_basis(d[None])[0, 4:])[:, None]  # P2(n·d) = 4π/5 Σ_m Y2m(n) Y2m(d)
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
                 background=None, shadows: bool = False):
    """Render a shaded mesh through a ``Camera``: (image (H, W, 3) float in [0, 1], Fragments).

    ``shadows``: what the SH model leaves out and a photo shows: the key light's cast shadows (under
    the chin, beside the nose) and ambient occlusion (``occluded_shading``)."""
    from studio.core.geometry import vertex_normals
    from studio.core.geometry.raster import interpolate, rasterize

    pc = camera.to_camera(vertices)
    xy, depth = camera.project(vertices)
    frags = rasterize(xy, depth, faces, camera.height, camera.width)
    normals = vertex_normals(pc, faces)
    normals = normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    light = np.asarray(light, float)
    irradiance = occluded_shading(pc, faces, normals, light) if shadows else sh_basis(normals) @ light
    colour = np.clip(np.asarray(albedo, float) * irradiance, 0, 1)
    img = interpolate(colour, faces, frags)
    if background is None:
        background = np.array([0.35, 0.38, 0.42])
    bg = np.broadcast_to(np.asarray(background, float), img.shape) if np.ndim(background) < 3 else background
    img = np.where(frags.mask[..., None], img, bg)
    return np.clip(img, 0, 1), frags


# -- shadows: visibility from depth maps --------------------------------------------------------------

def light_visibility(points: np.ndarray, faces: np.ndarray, directions: np.ndarray, normals: np.ndarray | None = None,
                     size: int = 160) -> np.ndarray:
    """(n, k) in 0..1: how much of each vertex sees along each unit direction (towards the light),
    from one orthographic depth map per direction (shadow mapping with a 3×3 percentage-closer
    filter, so shadow edges are soft as under a real, non-point light). With ``normals`` each
    vertex is looked up a little off its surface, which keeps grazing surfaces from shadowing
    themselves (speckle)."""
    from studio.core.geometry.raster import rasterize

    p = np.asarray(points, float)
    span = float(np.ptp(p, axis=0).max()) or 1.0
    centre = (p.min(0) + p.max(0)) / 2
    texel = span / (size - 4)
    bias = 1.5 * texel  # a surface does not shadow itself within a texel or two
    q = p - centre
    ql = q if normals is None else q + 2.0 * texel * np.asarray(normals, float)  # where each vertex looks up
    out = np.zeros((len(p), len(directions)))
    for k, d in enumerate(np.asarray(directions, float)):
        d = d / np.linalg.norm(d)
        # a frame whose third axis looks along −d (from the light towards the mesh)
        a = np.array([1.0, 0, 0]) if abs(d[0]) < 0.9 else np.array([0, 1.0, 0])
        u = np.cross(d, a)
        u /= np.linalg.norm(u)
        w = np.cross(d, u)
        # to map pixels (x right, y down) and depth (larger is farther from the light; > 0 after + span)
        frame = np.stack([u / texel, -w / texel, -d], 1)
        m, lm = q @ frame, ql @ frame
        frags = rasterize(m[:, :2] + size / 2, m[:, 2] + span, faces, size, size)
        zmap = np.where(frags.mask, frags.depth, np.inf)
        ld = lm[:, 2] + span
        ix = np.clip(np.floor(lm[:, 0] + size / 2).astype(int), 1, size - 2)
        iy = np.clip(np.floor(lm[:, 1] + size / 2).astype(int), 1, size - 2)
        lit = np.zeros(len(p))
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                lit += ld <= zmap[iy + dy, ix + dx] + bias
        out[:, k] = lit / 9.0
    return out


def _sphere_directions(n: int) -> np.ndarray:
    """``n`` near-uniform unit directions (a Fibonacci sphere)."""
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    r = np.sqrt(1 - z * z)
    phi = np.pi * (1 + 5 ** 0.5) * i
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], 1)


def occluded_shading(points: np.ndarray, faces: np.ndarray, normals: np.ndarray, light: np.ndarray,
                     n_directions: int = 24) -> np.ndarray:
    """(n, 3) irradiance under a ``directional_light`` (9, 3) as a photo shows it, camera coordinates
    like the normals: the key's exact clamped cosine, cut by its cast shadows (under the chin, beside
    the nose), and the rest of the light (the uniform sky) scaled by the cosine-weighted share of
    the sky a vertex sees (ambient occlusion: nostrils, eye sockets, the neck under the jaw).
    Where nothing occludes it differs from ``shade`` only by the clamped cosine's bands ≥ 4."""
    band1 = np.stack([light[3], light[1], light[2]], 0) * _C1  # (xyz, rgb): key/2 · d per channel
    key = 2 * np.linalg.norm(band1, axis=0)  # (3,)
    d = band1.mean(1)
    if np.linalg.norm(d) < 1e-9:  # no directional part: nothing casts a shadow, only the sky is occluded
        d = np.array([0.0, 0.0, 1.0])
        key = np.zeros(3)
    d = d / np.linalg.norm(d)
    sky = _sphere_directions(n_directions)
    vis = light_visibility(points, faces, np.concatenate([d[None], sky]), normals)
    cosw = np.clip(normals @ sky.T, 0, None)
    ao = (cosw * vis[:, 1:]).sum(1) / np.maximum(cosw.sum(1), 1e-9)
    basis = sh_basis(normals)
    key_sh = (basis @ directional_light(0.0, 1.0, d)[:, 0])[:, None] * key[None]  # what the 9 coefficients hold of it
    rest = basis @ light - key_sh
    return rest * ao[:, None] + key[None] * np.clip(normals @ d, 0, None)[:, None] * vis[:, :1]
