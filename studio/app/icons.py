"""The window's icon: resources/icons/face-studio.svg (a PNG beside it for what cannot read SVG)."""

from __future__ import annotations

from PySide6.QtGui import QIcon

from studio.resources import resource


def app_icon() -> QIcon:
    """The studio's icon (an empty icon when the resources are not installed)."""
    path = resource("icons", "face-studio.svg") or resource("icons", "face-studio.png")
    return QIcon(str(path)) if path else QIcon()
