"""The centre view when no model is open: one line of guidance, Import, and the store's models."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QMenu, QPushButton, QVBoxLayout, QWidget

GUIDANCE = ("No model yet: import ICT-FaceKit (FaceXModel folder, zip or tar), a Basel Face Model "
            "(.h5 / .mat) or FLAME (.pkl) to start.")


class WelcomeView(QWidget):
    importFile = Signal()
    importFolder = Signal()
    openModel = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.addStretch(2)
        self.label = QLabel(GUIDANCE)
        self.label.setWordWrap(True)
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.label.setFixedWidth(760)
        # An aligned layout cell ignores height-for-width: reserve the wrapped text's height.
        self.label.setMinimumHeight(self.label.heightForWidth(760))
        lay.addWidget(self.label, 0, Qt.AlignmentFlag.AlignHCenter)
        self.import_button = QPushButton("Import model…")
        menu = QMenu(self.import_button)
        menu.addAction("From a file (zip, tar, .h5, .mat, .pkl)…").triggered.connect(self.importFile.emit)
        menu.addAction("From a folder (ICT-FaceKit FaceXModel)…").triggered.connect(self.importFolder.emit)
        self.import_button.setMenu(menu)
        lay.addWidget(self.import_button, 0, Qt.AlignmentFlag.AlignHCenter)
        row = QHBoxLayout()
        self.models = QComboBox()
        self.open_button = QPushButton("Open")
        self.open_button.clicked.connect(lambda: self.openModel.emit(self.models.currentText()))
        row.addStretch(1)
        row.addWidget(QLabel("or open an imported model:"))
        row.addWidget(self.models)
        row.addWidget(self.open_button)
        row.addStretch(1)
        self._store_row = QWidget()
        self._store_row.setLayout(row)
        lay.addWidget(self._store_row)
        lay.addStretch(3)

    def set_models(self, names: list[str]) -> None:
        self.models.clear()
        self.models.addItems(names)
        self._store_row.setVisible(bool(names))
