"""Temporary folders that do not outlive the studio.

An ICT import unpacks 220–350 MB into a temporary folder. ``temp_folder`` removes it when the
``with`` block ends, also through an exception: that covers errors, Ctrl-C and SIGTERM (the CLI
turns SIGTERM into an exception, see ``studio.cli.main``). A ``kill -9`` runs no code, so the name
of every folder carries the PID of its owner (``studio-<kind>-p<pid>-<random>``) and
``sweep_stale``, run when the studio starts, removes the folders whose owner is gone.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterator

from studio.core.atomic import reason
from studio.core.errors import StudioError

_OURS = re.compile(r"studio-[a-z]+-p(\d+)-")
# Folders from versions without the PID in the name: nothing tells whether their owner still runs,
# so only those untouched for a day (no import takes that long) are removed.
_LEGACY = re.compile(r"studio-ict-[a-z0-9_]{8}")
LEGACY_AGE_S = 24 * 3600
_live: set[Path] = set()


@contextlib.contextmanager
def temp_folder(kind: str) -> Iterator[Path]:
    """A new empty folder in the system's temporary folder, removed with everything in it at the end."""
    if not re.fullmatch(r"[a-z]+", kind):
        raise ValueError(f"temp folder kind must be lower-case letters, not {kind!r}")
    try:
        path = Path(tempfile.mkdtemp(prefix=f"studio-{kind}-p{os.getpid()}-"))
    except OSError as e:
        raise StudioError(f"cannot create a temporary folder in {tempfile.gettempdir()}: {reason(e)}") from None
    _live.add(path)
    try:
        yield path
    finally:
        _live.discard(path)
        shutil.rmtree(path, ignore_errors=True)


@atexit.register
def _remove_live() -> None:
    # The window runs imports in worker threads, which a signal does not unwind: whatever their
    # ``finally`` has not removed by the time the interpreter exits is removed here.
    for path in list(_live):
        shutil.rmtree(path, ignore_errors=True)


def sweep_stale(root: str | os.PathLike | None = None) -> list[Path]:
    """Remove this user's studio temporary folders whose owning process is gone; return them.
    Never fails: a folder that cannot be read or removed is left alone."""
    try:
        # gettempdir() itself fails on a full disk: it probes by writing a file
        entries = list(os.scandir(os.fspath(root or tempfile.gettempdir())))
    except OSError:
        return []
    removed = []
    for entry in entries:
        if _stale(entry):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


def _stale(entry: os.DirEntry) -> bool:
    ours, legacy = _OURS.match(entry.name), _LEGACY.fullmatch(entry.name)
    if not (ours or legacy):
        return False
    try:
        if not entry.is_dir(follow_symlinks=False):
            return False
        st = entry.stat(follow_symlinks=False)
    except OSError:
        return False
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        return False  # another user's: not ours to judge (and /tmp's sticky bit forbids it anyway)
    if ours:
        return not _alive(int(ours.group(1)))
    return time.time() - st.st_mtime > LEGACY_AGE_S


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name == "nt":
        return True  # os.kill(pid, 0) would terminate the process on Windows: never sweep there
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists but belongs to someone else
        return True
    return True
