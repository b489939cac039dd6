"""Blending faces in parameter space (written once for every FaceModel).

For linear models a blend of parameters is the blend of the meshes; for the neural model it is
interpolation in latent space. t outside [0, 1] extrapolates (a caricature of A away from B).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from studio.core.errors import StudioError
from studio.core.facemodel import Params


def lerp(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], t: float) -> Params:
    return blend([a, b], [1.0 - t, t])


def blend(faces: Sequence[Mapping[str, np.ndarray]], weights: Sequence[float]) -> Params:
    """Σ w_k · params_k, group by group; weights are used as given (they need not sum to one)."""
    if len(faces) == 0 or len(faces) != len(weights):
        raise StudioError("blend needs as many weights as faces, and at least one face")
    keys = set(faces[0])
    if any(set(f) != keys for f in faces):
        raise StudioError("the faces to blend have different parameter groups")
    return {k: np.sum([float(w) * np.asarray(f[k], float) for f, w in zip(faces, weights)], axis=0) for k in faces[0]}

