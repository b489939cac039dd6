"""The session: what the studio reopens on the next start (model, face, camera, view options).

Saved to ``store.home()/session.json`` atomically (temporary file + rename) and throttled: the
first change after a save starts a 0.5 s timer that later changes do not restart, so continuous
editing (a long slider drag) is saved twice a second and the last change once, 0.5 s after it;
a process that is killed loses about the last half second. (A debounce that restarted on every
change never saved while a slider moved: a kill -9 lost seconds.)

A session that cannot be used (malformed JSON, wrong types, another program's file) is set aside
as ``session.json.broken-<time>`` and the studio starts without it, with one line in the status
bar: a bad file must not keep the window from opening.
"""

from __future__ import annotations

import binascii
import json
import logging
import math
import re
import time
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QTimer

from studio.core import store
from studio.core.atomic import write_text
from studio.core.errors import StudioError
from studio.core.jsonio import expect
from studio.core.jsonio import read as read_json

log = logging.getLogger(__name__)
FORMAT = "face-studio-session"
VERSION = 1
FILE = "session.json"
# During continuous edits the session is written at most this often. A kill -9 loses what changed
# since the last write plus the frame being drawn (0.1-0.3 s with software GL): at 500 ms one trial in
# ten reached 0.607 s on a loaded machine, past the 0.6 s users were promised.
SAVE_EVERY_MS = 350


def path() -> Path:
    return store.home() / FILE


def restore(set_aside_broken: bool = True) -> tuple[dict | None, str | None]:
    """The saved session (None when there is none) and a one-line warning (None when all is well).

    Never raises: a session that cannot be used is set aside (unless ``set_aside_broken`` is
    False: a screenshot run changes nothing), and the warning says where.
    """
    p = path()
    if not p.exists() and not p.is_symlink():
        return None, None
    try:
        return check(read_json(p, FILE)), None
    except StudioError as e:
        problem = str(e)
    if not set_aside_broken:
        return None, f"{problem}: the saved session is ignored"
    try:
        aside = set_aside(p)
    except OSError as e:  # cannot rename (read-only home): the next save replaces it anyway
        log.warning("could not set the broken session %s aside: %s", p, e)
        return None, f"{problem}: the saved session is ignored"
    warning = f"{problem}: the saved session was set aside as {aside.name}"
    log.warning("%s", warning)
    return None, warning


def set_aside(p: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = p.with_name(f"{p.name}.broken-{stamp}")
    n = 1
    while aside.exists() or aside.is_symlink():
        n += 1
        aside = p.with_name(f"{p.name}.broken-{stamp}-{n}")
    p.rename(aside)
    return aside


def check(doc) -> dict:
    """``doc`` if it is a session this studio wrote, else one ``StudioError`` line saying why."""
    expect(doc, dict, FILE)
    if doc.get("format") != FORMAT:
        raise StudioError(f"{FILE} is not a Face Studio session (no \"format\": \"{FORMAT}\")")
    expect(doc.get("model"), str, f"{FILE}: model")
    for group, values in expect(doc.get("params", {}), dict, f"{FILE}: params").items():
        _numbers(values, f"{FILE}: params.{group}")
    camera = expect(doc.get("camera", []), list, f"{FILE}: camera")
    if camera and (len(camera) != 3 or any(len(_numbers(c, f"{FILE}: camera")) != 3 for c in camera)):
        raise StudioError(f"{FILE}: camera should be 3 points of 3 numbers")
    for name in expect(doc.get("hidden_regions", []), list, f"{FILE}: hidden_regions"):
        expect(name, str, f"{FILE}: hidden_regions[…]")
    expect(doc.get("wireframe", False), bool, f"{FILE}: wireframe")
    for key in ("dock_state", "geometry"):  # QMainWindow.saveState / saveGeometry, base64
        _base64(doc.get(key, ""), f"{FILE}: {key}")
    for group, k in expect(doc.get("ranges", {}), dict, f"{FILE}: ranges").items():
        if not math.isfinite(expect(k, (int, float), f"{FILE}: ranges.{group}")) or k <= 0:
            raise StudioError(f"{FILE}: ranges.{group} holds {k}, not a positive number")
    return doc


_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
MAX_LAYOUT_CHARS = 65536  # a layout is a few kB; more is not one this studio wrote


def _base64(text, what: str) -> bytes:
    """The bytes of a base64 string (Qt's own layout blobs; Qt checks their content itself)."""
    expect(text, str, what)
    if len(text) > MAX_LAYOUT_CHARS or not _BASE64.fullmatch(text):
        raise StudioError(f"{what} is not a window layout this studio saved (base64 expected)")
    try:
        return binascii.a2b_base64(text)
    except binascii.Error as e:
        raise StudioError(f"{what} is not a window layout this studio saved ({e})") from None


def _numbers(values, what: str) -> list:
    for x in expect(values, list, what):
        if not math.isfinite(expect(x, (int, float), f"{what}[…]")):
            raise StudioError(f"{what} holds {x}, not a finite number")
    return values


def write(state: dict) -> Path:
    p = path()
    p.parent.mkdir(parents=True, exist_ok=True)
    return write_text(p, json.dumps({"format": FORMAT, "version": VERSION, **state}, indent=1) + "\n",
                      force=True)


class SessionSaver(QObject):
    """Throttled autosave: ``schedule()`` after any change, ``flush()`` at exit."""

    def __init__(self, collect, parent=None, enabled: bool = True):
        super().__init__(parent)
        self._collect = collect  # () -> dict | None (None: nothing worth saving yet)
        self.enabled = enabled
        self.saves = 0
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(SAVE_EVERY_MS)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)  # a coarse timer may fire 5 % late
        self._timer.timeout.connect(self.save_now)

    def schedule(self) -> None:
        # A running timer is left alone (throttle): restarting it here would postpone the save
        # for as long as the changes keep coming.
        if self.enabled and not self._timer.isActive():
            self._timer.start()

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
        except (OSError, StudioError) as e:  # a read-only or full disk must not stop the studio
            log.warning("could not save the session: %s", e)
