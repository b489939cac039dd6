"""The one model validator: what every linear model must satisfy to be stored, loaded and used.

Importers and ``build`` run it before anything in the store is written or replaced, and the model
file loader runs it on every model it reads, so a model that was accepted always loads again.
It checks the arrays as they are stored (float32 positions: a finite float64 such as 1e39 or
1e300 becomes inf there), every index against what it indexes, and the parameter groups'
numbers, which travel as JSON in the model file's header.
"""

from __future__ import annotations

import numpy as np

from studio.core import limits
from studio.core.errors import StudioError
from studio.core.facemodel import UNIT_TO_MM
from studio.core.pca import PCAModel

PRIORS = ("normal", "box")
AFFECTS = ("position", "color")


def check_model(model: PCAModel, where: str = "") -> None:
    """Raise one ``StudioError`` line (prefixed with ``where``) for anything that would not load."""
    def fail(msg: str):
        raise StudioError(f"{where}: {msg}" if where else msg)

    if not isinstance(model.name, str) or not model.name:
        fail("the model has no name")
    mean = _finite(model.mean, "mean", fail)
    if mean.ndim != 2 or mean.shape[1] != 3 or len(mean) == 0:
        fail(f"mean must be (n, 3) vertex positions, got {list(mean.shape)}")
    n = len(mean)
    faces = _indices(model.faces, n, "faces", fail)
    if faces.ndim != 2 or faces.shape[1] != 3:
        fail(f"faces must be (m, 3) triangles, got {list(faces.shape)}")
    _check_groups(model.linear, n, fail)
    if model.color_mean is not None and _finite(model.color_mean, "color_mean", fail).shape != (n, 3):
        fail(f"color_mean must be ({n}, 3)")
    _check_texture(model, len(faces), fail)
    unit = model.meta.unit
    if unit not in UNIT_TO_MM:
        fail(f"unit {unit!r} is not one of {', '.join(UNIT_TO_MM)}")
    for kind, sets in (("region", model.meta.regions), ("landmarks", model.meta.landmarks)):
        for name, idx in sets.items():
            if not isinstance(name, str) or not name:
                fail(f"a {kind} set has no name")
            if _indices(idx, n, f"{kind} '{name}'", fail).ndim != 1:
                fail(f"{kind} '{name}' must be a list of vertex ids")


def _check_groups(linear, n: int, fail) -> None:
    seen = set()
    for lg in linear:
        g = lg.group
        if not isinstance(g.name, str) or not g.name or g.name in seen:
            fail(f"parameter group name {g.name!r} is empty or repeated")
        seen.add(g.name)
        k = len(g.names)
        if not all(isinstance(s, str) for s in g.names):
            fail(f"group '{g.name}' has parameter names that are not text")
        if g.prior not in PRIORS or g.affects not in AFFECTS:
            fail(f"group '{g.name}' has prior {g.prior!r} / affects {g.affects!r}")
        basis = _finite(lg.basis, f"basis '{g.name}'", fail)
        if basis.shape != (k, n, 3):
            fail(f"basis '{g.name}' is {list(basis.shape)}, expected [{k}, {n}, 3]")
        for what in ("sigma", "lower", "upper"):
            v = _finite(getattr(g, what), f"group '{g.name}' {what}", fail)
            if v.shape != (k,):
                fail(f"group '{g.name}' {what} has {v.size} values for {k} parameters")
        if np.any(g.sigma <= 0) or np.any(g.lower > g.upper):
            fail(f"group '{g.name}' needs positive sigma and lower <= upper")


def _check_texture(model: PCAModel, m: int, fail) -> None:
    if model.face_uv is not None:
        if model.uv is None:
            fail("face_uv is given without uv")
        uv = _finite(model.uv, "uv", fail)
        if uv.ndim != 2 or uv.shape[1] != 2:
            fail(f"uv must be (t, 2), got {list(uv.shape)}")
        if _indices(model.face_uv, len(uv), "face_uv", fail).shape != (m, 3):
            fail(f"face_uv must be ({m}, 3)")
    elif model.uv is not None:
        _finite(model.uv, "uv", fail)
    if model.face_material is not None:
        count = max(len(model.materials), 1)
        if _indices(model.face_material, count, "face_material", fail).shape != (m,):
            fail(f"face_material must have one entry per triangle ({m})")
    if not all(isinstance(s, str) for s in model.materials):
        fail("material names must be text")


def _finite(a, what: str, fail) -> np.ndarray:
    if not isinstance(a, np.ndarray) or a.dtype.kind not in "iuf":
        fail(f"{what} is not a numeric array")
    if a.nbytes > limits.MODEL_ARRAY_BYTES:
        fail(f"{what} is {a.nbytes / limits.MiB:.0f} MiB; the limit for one array is "
             f"{limits.MODEL_ARRAY_BYTES / limits.MiB:.0f} MiB")
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        fail(f"{what} contains NaN or infinite values (as stored, in {a.dtype})")
    return a


def _indices(a, count: int, what: str, fail) -> np.ndarray:
    if not isinstance(a, np.ndarray) or a.dtype.kind not in "iu":
        fail(f"{what} must be whole-number indices")
    if a.size and (a.min() < 0 or a.max() >= count):
        fail(f"{what} has indices outside 0..{count - 1}")
    return a
