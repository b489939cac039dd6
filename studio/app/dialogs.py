"""The few questions the studio asks, in one place (tests patch QFileDialog / QMessageBox here).

File dialogs are told not to confirm overwriting themselves: the studio asks its own question
and then passes force=True to the core, so "never replace silently" holds on every platform.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QInputDialog, QMessageBox


def save_path(parent, caption: str, filter: str, suffix: str, start: str = "") -> Path | None:
    path, _ = QFileDialog.getSaveFileName(parent, caption, start, filter,
                                          options=QFileDialog.Option.DontConfirmOverwrite)
    if not path:
        return None
    p = Path(path)
    if suffix and p.suffix.lower() != suffix:
        p = p.with_name(p.name + suffix)
    return p


def open_file(parent, caption: str, filter: str) -> Path | None:
    path, _ = QFileDialog.getOpenFileName(parent, caption, "", filter)
    return Path(path) if path else None


def open_folder(parent, caption: str) -> Path | None:
    path = QFileDialog.getExistingDirectory(parent, caption)
    return Path(path) if path else None


def confirm(parent, title: str, text: str) -> bool:
    answer = QMessageBox.question(parent, title, text,
                                  QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                  QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


def confirm_replace(parent, path_or_name) -> bool:
    return confirm(parent, "Replace?", f"{path_or_name} exists already. Replace it?")


def ask_text(parent, title: str, label: str, text: str = "") -> str | None:
    value, ok = QInputDialog.getText(parent, title, label, text=text)
    return value.strip() if ok and value.strip() else None


def ask_int(parent, title: str, label: str, value: int, lo: int, hi: int) -> int | None:
    v, ok = QInputDialog.getInt(parent, title, label, value, lo, hi)
    return int(v) if ok else None


def ask_item(parent, title: str, label: str, items: list[str], current: int = 0) -> str | None:
    value, ok = QInputDialog.getItem(parent, title, label, items, current, False)
    return value if ok else None
