"""Sizes and training settings of the neural head model, as one JSON-able dataclass.

The defaults are the shipped model's first run's (three more runs continued it with ``--init``, the
last on 4,000 identities: checkpoints/neural/README.md). They are chosen so the model trains on 2 CPU cores in about an
hour and evaluates live on a CPU (measured on the 2-core development machine, eager torch 2.13,
``torch.set_num_threads(2)``; see ``studio train neural`` / the README for the figures):

* ``id_dim=64``, ``ex_dim=32``: the ICT identity space has 100 PCs of which ~30 carry most of the
  variance, its expression space 53 sparse blendshapes; 64/32 latent dimensions are plenty and keep
  the auto-decoder codes cheap to fit.
* tri-planes ``3 × 16 × 64²``: a slim DCGAN generator (4² → 64², 4 transposed convs) costs ~5 ms
  per code, against ~40 ms at 128²; 64² texels over the normalised head (≈ 25 cm across [-1, 1])
  are ≈ 4 mm per texel, and the bilinear features plus the MLP resolve finer than a texel.
  Bilinear sampling of 3 × 16 channels costs ≈ 0.36 µs per point.
* decoder ``2 × 64`` hidden units on [Σ planes (16), x (3)]: the full ``sdf`` (bilinear sampling +
  decoder) measured 35 ms per 40k points (≈ 0.86 µs per point, 2 idle threads; ≈ 1.9 µs with one thread
  on a loaded machine), so generator + 40k preview queries (a 96³ narrow band) take ≈ 40 ms. The
  exact softplus is still most of the decoder's time (logaddexp form: 12 ms per 40k × 64 activations
  against 25 ms for ``F.softplus``; a 64-wide matmul of the same rows is ≈ 7–11 ms).
* deformation MLP ``3 × 128`` on [x, z_ex, z_id]: ≈ 2.5 µs per point, but it only runs on the canonical
  mesh's vertices (≈ 65 ms for 26k vertices), never on a volume.
* Training on 2 cores: ≈ 0.27 s per identity step (8 identities × 3 500 points with second-order
  gradients) on an idle machine, ≈ 0.35 s per expression step; 1 s on a machine shared with other
  jobs. Total parameters 0.69 M (≈ 3 MB checkpoint with the latent codes).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from studio.core import jsonio, limits
from studio.core.errors import StudioError

MODEL_FIELDS = ("id_dim", "ex_dim", "plane_channels", "plane_res", "gen_base_res", "gen_channels", "dec_hidden",
                "dec_layers", "def_hidden", "def_layers", "softplus_beta")


@dataclass
class NeuralConfig:
    # --- model sizes -------------------------------------------------------------------------
    id_dim: int = 64                 # identity latent z_id
    ex_dim: int = 32                 # expression latent z_ex
    plane_channels: int = 16         # C: feature channels per tri-plane
    plane_res: int = 64              # R: tri-plane resolution (power of two ≥ gen_base_res)
    gen_base_res: int = 4            # generator starts from a base_res² feature map
    gen_channels: tuple = (128, 128, 64, 64, 32)  # channels at base_res, then after each 2× upsampling
    dec_hidden: int = 64             # decoder hidden width
    dec_layers: int = 2              # decoder hidden layers
    def_hidden: int = 128            # deformation MLP width
    def_layers: int = 3              # deformation MLP hidden layers
    softplus_beta: float = 100.0     # β of the softplus activations (thesis: 100)
    init_radius: float = 0.6         # geometric init: the untrained SDF is a sphere of this radius

    # --- training data (from a linear model) ---------------------------------------------------
    n_train: int = 240               # training identities (seeds train_seed0 .. +n_train-1)
    train_seed0: int = 0
    heldout_seed0: int = 100000      # held-out identities for evaluation: seeds from here on
    n_heldout: int = 50
    n_expr_per_id: int = 4           # random expressions per training identity
    n_expr_ids: int = 0              # identities with expressions (the first ones); 0: all
    n_norm_ids: int = 0              # identities the normalisation is computed on (the first ones); 0: all
    expr_active: int = 6             # non-zero blendshape weights per random expression
    expr_active_max: int = 0         # > 0: a random count in expr_active..expr_active_max per expression
                                     #   (1..53 on ICT: every blendshape, alone and in crowds)
    regions: tuple = ("face", "head_and_neck")   # outer surface used for the SDF
    eye_regions: tuple = ()          # closed shells joined to the solid (ICT: the eyeballs), data.py
    detail_share: float = 0.0        # share of surface/near samples drawn by curvature × area (data.py)
    n_surface: int = 16000           # per identity: surface points with normals
    n_near: int = 16000              # per identity: near-surface points (half at each σ)
    near_sigmas: tuple = (0.01, 0.002)  # perturbation std devs, normalised units
    n_uniform: int = 8000            # per identity: uniform points in the ball of radius 1
    n_corr: int = 8000               # per (identity, expression): corresponding surface points
    unit_radius: float = 0.9         # all training heads fit in this radius after normalisation

    # --- optimisation ----------------------------------------------------------------------------
    batch_ids: int = 8               # identities per step
    pts_surface: int = 1500          # points per identity per step, by kind
    pts_near: int = 1500
    pts_uniform: int = 500
    lr_model: float = 1e-3
    lr_latent: float = 3e-3
    lr_decay: float = 0.3            # multiply lrs by this over each stage (cosine-free, linear in log)
    id_steps: int = 20000            # step budgets per stage (a --max-minutes time budget splits
    ex_steps: int = 6000             #   by stage_time_fractions and ends a stage early)
    render_steps: int = 0            # the 2D stage (runs after identity, before expression)
    stage_time_fractions: tuple = (0.78, 0.22, 0.0)  # (identity, expression, render): JSON order kept
    ex_batch: int = 16               # (identity, expression) pairs per expression step
    ex_pts: int = 1000               # correspondences per pair per step
    ex_pts_free: int = 300           # uniform points per pair for the deformation penalty

    # loss weights (thesis Table 4.1 / §4.3.3)
    w_surface: float = 3.0
    w_normal: float = 1.0
    w_eikonal: float = 0.1
    w_nonsurface: float = 0.05
    nonsurface_alpha: float = 100.0
    w_near: float = 1.0              # explicit SDF supervision on near-surface points
    w_uniform: float = 0.3           # explicit SDF supervision on uniform points (distance known)
    w_tv: float = 1e-3
    w_plane_l2: float = 1e-4
    w_latent: float = 1e-3
    w_corr: float = 10.0
    w_deform: float = 0.5
    w_ex_latent: float = 1e-3

    # 2D branch (render2d.py)
    render_res: int = 64
    render_samples: int = 32
    render_fine: int = 0             # > 0: coarse-to-fine rays, this many samples with gradients
    render_batch: int = 0            # identities rendered per 2D step (0: batch_ids // 2)
    w_render_3d: float = 1.0         # the 3D identity losses' weight inside the 2D stage
    w_render_normal: float = 1.0
    w_gan: float = 0.05
    r1_gamma: float = 1.0

    # reconstruction-quality report written at the end of training (quality.py)
    eval_res: int = 128              # dense marching-cubes grid
    eval_n: int = 3                  # training and held-out identities measured
    eval_fit_steps: int = 200        # Adam steps fitting a held-out identity's code

    seed: int = 0
    checkpoint_minutes: float = 4.0  # write a resumable checkpoint this often

    @property
    def expr_ids(self) -> int:
        """Identities with expression data (n_expr_ids, 0 meaning all)."""
        return self.n_expr_ids or self.n_train

    @property
    def norm_ids(self) -> int:
        """Identities the normalisation is computed on (n_norm_ids, 0 meaning all)."""
        return self.n_norm_ids or self.n_train

    def architecture(self) -> dict[str, Any]:
        """The fields that decide the network's tensors (a warm start needs them equal)."""
        return {k: getattr(self, k) for k in MODEL_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "NeuralConfig":
        if not isinstance(d, dict):
            raise StudioError("neural config must be a JSON object")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise StudioError(f"unknown neural config keys: {', '.join(unknown)}")
        kw = {k: _typed(k, v, known[k].default) for k, v in d.items()}
        cfg = cls(**kw)
        cfg.validate()
        return cfg

    @classmethod
    def from_json_file(cls, path) -> "NeuralConfig":
        return cls.from_dict(jsonio.read(path, f"config {path}"))

    @property
    def n_upsample(self) -> int:
        n = (self.plane_res // self.gen_base_res).bit_length() - 1
        return n

    def validate(self) -> None:
        r, b = self.plane_res, self.gen_base_res
        if b <= 0 or r < b or r % b or (r // b) & (r // b - 1):
            raise StudioError(f"plane_res {r} must be gen_base_res {b} times a power of two")
        if len(self.gen_channels) != self.n_upsample + 1:
            raise StudioError(f"gen_channels needs {self.n_upsample + 1} entries for plane_res {r}")
        for name in ("id_dim", "ex_dim", "plane_channels", "dec_hidden", "dec_layers", "def_hidden",
                     "def_layers", "n_train", "batch_ids"):
            if int(getattr(self, name)) <= 0:
                raise StudioError(f"neural config {name} must be positive")
        if not (0 <= self.n_expr_ids <= self.n_train and 0 <= self.n_norm_ids <= self.n_train):
            raise StudioError("neural config n_expr_ids and n_norm_ids must lie between 0 and n_train")
        if len(self.near_sigmas) != 2:
            raise StudioError("near_sigmas needs two perturbation levels")
        _check_ranges(self)

    def __post_init__(self):
        self.gen_channels = tuple(self.gen_channels)
        self.regions = tuple(self.regions)
        self.eye_regions = tuple(self.eye_regions)
        self.near_sigmas = tuple(self.near_sigmas)
        self.stage_time_fractions = tuple(self.stage_time_fractions)


# Every field's range. Checkpoints and config files are user input: dec_layers=1e6 would build a
# network for hours and dec_hidden=200000 ask for 160 GB, so each size is bounded here and the
# whole network by limits.NEURAL_PARAMETERS, before torch allocates anything. The bounds are far
# above what trains on any machine the studio targets (shipped sizes: see the dataclass).
_SIZE, _COUNT, _POINTS, _STEPS = (1, 4096), (0, 1_000_000), (0, 10_000_000), (0, 100_000_000)
_RANGES = {
    "id_dim": (1, 1024), "ex_dim": (1, 1024), "plane_channels": (1, 256), "plane_res": (1, 1024),
    "gen_base_res": (1, 256), "dec_hidden": _SIZE, "dec_layers": (1, 64), "def_hidden": _SIZE,
    "def_layers": (1, 64), "softplus_beta": (1e-3, 1e6), "init_radius": (1e-3, 1.0),
    "n_train": (1, 1_000_000), "train_seed0": (0, 2 ** 62), "heldout_seed0": (0, 2 ** 62), "n_heldout": _COUNT,
    "n_expr_per_id": (0, 10_000), "n_expr_ids": _COUNT, "n_norm_ids": _COUNT, "expr_active": (0, 10_000),
    "n_surface": _POINTS, "n_near": _POINTS, "n_uniform": _POINTS, "n_corr": _POINTS, "unit_radius": (1e-3, 1.0),
    "batch_ids": (1, 100_000), "pts_surface": _POINTS, "pts_near": _POINTS, "pts_uniform": _POINTS,
    "lr_model": (0.0, 10.0), "lr_latent": (0.0, 10.0), "lr_decay": (0.0, 1.0), "id_steps": _STEPS,
    "ex_steps": _STEPS, "render_steps": _STEPS, "ex_batch": (1, 100_000), "ex_pts": _POINTS,
    "ex_pts_free": _POINTS, "render_res": (1, 2048), "render_samples": (1, 4096), "render_fine": (0, 4096),
    "render_batch": (0, 100_000), "expr_active_max": (0, 10_000), "detail_share": (0.0, 1.0), "eval_res": (2, 1024),
    "eval_n": (0, 10_000), "eval_fit_steps": _STEPS, "seed": (0, 2 ** 62), "checkpoint_minutes": (0.0, 1e6),
    "nonsurface_alpha": (0.0, 1e6), "r1_gamma": (0.0, 1e6),
}
_ITEM_RANGES = {"gen_channels": (1, 4096), "near_sigmas": (0.0, 10.0), "stage_time_fractions": (0.0, 1.0)}


def _typed(key: str, value, default):
    """``value`` with the JSON type of the field's default (bool is not a number here)."""
    if isinstance(default, tuple):
        if not isinstance(value, list) or len(value) > 64:
            raise StudioError(f"neural config {key} must be a short JSON list")
        # (an empty default, e.g. eye_regions, holds region names)
        items = [_typed(key, v, default[0] if default else "") for v in value]
        return tuple(items)
    if isinstance(default, str):
        ok = isinstance(value, str) and len(value) <= 256
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok:
        kind = {"int": "whole number", "float": "number", "str": "text"}[type(default).__name__]
        raise StudioError(f"neural config {key} must be a {kind}, not {value!r:.40}")
    return value


def _check_ranges(cfg: NeuralConfig) -> None:
    for key, (lo, hi) in _RANGES.items():
        v = getattr(cfg, key)
        if not lo <= v <= hi:
            raise StudioError(f"neural config {key} = {v} is outside {lo}..{hi}")
    for key in (f.name for f in dataclasses.fields(cfg) if f.name.startswith("w_")):
        if not 0 <= getattr(cfg, key) <= 1e6:
            raise StudioError(f"neural config {key} = {getattr(cfg, key)} is outside 0..1e6")
    for key, (lo, hi) in _ITEM_RANGES.items():
        if not all(lo <= v <= hi for v in getattr(cfg, key)):
            raise StudioError(f"neural config {key} has entries outside {lo}..{hi}")
    if parameter_estimate(cfg) > limits.NEURAL_PARAMETERS:
        raise StudioError(f"neural config describes a network of about {parameter_estimate(cfg) / 1e6:.0f} M "
                          f"parameters; the limit is {limits.NEURAL_PARAMETERS / 1e6:.0f} M")


def parameter_estimate(cfg: NeuralConfig) -> int:
    """Weights of the network ``cfg`` describes (model.py's layers), without building it."""
    ch, c = cfg.gen_channels, cfg.plane_channels
    gen = cfg.id_dim * ch[0] * cfg.gen_base_res ** 2 + sum(16 * a * b for a, b in zip(ch, ch[1:])) + 9 * ch[-1] * 3 * c

    def mlp(d_in, hidden, layers, d_out):
        return d_in * hidden + (layers - 1) * hidden * hidden + hidden * d_out

    return gen + mlp(c + 3, cfg.dec_hidden, cfg.dec_layers, 1) + mlp(
        3 + cfg.ex_dim + cfg.id_dim, cfg.def_hidden, cfg.def_layers, 3)


def tiny_config(**overrides) -> NeuralConfig:
    """A few-second configuration for tests."""
    base: dict[str, Any]
    base = dict(id_dim=8, ex_dim=4, plane_channels=4, plane_res=16, gen_base_res=4, gen_channels=(16, 16, 8),
                dec_hidden=32, dec_layers=2, def_hidden=32, def_layers=2, n_train=4, n_heldout=2,
                n_expr_per_id=2, n_surface=800, n_near=800, n_uniform=400, n_corr=300, batch_ids=2,
                pts_surface=200, pts_near=200, pts_uniform=100, ex_batch=4, ex_pts=100, ex_pts_free=50,
                id_steps=30, ex_steps=10, render_steps=0, render_res=16, render_samples=12, eval_res=24,
                eval_n=2, eval_fit_steps=10)
    base.update(overrides)
    cfg = NeuralConfig(**base)
    cfg.validate()
    return cfg
