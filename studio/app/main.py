"""Entry point of the window (``studio`` with no command) and its --screenshot mode."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from studio.core import store
from studio.core.atomic import check_writable
from studio.core.errors import StudioError

SCREENSHOT_SIZE = (1600, 1000)
SCREENSHOT_TIMEOUT_MS = 180_000  # a model that never shows is an error, not a hang
SETTLE_MS = 300  # after the first mesh is drawn: let docks and labels finish painting
SIGNAL_POLL_MS = 200  # how soon Ctrl-C / SIGTERM is noticed while Qt's event loop is idle
CLOSE_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def run(model: str | None = None, params: str | None = None, screenshot: str | None = None,
        force: bool = False) -> int:
    # Everything that can be refused is refused before a window opens (one line, exit 2).
    out = None
    if screenshot is not None:
        out = Path(screenshot)
        if out.suffix.lower() != ".png":
            raise StudioError(f"--screenshot needs a .png file name, not '{out.name}'")
        check_writable(out, force)
    if model is not None:
        store.resolve(model)
    if params is not None and not Path(params).is_file():
        raise StudioError(f"parameters file {params} does not exist")

    from PySide6.QtWidgets import QApplication

    from studio.app.window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Face Studio")
    # A screenshot run is not a working session: it neither changes nor saves session.json.
    window = MainWindow(session_enabled=out is None)
    if out is not None:
        window.resize(*SCREENSHOT_SIZE)
        window.show()
    else:
        window.resize(1440, 900)
        window.showMaximized()  # fits any screen without asking Qt for QScreen objects (see rwi.py)
    closer = CloseOnSignals(window)
    try:
        try:
            window.startup(model, params)
        except BaseException:
            # Stop the worker before the error leaves: a QThread destroyed while it runs aborts the
            # process ("QThread: Destroyed while thread is still running") instead of exiting 2.
            window.close()
            raise
        rc = app.exec() if out is None else _screenshot(app, window, out, force)
    finally:
        closer.restore()
    return 128 + closer.received if closer.received else rc


class CloseOnSignals:
    """Ctrl-C (SIGINT) and SIGTERM close the window as Quit does: session saved, worker stopped.

    Python runs its signal handlers only when the interpreter runs, and an idle Qt event loop
    never enters it, so a timer wakes it up every SIGNAL_POLL_MS. A second signal while closing
    (a job that does not stop) ends the process the default way.
    """

    def __init__(self, window):
        from PySide6.QtCore import QTimer

        self.window = window
        self.received: int | None = None  # the signal that closed the window
        self._previous = {}
        try:
            for s in CLOSE_SIGNALS:
                self._previous[s] = signal.signal(s, self._handler)
        except ValueError:  # not the main thread (an embedding application): its handlers stay
            return
        self._poll = QTimer(window)
        self._poll.timeout.connect(lambda: None)
        self._poll.start(SIGNAL_POLL_MS)

    def _handler(self, signum, _frame) -> None:
        from PySide6.QtCore import QTimer

        self.received = signum
        for s in CLOSE_SIGNALS:
            signal.signal(s, signal.SIG_DFL)
        # Closed from the event loop, not from inside whatever Python code the signal interrupted.
        QTimer.singleShot(0, self._close)

    def _close(self) -> None:
        from PySide6.QtWidgets import QApplication

        self.window.close()
        QApplication.quit()  # also ends a modal dialog's loop, which close() alone would not

    def restore(self) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous)


def _screenshot(app, window, out: Path, force: bool) -> int:
    from PySide6.QtCore import QTimer

    status = {"rc": 1}

    def shoot():
        try:
            save_window_png(window, out, force)
            status["rc"] = 0
        except StudioError as e:
            print(f"studio: error: {e}", file=sys.stderr)
            status["rc"] = 2
        window.close()
        app.exit(status["rc"])

    def failed(message: str):
        print(f"studio: error: {message}", file=sys.stderr)
        status["rc"] = 2
        window.close()
        app.exit(2)

    def timeout():
        print("studio: error: the model was not displayed in time; no screenshot written", file=sys.stderr)
        window.close()
        app.exit(1)

    window.displayed.connect(lambda: QTimer.singleShot(SETTLE_MS, shoot))
    window.openFailed.connect(failed)
    if not window.runner.busy and window.doc.model is None:
        QTimer.singleShot(SETTLE_MS, shoot)  # nothing to open: the welcome view is the picture
    QTimer.singleShot(SCREENSHOT_TIMEOUT_MS, timeout)
    return app.exec()


def grab_window(window):
    """The whole window as a QImage, with the GL viewport's own pixels painted into its place.

    QWidget.grab() cannot read a native GL surface reliably (it comes back black on some
    platforms), so the viewport is read back through VTK and composited over the grab.
    """
    from PySide6.QtCore import QPoint, QRect
    from PySide6.QtGui import QImage, QPainter

    image = window.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    vp = window.viewport
    if window.stack.currentWidget() is vp and vp.poly is not None:
        arr = vp.image()
        h, w = arr.shape[:2]
        gl = QImage(arr.tobytes(), w, h, 3 * w, QImage.Format.Format_RGB888).copy()
        painter = QPainter(image)
        painter.drawImage(QRect(vp.mapTo(window, QPoint(0, 0)), vp.size()), gl)
        painter.end()
    return image


def png_bytes(image) -> bytes:
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice

    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buf, "PNG"):
        raise StudioError("could not encode the screenshot as PNG")
    buf.close()
    return bytes(data.data())


def save_window_png(window, out: Path, force: bool = False) -> Path:
    from studio.core.atomic import write_bytes

    return write_bytes(out, png_bytes(grab_window(window)), force)
