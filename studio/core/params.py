"""The parameters JSON: a face as a user saves, edits and shares it.

    {"format": "face-studio-params", "version": 1, "model": "ict",
     "groups": {"shape": [0.3, -1.2, ...], "expression": [0, 0.8, ...]}}

Groups left out are zero; every listed group must have exactly the model's number of values.
Extra top-level keys (e.g. "pose", "camera" from fitting) are kept but not interpreted here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import numpy as np

from studio.core import jsonio, prior
from studio.core.atomic import write_text
from studio.core.errors import StudioError
from studio.core.facemodel import FaceModel, Params

FORMAT = "face-studio-params"
VERSION = 1


def to_json(model_name: str, params: Mapping[str, np.ndarray], **extra) -> dict:
    doc = {"format": FORMAT, "version": VERSION, "model": model_name,
           "groups": {k: [float(x) for x in np.asarray(v).reshape(-1)] for k, v in params.items()}}
    doc.update(extra)
    return doc


def save(path: str | Path, model_name: str, params: Mapping[str, np.ndarray], force: bool = False,
         **extra) -> Path:
    return write_text(path, json.dumps(to_json(model_name, params, **extra), indent=1) + "\n", force)


def read(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise StudioError(f"parameters file {path} does not exist")
    doc = jsonio.read(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("groups"), dict):
        raise StudioError(f"{path} is not a parameters file: expected an object with \"groups\"")
    if doc.get("format", FORMAT) != FORMAT:
        raise StudioError(f"{path} has format {doc.get('format')!r}, expected {FORMAT!r}")
    return doc


def load(path: str | Path, model: FaceModel) -> Params:
    """Read and validate a parameters file against ``model`` (any FaceModel).

    The groups must match the model (names and sizes); the "model" key is informational, so a
    face made with one copy of a model loads into another copy of the same model.
    """
    doc = read(path)
    try:
        params = prior.check_params(model.groups, doc["groups"])
        _check_ranges(model.groups, params)
    except StudioError as e:
        raise StudioError(f"{path}: {e}") from None
    return params


# Far beyond any face (a fit ends within a few σ), yet small enough that α·B stays finite in float32.
MAX_SIGMAS = 1000.0


def _check_ranges(groups, params: Params) -> None:
    """A box-prior group (blendshape weights) is defined only on [lower, upper]: a weight of 7 is
    not a face of the model, so a file holding one is refused rather than drawn extrapolated.
    A normal group is unbounded in principle; ±MAX_SIGMAS σ keeps the face finite."""
    for g in groups:
        v = params[g.name]
        if g.prior != "box":
            bad = np.flatnonzero(np.abs(v) > MAX_SIGMAS * g.sigma)
            if bad.size:
                raise StudioError(f"'{g.name}' value {g.names[bad[0]]} is {v[bad[0]]:g}, more than "
                                  f"{MAX_SIGMAS:g} standard deviations from the mean")
            continue
        bad = np.flatnonzero((v < g.lower - 1e-9) | (v > g.upper + 1e-9))
        if bad.size:
            i = int(bad[0])
            raise StudioError(f"'{g.name}' weight {g.names[i]} is {v[i]:g}, outside its range "
                              f"[{g.lower[i]:g}, {g.upper[i]:g}]")
