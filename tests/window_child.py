"""A real studio window in its own process, for the tests that kill, interrupt or soak it.

Runs ``studio.app.main.run`` exactly as ``studio --model NAME`` does (same window, same signal
handling, same session) and drives it from a timer on its event loop:

    python tests/window_child.py edit LOG [--model synth]
        moves the shape[0] slider continuously (one value every EDIT_MS) and appends
        "<time.monotonic()> <value>" to LOG after each value, so the parent knows what was set
        when. Ends only by a signal.
    python tests/window_child.py soak OUT.json [--slider N] [--mouse M]
        N slider changes and M viewport mouse moves, then writes what it measured (resident
        memory after the first 1,000 changes and at the end, None's reference count) and closes.

The store is $STUDIO_HOME (the parent's per-test store).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

EDIT_MS = 10
SLIDER_BATCH = 50  # slider changes between two passes of the event loop (each pass may draw)
DRAG_EVERY = 100  # one circle of mouse moves in so many is a drag (each of its moves draws)
WARMUP_CHANGES = 1000  # memory is measured from here: first-use allocations are not growth
ROUNDS = 49  # the rest of the soak, interleaved: slider changes, then mouse moves, per round


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def when_displayed(app, start) -> None:
    """Call ``start(window)`` once the window that run() opened shows its first mesh."""
    from PySide6.QtCore import QTimer

    from studio.app.window import MainWindow

    windows = [w for w in app.topLevelWidgets() if isinstance(w, MainWindow)]
    if windows and windows[0].displayed_params is not None:
        start(windows[0])
    else:
        QTimer.singleShot(50, lambda: when_displayed(app, start))


def edit(window, log_path: Path) -> None:
    from PySide6.QtCore import QTimer

    slider = window.panel.slider("shape", 0)
    lo, steps = slider.minimum(), int((slider.maximum() - slider.minimum()) / 0.01)
    log = open(log_path, "a", buffering=1)  # one write per line: a kill -9 loses no line
    state = {"i": 0}

    def step():
        if not window.isVisible():  # closing (a signal): what was saved is what was set
            timer.stop()
            return
        state["i"] += 1
        slider.setValue(round(lo + 0.01 * (state["i"] % steps), 2))  # distinct for seconds
        log.write(f"{time.monotonic():.6f} {float(window.doc.params['shape'][0])!r}\n")

    timer = QTimer(window)
    timer.timeout.connect(step)
    timer.start(EDIT_MS)


def mouse_moves(window, n: int, start: int) -> None:
    """``n`` moves over the viewport in circles of 100; one circle in DRAG_EVERY is a drag (rotates
    the camera, which draws on each move), the others hover."""
    import math

    from PySide6.QtCore import QEvent, QPointF, Qt
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    target = window.viewport.plotter
    cx, cy, r = target.width() / 2, target.height() / 2, min(target.width(), target.height()) / 4
    none = Qt.MouseButton.NoButton
    left = Qt.MouseButton.LeftButton

    def send(kind, pos, button, buttons):
        QApplication.sendEvent(target, QMouseEvent(kind, pos, target.mapToGlobal(pos), button, buttons,
                                                   Qt.KeyboardModifier.NoModifier))

    for k in range(start, start + n):
        circle, step = divmod(k, 100)
        drag = circle % DRAG_EVERY == DRAG_EVERY - 1
        a = 2 * math.pi * step / 100
        pos = QPointF(cx + r * math.cos(a), cy + r * math.sin(a))
        if drag and step == 0:
            send(QEvent.Type.MouseButtonPress, pos, left, left)
        send(QEvent.Type.MouseMove, pos, none, left if drag else none)
        if drag and step == 99:
            send(QEvent.Type.MouseButtonRelease, pos, left, none)
        if k % 100 == 99:
            QApplication.processEvents()


def slider_changes(window, n: int, start: int) -> None:
    """``n`` values on the shape sliders, with the event loop run every SLIDER_BATCH values (the
    worker's latest-wins results are drawn as they come; drawing each value would take hours
    with a software renderer)."""
    from PySide6.QtWidgets import QApplication

    sliders = [window.panel.slider("shape", i) for i in range(3)]
    for k in range(start, start + n):
        sliders[k % 3].setValue(round(((k * 37) % 500) / 100 - 2.5, 2))
        if k % SLIDER_BATCH == SLIDER_BATCH - 1:
            QApplication.processEvents()


def soak(window, out: Path, n_slider: int, n_mouse: int) -> None:
    from PySide6.QtWidgets import QApplication

    t0 = time.monotonic()
    none_before = sys.getrefcount(None)
    slider_changes(window, WARMUP_CHANGES, 0)
    gc.collect()
    base = rss_mb()
    samples = [base]
    done_s, done_m = WARMUP_CHANGES, 0
    for r in range(ROUNDS):
        ns = (n_slider - WARMUP_CHANGES) * (r + 1) // ROUNDS - (done_s - WARMUP_CHANGES)
        nm = n_mouse * (r + 1) // ROUNDS - done_m
        slider_changes(window, ns, done_s)
        mouse_moves(window, nm, done_m)
        done_s, done_m = done_s + ns, done_m + nm
        gc.collect()
        samples.append(rss_mb())
    out.write_text(json.dumps({
        "slider_changes": done_s, "mouse_moves": done_m, "seconds": round(time.monotonic() - t0, 1),
        "rss_after_warmup_mb": round(base, 1), "rss_end_mb": round(samples[-1], 1),
        "growth_mb": round(samples[-1] - base, 1), "rss_samples_mb": [round(x, 1) for x in samples],
        "none_refcount_drop": none_before - sys.getrefcount(None),
        "undo_steps": window.doc.undo_stack.count()}))
    window.close()
    QApplication.quit()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("edit", "soak"))
    ap.add_argument("out", type=Path)
    ap.add_argument("--model", default="synth")
    ap.add_argument("--slider", type=int, default=50_000)
    ap.add_argument("--mouse", type=int, default=100_000)
    args = ap.parse_args()

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from studio.app.main import run

    app = QApplication(sys.argv[:1])
    if args.mode == "edit":
        start = lambda w: edit(w, args.out)  # noqa: E731
    else:
        start = lambda w: soak(w, args.out, args.slider, args.mouse)  # noqa: E731
    QTimer.singleShot(0, lambda: when_displayed(app, start))
    return run(model=args.model)


if __name__ == "__main__":
    sys.exit(main())
