"""Shape from shading of fine detail on a fitted face: a displacement map from one photo.

Given the coarse photo fit (shape, expression, pose, SH light, per-vertex albedo), each texel of
the face's UV layout is a point on the fitted surface that projects to a pixel. The photo there,
divided by the fitted albedo times the coarse shading, is what the coarse fit did not explain. That
ratio is split (albedo/detail separation) before any geometry is fitted to it:

- *colour* goes to the albedo: shading under a near-white light scales R, G and B alike, so the
  part of the log-ratio that differs between channels is skin colour and such texels are trusted
  less;
- *low frequencies* go to the albedo and the coarse shape: the log-ratio's blur (``highpass_mm``)
  is removed, which also absorbs the coarse fit's smooth errors;
- *large jumps* (brows, lashes, lip and eye borders the coarse fit misplaces) are down-weighted:
  a wrinkle darkens skin by tens of percent, a brow by a factor of ten;
- *what is not skin* (a fringe over the forehead, a beard): the fitted albedo took its colour, so
  it passes the colour test, but it is far darker or of another hue than the face's typical skin;
- *where the coarse surface curves* (the nose's sides, eye sockets, lip rims, the jaw) the coarse
  fit's misplacement by about a millimetre tilts the normal by more than a crease does, and at the
  fitted albedo's edges (brows, the lips' border, the hairline) it moves the edge: the data term's
  noise grows with how far the coarse normal turns, and the albedo's brightness steps, per texel.

What is left is matched by the displaced surface's shading: the map d moves the surface along its
normals, the detailed normals (displacement.py) are shaded with the fitted light (SH, shading.py)
and, high-passed as the target was (blur.py), compared in log intensity with the separated target
over the visible texels (z-buffer and facing test through the fitted camera), with a Cauchy loss.
Regularisers: smoothness (Laplacian), sparsity (L1: no data, no detail), a ridge (L2) with a crease
prior (raised detail costs more than a groove: shading alone cannot tell a groove from the ridges
beside it), left-right symmetry (fills the side the photo does not see), and zero outside the face
region. Torch L-BFGS over the texels, one thread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from studio.core.detail.blur import GaussianBlur, masked_blur_grid
from studio.core.detail.displacement import TexelFrames, detailed_normals, frame_tensors, texel_frames
from studio.core.detail.uv_raster import UVRaster, model_raster
from studio.core.geometry.raster import rasterize, visible_vertices
from studio.core.pca import PCAModel
from studio.core.photo.shading import drawable_faces, sh_basis
from studio.core.progress import report


@dataclass
class SfsOptions:
    size: int = 512  # texels per side of the map (the face fills ICT's UV tile: ~0.5 mm a texel)
    iterations: int = 60  # L-BFGS iterations
    highpass_mm: float = 3.0  # shading variation broader than this is albedo / coarse shape
    sigma_log: float = 0.05  # noise of the log-intensity target
    # 10 before the registration weight; 30 moved the correlation by +0.002-0.004 and the detail's
    # own normal error over the face by 3-5 % (renders with shadows, without, seeds 2008-2015)
    smoothness: float = 30.0
    sparsity: float = 0.02
    ridge: float = 5.0  # L2 on the map (mm²): the directions shading does not see stay flat
    groove_prior: float = 8.0  # raised detail costs (1 + this) × as much as a groove as deep
    symmetry: float = 0.2
    chroma_scale: float = 0.06  # log-ratio spread between channels beyond which a texel is colour
    jump_scale: float = 0.5  # |log-ratio| beyond which a texel is albedo (brows, lashes)
    feature_margin_mm: float = 4.0  # no data this close to the eyes, lips, nostrils and brows
    robust_scale: float = 2.0  # Cauchy loss: residuals beyond this many σ count less and less
    # a neighbourhood (σ this many mm) whose residual varies more than ``busy_scale`` × the face's
    # typical residual is a coarse-fit error (a misplaced brow, hairline or nose side), not creases
    busy_mm: float = 2.0
    busy_scale: float = 3.0
    # the fitted albedo's brightness is kept only above this share of the mesh's edge length
    albedo_blur_edges: float = 0.6
    # the coarse fit is misplaced by about this much (at the median texel): where its normal turns
    # fast, that alone changes the shading by more than a crease does, so such texels are trusted less
    registration_mm: float = 1.0
    # the fitted albedo this far (log) from the face's typical skin, in brightness or in hue, is not
    # skin: hair over the forehead, a beard (0: off)
    skin_brightness: float = 0.35
    skin_hue: float = 0.25


@dataclass
class DetailRecovery:
    displacement: np.ndarray  # (S, S) model units, 0 outside the region
    raster: UVRaster
    frames: TexelFrames  # the coarse surface per covered texel (model coordinates)
    visible: np.ndarray  # (S, S) bool: texels seen in the photo
    weight: np.ndarray  # (S, S) data weight after the albedo/detail separation
    target: np.ndarray  # (S, S) the separated log-shading the detail had to explain
    timings: dict = field(default_factory=dict)
    pixels_per_mm: float = float("nan")  # the photo's resolution on the face (median over the seen texels)


def recover_displacement(model: PCAModel, vertices, camera, image, albedo, light, options: SfsOptions | None = None,
                         progress=None) -> DetailRecovery:
    from studio.core import threads

    options = options or SfsOptions()
    with threads.limited(1):
        return _recover(model, np.asarray(vertices, float), camera, image, np.asarray(albedo, float),
                        np.asarray(light, float), options, progress)


def _recover(model: PCAModel, vertices, camera, image, albedo, light, options, progress) -> DetailRecovery:
    t0 = time.perf_counter()
    faces = np.asarray(model.faces, np.int64)
    raster = model_raster(model, options.size)
    frames = texel_frames(raster, vertices, faces, model.uv, model.face_uv)
    report(progress, 0.05, "detail: what the photo shows")
    obs = _observe(model, vertices, camera, image, albedo, light, raster, frames, options)
    report(progress, 0.15, "detail: shape from shading")
    d = _optimise(model, raster, frames, camera, light, obs, options, progress)
    if not np.isfinite(d).all():
        from studio.core.errors import FitFailed

        raise FitFailed(f"detail recovery failed: {int((~np.isfinite(d)).sum())} of {len(d)} texels came out "
                        "non-finite; no map was made")
    S = options.size
    out = np.zeros((S, S))
    out[frames.rows, frames.cols] = d
    grid = lambda x: _to_grid(x, frames, S)  # noqa: E731
    return DetailRecovery(out, raster, frames, grid(obs["visible"]) > 0, grid(obs["weight"]), grid(obs["target"]),
                          {"detail_s": time.perf_counter() - t0}, obs["pixels_per_mm"])


def _to_grid(x, frames, S):
    out = np.zeros((S, S))
    out[frames.rows, frames.cols] = x
    return out


def _mm_per_unit(model: PCAModel) -> float:
    from studio.core.facemodel import UNIT_TO_MM

    return UNIT_TO_MM.get(model.meta.unit, 1.0)


def texel_mm(model: PCAModel, frames: TexelFrames, size: int) -> float:
    """The median side of a texel on the surface, in mm."""
    side = np.sqrt(np.linalg.norm(frames.dpdu, axis=1) * np.linalg.norm(frames.dpdv, axis=1)) / size
    return float(np.median(side)) * _mm_per_unit(model)


def _observe(model: PCAModel, vertices, camera, image, albedo, light, raster, frames, options) -> dict:
    """Per covered texel: visibility, the separated log-shading target and its weight."""
    from scipy.ndimage import gaussian_filter

    R = camera.R
    xy, depth = camera.project(frames.position)
    vxy, vdepth = camera.project(vertices)
    zbuf = rasterize(vxy, vdepth, drawable_faces(model), camera.height, camera.width)
    scale = float(np.ptp(vertices[:, 0])) or 1.0
    n_cam = frames.normal @ R.T
    pc = camera.to_camera(frames.position)
    facing = (n_cam * (-pc / np.linalg.norm(pc, axis=1, keepdims=True))).sum(1) > 0.2
    vis = visible_vertices(xy, depth, zbuf, 0.004 * scale) & facing
    # Sample the photo at the texel's footprint: blur when a texel spans several pixels.
    step = np.linalg.norm(frames.dpdu @ R.T, axis=1) / options.size * camera.focal / np.maximum(-pc[:, 2], 1e-9)
    ppt = float(np.median(step[vis])) if vis.any() else 1.0
    img = image.astype(np.float64) / 255.0
    if ppt > 1.2:
        img = gaussian_filter(img, (0.5 * ppt, 0.5 * ppt, 0))
    seen = _bilinear(img, xy)
    a = raster.blend(albedo, model.faces)
    s0 = sh_basis(n_cam) @ light
    tmm = max(texel_mm(model, frames, options.size), 1e-9)
    la = _smooth_albedo_brightness(model, vertices, raster, frames, np.log(np.maximum(a, 1e-3)), tmm, options)
    lr = np.log(np.maximum(seen, 1e-3)) - np.log(np.maximum(s0, 1e-3)) - la  # (P, 3)
    sigma_tex = options.highpass_mm / tmm
    S = options.size
    w_vis = vis.astype(float)
    hp = np.stack([lr[:, c] - _masked_blur(lr[:, c], w_vis, frames, S, sigma_tex) for c in range(3)], 1)
    g = hp.mean(1)
    chroma = hp.std(1)
    # grazing texels and the outline: the coarse fit's silhouette is off by a few pixels, where
    # the photo shows background or hair; they give no data
    cosv = (n_cam * (-pc / np.linalg.norm(pc, axis=1, keepdims=True))).sum(1)
    inner = _masked_blur(w_vis, np.ones(len(w_vis)), frames, S, 2.0) > 0.99
    weight = (w_vis * inner * _in_fit_region(model, raster) * np.clip((cosv - 0.35) / 0.2, 0, 1)
              * np.exp(-(chroma / options.chroma_scale) ** 2) / (1 + (g / options.jump_scale) ** 4)
              * ~feature_texels(model, raster, options.feature_margin_mm))
    weight = weight * _skin(la, weight, options)
    weight = weight * _quiet(g, weight, frames, S, options.busy_mm / tmm, options.busy_scale)
    weight = weight * _registration_weight(frames, S, la.mean(1), options.registration_mm / tmm, options.sigma_log)
    g = np.where(vis, g, 0.0)
    return {"visible": w_vis, "target": g, "weight": weight, "n_cam": n_cam, "pixels_per_texel": ppt,
            "pixels_per_mm": ppt / tmm, "sigma_texels": sigma_tex}


def _skin(log_albedo: np.ndarray, weight: np.ndarray, options) -> np.ndarray:
    """(P,) in (0, 1]: how much each texel's fitted albedo looks like the face's skin. The photo
    fit's per-vertex albedo takes the colour of whatever covers the face: a fringe over the
    forehead, a beard, a moustache. Their strands' shading is not the skin's relief, but they are
    neither colourful against the fitted albedo (it has their colour) nor, over a few vertices,
    large jumps; what gives them away is that their albedo is far darker or another hue than the
    face's typical skin (the median over the texels trusted so far)."""
    if options.skin_brightness <= 0 or not (weight > 0.5).any():
        return np.ones(len(log_albedo))
    lum = log_albedo.mean(1)
    hue = log_albedo - lum[:, None]
    good = weight > 0.5
    d_lum = (lum - np.median(lum[good])) / options.skin_brightness
    d_hue = np.linalg.norm(hue - np.median(hue[good], axis=0), axis=1) / options.skin_hue
    return 1 / (1 + d_lum ** 4) / (1 + d_hue ** 4)


def step_per_texel(values: np.ndarray, frames, S: int) -> np.ndarray:
    """(P,) how far per-texel ``values`` ((P,) or (P, C)) change from one texel to the next: the
    larger of the map's two directions, central differences (0 at the region's border)."""
    v = np.asarray(values, float).reshape(len(frames.rows), -1)
    grid = np.zeros((S, S, v.shape[1]))
    grid[frames.rows, frames.cols] = v
    have = np.zeros((S, S), bool)
    have[frames.rows, frames.cols] = True
    out = np.zeros((S, S))
    for axis in (0, 1):
        step = np.roll(grid, -1, axis) - np.roll(grid, 1, axis)
        ok = np.roll(have, -1, axis) & np.roll(have, 1, axis)
        out = np.maximum(out, np.where(ok, 0.5 * np.linalg.norm(step, axis=2), 0.0))
    return out[frames.rows, frames.cols]


def _registration_weight(frames, S: int, log_albedo: np.ndarray, texels: float, sigma_log: float) -> np.ndarray:
    """(P,) in (0, 1]: the data term's noise is the photo's (``sigma_log``) plus what the coarse
    fit's misplacement by ``texels`` makes of the target. A shift of δ texels tilts the normal by δ ×
    its turn per texel, which changes the log-shading by about as much (radians): on the nose's
    sides, the eye sockets, the lips' rims and the jaw, several times a crease's own shading. It
    also moves the fitted albedo's edges by δ, which changes the log-albedo the photo is divided
    by δ × its step per texel (``log_albedo``: the brightness, (P,)): the brows, the lips' border,
    the hairline. On the forehead and cheeks both are small."""
    if texels <= 0:
        return np.ones(len(frames.rows))
    extra2 = (step_per_texel(frames.normal, frames, S) ** 2 + step_per_texel(log_albedo, frames, S) ** 2) * texels ** 2
    return sigma_log ** 2 / (sigma_log ** 2 + extra2)


def _quiet(g, weight, frames, S, sigma, scale) -> np.ndarray:
    """(P,) in (0, 1]: how far each texel's neighbourhood is from a coarse-fit error. A crease
    darkens a line a few texels wide; where the coarse fit misplaced an albedo edge or misshaped the
    surface, the residual is large over a whole patch (the per-texel Cauchy loss alone still lets
    such a patch pull the map into false relief). The neighbourhood's RMS residual against
    ``scale`` × the robust scale of the residual over the face."""
    from studio.core.geometry.robust import robust_scale

    if scale <= 0 or not (weight > 0.5).any():
        return np.ones(len(g))
    local = np.sqrt(_masked_blur(g * g, weight, frames, S, sigma))
    tau = scale * max(robust_scale(g[weight > 0.5]), 1e-9)
    return 1 / (1 + (local / tau) ** 4)


def _smooth_albedo_brightness(model: PCAModel, vertices, raster, frames, log_albedo, texel_size_mm: float,
                              options) -> np.ndarray:
    """The fitted log-albedo per texel with its brightness blurred over ``albedo_blur_edges`` of the
    mesh's median edge. The photo fit's albedo is one colour per vertex fitted to the same pixels:
    at the vertex spacing it took in the creases' shading (a nasolabial fold as a darker line of
    vertices) and the photo's noise, which divided out would cancel the detail or paint the mesh's
    triangles into it. Its hue is kept as it is (shading does not change hue)."""
    faces = np.asarray(model.faces, np.int64)
    p = np.asarray(vertices, float)[faces[np.unique(raster.tri[raster.mask])]]
    edge_mm = float(np.median(np.linalg.norm(p - np.roll(p, 1, axis=1), axis=2))) * _mm_per_unit(model)
    sigma = options.albedo_blur_edges * edge_mm / texel_size_mm
    if sigma <= 0:
        return log_albedo
    lum = log_albedo.mean(1)
    return log_albedo - lum[:, None] + _masked_blur(lum, np.ones(len(lum)), frames, options.size, sigma)[:, None]


def _in_fit_region(model: PCAModel, raster: UVRaster) -> np.ndarray:
    """(P,) bool: texels on the part of the face the photo fit compared with the photo (ICT: the
    narrow face area); beyond it (neck, jaw's underside, temples) the coarse shape and albedo are
    the prior's guess, and their errors would be read as detail."""
    from studio.core.photo.embedding import fit_region

    inside = np.zeros(model.n_vertices, bool)
    inside[fit_region(model)] = True
    m = raster.mask
    return inside[np.asarray(model.faces, np.int64)[raster.tri[m]]].all(1)


# iBUG-68 outlines of what skin shading does not describe: eyes, lips, nostrils, brows
FEATURE_OUTLINES = (tuple(range(36, 42)) + (36,), tuple(range(42, 48)) + (42,), tuple(range(48, 60)) + (48,),
                    tuple(range(60, 68)) + (60,), (31, 32, 33, 34, 35), tuple(range(17, 22)), tuple(range(22, 27)))


def feature_texels(model: PCAModel, raster: UVRaster, margin_mm: float) -> np.ndarray:
    """(P,) bool: covered texels within ``margin_mm`` of the eyes, the lips, the nostrils or the brows
    (on the mean face), and the ears. Their photo is lashes, sclera, lip colour, teeth, nostril
    shadow and brow hair, whose edges a coarse fit misplaces by a few pixels: a skin model explains
    them with deep false grooves, so they give no data (the regularisers decide there)."""
    from scipy.spatial import cKDTree

    from studio.core.facemodel import UNIT_TO_MM

    lm = model.meta.landmarks.get("ibug68")
    p = raster.blend(np.asarray(model.mean, float), model.faces)
    if lm is None or len(lm) != 68:
        return np.zeros(len(p), bool)
    pts = np.asarray(model.mean, float)[np.asarray(lm)]
    ears = np.abs(p[:, 0] - pts[27, 0]) > np.abs(pts[[0, 16], 0] - pts[27, 0]).max()  # beyond the jaw's top
    line = np.concatenate([np.linspace(pts[a], pts[b], 12) for o in FEATURE_OUTLINES for a, b in zip(o[:-1], o[1:])])
    r = margin_mm / UNIT_TO_MM.get(model.meta.unit, 1.0)
    d, _ = cKDTree(line).query(p)
    return (d < r) | ears


def _masked_blur(x, w, frames, S, sigma):
    """Per covered texel: the masked blur (blur.py) of the texel values ``x`` under the weight ``w``."""
    grid, wg = np.zeros((S, S)), np.zeros((S, S))
    grid[frames.rows, frames.cols] = x
    wg[frames.rows, frames.cols] = w
    return masked_blur_grid(grid, wg, sigma)[frames.rows, frames.cols]


def _bilinear(img, xy):
    from scipy.ndimage import map_coordinates

    coords = [xy[:, 1] - 0.5, xy[:, 0] - 0.5]
    return np.stack([map_coordinates(img[..., c], coords, order=1, mode="nearest") for c in range(img.shape[2])], 1)


def mirror_texels(model: PCAModel, raster: UVRaster) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i, j) of covered texels mirrored across the mid-plane of the model's mean face
    (the mean, not the fitted face: an asymmetric identity would bend the mirror)."""
    from scipy.spatial import cKDTree

    p = raster.blend(np.asarray(model.mean, float), model.faces)
    q = p.copy()
    q[:, 0] = 2 * np.median(p[:, 0]) - p[:, 0]
    dist, j = cKDTree(p).query(q)
    side = float(np.median(np.linalg.norm(p[1:] - p[:-1], axis=1)))  # neighbours in row order
    ok = dist < 1.5 * side
    return np.flatnonzero(ok), j[ok]


def _optimise(model: PCAModel, raster, frames, camera, light, obs, options, progress) -> np.ndarray:
    dt = torch.float32
    unit = 1.0 / _mm_per_unit(model)  # the variables are in mm; the map in model units
    S = options.size
    ft = frame_tensors(frames, dt)
    R = torch.as_tensor(camera.R, dtype=dt)
    L = torch.as_tensor(light.mean(1), dtype=dt)  # the light's grey part: colour went to the albedo
    s0 = (sh_basis(torch.as_tensor(obs["n_cam"], dtype=dt)) @ L).clamp_min(1e-3)
    target = torch.as_tensor(obs["target"], dtype=dt)
    w = torch.as_tensor(obs["weight"], dtype=dt)
    w = w / w.sum().clamp_min(1e-9)
    mi, mj = (torch.as_tensor(a) for a in mirror_texels(model, raster))
    rows, cols = ft["rows"], ft["cols"]
    x = torch.zeros(len(frames.rows), dtype=dt, requires_grad=True)
    inside = torch.zeros(S, S, dtype=dt)
    inside[rows, cols] = 1.0
    # the target is high-passed (its blur was albedo and coarse shape), so the prediction is too:
    # a groove's shading has a broad part of its own, which the target no longer holds
    vis = torch.zeros(S, S, dtype=dt).index_put((rows, cols), torch.as_tensor(obs["visible"], dtype=dt))
    blur = GaussianBlur(obs["sigma_texels"], (S, S), dt)
    vis_blur = blur(vis)[rows, cols].clamp_min(1e-6)

    def predicted(s):
        p = torch.log(s / s0)
        return p - blur(torch.zeros(S, S, dtype=dt).index_put((rows, cols), p) * vis)[rows, cols] / vis_blur

    def energy():
        d = torch.zeros(S, S, dtype=dt).index_put((rows, cols), x * unit)
        n = detailed_normals(d, frames, ft) @ R.T
        s = (sh_basis(n) @ L).clamp_min(1e-3)
        # Cauchy: what the model cannot explain (specular spots, hair strands) pulls less and less
        r2 = ((predicted(s) - target) / (options.sigma_log * options.robust_scale)) ** 2
        e_data = options.robust_scale ** 2 * (w * torch.log1p(r2)).sum()
        xg = torch.zeros(S, S, dtype=dt).index_put((rows, cols), x)
        lap = (4 * xg[1:-1, 1:-1] - xg[:-2, 1:-1] - xg[2:, 1:-1] - xg[1:-1, :-2] - xg[1:-1, 2:]) * inside[1:-1, 1:-1]
        e_smooth = options.smoothness * (lap ** 2).sum() / len(x)
        e_sparse = options.sparsity * torch.sqrt(x * x + 1e-4).sum() / len(x)
        # skin folds inwards: a crease is a groove, so raised detail costs more (this also fixes the
        # map's local level, which shading alone cannot: a groove and a ridge beside it shade alike)
        e_ridge = options.ridge * (x * x * (1 + options.groove_prior * (x > 0))).sum() / len(x)
        e_sym = options.symmetry * ((x[mi] - x[mj]) ** 2).sum() / len(x)
        return e_data + e_smooth + e_sparse + e_ridge + e_sym

    opt = torch.optim.LBFGS([x], lr=1.0, max_iter=20, history_size=20, line_search_fn="strong_wolfe")
    rounds = max(1, options.iterations // 20)
    for k in range(rounds):
        def closure():
            opt.zero_grad()
            e = energy()
            e.backward()
            return e

        opt.step(closure)
        report(progress, 0.15 + 0.8 * (k + 1) / rounds, f"detail: shape from shading {20 * (k + 1)}/{20 * rounds}")
    return x.detach().double().numpy() * unit
