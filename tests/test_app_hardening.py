"""The window in long and broken sessions (issue 16): PySide6's reference counts, a soak, a bad
session.json, autosave under kill -9, Ctrl-C and SIGTERM, a bounded undo stack.

The tests that kill or interrupt the window run it in its own process (tests/window_child.py,
the real ``studio.app.main.run``) on pytest-xvfb's display.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_app import TIMEOUT, open_window, save_synth, settle, synth, window  # noqa: F401 (fixtures)

pytestmark = pytest.mark.gui

from PySide6.QtCore import QEvent, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QMouseEvent  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

CHILD = Path(__file__).with_name("window_child.py")
REPO = CHILD.parents[1]


def child(mode: str, out: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(CHILD), mode, str(out), *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def edits(log: Path) -> list[tuple[float, float]]:
    """(time.monotonic(), value) for every value the child set, in order."""
    rows = [line.split() for line in log.read_text().splitlines()]
    return [(float(row[0]), float(row[1])) for row in rows if len(row) == 2]


def wait_for_edits(proc, log: Path, seconds: float) -> None:
    """Until the child has been editing for ``seconds``."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        rows = edits(log) if log.exists() else []
        if rows and time.monotonic() - rows[0][0] >= seconds:
            return
        time.sleep(0.02)
    raise AssertionError("the child window never started editing")


def saved_shape0() -> float:
    from studio.app import session

    return json.loads(session.path().read_text())["params"]["shape"][0]


# -- item 1: PySide6 reference counts ---------------------------------------------------------------
def test_pyside_calls_keep_their_references_to_none_and_true(window, qtbot):
    """PySide6 6.12.0 returned None from void calls (QSlider.setValue …) and True from emit
    without a reference: ~8 None per rendered slider change, 1 per viewport mouse move, until
    "Fatal Python error: none_dealloc" (pyproject.toml now excludes it)."""
    w = window
    slider, target = w.panel.slider("shape", 0), w.viewport.plotter
    n = 2000
    before = sys.getrefcount(None), sys.getrefcount(True)
    for k in range(n):
        slider.setValue(round((k % 500) / 100 - 2.5, 2))
        pos = QPointF(20 + k % 100, 20 + k % 50)
        QApplication.sendEvent(target, QMouseEvent(QEvent.Type.MouseMove, pos, target.mapToGlobal(pos),
                                                   Qt.MouseButton.NoButton, Qt.MouseButton.NoButton,
                                                   Qt.KeyboardModifier.NoModifier))
    settle(qtbot, w)
    lost_none = before[0] - sys.getrefcount(None)
    lost_true = before[1] - sys.getrefcount(True)
    # Objects that come and go hold a few hundred references either way; the bug loses ≥ 2n.
    assert lost_none < n // 4 and lost_true < n // 4, (lost_none, lost_true)


def test_a_freed_window_leaves_no_stale_gl_surface_for_the_next_window(qtbot, synth):
    """pyvistaqt keeps the viewport's GL surface as a QSurface wrapper, which PySide cannot see
    freed (no QObject). Left mapped to the freed address, it came back for the next object there:
    a later window's ``m.addAction("Welcome")`` returned that QSurface and the window failed to
    open (seen once in a full test run, then Aborted)."""
    import shiboken6
    from PySide6.QtCore import QCoreApplication

    from studio.app.window import MainWindow

    w = MainWindow(session_enabled=False, seed=0)  # not qtbot's: this test frees it itself
    w.show()
    with qtbot.waitSignal(w.displayed, timeout=TIMEOUT):
        w.startup("synth", None)
    settle(qtbot, w)
    plotter = w.viewport.plotter
    surface = plotter._surface
    assert surface is not None and shiboken6.isValid(surface)  # a realized GL widget
    w.close()
    w.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    QApplication.processEvents()
    assert not shiboken6.isValid(plotter)  # the C++ widget, and with it its surface, is gone
    assert not shiboken6.isValid(surface)  # ... and Python knows it: nothing stale stays mapped
    w2 = open_window(qtbot)
    assert w2.welcome_action.text() == "Welcome"
    w2.close()


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_soak_50000_slider_changes_and_100000_mouse_moves(synth, tmp_path):
    out = tmp_path / "soak.json"
    proc = child("soak", out)
    _, err = proc.communicate(timeout=3000)
    assert proc.returncode == 0, err[-3000:]  # an abort (none_dealloc) is -6
    r = json.loads(out.read_text())
    print("soak:", json.dumps(r))
    assert r["slider_changes"] == 50_000 and r["mouse_moves"] == 100_000
    assert r["growth_mb"] < 20, r["rss_samples_mb"]


# -- item 5: a bad session.json ---------------------------------------------------------------------
GOOD = {"format": "face-studio-session", "version": 1, "model": "synth"}
BROKEN_SESSIONS = {
    "deep nesting": b"[" * 100_000,  # json: RecursionError
    "garbage": b"\xff\xfe\x00garbage",
    "not an object": b"[1, 2, 3]",
    "model not a string": json.dumps({**GOOD, "model": 5}).encode(),
    "params not numbers": json.dumps({**GOOD, "params": {"shape": "abc"}}).encode(),
    "hidden regions not a list": json.dumps({**GOOD, "hidden_regions": 7}).encode(),
    "camera of the wrong shape": json.dumps({**GOOD, "camera": [[1, 2], [3]]}).encode(),
    "wireframe not a bool": json.dumps({**GOOD, "wireframe": "yes"}).encode(),
}


@pytest.mark.parametrize("case", list(BROKEN_SESSIONS))
def test_a_broken_session_is_set_aside_with_a_warning_and_the_studio_starts(case, qtbot, synth, tmp_path):
    from studio.app import session
    from studio.app.window import MainWindow

    data = BROKEN_SESSIONS[case]
    session.path().parent.mkdir(parents=True, exist_ok=True)
    session.path().write_bytes(data)
    empty = tmp_path / "no-checkpoints"
    empty.mkdir()
    w = MainWindow(checkpoints=empty)
    qtbot.addWidget(w)
    w.show()
    w.startup()
    assert w.stack.currentWidget() is w.welcome
    aside = list(session.path().parent.glob("session.json.broken-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == data  # kept for the user to look at
    assert not session.path().exists()
    err = w.status.last_error
    assert "set aside" in err and aside[0].name in err and "\n" not in err
    w.open_model("synth")  # and the studio works: a new session is written
    qtbot.waitUntil(lambda: session.path().is_file() and session.restore()[0] is not None, timeout=TIMEOUT)
    w.close()


def test_a_broken_session_warns_after_the_default_model_opened(qtbot, synth, tmp_path):
    from conftest import make_model

    from studio.app import session
    from studio.core.modelfile import save_model

    session.path().write_text("{" * 10_000)
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    save_model(make_model(name="embedded"), ckpt / "default.npz")
    w = open_window(qtbot, model=None, checkpoints=ckpt)
    assert w.doc.model.name == "embedded"
    # the opening's own messages came after the warning; it is shown again once the face is up
    assert "set aside" in w.status.currentMessage()
    w.close()


# -- item 7: autosave under kill -9 -----------------------------------------------------------------
def restored_age(rows: list[tuple[float, float]], saved: float, killed: float) -> float:
    """How old the restored state was at the kill: it stopped being the window's state when the
    first value after it was set (values are distinct within a trial)."""
    i = max((k for k, (_, v) in enumerate(rows) if v == pytest.approx(saved, abs=1e-9)), default=-1)
    return killed - rows[i + 1][0] if i + 1 < len(rows) else 0.0  # -1: saved before the first edit


def test_kill_9_during_continuous_edits_loses_at_most_0_6_s(synth, tmp_path):
    rng = random.Random(16)
    ages = []
    for trial in range(10):
        from studio.app import session

        session.path().unlink(missing_ok=True)
        log = tmp_path / f"edits-{trial}.log"
        proc = child("edit", log)
        try:
            wait_for_edits(proc, log, rng.uniform(0.8, 1.6))
            killed = time.monotonic()
            proc.kill()
        finally:
            proc.kill()
            proc.communicate(timeout=60)
        rows = edits(log)
        assert session.path().is_file(), f"nothing saved in {killed - rows[0][0]:.1f} s of edits"
        ages.append(restored_age(rows, saved_shape0(), killed))
    print("autosave: restored state age at kill -9 (s):", [round(a, 3) for a in ages])
    assert max(ages) <= 0.6, ages


# -- item 8: Ctrl-C and SIGTERM ---------------------------------------------------------------------
def test_ctrl_c_closes_the_window_and_saves_the_last_state(synth, tmp_path):
    log = tmp_path / "edits.log"
    proc = child("edit", log)
    try:
        wait_for_edits(proc, log, 0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGINT, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    # closed as Quit closes: the session holds the very last value, not one from 0.5 s before
    assert saved_shape0() == edits(log)[-1][1]


def test_sigterm_closes_the_studio_command(synth, studio_home):
    from studio.app import session

    proc = subprocess.Popen([sys.executable, "-m", "studio.cli.main", "--model", "synth"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not session.path().is_file():  # the window is up and has saved once
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "Traceback" not in err and "Destroyed while thread" not in err, err[-3000:]


def test_a_start_up_error_exits_2_instead_of_aborting(synth, tmp_path):
    """An error in startup left while the worker thread ran ("QThread: Destroyed while thread is
    still running", SIGABRT)."""
    params = tmp_path / "p.json"
    params.write_text("{}")
    r = subprocess.run([sys.executable, "-m", "studio.cli.main", "--params", str(params)], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-3000:]
    assert "Destroyed while thread" not in r.stderr and r.stderr.startswith("studio: error:")


# -- item 9: the undo stack ------------------------------------------------------------------------
def test_the_undo_stack_is_bounded_during_programmatic_bursts(window, qtbot):
    from studio.app.document import UNDO_LIMIT

    w = window
    s = w.panel.slider("shape", 0)
    values = np.round(np.linspace(-2.0, 2.0, 3 * UNDO_LIMIT), 4)
    for v in values:  # each value outside a drag is its own undo step
        s.setValue(float(v))
    stack = w.doc.undo_stack
    assert stack.count() == UNDO_LIMIT
    for _ in range(UNDO_LIMIT):  # the newest steps are the ones kept
        stack.undo()
    assert w.doc.params["shape"][0] == pytest.approx(values[-UNDO_LIMIT - 1])
    assert not stack.canUndo()
    settle(qtbot, w)
