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
from PySide6.QtCore import QCoreApplication, QEvent, QObject, Qt, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QStyle,
    QStylePainter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)
from superqt import QDoubleSlider, QLabeledDoubleSlider

from studio.app.evaluation import PLAUSIBILITY_TIP
from studio.core import expressions, prior

DEFAULT_K = 3.0  # ±3σ: 99.7 % of each normal coefficient's prior mass


class SliderBehaviour(QObject):
    """What a slider does with the mouse, the wheel and the keys, as in Blender and Qt's own widgets.

    * a press starts the drag's undo token *before* the slider moves (superqt centres the handle
      on the click, which used to land as an undo step of its own: one drag made two);
    * a double-click resets to 0, merged with the press it began with (one undo step);
    * the wheel scrolls the list unless the slider has keyboard focus (three notches once moved
      PC6 and added three undo steps);
    * arrows step 0.1σ, PageUp/PageDown 1σ, Home sets 0 (superqt's slider took no keys at all).
    """

    def __init__(self, tab):
        super().__init__(tab)
        self.tab = tab
        self._index: dict[QObject, int] = {}
        self._last_press = None

    def attach(self, labeled: QLabeledDoubleSlider, i: int) -> None:
        inner = labeled._slider  # superqt's QDoubleSlider: where mouse, wheel and keys arrive
        inner.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # click or Tab, not the wheel, gives focus
        inner.installEventFilter(self)
        self._index[inner] = i

    def eventFilter(self, obj, ev) -> bool:
        i = self._index.get(obj)
        if i is None:
            return False
        kind = ev.type()
        if kind == QEvent.Type.MouseButtonPress and ev.button() == Qt.MouseButton.LeftButton:
            self.tab._begin_drag()
            self._last_press = self.tab._drag
        elif kind == QEvent.Type.MouseButtonDblClick and ev.button() == Qt.MouseButton.LeftButton:
            self.tab._drag = self._last_press  # merges with the first click's step
            self.tab.sliders[i].setValue(0.0)
            self.tab._drag = None
            return True
        elif kind == QEvent.Type.Wheel and not obj.hasFocus():
            scroll = self.tab.scroll.verticalScrollBar()
            QCoreApplication.sendEvent(scroll, ev)
            return True
        elif kind == QEvent.Type.KeyPress and ev.key() in KEY_STEPS:
            # superqt's slider ignores the keyboard (its keyPressEvent is a TODO)
            s, step = self.tab.sliders[i], KEY_STEPS[ev.key()]
            value = 0.0 if step is None else s.value() + step * self.tab._step(i)
            s.setValue(float(np.clip(value, s.minimum(), s.maximum())))
            return True
        return False


class CentredDoubleSlider(QDoubleSlider):
    """superqt's float slider with its fill drawn from 0, not from the left end.

    The style fills the groove from the minimum to the handle, so a ±3σ slider at 0 looked half set.
    A style sheet cannot move where the fill starts; this paints the groove and the fill (from the
    value 0, clamped into the range, to the handle) itself, then lets the style draw the handle.
    """

    GROOVE_HEIGHT = 4

    def fill_span(self) -> tuple[int, int]:
        """Pixel x of the fill's two ends: where 0 lies, and the handle's centre."""
        style, opt = self.style(), self._styleOption
        cc, handle = QStyle.ComplexControl.CC_Slider, QStyle.SubControl.SC_SliderHandle
        x_value = style.subControlRect(cc, opt, handle, self).center().x()
        origin = min(max(0.0, self.minimum()), self.maximum())
        opt.sliderPosition = opt.sliderValue = self._to_qinteger_space(origin - self.minimum())
        return style.subControlRect(cc, opt, handle, self).center().x(), x_value

    def paintEvent(self, ev) -> None:
        if self.orientation() != Qt.Orientation.Horizontal:
            super().paintEvent(ev)
            return
        opt = self._styleOption
        groove = self.style().subControlRect(QStyle.ComplexControl.CC_Slider, opt,
                                             QStyle.SubControl.SC_SliderGroove, self)
        h = self.GROOVE_HEIGHT
        track = groove.adjusted(0, (groove.height() - h) // 2, 0, 0)
        track.setHeight(h)
        a, b = sorted(self.fill_span())
        fill = track.adjusted(0, 0, 0, 0)
        fill.setLeft(a)
        fill.setRight(b)
        pal = self.palette()
        painter = QStylePainter(self)  # plain rectangles, no antialiasing: 153 rows repaint per change
        painter.fillRect(track, pal.color(QPalette.ColorRole.Mid))
        role = QPalette.ColorRole.Highlight if self.isEnabled() else QPalette.ColorRole.Dark
        painter.fillRect(fill, pal.color(role))
        opt.subControls = QStyle.SubControl.SC_SliderHandle  # the style's own handle, no groove
        painter.drawComplexControl(QStyle.ComplexControl.CC_Slider, opt)


class CentredLabeledSlider(QLabeledDoubleSlider):
    """QLabeledDoubleSlider (slider + value box) around a CentredDoubleSlider."""

    _slider_class = CentredDoubleSlider


# key → steps of 0.1σ (None: back to 0)
KEY_STEPS = {Qt.Key.Key_Right: 1, Qt.Key.Key_Up: 1, Qt.Key.Key_Left: -1, Qt.Key.Key_Down: -1,
             Qt.Key.Key_PageUp: 10, Qt.Key.Key_PageDown: -10, Qt.Key.Key_Home: None}


def _direction_labels(model, group):
    from studio.core.direction_labels import DirectionLabel, labels

    if model is None or group.prior != "normal":
        return [DirectionLabel(n, n, ()) for n in group.names]
    return labels(model, group.name)


def _sections(group) -> list[tuple[str | None, list[int]]]:
    """Rows in display order: blendshapes under region headers (when their names say the region),
    everything else in the model's order under no header."""
    if group.prior == "box":
        parts = expressions.regions(group.names)
        if len(parts) > 1:
            return [(region, ids) for region, ids in parts]
    return [(None, list(range(group.size)))]


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
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("filter…")
        self.filter.setClearButtonEnabled(True)
        self.filter.setToolTip("show only the sliders whose name or label contains this text")
        self.filter.textChanged.connect(self.apply_filter)
        self.filter.setVisible(group.size > 12)
        self.filter.setMinimumWidth(110)
        head.addWidget(self.filter, 1)
        self.link = QCheckBox("link L/R")
        self.link.setToolTip("moving a left or right blendshape moves its other side too")
        self.partners = [expressions.partner(group.names, i) for i in range(group.size)]
        self.link.setVisible(any(p is not None for p in self.partners))
        head.addWidget(self.link)
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
        self.labels = _direction_labels(doc.model, group)
        self._behaviour = SliderBehaviour(self)
        self.sliders: list[QLabeledDoubleSlider] = [None] * group.size  # type: ignore[list-item]
        self.name_labels: list[QLabel] = [None] * group.size  # type: ignore[list-item]
        self.headers: dict[str, tuple[QLabel, list[int]]] = {}
        row = 0
        for region, ids in _sections(group):
            if region is not None:  # expressions grouped by the face part they move
                header = QLabel(f"<b>{region}</b>")
                grid.addWidget(header, row, 0, 1, 2)
                self.headers[region] = (header, ids)
                row += 1
            for i in ids:
                label = QLabel(self.labels[i].label)
                s = CentredLabeledSlider(Qt.Orientation.Horizontal)
                s.setDecimals(2)
                s.valueChanged.connect(lambda v, i=i: self._on_value(i, v))
                s.sliderPressed.connect(self._ensure_drag)  # a drag begun without the mouse
                s.sliderReleased.connect(self._end_drag)
                self._behaviour.attach(s, i)
                grid.addWidget(label, row, 0)
                grid.addWidget(s, row, 1)
                self.sliders[i], self.name_labels[i] = s, label
                row += 1
        body.setUpdatesEnabled(True)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(body)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        lay.addWidget(scroll, 1)
        self.scroll = scroll
        self.set_range_factor(self.range_box.value())
        self.sync()  # tooltips

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
                self._tooltip(i, v)
        finally:
            self._syncing = False

    # -- rows → document -------------------------------------------------------------------------
    def _on_value(self, i: int, v: float) -> None:
        if self._syncing:
            return
        p = self.partners[i] if self.link.isChecked() else None
        if p is None:
            self.doc.edit_value(self.group.name, i, float(v), drag=self._drag)
            return
        new = self.doc.snapshot()
        new[self.group.name][[i, p]] = float(v)  # both sides, one undo step (a drag merges into one)
        key = None if self._drag is None else f"link-{id(self._drag)}"
        self.doc.edit_params(new, f"set {self.group.names[i]} (L/R linked)", merge_key=key)

    def _tooltip(self, i: int, v: float) -> None:
        """What the slider changes, and where its value lies under the prior."""
        g, lab = self.group, self.labels[i]
        if g.prior == "normal":
            from scipy.stats import norm

            z = v / float(np.broadcast_to(g.sigma, (g.size,))[i])
            where = (f"{z:+.2f}σ: {200 * norm.sf(abs(z)):.0f} % of faces lie further out along it"
                     if abs(z) > 1e-9 else "at the mean (0σ)")
            text = f"{g.name}[{i}] {where}\n{lab.tooltip()}"
        else:
            partner = self.partners[i]
            text = (f"{g.names[i]} ({expressions.region_of(g.names[i])}): weight {v:.2f} in "
                    f"[{g.lower[i]:g}, {g.upper[i]:g}]"
                    + (f"; other side: {g.names[partner]}" if partner is not None else ""))
        self.name_labels[i].setToolTip(text)
        self.sliders[i].setToolTip(text)

    def apply_filter(self, text: str) -> None:
        words = text.strip().lower()
        shown = [not words or words in lab.label.lower() for lab in self.labels]
        for i, on in enumerate(shown):
            self.name_labels[i].setVisible(on)
            self.sliders[i].setVisible(on)
        for header, ids in self.headers.values():
            header.setVisible(any(shown[i] for i in ids))

    def _begin_drag(self) -> None:
        self._drag = object()
        self.doc.dragging = True

    def _ensure_drag(self) -> None:
        if self._drag is None:
            self._begin_drag()

    def _step(self, i: int) -> float:
        """A keyboard step: 0.1σ for normal groups, a tenth of the box for blendshapes."""
        g = self.group
        if g.prior == "normal":
            return 0.1 * float(np.broadcast_to(g.sigma, (g.size,))[i])
        return 0.1 * float(g.upper[i] - g.lower[i])

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

    rangesChanged = Signal()  # a tab's range box changed (the session saves it)

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
        self.plausibility = QLabel("")  # one line: elided by the dock's width rather than wrapped
        self.plausibility.setToolTip(PLAUSIBILITY_TIP)
        # A QLabel is at least as wide as its text: a long readout widened the dock (and narrowed
        # the viewport) on every change; ignored, the dock's width decides and the line is clipped.
        self.plausibility.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
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
            tab.range_box.valueChanged.connect(lambda _k: self.rangesChanged.emit())
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

    def ranges(self) -> dict[str, float]:
        """Each tab's range box (±kσ, or the box stretch), by group name."""
        return {name: float(tab.range_box.value()) for name, tab in self.tabs_by_group.items()}

    def set_ranges(self, ranges: dict) -> None:
        for name, k in ranges.items():
            if name in self.tabs_by_group:  # a group the model no longer has is ignored
                self.tabs_by_group[name].range_box.setValue(float(k))

    def slider(self, group: str, index: int) -> QLabeledDoubleSlider:
        return self.tabs_by_group[group].sliders[index]

    def show_plausibility(self, text: str) -> None:
        self.plausibility.setText(text)

    def randomize_all(self) -> None:
        # a model's own sample() knows which groups make a plausible face
        self.doc.edit_params(self.doc.model.sample(self.rng), "random face")

    def reset_all(self) -> None:
        self.doc.edit_params(prior.zeros(self.doc.model.groups), "reset all")
