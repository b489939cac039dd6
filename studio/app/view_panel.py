"""View dock: camera presets, wireframe, and which model regions (teeth, eyelashes …) are shown."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QGridLayout, QGroupBox, QPushButton, QScrollArea, QVBoxLayout, QWidget


class ViewPanel(QWidget):
    changed = Signal()  # a display option changed (the session saves it)

    def __init__(self, viewport, parent=None):
        super().__init__(parent)
        self.viewport = viewport
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        cams = QGridLayout()
        self.camera_buttons = {}
        for i, (preset, text) in enumerate((("front", "Front"), ("side", "Side"), ("three-quarter", "¾"))):
            b = QPushButton(text)
            b.setToolTip(f"{preset} view")
            b.clicked.connect(lambda _=False, p=preset: viewport.set_view(p))
            cams.addWidget(b, 0, i)
            self.camera_buttons[preset] = b
        self.reset_button = QPushButton("Reset view")
        self.reset_button.clicked.connect(lambda: viewport.set_view("front"))
        cams.addWidget(self.reset_button, 1, 0, 1, 2)
        self.wireframe = QCheckBox("Wireframe")
        self.wireframe.toggled.connect(self._wireframe)
        cams.addWidget(self.wireframe, 1, 2)
        lay.addLayout(cams)
        self.regions_box = QGroupBox("Regions")
        box_lay = QVBoxLayout(self.regions_box)
        box_lay.setContentsMargins(2, 2, 2, 2)
        self._scroll = QScrollArea()
        self._scroll.setWidgetResizable(True)
        self._scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        box_lay.addWidget(self._scroll)
        lay.addWidget(self.regions_box, 1)
        lay.addStretch(0)  # takes the space instead of the regions box for models without regions
        self._layout = lay
        self.checks: dict[str, QCheckBox] = {}
        self.set_model(None)

    def set_model(self, model) -> None:
        body = QWidget()
        grid = QGridLayout(body)
        grid.setContentsMargins(2, 2, 2, 2)
        grid.setVerticalSpacing(0)
        self.checks = {}
        regions = [] if model is None else list(model.meta.regions)
        hidden = self.viewport.hidden_regions
        # One column: two columns in a 300 px dock cut ICT's names off ("head and n"); the list
        # scrolls instead, and the tooltip repeats the model's own name.
        for i, name in enumerate(regions):
            c = QCheckBox(name.replace("_", " "))
            c.setToolTip(f"show or hide the region '{name}'")
            c.setChecked(name not in hidden)
            c.toggled.connect(self._regions)
            grid.addWidget(c, i, 0)
            self.checks[name] = c
        self._scroll.setWidget(body)
        self.regions_box.setVisible(bool(regions))
        self._layout.setStretch(self._layout.count() - 1, 0 if regions else 1)

    def sync(self) -> None:
        """Reflect the viewport's state (after a session restore)."""
        hidden = self.viewport.hidden_regions
        for name, c in self.checks.items():
            c.blockSignals(True)
            c.setChecked(name not in hidden)
            c.blockSignals(False)
        self.wireframe.blockSignals(True)
        self.wireframe.setChecked(self.viewport.wireframe)
        self.wireframe.blockSignals(False)

    def set_region_visible(self, name: str, visible: bool) -> None:
        self.checks[name].setChecked(visible)

    def _regions(self) -> None:
        self.viewport.set_hidden_regions({n for n, c in self.checks.items() if not c.isChecked()})
        self.changed.emit()

    def _wireframe(self, on: bool) -> None:
        self.viewport.set_wireframe(on)
        self.changed.emit()
