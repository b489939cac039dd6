"""The ``FaceModel`` protocol every model kind satisfies (linear PCA models, the neural head model).

A model exposes named parameter groups (``shape``, ``expression``, ``color`` …), each a vector with
per-parameter names, a prior and a default slider range, and turns a ``Params`` mapping
(group name → vector) into a ``Mesh``. Panels, export, interpolation and fitting are written once
against this protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Mapping, Protocol, runtime_checkable

import numpy as np

Params = dict[str, np.ndarray]
PriorKind = Literal["normal", "box"]


@dataclass(frozen=True)
class ParamGroup:
    """One named vector of parameters.

    ``prior == "normal"``: value_i / sigma_i ~ N(0, 1) (PCA coefficients are stored in σ units, so
    sigma is 1). ``prior == "box"``: uniform on [lower, upper] (blendshape weights in [0, 1]).
    ``lower``/``upper`` are also the default slider range (±3σ for normal groups).
    ``affects`` says what the group changes: vertex ``position`` or vertex ``color``.
    """

    name: str
    names: tuple[str, ...]
    prior: PriorKind = "normal"
    sigma: np.ndarray | None = None
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    affects: Literal["position", "color"] = "position"

    def __post_init__(self):
        k = len(self.names)
        sigma = np.ones(k) if self.sigma is None else np.asarray(self.sigma, float)
        if self.prior == "normal":
            lower = -3 * sigma if self.lower is None else self.lower
            upper = 3 * sigma if self.upper is None else self.upper
        else:
            lower = np.zeros(k) if self.lower is None else self.lower
            upper = np.ones(k) if self.upper is None else self.upper
        object.__setattr__(self, "sigma", sigma)
        object.__setattr__(self, "lower", np.broadcast_to(np.asarray(lower, float), (k,)).copy())
        object.__setattr__(self, "upper", np.broadcast_to(np.asarray(upper, float), (k,)).copy())

    @property
    def size(self) -> int:
        return len(self.names)


@dataclass
class Mesh:
    """A triangle mesh as a model produces it; all arrays share the model's vertex order."""

    vertices: np.ndarray  # (n, 3) float
    faces: np.ndarray  # (m, 3) int
    colors: np.ndarray | None = None  # (n, 3) float in [0, 1]
    uv: np.ndarray | None = None  # (t, 2) texture coordinates
    face_uv: np.ndarray | None = None  # (m, 3) indices into ``uv`` per triangle corner
    face_material: np.ndarray | None = None  # (m,) index into ``materials``
    materials: tuple[str, ...] = ()


@dataclass
class ModelMeta:
    """What a model says about itself besides its numbers."""

    unit: str = "mm"  # length unit of vertices: "m", "cm" or "mm"
    regions: dict[str, np.ndarray] = field(default_factory=dict)  # name -> vertex indices
    landmarks: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. "ibug68" -> 68 vertex ids
    attribution: str = ""  # licence / citation text that must travel with the data
    source: str = ""  # where the model came from (importer, path)


@runtime_checkable
class FaceModel(Protocol):
    name: str
    kind: str  # "pca" or "neural"
    groups: tuple[ParamGroup, ...]
    meta: ModelMeta

    def mesh(self, params: Mapping[str, np.ndarray]) -> Mesh: ...


UNIT_TO_MM = {"m": 1000.0, "cm": 10.0, "mm": 1.0}
