"""Values computed once per model (its photo embedding, its slider labels), kept while the model
lives. Keyed by the model object's identity, not its name: two opens of a store model, or a model
built in memory, are different objects; an entry goes when its model is garbage-collected."""

from __future__ import annotations

import weakref
from typing import Any, Hashable


class PerModel:
    def __init__(self) -> None:
        self._entries: dict[tuple, tuple] = {}  # (id(model), key) → (weak reference, value)

    def get(self, model: object, key: Hashable = None) -> Any:
        hit = self._entries.get((id(model), key))
        return hit[1] if hit is not None and hit[0]() is model else None

    def put(self, model: object, value: Any, key: Hashable = None) -> None:
        k = (id(model), key)

        def forget(_ref: weakref.ref, k: tuple = k) -> None:
            self._entries.pop(k, None)

        self._entries[k] = (weakref.ref(model, forget), value)
