"""Identity library dock: save the current face under a name, list with thumbnails, load, delete.

Saving renders the thumbnail with the software rasteriser, so it runs as a worker job; loading
reads one small JSON and pushes an undoable edit. Nothing is replaced or deleted without asking.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWidget

from studio.app import dialogs, identities
from studio.core.errors import StudioError


class LibraryPanel(QWidget):
    changed = Signal()  # the list of saved faces changed (the interpolation panel listens)

    def __init__(self, doc, runner, notify, parent=None):
        super().__init__(parent)
        self.doc, self.runner, self.notify = doc, runner, notify
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        self.list = QListWidget()
        self.list.setViewMode(QListWidget.ViewMode.IconMode)
        self.list.setIconSize(QSize(identities.THUMB_SIZE * 2 // 3, identities.THUMB_SIZE * 2 // 3))
        self.list.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.list.setMovement(QListWidget.Movement.Static)
        self.list.setWordWrap(True)
        self.list.itemDoubleClicked.connect(lambda _item: self.load_selected())
        lay.addWidget(self.list, 1)
        row = QHBoxLayout()
        self.save_button = QPushButton("Save face…")
        self.save_button.clicked.connect(lambda: self.save_current())
        self.load_button = QPushButton("Load")
        self.load_button.clicked.connect(self.load_selected)
        self.delete_button = QPushButton("Delete…")
        self.delete_button.clicked.connect(self.delete_selected)
        for b in (self.save_button, self.load_button, self.delete_button):
            row.addWidget(b)
        lay.addLayout(row)
        self.setEnabled(False)
        doc.modelChanged.connect(lambda _m: self.refresh())

    @property
    def model(self):
        return self.doc.model

    def refresh(self) -> None:
        self.list.clear()
        self.setEnabled(self.model is not None)
        if self.model is not None:
            for e in identities.list_all(self.model.name):
                item = QListWidgetItem(e.name)
                if e.png.exists():
                    item.setIcon(QIcon(QPixmap(str(e.png))))
                item.setData(Qt.ItemDataRole.UserRole, e)
                item.setToolTip(str(e.json))
                self.list.addItem(item)
        self.changed.emit()

    def names(self) -> list[str]:
        return [self.list.item(i).text() for i in range(self.list.count())]

    def selected(self):
        item = self.list.currentItem()
        return None if item is None else item.data(Qt.ItemDataRole.UserRole)

    def select(self, name: str) -> None:
        for i in range(self.list.count()):
            if self.list.item(i).text() == name:
                self.list.setCurrentRow(i)

    def save_current(self, name: str | None = None) -> None:
        if self.model is None:
            return
        if name is None:
            name = dialogs.ask_text(self, "Save face", "Name for the current face:")
            if name is None:
                return
        try:
            name = identities.check_name(name)
        except StudioError as e:
            self.notify(str(e), error=True)
            return
        force = False
        if identities.exists(self.model.name, name):
            if not dialogs.confirm_replace(self, f"The face '{name}'"):
                return
            force = True
        model, params = self.model, self.doc.snapshot()

        def done(e):
            self.refresh()
            self.select(e.name)
            self.notify(f"saved face '{e.name}' ({e.json})")

        self.runner.submit(lambda progress: identities.save(model, params, name, force, progress),
                           f"saving face '{name}'", on_done=done, quiet=True)

    def load_selected(self) -> None:
        e = self.selected()
        if e is None or self.model is None:
            return
        try:
            params = identities.load(self.model, e)
        except StudioError as err:
            self.notify(str(err), error=True)
            return
        self.doc.edit_params(params, f"load face '{e.name}'")
        self.notify(f"loaded face '{e.name}'")

    def delete_selected(self) -> None:
        e = self.selected()
        if e is None:
            return
        if not dialogs.confirm(self, "Delete face", f"Delete the saved face '{e.name}'? This cannot be undone."):
            return
        identities.delete(e)
        self.refresh()
        self.notify(f"deleted face '{e.name}'")
