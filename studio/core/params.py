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

from studio.core import prior
from studio.core.atomic import write_text
from studio.core.errors import StudioError
from studio.core.facemodel import Params

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
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StudioError(f"{path} is not valid JSON ({e.__class__.__name__}: {e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("groups"), dict):
        raise StudioError(f"{path} is not a parameters file: expected an object with \"groups\"")
    if doc.get("format", FORMAT) != FORMAT:
        raise StudioError(f"{path} has format {doc.get('format')!r}, expected {FORMAT!r}")
    return doc


def load(path: str | Path, model) -> Params:
    """Read and validate a parameters file against ``model`` (any FaceModel).

    The groups must match the model (names and sizes); the "model" key is informational, so a
    face made with one copy of a model loads into another copy of the same model.
    """
    doc = read(path)
    try:
        return prior.check_params(model.groups, doc["groups"])
    except StudioError as e:
        raise StudioError(f"{path}: {e}") from None
