"""Progress reporting and cancellation for long core functions.

Long functions take ``progress: ProgressFn | None`` and call it as ``progress(fraction, message)``
now and then. The caller's callback may raise ``Cancelled`` to stop the work there; so the core
needs no thread or Qt machinery to be cancellable.
"""

from __future__ import annotations

from typing import Callable, Optional

ProgressFn = Callable[[float, str], None]


class Cancelled(Exception):
    """Raised from a progress callback to stop a running job."""


def report(progress: Optional[ProgressFn], fraction: float, message: str = "") -> None:
    if progress is not None:
        progress(min(max(float(fraction), 0.0), 1.0), message)


def scaled(progress: Optional[ProgressFn], start: float, stop: float) -> Optional[ProgressFn]:
    """A callback for a sub-step that maps its 0..1 onto ``start..stop`` of the parent's."""
    if progress is None:
        return None
    parent = progress

    def sub(f: float, msg: str = "") -> None:
        parent(start + (stop - start) * f, msg)

    return sub
