"""The trained neural head as a ``FaceModel``: latent sliders in, marching-cubes meshes out.

Parameters are coordinates along the principal directions of the trained latent codes, in units of
their standard deviation (prior N(0, 1), like a PCA model's coefficients)::

    z_id = id_mean + Σ_i α_i σ_i d_i          (group "identity", names ID1 … IDk)
    z_ex =           Σ_j β_j τ_j e_j          (group "expression", names EX1 … EXk)

Zero identity parameters give the mean identity code. Zero expression parameters give z_ex = 0,
which training reserves for the neutral face (the deformation is penalised towards Δ = 0 there),
so the all-zero face is the mean neutral head, as for the linear models; the expression directions
are those of the trained expression codes. Both maps are affine in the parameters, so blending
parameters (``studio interpolate``) is interpolation in latent space.

A mesh is the canonical (neutral) surface of ``z_id``, extracted by narrow-band marching cubes
(``extract.py``), with every vertex moved forward by the expression field ``deform`` (exact for a
forward field: no root finding). Caches make slider work cheap: the tri-planes and the canonical
meshes (one per resolution) of the last identity are kept, so an expression change only re-runs
``deform`` on the cached vertices. The topology depends on the identity (and the resolution):
consumers must not assume a fixed vertex count.

Vertices come out in mm (``x_mm = x * scale + center``, the checkpoint's normalisation).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from studio.core import prior
from studio.core.errors import StudioError
from studio.core.facemodel import Mesh, ModelKind, ModelMeta, ParamGroup, Params
from studio.core.neural.extract import extract

MAX_DIRECTIONS = None  # sliders per group (None: all). With every direction the sliders are
# a complete coordinate system of the code space, so a fitted code (scan fitting) is exactly its parameters.
# mesh(): grid points per axis over [-1, 1]³ (≈ 2.1 mm voxels at 265 mm per unit). An ear's rim is
# thinner than two of 192³'s 2.8 mm voxels, so marching cubes cut it into a ragged zig-zag there;
# 256³ keeps it whole, for 1.7× the time (0.62 s against 0.37 s on one core).
FULL_RESOLUTION = 256
PREVIEW_RESOLUTION = 64  # while a slider is dragged (≥ 10 meshes per second on 2 CPU cores)
# Narrow-band Lipschitz margins (extract.py). 1.5 gave meshes identical to dense extraction on every
# code tried (bench extract measures it); the preview takes the exact-SDF bound 1.0, ~30 % fewer
# queries, at the risk of dropping a sliver a few voxels big while the slider moves.
MARGIN = 1.5
PREVIEW_MARGIN = 1.0
# The tri-planes are looked up through a C¹ smoothing of their bilinear interpolant, upsampled this
# many times (model.smooth_planes; 0: plain bilinear lookup, as in training). Bilinear lookup creases
# the surface along every texel line, 8.4 mm apart: the vertical bands across face and neck.
PLANE_SMOOTHING = 4
# The box the tent is convolved with, in texels: 1 is the quadratic B-spline (smoothest, but 0.02 mm
# further from the scans in `bench fit`); 0.5 rounds every crease over 4.2 mm and scores as bilinear
# lookup did or better (`eval neural`, `bench fit`: README, "The neural head in the window").
PLANE_SMOOTHING_WIDTH = 0.5
DEFORM_BATCH = 1 << 16


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class NeuralFaceModel:
    kind: ModelKind = "neural"
    # declared capabilities (facemodel.FaceModel): the topology comes with each mesh, which has no
    # colours and no landmarks; the preview mesh is a coarser extraction; no photo fitting
    fixed_topology = False
    has_colors = False
    has_preview = True
    supports_photo_fit = False

    def __init__(self, checkpoint, name: str = "neural", source: str = "", resolution: int | None = None,
                 preview_resolution: int | None = None, max_directions: int | None = MAX_DIRECTIONS,
                 device: str | None = None):
        self.checkpoint = checkpoint
        self.device = device or default_device()
        self.net = checkpoint.model.to(self.device).eval()
        self.net.plane_smoothing = PLANE_SMOOTHING  # extraction and fitting see the same surface
        self.net.plane_smoothing_width = PLANE_SMOOTHING_WIDTH
        self.name = name
        self.resolution = int(resolution or FULL_RESOLUTION)
        self.preview_resolution = int(preview_resolution or PREVIEW_RESOLUTION)
        self.margin, self.preview_margin = MARGIN, PREVIEW_MARGIN
        st = checkpoint.stats
        try:
            self.id_mean = np.asarray(st["id_mean"], np.float64)
            self.id_dirs = np.asarray(st["id_directions"], np.float64)[:max_directions]
            self.id_sigmas = np.asarray(st["id_sigmas"], np.float64)[:max_directions]
            self.ex_dirs = np.asarray(st["ex_directions"], np.float64)[:max_directions]
            self.ex_sigmas = np.asarray(st["ex_sigmas"], np.float64)[:max_directions]
            self.id_cov = np.asarray(st.get("id_cov", np.diag(np.ones(len(self.id_mean)))), np.float64)
        except KeyError as e:
            raise StudioError(f"neural checkpoint {source or name} lacks latent statistics ({e.args[0]})") from None
        self.scale = float(checkpoint.scale)
        self.center = np.asarray(checkpoint.center, np.float64).reshape(3)
        self.groups = (
            ParamGroup("identity", tuple(f"ID{i + 1}" for i in range(len(self.id_sigmas)))),
            ParamGroup("expression", tuple(f"EX{i + 1}" for i in range(len(self.ex_sigmas)))),
        )
        meta = checkpoint.meta or {}
        self.meta = ModelMeta(unit="mm", attribution=str(meta.get("attribution", "")), source=source)
        self._lock = threading.Lock()  # the window's worker and a job may share the model
        self._id_key: bytes | None = None
        self._planes: torch.Tensor | None = None
        self._z_id_t: torch.Tensor | None = None
        self._canonical: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._normals: dict[int, np.ndarray] = {}
        self.extractions = 0  # canonical meshes extracted (the tests check the caches)

    # -- parameters ------------------------------------------------------------------------------
    def zeros(self) -> Params:
        return prior.zeros(self.groups)

    def check(self, params: Mapping[str, np.ndarray]) -> Params:
        return prior.check_params(self.groups, params)

    def sample(self, rng: np.random.Generator, scale: float = 1.0, only: Iterable[str] | None = None) -> Params:
        """Random identity, neutral expression (``only`` as in ``prior.sample``)."""
        return prior.sample(self.groups, rng, scale, ["identity"] if only is None else only)

    def log_prior(self, params: Mapping[str, np.ndarray]) -> float:
        return prior.log_prior(self.groups, self.check(params))

    def landmarks(self, scheme: str = "ibug68") -> None:
        return None  # vertex ids mean nothing when every identity has its own mesh

    def as_linear(self) -> None:
        return None

    def latents(self, params: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(z_id, z_ex) of a parameter set."""
        p = self.check(params)
        z_id = self.id_mean + (p["identity"] * self.id_sigmas) @ self.id_dirs
        z_ex = (p["expression"] * self.ex_sigmas) @ self.ex_dirs
        return z_id, z_ex

    def params_for(self, z_id: np.ndarray, z_ex: np.ndarray | None = None) -> Params:
        """The slider values closest to a latent code (projection onto the kept directions)."""
        a = ((np.asarray(z_id, np.float64) - self.id_mean) @ self.id_dirs.T) / self.id_sigmas
        b = np.zeros(len(self.ex_sigmas)) if z_ex is None else (np.asarray(z_ex) @ self.ex_dirs.T) / self.ex_sigmas
        return {"identity": a, "expression": b}

    # -- geometry --------------------------------------------------------------------------------
    def to_mm(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float64) * self.scale + self.center

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a, np.float32), device=self.device)

    def _bind_identity(self, z_id: np.ndarray) -> None:
        key = np.asarray(z_id, np.float32).tobytes()
        if key != self._id_key:
            with torch.inference_mode():
                self._z_id_t = self._tensor(z_id)[None]
                self._planes = self.net.planes(self._z_id_t)
            self._id_key = key
            self._canonical = {}
            self._normals = {}

    def sdf_fn(self, z_id: np.ndarray):
        """x (n, 3) tensor in normalised units → (n,) signed distance of identity ``z_id``."""
        self._bind_identity(z_id)
        assert self._planes is not None  # bound just now
        return inference_sdf(self.net, self._planes)

    def canonical(self, z_id: np.ndarray, resolution: int | None = None,
                  margin: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The neutral mesh of ``z_id`` in normalised units (cached per resolution for the last identity)."""
        res = int(resolution or self.resolution)
        self._bind_identity(z_id)
        if res not in self._canonical:
            e = extract(self.sdf_fn(z_id), res, (-1.0, 1.0), device=self.device, margin=margin or self.margin)
            if len(e.faces) == 0:
                raise StudioError("the neural model has no surface at these parameters")
            self.extractions += 1
            self._canonical[res] = (e.vertices, e.faces)
        return self._canonical[res]

    def canonical_normals(self, z_id: np.ndarray, resolution: int | None = None,
                          margin: float | None = None) -> np.ndarray:
        """Unit outward normals (n, 3) of the canonical mesh's vertices: the SDF's gradient there
        (cached with the mesh).

        Shading with the triangles' own normals shows marching cubes' voxel facets as streaks
        along the grid axes (vertical bands down neck and cheeks, 2.8 mm apart at 192³); the
        smoothed field's gradient (``PLANE_SMOOTHING``) is continuous, so these normals are what
        the surface is. One backward pass over the vertices (~25 % of an extraction)."""
        res = int(resolution or self.resolution)
        v, _ = self.canonical(z_id, res, margin)
        if res not in self._normals:
            assert self._planes is not None  # bound by canonical()
            with torch.inference_mode(False), torch.enable_grad():
                fn = inference_sdf(self.net, self._planes.clone())  # inference tensors take no autograd
                g = np.empty((len(v), 3), np.float32)
                for a in range(0, len(v), DEFORM_BATCH):
                    x = self._tensor(v[a:a + DEFORM_BATCH]).requires_grad_(True)
                    g[a:a + DEFORM_BATCH] = torch.autograd.grad(fn(x).sum(), x)[0].cpu().numpy()
            self._normals[res] = _unit(g)
        return self._normals[res]

    def deform(self, x: np.ndarray, z_ex: np.ndarray, z_id: np.ndarray) -> np.ndarray:
        """Forward expression offsets Δx (n, 3) at canonical points x (normalised units)."""
        self._bind_identity(z_id)
        out = np.empty((len(x), 3), np.float32)
        with torch.inference_mode():
            ze = self._tensor(z_ex)[None]
            for a in range(0, len(x), DEFORM_BATCH):
                xt = self._tensor(x[a:a + DEFORM_BATCH])[None]
                out[a:a + DEFORM_BATCH] = self.net.deform(xt, ze, self._z_id_t)[0].float().cpu().numpy()
        return out

    def mesh(self, params: Mapping[str, np.ndarray], resolution: int | None = None,
             margin: float | None = None, field_normals: bool = True) -> Mesh:
        """The head in mm; with ``field_normals`` its vertex normals are the SDF's (``canonical_normals``)."""
        z_id, z_ex = self.latents(params)
        with self._lock:
            v, f = self.canonical(z_id, resolution, margin)
            n = self.canonical_normals(z_id, resolution, margin) if field_normals else None
            if np.any(z_ex != 0):
                posed = v + self.deform(v, z_ex, z_id)
                if n is not None:
                    from studio.core.geometry import vertex_normals

                    # The field's normals turned as the deformation turns the mesh's own: their facet
                    # noise is common to both meshes and cancels (exact to first order in Δ's Jacobian).
                    n = _unit(n + vertex_normals(posed, f) - vertex_normals(v, f))
                v = posed
        return Mesh(self.to_mm(v).astype(np.float32), f, normals=n)

    def preview_mesh(self, params: Mapping[str, np.ndarray]) -> Mesh:
        """The mesh at the preview resolution (what the window shows while a slider is dragged), with
        the triangles' normals: the field's would cost a third more per change."""
        return self.mesh(params, self.preview_resolution, self.preview_margin, field_normals=False)


def _unit(n: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row becomes +z, as ``vertex_normals`` does)."""
    n = np.asarray(n, np.float32)
    length = np.linalg.norm(n, axis=1)
    out = (n / np.maximum(length, 1e-12)[:, None]).astype(np.float32)
    out[length <= 1e-12] = (0.0, 0.0, 1.0)
    return out


def inference_sdf(net, planes: torch.Tensor):
    """``net.sdf`` for a batch of points, for extraction (no gradients needed).

    Same numbers as ``net.sdf`` (to float round-off), ~25 % cheaper on a CPU: the decoder's
    softplus_β runs as ``F.softplus(β, threshold=20)``, one kernel instead of the three of the
    training path's ``logaddexp`` (above βx = 20 softplus equals x to within 2e-9/β). Layers this
    does not know are run as they are.
    """
    from studio.core.neural.model import sample_planes

    layers = list(net.decoder)

    def fn(x: torch.Tensor) -> torch.Tensor:
        h = torch.cat([sample_planes(planes, x[None])[0], x], dim=-1)
        for layer in layers:
            if isinstance(layer, torch.nn.Linear):
                h = F.linear(h, layer.weight, layer.bias)
            elif type(layer).__name__ == "Softplus" and hasattr(layer, "beta"):
                h = F.softplus(h, beta=layer.beta, threshold=20.0)
            else:
                h = layer(h)
        return h[:, 0]

    return fn


def load_neural(path, name: str | None = None, device: str | None = None, **kwargs) -> NeuralFaceModel:
    """Open a neural checkpoint (a .safetensors file or a folder holding one) as a FaceModel."""
    from studio.core.neural.checkpoint import load_checkpoint, resolve

    path = resolve(path)
    device = device or default_device()
    ckpt = load_checkpoint(path, device=device)
    return NeuralFaceModel(ckpt, name=name or "neural", source=str(Path(path)), device=device, **kwargs)


def untrained_checkpoint(config=None, seed: int = 0, feature_scale: float = 0.5):
    """A checkpoint with random weights, for benchmarks and tests that must not need training.

    The geometric initialisation makes the untrained SDF a sphere that ignores the tri-plane
    features; ``feature_scale`` gives the features random decoder weights so that latent codes
    bend the surface (and sliders change the mesh), while it stays one closed blob.
    """
    from studio.core.neural.checkpoint import NeuralCheckpoint, latent_stats
    from studio.core.neural.config import NeuralConfig
    from studio.core.neural.model import NeuralHead

    config = config or NeuralConfig()
    torch.manual_seed(seed)
    net = NeuralHead(config)
    first = [m for m in net.decoder if isinstance(m, torch.nn.Linear)][0]
    with torch.no_grad():
        first.weight[:, :config.plane_channels].normal_(0.0, feature_scale / config.plane_channels ** 0.5)
        last = [m for m in net.deformer if isinstance(m, torch.nn.Linear)][-1]
        last.weight.normal_(0.0, 0.02 / config.def_hidden ** 0.5)
    rng = np.random.default_rng(seed)
    id_codes = rng.normal(scale=0.3, size=(64, config.id_dim))
    ex_codes = rng.normal(scale=0.3, size=(64, config.ex_dim))
    stats = {**latent_stats(id_codes, "id"), **latent_stats(ex_codes, "ex"),
             "train_id_codes": id_codes, "train_ex_codes": ex_codes,
             "center": np.zeros(3), "scale": 100.0}
    meta = {"attribution": "untrained random network (no data)", "recipe": {"untrained": True}}
    return NeuralCheckpoint(net.eval(), config, stats, meta)
