"""Open any model by name (in the store) or by path, whatever its kind."""

from __future__ import annotations

from pathlib import Path

from studio.core import store
from studio.core.modelfile import load_model

_cache: dict[tuple[str, float], object] = {}


def open_model(name_or_path: str):
    path = store.resolve(name_or_path)
    key = (str(Path(path).resolve()), path.stat().st_mtime)
    if key not in _cache:
        _cache.clear()  # one model in memory at a time: they are tens of MB each
        _cache[key] = load_model(path)
    return _cache[key]
