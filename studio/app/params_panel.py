"""Parameter tabs built from any FaceModel's ``groups`` (written once, for every model kind).

One tab per group, one row per parameter in the group's own order (PCs by variance, expression
names as the model lists them): the name and a labelled float slider with a value box. A range
box per tab sets ±kσ for normal-prior groups, or stretches a box-prior group's [lower, upper]
about its centre. Rows read the document and write undoable edits; they never hold state.

Building is kept cheap (ICT has 153 rows): rows go straight into one grid per tab (no per-row
container widget), with updates disabled while the tab is filled.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QDoubleSpinBox, QGridLayout, QHBoxLayout, QLabel, QPushButton, QScrollArea,
                               QTabWidget, QVBoxLayout, QWidget)
from superqt import QLabeledDoubleSlider

from studio.core import prior

DEFAULT_K = 3.0  # ±3σ: 99.7 % of each normal coefficient's prior mass


class GroupTab(QWidget):
    def __init__(self, doc, group, rng, parent=None):
        super().__init__(parent)
        self.doc, self.group, self.rng = doc, group, rng
        self._syncing = False  # True while rows are set from the document (not user edits)
        self._drag = None  # token shared by every value of the current slider drag
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)

        head = QHBoxLayout()
        self.range_box = QDoubleSpinBox()
        self.range_box.setDecimals(1)
        self.range_box.setSingleStep(0.5)
        if group.prior == "normal":
            head.addWidget(QLabel("range ±"))
            self.range_box.setRange(0.5, 10.0)
            self.range_box.setValue(DEFAULT_K)
            self.range_box.setSuffix(" σ")
            self.range_box.setToolTip("slider range in standard deviations of each coefficient's prior")
        else:
            head.addWidget(QLabel("range ×"))
            self.range_box.setRange(1.0, 10.0)
            self.range_box.setValue(1.0)
            self.range_box.setToolTip("stretch the prior's box [lower, upper] about its centre "
                                      "(values outside it are implausible: −log prior = ∞)")
        self.range_box.valueChanged.connect(self.set_range_factor)
        head.addWidget(self.range_box)
        head.addStretch(1)
        self.random_button = QPushButton("Random")
        self.random_button.setToolTip(f"draw '{group.name}' from its prior")
        self.random_button.clicked.connect(self.randomize)
        self.reset_button = QPushButton("Reset")
        self.reset_button.setToolTip(f"set every '{group.name}' parameter to 0")
        self.reset_button.clicked.connect(self.reset)
        head.addWidget(self.random_button)
        head.addWidget(self.reset_button)
        lay.addLayout(head)

        body = QWidget()
        body.setUpdatesEnabled(False)
        grid = QGridLayout(body)
        grid.setContentsMargins(2, 2, 8, 2)
        grid.setVerticalSpacing(1)
        grid.setHorizontalSpacing(8)
        grid.setColumnStretch(1, 1)
        self.sliders: list[QLabeledDoubleSlider] = []
        for i, name in enumerate(group.names):
            label = QLabel(name)
            label.setToolTip(f"{group.name}[{i}] {name}")
            s = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
            s.setDecimals(2)
            s.valueChanged.connect(lambda v, i=i: self._on_value(i, v))
            s.sliderPressed.connect(self._begin_drag)
            s.sliderReleased.connect(self._end_drag)
            grid.addWidget(label, i, 0)
            grid.addWidget(s, i, 1)
            self.sliders.append(s)
        body.setUpdatesEnabled(True)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(body)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        lay.addWidget(scroll, 1)
        self.set_range_factor(self.range_box.value())

    # -- ranges ----------------------------------------------------------------------------------
    def base_range(self) -> tuple[np.ndarray, np.ndarray]:
        g, k = self.group, self.range_box.value()
        if g.prior == "normal":
            return -k * g.sigma, k * g.sigma
        centre, half = (g.lower + g.upper) / 2, (g.upper - g.lower) / 2
        return centre - k * half, centre + k * half

    def set_range_factor(self, _k=None) -> None:
        lo, hi = self.base_range()
        self._syncing = True
        try:
            values = self.doc.params[self.group.name]
            for i, s in enumerate(self.sliders):
                # A value outside the range (random draw, loaded face) widens its row rather than
                # being clamped, which would silently change the face.
                s.setRange(min(lo[i], values[i]), max(hi[i], values[i]))
                s.setValue(values[i])
        finally:
            self._syncing = False

    # -- document → rows -------------------------------------------------------------------------
    def sync(self, index: int | None = None) -> None:
        values = self.doc.params[self.group.name]
        self._syncing = True
        try:
            for i in (range(len(self.sliders)) if index is None else (index,)):
                s, v = self.sliders[i], float(values[i])
                if v < s.minimum() or v > s.maximum():
                    s.setRange(min(s.minimum(), v), max(s.maximum(), v))
                if s.value() != v:
                    s.setValue(v)
        finally:
            self._syncing = False

    # -- rows → document -------------------------------------------------------------------------
    def _on_value(self, i: int, v: float) -> None:
        if not self._syncing:
            self.doc.edit_value(self.group.name, i, float(v), drag=self._drag)

    def _begin_drag(self) -> None:
        self._drag = object()
        self.doc.dragging = True

    def _end_drag(self) -> None:
        self._drag = None
        self.doc.dragging = False
        self.doc.dragFinished.emit()

    def randomize(self) -> None:
        drawn = prior.sample(self.doc.model.groups, self.rng, only=[self.group.name])
        new = self.doc.snapshot()
        new[self.group.name] = drawn[self.group.name]
        self.doc.edit_params(new, f"random {self.group.name}")

    def reset(self) -> None:
        new = self.doc.snapshot()
        new[self.group.name] = np.zeros(self.group.size)
        self.doc.edit_params(new, f"reset {self.group.name}")


class ParameterPanel(QWidget):
    """The dock body: Random all / Reset all, the group tabs and the plausibility readout."""

    def __init__(self, doc, parent=None, seed=None):
        super().__init__(parent)
        self.doc = doc
        self.rng = np.random.default_rng(seed)
        self.tabs_by_group: dict[str, GroupTab] = {}
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        top = QHBoxLayout()
        self.random_all_button = QPushButton("Random face")
        self.random_all_button.setToolTip("draw every normal-prior group from its prior (expression neutral)")
        self.random_all_button.clicked.connect(self.randomize_all)
        self.reset_all_button = QPushButton("Reset all")
        self.reset_all_button.setToolTip("the mean face: every parameter 0")
        self.reset_all_button.clicked.connect(self.reset_all)
        top.addWidget(self.random_all_button)
        top.addWidget(self.reset_all_button)
        top.addStretch(1)
        lay.addLayout(top)
        self.tabs = QTabWidget()
        lay.addWidget(self.tabs, 1)
        self.plausibility = QLabel("")
        self.plausibility.setWordWrap(True)
        self.plausibility.setToolTip("how likely the face is under the model's prior: −log p(α) (up to a "
                                     "constant), the Mahalanobis distance ‖α/σ‖ and the fraction of faces "
                                     "drawn from the prior that lie closer to the mean (χ² CDF)")
        lay.addWidget(self.plausibility)
        self.setEnabled(False)
        doc.modelChanged.connect(self.set_model)
        doc.paramsChanged.connect(self.on_params_changed)

    def set_model(self, model) -> None:
        self.tabs.clear()
        for tab in self.tabs_by_group.values():
            tab.deleteLater()
        self.tabs_by_group = {}
        if model is None:
            self.setEnabled(False)
            return
        for g in model.groups:
            tab = GroupTab(self.doc, g, self.rng)
            self.tabs_by_group[g.name] = tab
            self.tabs.addTab(tab, f"{g.name} ({g.size})")
        self.setEnabled(True)

    def on_params_changed(self, change) -> None:
        if not self.tabs_by_group:
            return
        if change is None:
            for tab in self.tabs_by_group.values():
                tab.sync()
        else:
            group, index = change
            self.tabs_by_group[group].sync(index)

    def slider(self, group: str, index: int) -> QLabeledDoubleSlider:
        return self.tabs_by_group[group].sliders[index]

    def show_plausibility(self, text: str) -> None:
        self.plausibility.setText(text)

    def randomize_all(self) -> None:
        model = self.doc.model  # a model's own sample() knows which groups make a plausible face
        drawn = model.sample(self.rng) if hasattr(model, "sample") else prior.sample(model.groups, self.rng)
        self.doc.edit_params(drawn, "random face")

    def reset_all(self) -> None:
        self.doc.edit_params(prior.zeros(self.doc.model.groups), "reset all")
