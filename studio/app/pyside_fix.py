"""Work around a reference-count bug in PySide6 6.12.0's ``SignalInstance.emit``.

``emit()`` returns ``True`` without taking a reference, so every signal emitted from Python
code (ours, and superqt's sliders on every value change) decrements ``True``'s reference
count by one. On Python < 3.12, where ``True`` is not immortal, the interpreter aborts with
"Fatal Python error: bool_dealloc" after some ten thousand emits (a few minutes of dragging
sliders), or at exit. Python 3.12+ makes ``True``/``False`` immortal, which hides the bug.

The fix does what 3.12 does: when (and only when) a probe shows that emit loses a reference,
``True`` and ``False`` get a reference count so large that it can never reach zero. They are
never freed anyway (static objects), so the only effect is that the bug becomes harmless.
"""

from __future__ import annotations

import ctypes
import platform
import sys

_applied = False
PROBE_EMITS = 64
HEADROOM = 1 << 40  # more emits than a process can make


def emit_leaks_true() -> bool:
    from PySide6.QtCore import QObject, Signal

    class _Probe(QObject):
        sig = Signal()

    probe = _Probe()
    before = sys.getrefcount(True)
    for _ in range(PROBE_EMITS):
        probe.sig.emit()
    return before - sys.getrefcount(True) >= PROBE_EMITS // 2


def apply() -> bool:
    """Make True/False effectively immortal if this PySide6 needs it; returns whether it did."""
    global _applied
    if _applied:
        return True
    if sys.version_info >= (3, 12) or platform.python_implementation() != "CPython":
        return False
    if not emit_leaks_true():
        return False
    for obj in (True, False):
        # ob_refcnt is the first field of every CPython object (non-debug builds).
        ctypes.c_ssize_t.from_address(id(obj)).value += HEADROOM
    _applied = True
    return True


apply()
