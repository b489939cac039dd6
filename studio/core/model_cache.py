"""Values computed once per model (its photo embedding, its slider labels), kept while the model
lives. Keyed by the model object's identity, not its name: two opens of a store model, or a model
built in memory, are different objects; an entry goes when its model is garbage-collected."""

from __future__ import annotations

import weakref


class PerModel:
    def __init__(self):
        self._entries: dict[tuple, tuple] = {}  # (id(model), key) → (weak reference, value)

    def get(self, model, key=None):
        hit = self._entries.get((id(model), key))
        return hit[1] if hit is not None and hit[0]() is model else None

    def put(self, model, value, key=None) -> None:
        k = (id(model), key)
        self._entries[k] = (weakref.ref(model, lambda _r, k=k: self._entries.pop(k, None)), value)
