"""Guard against PySide6 6.12.0's reference-count bugs (``SignalInstance.emit`` and void calls).

pyproject.toml excludes 6.12 (6.11.3 has neither bug); this guard keeps an environment that
still has 6.12.0 from aborting. Two bugs, same mechanism:

``emit()`` returns ``True`` without taking a reference, so every signal emitted from Python
code (ours, and superqt's sliders on every value change) decrements ``True``'s reference
count by one. On Python < 3.12, where ``True`` is not immortal, the interpreter aborts with
"Fatal Python error: bool_dealloc" after some ten thousand emits (a few minutes of dragging
sliders), or at exit. Likewise every call of a C++ method that returns void (``QSlider.setValue``,
``QWidget.update``…) returns ``None`` without a reference: about 8 per rendered slider change
and 1 per viewport mouse move, "Fatal Python error: none_dealloc" after 10k–44k slider changes.
Python 3.12+ makes ``True``/``False``/``None`` immortal, which hides both bugs.

The fix does what 3.12 does: when (and only when) a probe shows that a reference is lost, that
object gets a reference count so large that it can never reach zero. They are never freed
anyway (static objects), so the only effect is that the bug becomes harmless.
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


def void_call_leaks_none() -> bool:
    from PySide6.QtCore import QObject

    probe = QObject()
    before = sys.getrefcount(None)
    for _ in range(PROBE_EMITS):
        probe.setObjectName("probe")  # a C++ method returning void
    return before - sys.getrefcount(None) >= PROBE_EMITS // 2


def leaking_objects() -> list:
    """The singletons this PySide6 loses references to (none for a PySide6 without the bugs)."""
    leaks = [True, False] if emit_leaks_true() else []
    return leaks + [None] if void_call_leaks_none() else leaks


def apply() -> bool:
    """Make leaking singletons effectively immortal if this PySide6 needs it; returns whether it did."""
    global _applied
    if _applied:
        return True
    if sys.version_info >= (3, 12) or platform.python_implementation() != "CPython":
        return False
    leaks = leaking_objects()
    for obj in leaks:
        # ob_refcnt is the first field of every CPython object (non-debug builds).
        ctypes.c_ssize_t.from_address(id(obj)).value += HEADROOM
    _applied = bool(leaks)
    return _applied


apply()
