"""The model store: imported and built models, saved identities, the GUI session.

Layout under ``$STUDIO_HOME`` (default: the per-user data folder from platformdirs)::

    models/<name>/model.npz        the model (see modelfile.py)
    models/<name>/identities/      saved faces (parameters JSON + thumbnail)
    models/<name>/*.png            reports written on import/build (e.g. spectrum.png)
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path
from typing import Iterator

import platformdirs

from studio.core.atomic import reason, write_error
from studio.core.errors import StudioError

# Always used with fullmatch: "$" would also match before a final newline and accept "nl\n".
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MODEL_FILE = "model.npz"
LOCK_FILE = ".lock"  # in models/: held while a model is added or removed (see ``locked``)
# Models that ship with the repository (not in the store): the trained neural head.
CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"
NEURAL_SUFFIX = ".safetensors"


def home() -> Path:
    env = os.environ.get("STUDIO_HOME")
    return Path(env).expanduser() if env else Path(platformdirs.user_data_dir("face-studio", appauthor=False))


def models_dir() -> Path:
    return home() / "models"


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
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


def check_new(name: str, force: bool = False) -> None:
    """Refuse, before any long work, a model ``name`` that exists (without force) or a store that
    cannot be written. Not a reservation: ``claim`` checks again under the lock."""
    if exists(name) and not force:
        raise StudioError(f"a model named '{name}' exists already; choose another --name or pass --force")
    d = models_dir()
    while not d.exists() and d.parent != d:
        d = d.parent
    if not os.access(d, os.W_OK | os.X_OK):  # root passes; a read-only mount still fails here
        raise StudioError(f"cannot write {models_dir()}: folder {d} is not writable")


def prepare(name: str, force: bool = False) -> Path:
    """Create the folder for a new model ``name``; return it. Hold ``locked()`` around this and the
    write that follows (``claim`` does), or a concurrent import may slip in between."""
    d = model_dir(name)
    if (d / MODEL_FILE).exists() and not force:
        raise StudioError(f"a model named '{name}' exists already; choose another --name or pass --force")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a read-only or full store
        raise write_error(d, e) from None
    return d


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """Hold the store's lock (blocking). The kernel drops it when its process dies, even by kill -9,
    so a crashed import never locks the store for good."""
    d = models_dir()
    try:
        d.mkdir(parents=True, exist_ok=True)
        fd = os.open(d / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise write_error(d, e) from None
    try:
        _lock_fd(fd)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _lock_fd(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: msvcrt.locking gives up after 10 s, so keep asking
        import msvcrt

        while True:
            with contextlib.suppress(OSError):
                return msvcrt.locking(fd, msvcrt.LK_LOCK, 1)  # type: ignore[attr-defined]  # Windows-only module
    fcntl.flock(fd, fcntl.LOCK_EX)


@contextlib.contextmanager
def claim(name: str, force: bool = False) -> Iterator[Path]:
    """The folder for a new model ``name``, under the store's lock: "does it exist?" and the write
    of the new model (done in the ``with`` body) are one step, so of two imports of the same name
    without --force exactly one succeeds. A folder this call created is removed if the body fails."""
    with locked():
        new = not model_dir(name).exists()
        d = prepare(name, force)
        try:
            yield d
        except BaseException:
            if new:
                shutil.rmtree(d, ignore_errors=True)
            raise


def remove(name: str) -> None:
    with locked():
        d = model_dir(name)
        if not (d / MODEL_FILE).exists():
            raise StudioError(f"no model named '{name}'")
        try:
            shutil.rmtree(d)
        except OSError as e:
            raise StudioError(f"cannot remove {d}: {reason(e)}") from None


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
    if _NAME.fullmatch(name_or_path) and exists(name_or_path):
        return model_file(name_or_path)
    if name_or_path in builtin():
        return builtin()[name_or_path]
    have = names() + [n for n in builtin() if n not in names()]
    hint = f" (have: {', '.join(have)})" if have else " (none imported yet: run 'studio models import')"
    raise StudioError(f"no model named '{name_or_path}'{hint}")
