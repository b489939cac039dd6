"""The linear (PCA) morphable model (Blanz & Vetter 1999).

    vertices = mean + Σ_groups Σ_i α_i · B_i,        colours = colour_mean + Σ_i γ_i · C_i

where every basis vector B_i is stored already multiplied by its standard deviation σ_i, so the
coefficients α are in σ units and the prior is p(α) ∝ exp(−½ Σ α_i²). Expression blendshapes are a
group of the same form whose prior is a box (weights in [0, 1]) instead of a Gaussian.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np

from studio.core import prior
from studio.core.errors import StudioError
from studio.core.facemodel import Mesh, ModelKind, ModelMeta, ParamGroup, Params


@dataclass
class LinearGroup:
    """A parameter group plus its basis, shape (k, n, 3) so one component is one contiguous block."""

    group: ParamGroup
    basis: np.ndarray


@dataclass
class PCAModel:
    name: str
    mean: np.ndarray  # (n, 3) float32
    faces: np.ndarray  # (m, 3) int32 triangles
    linear: list[LinearGroup]
    color_mean: np.ndarray | None = None  # (n, 3) float32 in [0, 1]
    uv: np.ndarray | None = None
    face_uv: np.ndarray | None = None
    face_material: np.ndarray | None = None
    materials: tuple[str, ...] = ()
    meta: ModelMeta = field(default_factory=ModelMeta)
    kind: ModelKind = "pca"

    def __post_init__(self) -> None:
        # A finite float64 beyond float32's range becomes inf here; modelcheck.check_model reports it
        # as one line, so numpy's overflow warning would only add a second, confusing one.
        with np.errstate(over="ignore", invalid="ignore"):
            self.mean = np.ascontiguousarray(self.mean, dtype=np.float32)
            self.faces = np.ascontiguousarray(self.faces, dtype=np.int32)
            for lg in self.linear:
                lg.basis = np.ascontiguousarray(lg.basis, dtype=np.float32)
            if self.color_mean is not None:
                self.color_mean = np.ascontiguousarray(self.color_mean, dtype=np.float32)
        self._by_name = {lg.group.name: lg for lg in self.linear}

    # -- FaceModel protocol -------------------------------------------------------------------
    @property
    def groups(self) -> tuple[ParamGroup, ...]:
        return tuple(lg.group for lg in self.linear)

    @property
    def n_vertices(self) -> int:
        return int(self.mean.shape[0])

    # -- declared capabilities (facemodel.FaceModel) ----------------------------------------------
    @property
    def fixed_topology(self) -> bool:
        return True

    @property
    def has_colors(self) -> bool:
        return self.color_mean is not None

    @property
    def has_preview(self) -> bool:
        return False  # a full evaluation is already quick (about a millisecond)

    @property
    def supports_photo_fit(self) -> bool:
        return True

    def landmarks(self, scheme: str = "ibug68") -> np.ndarray | None:
        lm = self.meta.landmarks.get(scheme)
        return None if lm is None else np.asarray(lm, np.int64)

    def as_linear(self) -> PCAModel:
        return self

    def basis(self, group: str) -> np.ndarray:
        return self._by_name[group].basis

    def zeros(self) -> Params:
        return prior.zeros(self.groups)

    def check(self, params: Mapping[str, np.ndarray]) -> Params:
        return prior.check_params(self.groups, params)

    def vertices(self, params: Mapping[str, np.ndarray]) -> np.ndarray:
        """Full evaluation: mean + Σ α·B over position groups (one matrix-vector product each)."""
        out = self.mean.copy()
        for lg in self.linear:
            if lg.group.affects == "position":
                _accumulate(out, lg.basis, params.get(lg.group.name))
        return out

    def colors(self, params: Mapping[str, np.ndarray]) -> np.ndarray | None:
        if self.color_mean is None:
            return None
        out = self.color_mean.copy()
        for lg in self.linear:
            if lg.group.affects == "color":
                _accumulate(out, lg.basis, params.get(lg.group.name))
        return np.clip(out, 0.0, 1.0)

    def mesh(self, params: Mapping[str, np.ndarray]) -> Mesh:
        params = self.check(params)
        return Mesh(self.vertices(params), self.faces, self.colors(params), self.uv, self.face_uv,
                    self.face_material, self.materials)

    def preview_mesh(self, params: Mapping[str, np.ndarray]) -> Mesh:
        return self.mesh(params)

    def log_prior(self, params: Mapping[str, np.ndarray]) -> float:
        return prior.log_prior(self.groups, self.check(params))

    def sample(self, rng: np.random.Generator, scale: float = 1.0, only: Iterable[str] | None = None) -> Params:
        return prior.sample(self.groups, rng, scale, only)

    def evaluator(self, params: Mapping[str, np.ndarray] | None = None) -> "IncrementalEvaluator":
        return IncrementalEvaluator(self, params)


def _accumulate(out: np.ndarray, basis: np.ndarray, coeffs: np.ndarray | None) -> None:
    if coeffs is None or basis.shape[0] == 0:
        return
    c = np.asarray(coeffs, dtype=np.float32)
    nz = np.flatnonzero(c)
    if nz.size == 0:
        return
    k, n, _ = basis.shape
    if nz.size < k // 4:
        # Few active components (typical while editing): touch only their rows.
        out += (c[nz] @ basis[nz].reshape(nz.size, -1)).reshape(n, 3)
    else:
        out += (c @ basis.reshape(k, -1)).reshape(n, 3)


class IncrementalEvaluator:
    """Keeps the current vertices and updates them in O(n) when one coefficient changes.

    Changing α_i by δ adds δ·B_i: one contiguous (n, 3) axpy instead of the O(n·k) product.
    Float32 round-off accumulates over many updates, so after ``resync_every`` updates the
    vertices are recomputed in full (amortised cost stays O(n)).
    """

    def __init__(self, model: PCAModel, params: Mapping[str, np.ndarray] | None = None,
                 resync_every: int = 256) -> None:
        self.model = model
        self.resync_every = resync_every
        self._scratch = np.empty_like(model.mean)
        self.set_params(model.zeros() if params is None else params)

    def set_params(self, params: Mapping[str, np.ndarray]) -> np.ndarray:
        self.params = self.model.check(params)
        self.vertices = self.model.vertices(self.params)
        self._updates = 0
        return self.vertices

    def set(self, group: str, index: int, value: float) -> np.ndarray:
        lg = self.model._by_name.get(group)
        if lg is None:
            raise StudioError(f"unknown parameter group '{group}'")
        if not 0 <= index < lg.group.size:
            raise StudioError(f"'{group}' has {lg.group.size} parameters; index {index} is out of range")
        if not np.isfinite(value):
            raise StudioError("parameter value must be a finite number")
        delta = float(value) - float(self.params[group][index])
        self.params[group][index] = float(value)
        if delta != 0.0 and lg.group.affects == "position":
            self._updates += 1
            if self._updates >= self.resync_every:
                return self.set_params(self.params)
            # In place through a reused scratch buffer: no allocation on the slider's hot path.
            np.multiply(lg.basis[index], np.float32(delta), out=self._scratch)
            self.vertices += self._scratch
        return self.vertices
