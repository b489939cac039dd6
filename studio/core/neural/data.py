"""Training data for the neural head model, made from a linear model (ICT-FaceKit by default).

Recipe (recorded in the checkpoint's meta by ``recipe()``):

* identities: shape coefficients ~ N(0, 1) (σ units) from ``numpy.random.default_rng(seed)``, seeds
  ``train_seed0 .. train_seed0 + n_train - 1`` for training; seeds from ``heldout_seed0`` on are never
  trained on (the evaluation fits them);
* only the outer skin: the triangles whose three vertices lie in ``config.regions`` (ICT: "face" +
  "head_and_neck"). Eyeballs, eye sockets, mouth socket, teeth are left out: they are separate,
  interpenetrating shells whose inside/outside is ill-defined; the holes they leave (eyes, mouth
  opening, neck) are closed smoothly by the generalised winding number;
* one global normalisation for all heads: ``x = (x_mm - center) / scale`` with the centre of the
  training heads' bounding boxes and the scale putting every training head inside radius
  ``unit_radius`` (0.9) — so the ICT head is ≈ 0.21 m per unit;
* SDF samples per identity (thesis §5.1.2): ``n_surface`` area-uniform surface points with their
  (barycentrically interpolated) vertex normals; ``n_near`` points perturbed from surface points by
  N(0, σ²) per coordinate, half at σ = 0.01 (≈ 2 mm: the band the eikonal/normal losses shape) and half
  at σ = 0.002 (≈ 0.4 mm: pins the zero level set well below the 1 mm F-score threshold); ``n_uniform``
  points uniform in the unit ball. Near and uniform points get the exact distance to the open mesh
  (libigl AABB tree) signed by the fast generalised winding number (inside where w > 0.5), so open
  boundaries never flip a sign outside the head;
* expressions: ``n_expr_per_id`` per identity, each with ``expr_active`` random blendshapes at
  U(0, 1) weights. Correspondences: ``n_corr`` random barycentric points on the neutral surface and
  the same barycentric points on the posed surface (exact: same topology); half of them are pushed
  off the surface by the same N(0, 0.01²) distance along the neutral and posed normals, so the
  deformation field is defined in a band around the surface too.

Samples are cached as .npz in ``cache_dir`` (``platformdirs.user_cache_dir("face-studio")/neural`` by
default), keyed by the model file and the data fields of the config.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from studio.core.errors import StudioError
from studio.core.facemodel import UNIT_TO_MM
from studio.core.geometry import vertex_normals
from studio.core.neural.config import NeuralConfig
from studio.core.pca import PCAModel
from studio.core.progress import ProgressFn, report

DATA_FIELDS = ("n_train", "train_seed0", "n_expr_per_id", "n_expr_ids", "n_norm_ids", "expr_active", "regions",
               "n_surface", "n_near", "near_sigmas", "n_uniform", "n_corr", "unit_radius", "expr_active_max",
               "eye_regions", "detail_share")
CACHE_VERSION = 3
# Data fields added after CACHE_VERSION 3, with their defaults: at the default they stay out of the cache
# key, so the samples cached for earlier configs (13 minutes for 4,000 heads) keep being found.
_LATER_FIELDS = {"expr_active_max": 0, "eye_regions": (), "detail_share": 0.0}


@dataclass
class TrainingData:
    """All arrays float32 in normalised units; index i over identities, (i, j) over expressions."""

    surface: np.ndarray      # (n_id, S, 3)
    normals: np.ndarray      # (n_id, S, 3)
    near: np.ndarray         # (n_id, M, 3)
    near_sdf: np.ndarray     # (n_id, M)
    uniform: np.ndarray      # (n_id, U, 3)
    uniform_sdf: np.ndarray  # (n_id, U)
    corr_src: np.ndarray     # (n_expr_ids, n_ex, K, 3) canonical points (the first identities only)
    corr_dst: np.ndarray     # (n_expr_ids, n_ex, K, 3) the same points posed
    center: np.ndarray       # (3,) mm
    scale: float             # mm per unit
    seeds: np.ndarray        # (n_id,) identity seeds
    expr_weights: np.ndarray  # (n_expr_ids, n_ex, n_blend)
    coeffs: np.ndarray       # (n_id, K) the identities' shape coefficients (σ units) in the source model

    @property
    def n_ids(self) -> int:
        return self.surface.shape[0]


def surface_submesh(model: PCAModel, regions) -> tuple[np.ndarray, np.ndarray]:
    """Vertex ids and re-indexed triangles of the model's triangles lying wholly in ``regions``."""
    if not regions:
        return np.arange(len(model.mean)), np.asarray(model.faces, np.int64)
    missing = [r for r in regions if r not in model.meta.regions]
    if missing:
        raise StudioError(f"model {model.name} has no region {missing[0]!r} (has: "
                          f"{', '.join(model.meta.regions) or 'none'})")
    ids = np.unique(np.concatenate([model.meta.regions[r] for r in regions]))
    faces = np.asarray(model.faces)
    keep = np.all(np.isin(faces, ids), axis=1)
    used = np.unique(faces[keep])
    remap = -np.ones(len(model.mean), np.int64)
    remap[used] = np.arange(len(used))
    return used, remap[faces[keep]]


def identity_params(model: PCAModel, seed: int) -> np.ndarray:
    """The shape coefficients (σ units) of identity ``seed``: N(0, 1) from default_rng(seed)."""
    g = _shape_group(model)
    return np.random.default_rng(seed).standard_normal(g.size)


def _shape_group(model: PCAModel):
    for g in model.groups:
        if g.prior == "normal" and g.affects == "position":
            return g
    raise StudioError(f"model {model.name} has no identity (normal-prior shape) parameters")


def _expr_group(model: PCAModel):
    for g in model.groups:
        if g.prior == "box" and g.affects == "position":
            return g
    return None


def identity_mesh_mm(model: PCAModel, seed: int, regions, expression: Optional[np.ndarray] = None):
    """(vertices in mm, triangles) of identity ``seed``'s outer surface, optionally posed."""
    used, faces = surface_submesh(model, regions)
    params = {_shape_group(model).name: identity_params(model, seed)}
    eg = _expr_group(model)
    if expression is not None and eg is not None:
        params[eg.name] = expression
    v = model.vertices(model.check(params))[used].astype(np.float64) * UNIT_TO_MM[model.meta.unit]
    return v, faces


def sample_barycentric(v: np.ndarray, f: np.ndarray, count: int, rng: np.random.Generator,
                       detail_share: float = 0.0):
    """Surface samples as (face index, barycentric weights): area-uniform, or with ``detail_share`` of
    them drawn by area × curvature (``face_curvature``). Area-uniform samples leave the small, curved
    parts that make a face recognisable — eyelids, lips, nostrils, the folds of the ears — a sliver
    of the budget (the cheeks and the skull are most of the area)."""
    area = 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)
    p = area / area.sum()
    if detail_share > 0:
        bent = area * face_curvature(v, f, area)
        p = (1 - detail_share) * p + detail_share * bent / max(bent.sum(), 1e-30)
    fi = rng.choice(len(f), size=count, p=p)
    r1, r2 = rng.random(count), rng.random(count)
    s = np.sqrt(r1)
    bary = np.stack([1 - s, s * (1 - r2), s * r2], axis=1)
    return fi, bary


def face_curvature(v: np.ndarray, f: np.ndarray, area: np.ndarray) -> np.ndarray:
    """Per triangle, how far its corners' vertex normals turn from its own normal per unit length:
    Σ_k |n_k − n_f| / √area ≈ curvature (1/length), independent of how finely a part is meshed."""
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    fn /= np.maximum(np.linalg.norm(fn, axis=1, keepdims=True), 1e-12)
    turn = np.linalg.norm(vertex_normals(v, f)[f] - fn[:, None, :], axis=2).sum(1)
    return turn / np.sqrt(np.maximum(area, 1e-30))


def interpolate(values: np.ndarray, f: np.ndarray, fi: np.ndarray, bary: np.ndarray) -> np.ndarray:
    return np.einsum("nk,nkd->nd", bary, values[f[fi]])


def signed_distance(points: np.ndarray, v: np.ndarray, f: np.ndarray,
                    sign_faces: np.ndarray | None = None) -> np.ndarray:
    """Exact distance to the (open) triangle mesh, negative where the generalised winding number > 0.5.
    ``sign_faces``: the triangles whose winding number decides the sign, when they differ from the
    ones measured to (a solid of skin and closed eyeballs: ``solid_faces``).

    (Not ``igl.signed_distance(..., FAST_WINDING_NUMBER)``: it multiplies the distance by the
    continuous 1 − 2w, which shrinks distances wherever an open mesh's w is not exactly 0 or 1.)
    """
    import igl

    p = np.ascontiguousarray(points, np.float64)
    v = np.ascontiguousarray(v, np.float64)
    f = np.ascontiguousarray(f, np.int64)
    sq, _, _ = igl.point_mesh_squared_distance(p, v, f)
    fs = f if sign_faces is None else np.ascontiguousarray(sign_faces, np.int64)
    inside = igl.fast_winding_number(v, fs, p) > 0.5
    return np.where(inside, -1.0, 1.0) * np.sqrt(sq)


def winding_number(points: np.ndarray, v: np.ndarray, f: np.ndarray) -> np.ndarray:
    import igl

    return igl.fast_winding_number(np.ascontiguousarray(v, np.float64), np.ascontiguousarray(f, np.int64),
                                   np.ascontiguousarray(points, np.float64))


def sdf_samples(v: np.ndarray, f: np.ndarray, cfg: NeuralConfig, rng: np.random.Generator,
                sign_faces: np.ndarray | None = None) -> dict:
    """Surface/normal, near-surface and uniform SDF samples of one normalised mesh (thesis §5.1.2)."""
    vn = vertex_normals(v, f)
    fi, bary = sample_barycentric(v, f, cfg.n_surface, rng, cfg.detail_share)
    surf = interpolate(v, f, fi, bary)
    nrm = interpolate(vn, f, fi, bary)
    nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
    fi2, bary2 = sample_barycentric(v, f, cfg.n_near, rng, cfg.detail_share)
    base = interpolate(v, f, fi2, bary2)
    half = cfg.n_near // 2
    sig = np.where(np.arange(cfg.n_near) < half, cfg.near_sigmas[0], cfg.near_sigmas[1])[:, None]
    near = base + rng.standard_normal(base.shape) * sig
    uni = rng.standard_normal((cfg.n_uniform, 3))
    uni *= (rng.random(cfg.n_uniform) ** (1 / 3) / np.linalg.norm(uni, axis=1))[:, None]
    d = signed_distance(np.vstack([near, uni]), v, f, sign_faces)
    return {"surface": surf, "normals": nrm, "near": near, "near_sdf": d[:len(near)], "uniform": uni,
            "uniform_sdf": d[len(near):]}


def solid_faces(model: PCAModel, cfg: NeuralConfig, v: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(visible, sign) triangles of the head as a solid: the skin (``regions``) joined with the closed
    shells of ``eye_regions`` (the eyeballs), ``v``/``f`` being the mesh of both (``all_regions``).
    Only the part of a shell outside the skin is surface — the eye seen through the lids; its hidden
    back would be a surface inside the head — while the whole closed shell counts in the winding
    number (winding numbers add up), so the eyeball is inside and the open eye no longer a hole."""
    if not cfg.eye_regions:
        return f, f
    used, _ = surface_submesh(model, all_regions(cfg))
    eye_ids = np.unique(np.concatenate([model.meta.regions[r] for r in cfg.eye_regions]))
    shell = np.isin(used[f], eye_ids).all(axis=1)
    skin, sf = f[~shell], f[shell]
    # A shell triangle is surface when a point just off it, outwards, is outside the whole solid: not
    # for the hidden back of an eyeball, nor for a shell nested inside another (ICT's iris in its ball).
    n = np.cross(v[sf[:, 1]] - v[sf[:, 0]], v[sf[:, 2]] - v[sf[:, 0]])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    eps = 1e-3 * float(np.linalg.norm(np.ptp(v, axis=0)))
    seen = winding_number(v[sf].mean(axis=1) + eps * n, v, f) < 0.5
    return np.vstack([skin, sf[seen]]), f


def all_regions(cfg: NeuralConfig) -> tuple:
    return tuple(cfg.regions) + tuple(r for r in cfg.eye_regions if r not in cfg.regions)


def random_expression(n_blend: int, active: int, rng: np.random.Generator) -> np.ndarray:
    w = np.zeros(n_blend)
    idx = rng.choice(n_blend, size=min(active, n_blend), replace=False)
    w[idx] = rng.random(len(idx))
    return w


EXPR_SEED_OFFSET = 7_000_003  # the expression draws' own stream, apart from the SDF samples' (seed + 1_000_003)


def expression_draws(seed: int, n_blend: int, active: int, count: int, active_max: int = 0) -> list[np.ndarray]:
    """The first ``count`` blendshape weight vectors training identity ``seed`` is posed with (the
    training data and the quality report must draw the same ones). ``active_max > 0``: each draw
    turns on a random number of blendshapes in ``active..active_max`` (1..53 on ICT covers every
    blendshape, alone and combined, instead of always six)."""
    rng = np.random.default_rng(int(seed) + EXPR_SEED_OFFSET)
    if active_max <= 0:  # the shipped model's draws, unchanged
        return [random_expression(n_blend, active, rng) for _ in range(count)]
    hi = max(min(active_max, n_blend), active)
    return [random_expression(n_blend, int(rng.integers(active, hi + 1)), rng) for _ in range(count)]


def correspondences(v0: np.ndarray, v1: np.ndarray, f: np.ndarray, count: int, rng: np.random.Generator,
                    band: float = 0.01):
    """The same barycentric points on the neutral (v0) and posed (v1) surfaces; half pushed off along
    their normals by the same signed distance."""
    fi, bary = sample_barycentric(v0, f, count, rng)
    src, dst = interpolate(v0, f, fi, bary), interpolate(v1, f, fi, bary)
    n0 = interpolate(vertex_normals(v0, f), f, fi, bary)
    n1 = interpolate(vertex_normals(v1, f), f, fi, bary)
    n0 /= np.maximum(np.linalg.norm(n0, axis=1, keepdims=True), 1e-12)
    n1 /= np.maximum(np.linalg.norm(n1, axis=1, keepdims=True), 1e-12)
    off = rng.standard_normal(count) * band
    off[: count // 2] = 0.0
    return src + off[:, None] * n0, dst + off[:, None] * n1


def normalisation(model: PCAModel, cfg: NeuralConfig) -> tuple[np.ndarray, float]:
    """One centre (mm) and scale (mm per unit) for all heads: the first ``norm_ids`` training heads within
    unit_radius (a run that adds identities to a trained model keeps the model's normalisation; the
    added heads may reach a little beyond unit_radius, still well inside the unit ball)."""
    boxes, verts = [], []
    for i in range(cfg.norm_ids):
        v, _ = identity_mesh_mm(model, cfg.train_seed0 + i, cfg.regions)
        boxes.append((v.min(0) + v.max(0)) / 2)
        verts.append(v)
    center = np.mean(boxes, axis=0)
    radius = max(float(np.linalg.norm(v - center, axis=1).max()) for v in verts)
    return center, radius / cfg.unit_radius


def recipe(cfg: NeuralConfig, model_name: str) -> dict:
    return {
        "source_model": model_name,
        "identities": "shape coefficients ~ N(0,1) (sigma units) from numpy default_rng(seed)",
        "train_seeds": [cfg.train_seed0, cfg.train_seed0 + cfg.n_train - 1],
        "heldout_seeds": [cfg.heldout_seed0, cfg.heldout_seed0 + cfg.n_heldout - 1],
        "heldout_note": "held-out seeds were never used in training; evaluate on them",
        "regions": list(cfg.regions),
        "expressions": f"{cfg.n_expr_per_id} per identity for the first {cfg.expr_ids} identities, "
                       + (f"{cfg.expr_active} random blendshapes" if cfg.expr_active_max <= 0 else
                          f"a random count in {cfg.expr_active}..{cfg.expr_active_max} of random blendshapes")
                       + f" at U(0,1) from default_rng(seed + {EXPR_SEED_OFFSET:_})",
        "eye_regions": list(cfg.eye_regions),
        "detail_share": cfg.detail_share,
        "sdf_samples": {"surface": cfg.n_surface, "near": cfg.n_near, "near_sigmas": list(cfg.near_sigmas),
                        "uniform_ball": cfg.n_uniform, "sign": "fast generalised winding number > 0.5 is inside",
                        "distance": "exact point-triangle distance (libigl AABB)"},
        "correspondences": cfg.n_corr,
        "normalisation": f"x = (x_mm - center) / scale, the first {cfg.norm_ids} training heads inside radius "
                         f"{cfg.unit_radius}",
    }


def cache_key(model_path: str, cfg: NeuralConfig) -> str:
    p = Path(model_path)
    st = p.stat() if p.exists() else None
    key = {"v": CACHE_VERSION, "model": str(p.resolve()) if st else model_path,
           "size": st.st_size if st else 0, "mtime": st.st_mtime if st else 0,
           "cfg": {k: getattr(cfg, k) for k in DATA_FIELDS
                   if k not in _LATER_FIELDS or getattr(cfg, k) != _LATER_FIELDS[k]}}
    return hashlib.sha1(json.dumps(key, sort_keys=True, default=list).encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("face-studio")) / "neural"


def build_training_data(model: PCAModel, cfg: NeuralConfig, progress: ProgressFn | None = None) -> TrainingData:
    """Sample SDF data and correspondences for cfg.n_train identities of ``model``."""
    report(progress, 0.0, "normalising heads")
    center, scale = normalisation(model, cfg)
    eg = _expr_group(model)
    n_blend = eg.size if eg is not None else 0
    n_ex = cfg.n_expr_per_id if n_blend else 0
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("surface", "normals", "near", "near_sdf", "uniform",
                                                        "uniform_sdf", "corr_src",
                           "corr_dst", "expr_weights")}
    seeds = np.arange(cfg.train_seed0, cfg.train_seed0 + cfg.n_train)
    coeffs = np.array([identity_params(model, int(s)) for s in seeds], np.float32)
    for i, seed in enumerate(seeds):
        rng = np.random.default_rng(int(seed) + 1_000_003)
        v_mm, f_all = identity_mesh_mm(model, int(seed), all_regions(cfg))
        v = (v_mm - center) / scale
        f, f_sign = solid_faces(model, cfg, v, f_all)  # (f_all, f_all without eye_regions)
        for k, a in sdf_samples(v, f, cfg, rng, f_sign).items():
            out[k].append(a.astype(np.float32))
        if i < cfg.expr_ids:  # expressions only for the first identities
            srcs, dsts, ws = [], [], []
            for w in expression_draws(int(seed), n_blend, cfg.expr_active, n_ex, cfg.expr_active_max):
                vp = (identity_mesh_mm(model, int(seed), all_regions(cfg), w)[0] - center) / scale
                s, d = correspondences(v, vp, f, cfg.n_corr, rng)
                srcs.append(s)
                dsts.append(d)
                ws.append(w)
            out["corr_src"].append(np.array(srcs, np.float32).reshape(n_ex, cfg.n_corr, 3))
            out["corr_dst"].append(np.array(dsts, np.float32).reshape(n_ex, cfg.n_corr, 3))
            out["expr_weights"].append(np.array(ws, np.float32).reshape(n_ex, n_blend))
        report(progress, (i + 1) / len(seeds), f"training data {i + 1}/{len(seeds)}")
    arrays = {k: np.stack(v) for k, v in out.items()}
    return TrainingData(center=center, scale=float(scale), seeds=seeds, coeffs=coeffs, **arrays)


def load_or_build(model: PCAModel, model_path: str, cfg: NeuralConfig, cache_dir=None,
                  progress: ProgressFn | None = None) -> TrainingData:
    """Cached ``build_training_data``: an .npz per (model file, data config)."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    path = cache_dir / f"samples-{cache_key(model_path, cfg)}.npz"
    if path.exists():
        try:
            with np.load(path) as z:
                d = {k: z[k] for k in z.files}
            return TrainingData(center=d.pop("center"), scale=float(d.pop("scale")), **d)
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)  # a broken cache file is rebuilt, not fatal
    data = build_training_data(model, cfg, progress)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, center=data.center, scale=np.float64(data.scale),
                 **{k: getattr(data, k) for k in ("surface", "normals", "near", "near_sdf", "uniform",
                                                   "uniform_sdf", "corr_src", "corr_dst", "seeds",
                                                   "expr_weights", "coeffs")})
        tmp.replace(path)
    except OSError:
        pass  # caching is an optimisation only
    return data
