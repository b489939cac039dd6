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
        _cache[key] = _load(name_or_path, path)
    return _cache[key]


def _load(name_or_path: str, path: Path):
    if path.suffix == store.NEURAL_SUFFIX:  # a trained neural head (studio.core.neural)
        from studio.core.neural.facemodel import load_neural

        shipped = {p.resolve(): n for n, p in store.builtin().items()}
        name = shipped.get(path.resolve(), path.stem)
        return load_neural(path, name=name if store._NAME.match(name) else "neural")
    return load_model(path)
