"""The model store: imported and built models, saved identities, the GUI session.

Layout under ``$STUDIO_HOME`` (default: the per-user data folder from platformdirs)::

    models/<name>/model.npz        the model (see modelfile.py)
    models/<name>/identities/      saved faces (parameters JSON + thumbnail)
    models/<name>/*.png            reports written on import/build (e.g. spectrum.png)
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import platformdirs

from studio.core.errors import StudioError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MODEL_FILE = "model.npz"
# Models that ship with the repository (not in the store): the trained neural head.
CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"
NEURAL_SUFFIX = ".safetensors"


def home() -> Path:
    env = os.environ.get("STUDIO_HOME")
    return Path(env).expanduser() if env else Path(platformdirs.user_data_dir("face-studio", appauthor=False))


def models_dir() -> Path:
    return home() / "models"


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise StudioError(f"invalid model name {name!r}: use letters, digits, '_', '-', '.' (up to 64)")
    return name


def model_dir(name: str) -> Path:
    return models_dir() / check_name(name)


def model_file(name: str) -> Path:
    return model_dir(name) / MODEL_FILE


def exists(name: str) -> bool:
    return model_file(name).is_file()


def names() -> list[str]:
    d = models_dir()
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir() if (p / MODEL_FILE).is_file())


def prepare(name: str, force: bool = False) -> Path:
    """Create (or, with force, empty) the folder for a new model ``name``; return it."""
    d = model_dir(name)
    if (d / MODEL_FILE).exists() and not force:
        raise StudioError(f"a model named '{name}' exists already; choose another --name or pass --force")
    d.mkdir(parents=True, exist_ok=True)
    return d


def remove(name: str) -> None:
    d = model_dir(name)
    if not (d / MODEL_FILE).exists():
        raise StudioError(f"no model named '{name}'")
    shutil.rmtree(d)


def builtin() -> dict[str, Path]:
    """Shipped models by name: ``neural`` is the checkpoint in ``checkpoints/neural/`` when present."""
    f = CHECKPOINTS / "neural" / "neural_head.safetensors"
    return {"neural": f} if f.is_file() else {}


def resolve(name_or_path: str) -> Path:
    """A model name in the store, a shipped model's name, or a path to a model file (.npz, or a
    neural checkpoint .safetensors)."""
    p = Path(name_or_path)
    if p.suffix in (".npz", NEURAL_SUFFIX) and p.is_file():
        return p
    if _NAME.match(name_or_path) and exists(name_or_path):
        return model_file(name_or_path)
    if name_or_path in builtin():
        return builtin()[name_or_path]
    have = names() + [n for n in builtin() if n not in names()]
    hint = f" (have: {', '.join(have)})" if have else " (none imported yet: run 'studio models import')"
    raise StudioError(f"no model named '{name_or_path}'{hint}")
