"""Saved faces ("identities") on disk; no Qt, so the worker can run every function here.

    <store>/models/<model>/identities/<name>.json   the parameters JSON (studio.core.params)
    <store>/models/<model>/identities/<name>.png    a thumbnail (studio.core.render)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from studio.core import params as params_io
from studio.core import store
from studio.core.atomic import check_writable
from studio.core.errors import StudioError
from studio.core.render import face_closeup, write_png

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$")
THUMB_SIZE = 112


@dataclass(frozen=True)
class Identity:
    name: str
    json: Path
    png: Path


def folder(model_name: str) -> Path:
    return store.model_dir(model_name) / "identities"


def check_name(name: str) -> str:
    name = (name or "").strip()
    if not _NAME.match(name):
        raise StudioError(f"invalid face name {name!r}: use letters, digits, spaces, '_', '-', '.' (up to 64)")
    return name


def entry(model_name: str, name: str) -> Identity:
    d = folder(model_name)
    return Identity(name, d / f"{name}.json", d / f"{name}.png")


def exists(model_name: str, name: str) -> bool:
    return entry(model_name, name).json.exists()


def list_all(model_name: str) -> list[Identity]:
    d = folder(model_name)
    if not d.is_dir():
        return []
    return [entry(model_name, p.stem) for p in sorted(d.glob("*.json"), key=lambda p: p.stem.lower())]


def save(model, params, name: str, force: bool = False, progress=None) -> Identity:
    """Write the parameters and a thumbnail; refuses to replace an existing face unless ``force``."""
    e = entry(model.name, check_name(name))
    e.json.parent.mkdir(parents=True, exist_ok=True)
    check_writable(e.json, force)
    image = face_closeup(model, params, THUMB_SIZE)  # the face, not the bust, with its eyes
    write_png(e.png, image, force=True)  # the thumbnail belongs to the JSON: always replaced with it
    params_io.save(e.json, model.name, params, force, name=e.name)
    return e


def load(model, identity: Identity):
    return params_io.load(identity.json, model)


def delete(identity: Identity) -> None:
    for p in (identity.json, identity.png):
        p.unlink(missing_ok=True)
