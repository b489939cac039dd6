"""The welcome panel: what the studio does, where to get a model, and buttons to start.

Two places show it (two instances of one class):

* beside the viewport (``beside=True``) on a first start and whenever the model store is empty:
  the built-in neural head opens as usual, and the panel beside it offers the linear models, a
  scan or a photo, or "Close" to keep sculpting the head;
* in place of the viewport when no model at all can open (no store model, no shipped checkpoint).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

GUIDANCE = ("No model yet: import ICT-FaceKit (FaceXModel folder, zip or tar), a Basel Face Model "
            "(.h5 / .mat) or FLAME (.pkl) to start.")
ABOUT = ("Face Studio shapes 3D faces with morphable models: move a slider per shape or expression "
         "direction, save and blend faces, fit the model to a scan or a photo, and export meshes "
         "(OBJ, PLY, STL, glTF with shape keys).")
BESIDE = ("You are sculpting the built-in neural head. The linear models are free to use but cannot "
          "ship with the studio; import one for real scanned identities, the 53 ARKit expressions, "
          "photo fitting and exports with shape keys:")
# (kind, button text, where to get it, the import dialog's file filter)
SOURCES = (
    ("ict", "Import ICT-FaceKit…", "github.com/ICT-VGL/ICT-FaceKit (MIT licence): the repository's zip, "
     "or its FaceXModel folder", "ICT-FaceKit archive (*.zip *.tar *.tar.gz *.tgz *.tar.xz)"),
    ("bfm", "Import Basel Face Model…", "faces.dmi.unibas.ch (free registration, non-commercial "
     "licence): model2017-1_face12_nomouth.h5, or the 2009 .mat", "Basel Face Model (*.h5 *.mat)"),
    ("flame", "Import FLAME…", "flame.is.tue.mpg.de (free registration, FLAME licence): "
     "generic_model.pkl", "FLAME (*.pkl)"),
)
FILTERS = {kind: filt for kind, _text, _where, filt in SOURCES}


class WelcomeView(QWidget):
    importFile = Signal()
    importFolder = Signal()
    importKind = Signal(str)  # "ict", "bfm" or "flame": a file dialog for that model's files
    loadScan = Signal()
    loadPhoto = Signal()
    openModel = Signal(str)
    closed = Signal()  # "Close": keep sculpting the neural head

    def __init__(self, parent=None, beside: bool = False):
        super().__init__(parent)
        self.beside = beside
        width = 300 if beside else 760  # beside: narrow, so the docks keep their width
        body = QWidget()
        lay = QVBoxLayout(body)
        lay.setContentsMargins(14, 14, 14, 14)
        title = QLabel("<h2>Welcome to Face Studio</h2>")
        lay.addWidget(title)
        self.about = self._text(ABOUT, width)
        lay.addWidget(self.about)
        self.label = self._text(BESIDE if beside else GUIDANCE, width)
        lay.addWidget(self.label)
        lay.addLayout(self._source_buttons(width))
        self.import_button = QPushButton("Other model file or folder…")
        menu = QMenu(self.import_button)
        menu.addAction("From a file (zip, tar, .h5, .mat, .pkl)…").triggered.connect(self.importFile.emit)
        menu.addAction("From a folder (ICT-FaceKit FaceXModel)…").triggered.connect(self.importFolder.emit)
        self.import_button.setMenu(menu)
        lay.addWidget(self.import_button, 0, Qt.AlignmentFlag.AlignLeft)
        lay.addWidget(self._line())
        lay.addWidget(self._text("Or start from a person: fit the open model to a 3D scan "
                                 "(.ply, .obj, .stl) or to a photo (linear models).", width))
        fit = QHBoxLayout()
        self.scan_button = QPushButton("Load a scan…")
        self.scan_button.clicked.connect(self.loadScan.emit)
        self.photo_button = QPushButton("Load a photo…")
        self.photo_button.clicked.connect(self.loadPhoto.emit)
        fit.addWidget(self.scan_button)
        fit.addWidget(self.photo_button)
        fit.addStretch(1)
        lay.addLayout(fit)
        lay.addWidget(self._store_row_widget())
        self.close_button = QPushButton("Close — keep sculpting the neural head")
        self.close_button.setToolTip("hide this panel; Help → Welcome shows it again")
        self.close_button.clicked.connect(self.closed.emit)
        self.close_button.setVisible(beside)
        lay.addWidget(self.close_button, 0, Qt.AlignmentFlag.AlignLeft)
        lay.addStretch(1)
        self._layout(body, width)

    def _layout(self, body: QWidget, width: int) -> None:
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        if self.beside:  # a side panel: scrolls when the window is short
            scroll = QScrollArea()
            scroll.setWidgetResizable(True)
            scroll.setWidget(body)
            scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
            outer.addWidget(scroll)
            self.setFixedWidth(width + 40)
            return
        outer.addStretch(1)
        outer.addWidget(body, 0, Qt.AlignmentFlag.AlignHCenter)
        outer.addStretch(2)

    @staticmethod
    def _text(text: str, width: int) -> QLabel:
        label = QLabel(text)
        label.setWordWrap(True)
        label.setFixedWidth(width)
        # An aligned layout cell ignores height-for-width: reserve the wrapped text's height.
        label.setMinimumHeight(label.heightForWidth(width))
        return label

    @staticmethod
    def _line() -> QFrame:
        line = QFrame()
        line.setFrameShape(QFrame.Shape.HLine)
        return line

    def _source_buttons(self, width: int) -> QGridLayout:
        grid = QGridLayout()
        self.source_buttons: dict[str, QPushButton] = {}
        for row, (kind, text, where, _filt) in enumerate(SOURCES):
            b = QPushButton(text)
            b.setToolTip(f"get it from {where}")
            b.clicked.connect(lambda _=False, k=kind: self.importKind.emit(k))
            note = self._text(where, width - 190 if not self.beside else width)
            note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            if self.beside:  # narrow: the note goes under its button
                grid.addWidget(b, 2 * row, 0, Qt.AlignmentFlag.AlignLeft)
                grid.addWidget(note, 2 * row + 1, 0)
            else:
                grid.addWidget(b, row, 0)
                grid.addWidget(note, row, 1)
            self.source_buttons[kind] = b
        return grid

    def _store_row_widget(self) -> QWidget:
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        self.models = QComboBox()
        self.open_button = QPushButton("Open")
        self.open_button.clicked.connect(lambda: self.openModel.emit(self.models.currentText()))
        row.addWidget(QLabel("or open a model:"))
        row.addWidget(self.models, 1)
        row.addWidget(self.open_button)
        self._store_row = QWidget()
        self._store_row.setLayout(row)
        return self._store_row

    def set_models(self, names: list[str]) -> None:
        self.models.clear()
        self.models.addItems(names)
        self._store_row.setVisible(bool(names))

    def set_has_model(self, on: bool) -> None:
        """Scans and photos are fitted by the open model: without one they cannot load."""
        for b in (self.scan_button, self.photo_button):
            b.setEnabled(on)
            b.setToolTip("" if on else "open a model first")
