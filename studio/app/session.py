"""The session: what the studio reopens on the next start (model, face, camera, view options).

Saved to ``store.home()/session.json`` atomically (temporary file + rename) and debounced: every
change restarts a 0.5 s timer, so a slider drag writes once after it settles, and a process that
is killed loses at most the last half second.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from PySide6.QtCore import QObject, QTimer

from studio.core import store
from studio.core.atomic import write_text

log = logging.getLogger(__name__)
FORMAT = "face-studio-session"
VERSION = 1
FILE = "session.json"
DEBOUNCE_MS = 500


def path() -> Path:
    return store.home() / FILE


def read() -> dict | None:
    """The saved session, or None when there is none or it cannot be read (never an error)."""
    p = path()
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        log.warning("ignoring unreadable session %s: %s", p, e)
        return None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("model"), str):
        return None
    return doc


def write(state: dict) -> Path:
    p = path()
    p.parent.mkdir(parents=True, exist_ok=True)
    return write_text(p, json.dumps({"format": FORMAT, "version": VERSION, **state}, indent=1) + "\n",
                      force=True)


class SessionSaver(QObject):
    """Debounced autosave: ``schedule()`` after any change, ``flush()`` at exit."""

    def __init__(self, collect, parent=None, enabled: bool = True):
        super().__init__(parent)
        self._collect = collect  # () -> dict | None (None: nothing worth saving yet)
        self.enabled = enabled
        self.saves = 0
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.save_now)

    def schedule(self) -> None:
        if self.enabled:
            self._timer.start()  # restarts: the write happens 0.5 s after the last change

    @property
    def pending(self) -> bool:
        return self._timer.isActive()

    def flush(self) -> None:
        if self._timer.isActive():
            self._timer.stop()
            self.save_now()

    def save_now(self) -> None:
        if not self.enabled:
            return
        state = self._collect()
        if state is None:
            return
        try:
            write(state)
            self.saves += 1
        except OSError as e:  # a read-only or full disk must not stop the studio
            log.warning("could not save the session: %s", e)
