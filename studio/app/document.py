"""FaceDocument: the open model and the current face's parameters (UI thread only).

Views never own state: the panels, the viewport request and the session all read the document
and react to its signals. Edits that should be undoable go through ``edit_value`` /
``edit_params`` (which push QUndoCommands); the commands themselves call ``set_value`` /
``set_params``, which change the state and announce it.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

import studio.app.pyside_fix  # noqa: F401  (first: PySide6 6.12 emit refcount bug; see the module)

# isort: split
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoStack

from studio.core import prior
from studio.core.facemodel import Params

# Undo steps kept. Values set one by one outside a drag (keyboard, typed, scripts and bursts) are
# a step each, ~1.4 KB apiece: without a limit a long session's stack only grows.
UNDO_LIMIT = 500


class FaceDocument(QObject):
    modelChanged = Signal(object)  # the new model (or None)
    # What changed: (group, index) for one coefficient, or None for "anything may have changed".
    paramsChanged = Signal(object)
    dragFinished = Signal()  # a slider was released (models with a preview refine their mesh now)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.model = None
        self.source: str | None = None  # how to reopen the model: a store name or a .npz path
        self.params: Params = {}
        self.dragging = False  # a parameter slider is held down
        self.undo_stack = QUndoStack(self)
        self.undo_stack.setUndoLimit(UNDO_LIMIT)  # only honoured while the stack is empty: here

    # -- state ---------------------------------------------------------------------------------
    def set_model(self, model, source: str | None = None, params: Mapping[str, np.ndarray] | None = None):
        self.model = model
        self.source = source
        self.params = prior.check_params(model.groups, params or {}) if model is not None else {}
        self.undo_stack.clear()  # edits of another model's parameters make no sense here
        self.modelChanged.emit(model)
        self.paramsChanged.emit(None)

    def group(self, name: str):
        return next(g for g in self.model.groups if g.name == name)

    def value(self, group: str, index: int) -> float:
        return float(self.params[group][index])

    def snapshot(self) -> Params:
        return {k: v.copy() for k, v in self.params.items()}

    def set_value(self, group: str, index: int, value: float) -> None:
        if self.params[group][index] == value:
            return
        self.params[group][index] = value
        self.paramsChanged.emit((group, index))

    def set_params(self, params: Mapping[str, np.ndarray]) -> None:
        self.params = prior.check_params(self.model.groups, params)
        self.paramsChanged.emit(None)

    # -- undoable edits ------------------------------------------------------------------------
    def edit_value(self, group: str, index: int, value: float, drag: object | None = None) -> None:
        """One coefficient; edits carrying the same ``drag`` token merge into one undo step."""
        from studio.app.undo import SetValueCommand

        old = self.value(group, index)
        if old == value:
            return
        self.undo_stack.push(SetValueCommand(self, group, index, old, float(value), drag))

    def edit_params(self, params: Mapping[str, np.ndarray], text: str, merge_key: str | None = None) -> None:
        """Many coefficients at once (Random, Reset, load, interpolate) as one undo step."""
        from studio.app.undo import SetParamsCommand

        new = prior.check_params(self.model.groups, params)
        if all(np.array_equal(new[k], self.params[k]) for k in new):
            return
        self.undo_stack.push(SetParamsCommand(self, self.snapshot(), new, text, merge_key))
