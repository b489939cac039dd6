"""Undo commands for parameter edits.

A slider drag emits dozens of values; the panel gives every value of one drag the same token and
QUndoStack merges consecutive commands with equal ``id()`` through ``mergeWith``, so the whole
drag is one undo step. Values without a token (typed into the box, keyboard steps) are one step
each. Multi-parameter edits (Random, Reset, load, interpolation) are one step; interpolation
passes a merge key so scrubbing or playing t does not flood the stack.
"""

from __future__ import annotations

from PySide6.QtGui import QUndoCommand

_VALUE_ID = 1001
_PARAMS_ID = 1002


class SetValueCommand(QUndoCommand):
    def __init__(self, doc, group: str, index: int, old: float, new: float, drag: object | None):
        name = doc.group(group).names[index]
        super().__init__(f"set {group}.{name}")
        self.doc, self.group, self.index = doc, group, index
        self.old, self.new, self.drag = old, new, drag

    def id(self) -> int:
        return _VALUE_ID

    def mergeWith(self, other) -> bool:
        if (self.drag is None or not isinstance(other, SetValueCommand) or other.drag is not self.drag
                or (other.group, other.index) != (self.group, self.index)):
            return False
        self.new = other.new
        return True

    def redo(self):
        self.doc.set_value(self.group, self.index, self.new)

    def undo(self):
        self.doc.set_value(self.group, self.index, self.old)


class SetParamsCommand(QUndoCommand):
    def __init__(self, doc, old, new, text: str, merge_key: str | None = None):
        super().__init__(text)
        self.doc, self.old, self.new, self.merge_key = doc, old, new, merge_key

    def id(self) -> int:
        return _PARAMS_ID

    def mergeWith(self, other) -> bool:
        if self.merge_key is None or not isinstance(other, SetParamsCommand) or other.merge_key != self.merge_key:
            return False
        self.new = other.new
        return True

    def redo(self):
        self.doc.set_params(self.new)

    def undo(self):
        self.doc.set_params(self.old)
