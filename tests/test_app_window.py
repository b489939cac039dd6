"""The window as a new user meets it (issue 17): the welcome panel beside the built-in neural head,
titles, the Help and Fit menus, shortcuts, the layout kept across restarts, readable region names,
slider fills from the centre, and the neural head's "preview" badge. Real window under Xvfb."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_app import TIMEOUT, answer, no_dialogs, open_window, save_synth, settle, synth  # noqa: F401 (fixtures)

pytestmark = pytest.mark.gui

from PySide6.QtCore import QPoint, Qt  # noqa: E402
from PySide6.QtGui import QPalette  # noqa: E402
from PySide6.QtWidgets import QApplication, QFileDialog, QInputDialog  # noqa: E402

ICT_REGIONS = ("face", "head_and_neck", "mouth_socket", "eye_socket_left", "gums_and_tongue",
               "lacrimal_fluid_right", "eye_occlusion_right", "narrow_face_area", "full_face_area")


def menu(w, title):
    return next(a.menu() for a in w.menuBar().actions() if a.text().replace("&", "") == title)


def texts(m):
    return [a.text() for a in m.actions() if not a.isSeparator()]


def test_first_start_welcome_beside_the_neural_head_then_an_imported_model_wins(qtbot, no_dialogs,
                                                                                 monkeypatch):
    """An empty store opened the neural head with a checkpoint path in the title and nothing about
    ICT, BFM or FLAME; with ICT imported the neural head still opened first."""
    from studio.core import store

    if "neural" not in store.builtin():
        pytest.skip("the shipped neural head (checkpoints/neural/) is not in this checkout")
    w = open_window(qtbot, model=None, session_enabled=False)
    assert w.doc.model.kind == "neural" and w.doc.source == "neural"
    assert w.windowTitle() == "Face Studio — neural"  # the name, not the checkpoint's path
    side = w.welcome_side
    assert side.isVisible() and w.viewport.isVisible()  # beside the head, not instead of it
    where = {k: b.toolTip() for k, b in side.source_buttons.items()}
    assert "github.com/ICT-VGL/ICT-FaceKit" in where["ict"] and "MIT" in where["ict"]
    assert "faces.dmi.unibas.ch" in where["bfm"] and "flame.is.tue.mpg.de" in where["flame"]
    asked = []
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        staticmethod(lambda *a, **k: asked.append(a) or ("", "")))
    side.source_buttons["bfm"].click()  # a dialog for BFM's own files
    assert "*.h5" in asked[-1][3] and "*.pkl" not in asked[-1][3]
    side.scan_button.click()  # Load a scan: the scan dialog
    assert "Load scan" in asked[-1][1] or "scan" in asked[-1][1].lower()

    # a drag shows the coarse preview mesh, with a badge that says so; release refines it
    inner = w.panel.tabs_by_group["identity"].sliders[0]._slider
    y, x0 = inner.height() // 2, inner.rect().center().x()
    qtbot.mousePress(inner, Qt.MouseButton.LeftButton, pos=QPoint(x0 + 2, y))
    qtbot.mouseMove(inner, QPoint(x0 + 25, y))
    settle(qtbot, w, timeout=60000)
    assert w.viewport.preview_shown
    qtbot.mouseRelease(inner, Qt.MouseButton.LeftButton, pos=QPoint(x0 + 25, y))
    qtbot.waitUntil(lambda: not w.viewport.preview_shown and not w.runner.busy, timeout=60000)

    side.close_button.click()  # keep sculpting the neural head
    assert not side.isVisible() and w.viewport.isVisible()
    w.welcome_action.trigger()  # Help → Welcome brings it back
    assert side.isVisible()
    w.close()

    save_synth("imported")  # a linear model in the store wins over the built-in head
    w2 = open_window(qtbot, model=None, session_enabled=False)
    assert w2.doc.source == "imported" and w2.windowTitle() == "Face Studio — imported"
    assert not w2.welcome_side.isVisible()


def test_help_fit_menus_and_shortcuts(qtbot, synth, no_dialogs, monkeypatch, tmp_path):
    """No Help menu, no shortcuts for open/save/export/random/reset/wireframe, fitting in File."""
    w = open_window(qtbot)
    assert [a.text().replace("&", "") for a in w.menuBar().actions()] == \
        ["File", "Edit", "Fit", "View", "Export", "Help"]
    fit, file_ = texts(menu(w, "Fit")), texts(menu(w, "File"))
    assert fit == ["Load scan…", "Fit scan", "Show fit error on the scan", "Remove scan", "Load photo…"]
    assert not set(fit) & set(file_)
    view = texts(menu(w, "View"))
    assert all(name in view for name in w.docks) and "Photo" in w.docks

    w.about_action.trigger()
    about = w.dialogs["about"].text.text()
    for needed in ("0.", "ICT-FaceKit", "MIT", "Basel Face Model", "FLAME", "BSD-3", "test data only"):
        assert needed in about, needed
    w.shortcuts_action.trigger()
    table = w.dialogs["shortcuts"].table
    rows = {table.item(r, 1).text(): table.item(r, 0).text() for r in range(table.rowCount())}
    for action, keys in (("File → Open model…", "Ctrl+O"), ("File → Save face…", "Ctrl+S"),
                         ("Edit → Random face", "Ctrl+R"), ("Edit → Reset all parameters", "Ctrl+Shift+R"),
                         ("View → Wireframe", "Ctrl+Shift+W"), ("Export → Mesh as GLB…", "Ctrl+E")):
        assert rows.get(action) == keys, (action, rows.get(action))
    assert any("Page Up" in k for k in rows.values())
    for d in w.dialogs.values():
        d.close()

    w.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w, timeout=TIMEOUT)
    target = w.panel.tabs

    def key(k, mods=Qt.KeyboardModifier.ControlModifier):
        qtbot.keyClick(target, k, mods)

    shift_ctrl = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
    key(Qt.Key.Key_R)
    assert np.any(w.doc.params["shape"])
    key(Qt.Key.Key_R, shift_ctrl)
    assert not any(np.any(v) for v in w.doc.params.values())
    key(Qt.Key.Key_W, shift_ctrl)
    assert w.viewport.wireframe
    answer(monkeypatch, QInputDialog, "getText", ("by-key", True))
    key(Qt.Key.Key_S)
    qtbot.waitUntil(lambda: "by-key" in w.library.names(), timeout=TIMEOUT)
    out = tmp_path / "face.glb"
    answer(monkeypatch, QFileDialog, "getSaveFileName", (str(out), ""))
    key(Qt.Key.Key_E)
    qtbot.waitUntil(lambda: out.is_file() and not w.runner.busy, timeout=TIMEOUT)
    answer(monkeypatch, QInputDialog, "getItem", ("synth", True))
    with qtbot.waitSignal(w.displayed, timeout=TIMEOUT):
        key(Qt.Key.Key_O)


def test_dock_layout_ranges_and_geometry_come_back_after_a_restart(qtbot, synth, no_dialogs):
    from studio.app import session
    from studio.core.errors import StudioError

    # small enough for pytest-xvfb's 800×600 screen (restoreGeometry keeps a window on its screen);
    # the width is the docks' minimum there (it follows the layout), so the height is compared
    w = open_window(qtbot, size=(1100, 540))
    w.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, w.docks["Faces"])
    w.docks["Interpolate"].hide()
    w.panel.tabs_by_group["shape"].range_box.setValue(1.5)
    w.panel.tabs_by_group["expression"].range_box.setValue(2.0)
    w.close()  # saved at exit, also when only the layout changed
    saved = json.loads(session.path().read_text())
    assert saved["ranges"] == {"shape": 1.5, "expression": 2.0, "color": 3.0}

    w2 = open_window(qtbot, model=None, size=(1400, 900))
    assert w2.height() == 540  # not the 900 it was opened with
    assert w2.dockWidgetArea(w2.docks["Faces"]) == Qt.DockWidgetArea.RightDockWidgetArea
    assert w2.docks["Interpolate"].isHidden() and not w2.docks["View"].isHidden()
    shape = w2.panel.tabs_by_group["shape"]
    assert shape.range_box.value() == 1.5
    assert shape.sliders[0].maximum() == pytest.approx(1.5 * w2.doc.model.groups[0].sigma[0])
    w2.close()

    # the new keys are checked like the others: a bad one is one line, never a crash
    for bad, words in (({"dock_state": "%%%"}, "dock_state"), ({"ranges": {"shape": -1}}, "ranges.shape"),
                       ({"geometry": 3}, "geometry")):
        with pytest.raises(StudioError, match=words):
            session.check({"format": session.FORMAT, "model": "synth", **bad})


def test_region_names_are_readable_and_slider_fill_starts_at_zero(qtbot, studio_home, no_dialogs):
    """The Regions panel cut names off ("head and n"); a ±3σ slider at 0 looked half set."""
    from conftest import make_model

    from studio.core import store
    from studio.core.modelfile import save_model

    model = make_model(name="regions")
    front = model.meta.regions["front"]
    for name in ICT_REGIONS:
        model.meta.regions[name] = front
    save_model(model, store.prepare("regions") / store.MODEL_FILE)
    w = open_window(qtbot, model="regions")
    scroll = w.view_panel._scroll.viewport()
    assert len(w.view_panel.checks) == len(ICT_REGIONS) + 1
    for name, c in w.view_panel.checks.items():
        right = c.mapTo(scroll, QPoint(c.sizeHint().width(), 0)).x()
        assert c.width() >= c.sizeHint().width() and right <= scroll.width(), name  # not cut off
        assert name in c.toolTip()

    s = w.panel.slider("shape", 0)
    inner = s._slider
    hl = inner.palette().color(QPalette.ColorRole.Highlight)

    def filled(value):
        s.setValue(value)
        img = inner.grab().toImage()
        xs = [x for y in range(img.height()) for x in range(img.width())
              if max(abs(img.pixelColor(x, y).red() - hl.red()), abs(img.pixelColor(x, y).green() - hl.green()),
                     abs(img.pixelColor(x, y).blue() - hl.blue())) < 12]
        return (min(xs), max(xs)) if xs else None

    assert filled(0.0) is None  # at 0 nothing is filled
    lo, hi = filled(s.maximum())
    assert abs(lo - inner.width() / 2) < 4 and hi > inner.width() * 0.85  # from the centre rightwards
    lo, hi = filled(s.minimum() / 2)
    assert abs(hi - inner.width() / 2) < 4 and inner.width() * 0.15 < lo < inner.width() * 0.35
