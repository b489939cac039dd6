"""Atomic file writing: a temporary file beside the target, then a rename.

A crash or a full disk leaves either the old file or the new one, never half of one, and an
existing file is only replaced when the caller says so explicitly (``force``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from studio.core.errors import StudioError


def check_writable(path: str | os.PathLike, force: bool = False) -> Path:
    """Fail with one line if ``path`` exists and ``force`` is not set, or its folder is missing."""
    path = Path(path)
    try:
        if path.exists() and not force:
            raise StudioError(f"{path} exists; pass --force to replace it")
        if path.exists() and path.is_dir():
            raise StudioError(f"{path} is a folder, not a file")
        if not path.parent.exists():
            raise StudioError(f"folder {path.parent} does not exist")
        if not path.parent.is_dir():
            raise StudioError(f"cannot write {path}: {path.parent} is a file, not a folder")
    except OSError as e:  # e.g. a folder on the way that we may not enter
        raise write_error(path, e) from None
    # Refused before any work is done (a long import, a window opening) rather than at the end.
    # Root passes this check on any folder; a read-only mount then fails in atomic_path.
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise StudioError(f"cannot write {path}: folder {path.parent} is not writable")
    return path


def reason(e: OSError) -> str:
    """``e`` as the short lower-case phrase a user reads: "no space left on device"."""
    text = e.strerror or (os.strerror(e.errno) if e.errno else str(e)) or e.__class__.__name__
    return text[:1].lower() + text[1:]


def write_error(path: str | os.PathLike, e: OSError) -> StudioError:
    """The one line for every failed write: which file, and why."""
    return StudioError(f"cannot write {path}: {reason(e)}")


def ensure_folder(folder: str | os.PathLike) -> Path:
    """Create ``folder`` (and its parents) for output files, or fail with one line."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise StudioError(f"cannot write into {folder}: it is a file, not a folder") from None
    except OSError as e:
        raise StudioError(f"cannot create folder {folder}: {reason(e)}") from None
    return folder


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is renamed onto ``path``.

    Every ``OSError`` on the way (creating the temporary file, the caller's writes into it, the
    rename) becomes one ``StudioError`` naming ``path``: a full or read-only disk is the user's to
    fix, not a bug. The temporary file is removed whatever happens.
    """
    path = check_writable(path, force)
    tmp = None
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        yield tmp
        _commit(tmp, path, force)
    except OSError as e:
        raise write_error(path, e) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)


def _commit(tmp: Path, path: Path, force: bool) -> None:
    # Re-check: another process may have created the file while we wrote ours.
    if path.exists() and not force:
        raise StudioError(f"{path} appeared while writing; not replaced (use --force)")
    # mkstemp creates 0600 files; give the result the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    # Flush to the disk before the rename: a file system that allocates late reports "no space"
    # only here, and must do so while the old file is still in place.
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_bytes(path: str | os.PathLike, data: bytes, force: bool = False) -> Path:
    with atomic_path(path, force) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str, force: bool = False) -> Path:
    return write_bytes(path, text.encode("utf-8"), force)
