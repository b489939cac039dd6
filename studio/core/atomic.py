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
    if path.exists() and not force:
        raise StudioError(f"{path} exists; pass --force to replace it")
    if path.exists() and path.is_dir():
        raise StudioError(f"{path} is a folder, not a file")
    if not path.parent.exists():
        raise StudioError(f"folder {path.parent} does not exist")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is renamed onto ``path``."""
    path = check_writable(path, force)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # Re-check: another process may have created the file while we wrote ours.
        if path.exists() and not force:
            raise StudioError(f"{path} appeared while writing; not replaced (use --force)")
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes(path: str | os.PathLike, data: bytes, force: bool = False) -> Path:
    with atomic_path(path, force) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str, force: bool = False) -> Path:
    return write_bytes(path, text.encode("utf-8"), force)
