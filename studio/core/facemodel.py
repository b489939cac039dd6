"""The ``FaceModel`` protocol every model kind satisfies (linear PCA models, the neural head model).

A model exposes named parameter groups (``shape``, ``expression``, ``color`` …), each a vector with
per-parameter names, a prior and a default slider range, and turns a ``Params`` mapping
(group name → vector) into a ``Mesh``. Panels, export, interpolation and fitting are written once
against this protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Literal, Mapping, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from studio.core.pca import PCAModel

Params = dict[str, np.ndarray]
PriorKind = Literal["normal", "box"]
ModelKind = Literal["pca", "neural"]
Affects = Literal["position", "color"]


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
    # None (the default) is replaced in __post_init__, so after construction each is an array.
    sigma: np.ndarray = None  # type: ignore[assignment]
    lower: np.ndarray = None  # type: ignore[assignment]
    upper: np.ndarray = None  # type: ignore[assignment]
    affects: Affects = "position"

    def __post_init__(self) -> None:
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
    normals: np.ndarray | None = None  # (n, 3) unit vertex normals, where the model knows them better than
    # its triangles do (the neural head: its SDF's gradient); None: the triangles' area-weighted normals


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
    """What every model is and declares. Code asks these members, never ``hasattr``/``getattr``.

    Capabilities (each model states every one; the linear model has them all, the neural head
    none but ``has_preview``):

    - ``fixed_topology``: every mesh has the same ``n_vertices`` vertices, in the same order, and
      the same triangles, so per-vertex data (regions, landmarks, colours, morph targets, a
      registration's correspondences) carries over from one face to the next;
    - ``has_colors``: meshes carry vertex colours (a ``color`` group or a colour mean);
    - ``has_preview``: ``preview_mesh`` is a coarser, quicker mesh than ``mesh`` (the window shows it
      while a slider is dragged and refines afterwards); otherwise it is ``mesh``;
    - ``landmarks(scheme)``: vertex ids of a landmark scheme (``"ibug68"``) on the fixed topology;
    - ``supports_photo_fit``: photo fitting (``studio fit photo``) works on the model;
    - ``as_linear()``: the linear model with its per-group bases (``PCAModel``), or None;
    - ``sample``: a random plausible face (the model knows which groups make one).
    """

    @property
    def name(self) -> str: ...

    @property
    def groups(self) -> tuple[ParamGroup, ...]: ...

    @property
    def meta(self) -> ModelMeta: ...

    @property
    def kind(self) -> ModelKind: ...

    @property
    def fixed_topology(self) -> bool: ...

    @property
    def has_colors(self) -> bool: ...

    @property
    def has_preview(self) -> bool: ...

    @property
    def supports_photo_fit(self) -> bool: ...

    def mesh(self, params: Mapping[str, np.ndarray]) -> Mesh: ...

    def preview_mesh(self, params: Mapping[str, np.ndarray]) -> Mesh: ...

    def zeros(self) -> Params: ...

    def check(self, params: Mapping[str, np.ndarray]) -> Params: ...

    def log_prior(self, params: Mapping[str, np.ndarray]) -> float: ...

    def sample(self, rng: np.random.Generator, scale: float = 1.0,
               only: Iterable[str] | None = None) -> Params: ...

    def landmarks(self, scheme: str = "ibug68") -> np.ndarray | None: ...

    def as_linear(self) -> PCAModel | None: ...


UNIT_TO_MM = {"m": 1000.0, "cm": 10.0, "mm": 1.0}
