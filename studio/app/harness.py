"""Driving the real window from code, for measurements (``studio bench gui``, in studio/bench/gui.py):
open it off the user's session, wait on it in a real event loop, name the GL renderer, close it.
The measurements themselves live in studio/bench; this is the Qt side they need."""

from __future__ import annotations

import os

from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtWidgets import QApplication

from studio.core.errors import StudioError


def require_display() -> None:
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise StudioError("the GUI bench needs a display: run it under xvfb-run -a studio bench gui")


def open_window(model_name: str | None, fallback_model, size=(1600, 1000)):
    """(app, window): a window that never touches the user's session, showing ``model_name`` from
    the store, or ``fallback_model()`` when None; returns once the first mesh is in the viewport."""
    from studio.app.window import MainWindow

    app = QApplication.instance() or QApplication(["studio-bench"])
    window = MainWindow(session_enabled=False, seed=0)  # never touches the user's session
    window.resize(*size)
    window.show()
    if model_name is not None:
        window.open_model(model_name)
    else:
        window.show_model(fallback_model())
    failed = []
    window.openFailed.connect(failed.append)
    wait(window, lambda: window.displayed_params is not None or bool(failed), 120)
    if failed:
        raise StudioError(failed[0])
    return app, window


def wait(window, predicate, timeout_s: float = 30.0) -> None:
    """Block in a real event loop (not a processEvents spin: a spinning UI thread would hold the
    GIL and starve the worker, inflating the very latency being measured)."""
    if predicate():
        return
    loop = QEventLoop()
    timer = QTimer()
    timer.setSingleShot(True)
    timer.timeout.connect(loop.quit)
    def on_applied(_res=None) -> None:  # slots return None: a bool returned to PySide is mis-counted
        if predicate():
            loop.quit()

    check = QTimer()  # catches state changes that emit no signal we listen to (model opened, …)
    check.timeout.connect(on_applied)
    check.start(20)
    window.viewport.applied.connect(on_applied)
    window.openFailed.connect(loop.quit)
    timer.start(int(timeout_s * 1000))
    try:
        loop.exec()
    finally:
        window.viewport.applied.disconnect(on_applied)
        window.openFailed.disconnect(loop.quit)
        check.stop()
    if not predicate() and not timer.isActive():
        raise StudioError("the window did not update in time")


def gl_renderer(window) -> str:
    """The OpenGL renderer string of the viewport's render window ("unknown" when not reported)."""
    caps = window.viewport.plotter.ren_win.ReportCapabilities() or ""
    return next((ln.split(":", 1)[1].strip() for ln in caps.splitlines() if "renderer string" in ln), "unknown")


def close(app, window) -> None:
    """Stop the worker thread and finalise the GL context while Qt is alive."""
    window.close()
    window.deleteLater()
    app.processEvents()
