"""Photos rendered from random faces, with their ground truth, for tests and ``studio bench photo``.

A face is drawn from the model's prior (identity), a few blendshapes at random weights
(expression), a head pose within ±30° yaw (±10° pitch, ±5° roll), a random light (a sky plus a
distant key light from a random direction, slightly tinted, with the cast shadows and ambient
occlusion a photo shows and the fitter's SH light cannot: ``shading.occluded_shading``; the photo's
``light`` is its 9-coefficient SH description) and an albedo: the model's colour PCA when it has
one, otherwise a plausible skin tone (light to dark) with smooth variation (blotches, redder
cheeks and lips) — ICT has no colour model. The focal length varies ±15 % around the fitter's
assumption, so the fit does not get the true camera for free. Pixel noise σ = 1/255·2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from studio.core.errors import StudioError
from studio.core.geometry.raster import Fragments
from studio.core.pca import PCAModel
from studio.core.photo import shading
from studio.core.photo.camera import Camera, default_focal, euler_to_matrix, matrix_to_axis_angle
from studio.core.photo.embedding import landmark_region

SKIN_TONES = np.array([[0.87, 0.68, 0.58], [0.80, 0.58, 0.46], [0.66, 0.46, 0.34], [0.45, 0.30, 0.22]])


@dataclass
class SyntheticPhoto:
    image: np.ndarray  # (H, W, 3) uint8
    params: dict  # ground-truth coefficients
    camera: Camera
    light: np.ndarray  # (9, 3)
    albedo: np.ndarray  # (n, 3)
    vertices: np.ndarray  # (n, 3) ground-truth face (model coordinates)
    fragments: Fragments | None = None  # the render's raster.Fragments (triangle ids, barycentrics) when asked for


def random_albedo(model: PCAModel, rng: np.random.Generator, params=None, brows=None) -> np.ndarray:
    colors = model.colors(params or {}) if model.has_colors else None
    if colors is not None:
        return np.clip(colors, 0, 1)
    v = np.asarray(model.mean, float)
    n = len(v)
    w = rng.dirichlet(np.ones(len(SKIN_TONES)) * 0.7)
    base = w @ SKIN_TONES
    scale = float(np.ptp(v[landmark_region(model)][:, 0])) or 1.0
    albedo = np.tile(base, (n, 1))
    # Smooth variation: a few soft blobs of lighter/darker/redder skin.
    for _ in range(6):
        c = v[rng.integers(n)]
        r = scale * rng.uniform(0.1, 0.3)
        g = np.exp(-((v - c) ** 2).sum(1) / (2 * r * r))
        albedo += g[:, None] * rng.normal(0, 0.05, 3)
    lm = model.meta.landmarks.get("ibug68")
    if lm is not None and len(lm) == 68:  # redder lips and cheeks where the model says where they are
        lips = v[np.asarray(lm)[48:68]]
        d = np.min(((v[:, None] - lips[None]) ** 2).sum(2), 1)
        red = np.exp(-d / (2 * (0.03 * scale) ** 2))
        albedo += red[:, None] * np.array([0.08, -0.08, -0.06])
        for cheek in (v[lm[2]] * 0.6 + v[lm[31]] * 0.4, v[lm[14]] * 0.6 + v[lm[35]] * 0.4):
            g = np.exp(-((v - cheek) ** 2).sum(1) / (2 * (0.12 * scale) ** 2))
            albedo += g[:, None] * np.array([0.04, -0.02, -0.02])
        _hair_and_brows(albedo, v, lm, model, rng, scale, brows)
    albedo = np.clip(albedo, 0.02, 1)
    tinted = shading.default_albedo(model)
    keep = shading.regions_named(model, ("iris", "sclera", "teeth", "gums", "tongue", "mouth_socket"))
    albedo[keep] = tinted[keep]  # eyes, teeth, mouth keep their tints
    shading.paint_pupils(albedo, v, model, IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))])
    return albedo


def brow_line(model: PCAModel, v: np.ndarray, lm, emb=None) -> np.ndarray:
    """The 10 iBUG brow points (17-26) on the face ``v``, where the brows are painted: the embedded
    Face Mesh brow midline (embedding.model_ibug68), the brow convention the photo fit follows and
    that held on an annotated portrait (ICT's own brow landmark vertices sit above where annotators
    put the brow, by about 10 % of the eye distance on takeo). Without an embedding (no detector):
    those vertices.
    ``emb``: the embedding to take them from (default: the model's)."""
    from studio.core.photo.embedding import load_or_compute, model_ibug68

    try:
        points = model_ibug68(model, emb if emb is not None else load_or_compute(model), v)
    except StudioError:
        points = None
    return v[np.asarray(lm)[17:27]] if points is None else points[17:27]


HAIR_COLOURS = np.array([[0.06, 0.04, 0.03], [0.20, 0.12, 0.07], [0.45, 0.30, 0.15], [0.55, 0.52, 0.50]])


def _hair_and_brows(albedo, v, lm, model: PCAModel, rng, scale, emb=None) -> None:
    """Brows as dark bands along the brow landmarks, hair on the scalp above a random hair line: what
    a detector looks for in a face, and what it must not mistake for one."""
    hair = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] * rng.uniform(0.8, 1.2)
    brows = brow_line(model, v, lm, emb)
    seg = np.concatenate([np.linspace(brows[i], brows[i + 1], 6) for i in (0, 1, 2, 3, 5, 6, 7, 8)])
    d = np.sqrt(np.min(((v[:, None] - seg[None]) ** 2).sum(2), 1))
    band = np.clip(1.5 - d / (0.035 * scale), 0, 1)  # about 7 % of the face's width thick
    albedo[:] = albedo * (1 - 0.85 * band[:, None]) + hair * 0.85 * band[:, None]
    skin = shading.regions_named(model, ("face", "head_and_neck"))
    top = v[:, 1] > brows[:, 1].max() + rng.uniform(0.25, 0.45) * scale  # the hair line, above the brows
    back = v[:, 2] < np.median(v[skin, 2]) if skin.any() else np.zeros(len(v), bool)
    ear_level = v[:, 1] > v[np.asarray(lm)[0], 1]
    scalp = skin & (top | (back & ear_level))
    albedo[scalp] = hair * (1 + rng.normal(0, 0.08, (int(scalp.sum()), 3)))


IRIS_COLOURS = np.array([[0.25, 0.15, 0.08], [0.12, 0.08, 0.05], [0.20, 0.35, 0.45], [0.30, 0.35, 0.20]])


def random_light(rng: np.random.Generator) -> np.ndarray:
    yaw, pitch = rng.uniform(-60, 60), rng.uniform(-20, 45)
    d = euler_to_matrix(yaw, -pitch) @ np.array([0, 0, 1.0])
    L = shading.directional_light(rng.uniform(0.3, 0.5), rng.uniform(0.5, 0.8), d)
    tint = 1 + rng.normal(0, 0.04, 3)
    return L * tint[None]


def random_params(model: PCAModel, rng: np.random.Generator, n_expressions: int = 4, max_weight: float = 0.6) -> dict:
    params = model.sample(rng)
    for g in model.groups:
        if g.prior == "box":
            k = min(n_expressions, g.size)
            idx = rng.choice(g.size, k, replace=False)
            params[g.name][idx] = rng.uniform(0, max_weight, k) * (g.upper[idx] - g.lower[idx]) + g.lower[idx]
    return params


def render_photo(model: PCAModel, rng: np.random.Generator, size: int = 512, yaw_range: float = 30.0,
                 n_expressions: int = 4,
                 focal_jitter: float = 0.15, noise: float = 2.0 / 255,
                 face_fraction: tuple[float, float] = (0.45, 0.6), max_weight: float = 0.6,
                 params: dict | None = None, geometry=None, light: np.ndarray | None = None, brows=None,
                 keep_fragments: bool = False, shadows: bool = True) -> SyntheticPhoto:
    """``face_fraction``: the face's width as a share of the photo's (drawn in this range).
    ``params``: the face to draw (default: random). ``geometry(vertices, albedo) → (vertices,
    faces, albedo)``: what is rendered instead of the model's own mesh (the detail bench renders a
    densified mesh with wrinkles). ``light``: (9, 3) SH light (default: random; with ``shadows``, a
    ``shading.directional_light``, whose key it shadows). ``brows``: the
    embedding whose brow line is painted (default: the model's; calibration.py passes the first one).
    ``shadows``: cast shadows and ambient occlusion (about 1.5 s more for ICT's head)."""
    params = random_params(model, rng, n_expressions, max_weight) if params is None else params
    v = model.vertices(params).astype(float)
    R = euler_to_matrix(rng.uniform(-yaw_range, yaw_range), rng.uniform(-10, 10), rng.uniform(-5, 5))
    focal = default_focal(size, size) * rng.uniform(1 - focal_jitter, 1 + focal_jitter)
    region = v[landmark_region(model)]
    centre = (region.min(0) + region.max(0)) / 2
    width = float(np.ptp(region[:, 0]))
    dist = focal * width / (size * rng.uniform(*face_fraction))
    t = -R @ centre + np.array([rng.uniform(-0.04, 0.04) * width, rng.uniform(-0.04, 0.04) * width, -dist])
    cam = Camera(size, size, focal, matrix_to_axis_angle(R), t)
    albedo = random_albedo(model, rng, params, brows)
    light = random_light(rng) if light is None else light
    yy, xx = np.mgrid[0:size, 0:size] / size
    c0, c1 = rng.uniform(0.1, 0.8, 3), rng.uniform(0.1, 0.8, 3)
    bg = c0[None, None] * (1 - yy[..., None]) + c1[None, None] * yy[..., None] + 0.05 * xx[..., None]
    for _ in range(12):  # a textured background: soft blobs of other colours
        c, r = rng.uniform(0, 1, 2), rng.uniform(0.03, 0.2)
        g = np.exp(-((xx - c[0]) ** 2 + (yy - c[1]) ** 2) / (2 * r * r))
        bg = bg + g[..., None] * rng.normal(0, 0.15, 3)
    bg = np.clip(bg, 0, 1)
    rv, rf, ra = (v, shading.drawable_faces(model), albedo) if geometry is None else geometry(v, albedo)
    img, frags = shading.render_image(rv, rf, ra, light, cam, background=bg, shadows=shadows)
    img = img + rng.normal(0, noise, img.shape)
    img8 = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    return SyntheticPhoto(img8, params, cam, light, albedo, v, frags if keep_fragments else None)
