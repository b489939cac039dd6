"""The one archive reader: zip and tar (plain, gz, bz2, xz) members copied out under size limits.

Archive libraries fail in many ways on damaged or hostile input (BadZipFile, RuntimeError for an
encrypted member, NotImplementedError for an unknown compression method, LZMAError, zlib.error,
EOFError, ...). Every one of them ends here as one ``StudioError`` line naming the archive, and
members are refused by their declared size before anything is decompressed, then counted again
while copying (a declared size can lie).
"""

from __future__ import annotations

import lzma
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import Callable

from studio.core import limits
from studio.core.errors import StudioError
from studio.core.progress import report

# What a damaged or foreign archive can raise from zipfile/tarfile and the decompressors below them.
ARCHIVE_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, tarfile.TarError, lzma.LZMAError, zlib.error,
                   EOFError, OSError, RuntimeError, NotImplementedError, ValueError, struct.error,
                   OverflowError, KeyError)
_ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
_CHUNK = 1024 * 1024

Destination = Callable[[str], "Path | None"]


def is_archive(src: str | Path) -> bool:
    """True for a file zipfile or tarfile recognise (never raises)."""
    try:
        return zipfile.is_zipfile(src) or tarfile.is_tarfile(src)
    except ARCHIVE_ERRORS:
        return False


def extract(src: str | Path, destination: Destination, progress=None) -> int:
    """Copy each regular-file member for which ``destination(member_name)`` gives a path there.

    Returns the number of members copied. Links, devices and folders are never extracted.
    """
    src = Path(src)
    budget = _Budget(src)
    try:
        if zipfile.is_zipfile(src):
            return _extract_zip(src, destination, budget, progress)
        with tarfile.open(src, "r:*") as t:
            return _extract_tar(t, destination, budget, progress)
    except StudioError:
        raise
    except ARCHIVE_ERRORS as e:
        why = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        raise StudioError(f"{src} is not a readable archive ({why})") from None


class _Budget:
    """Per-member and per-archive byte limits (limits.py), checked on declared and on real sizes."""

    def __init__(self, src: Path):
        self.src, self.total, self.members = src, 0, 0

    def entry(self) -> None:
        self.members += 1
        if self.members > limits.ARCHIVE_MEMBERS:
            raise StudioError(f"{self.src} has more than {limits.ARCHIVE_MEMBERS} entries; not a model archive")

    def check(self, name: str, size: int) -> None:
        if size > limits.ARCHIVE_MEMBER_BYTES:
            raise StudioError(f"{self.src}: member {name} is {size / limits.MiB:.0f} MiB; the limit for one "
                              f"member is {limits.ARCHIVE_MEMBER_BYTES / limits.MiB:.0f} MiB")
        if self.total + size > limits.ARCHIVE_TOTAL_BYTES:
            raise StudioError(f"{self.src} unpacks to more than {limits.ARCHIVE_TOTAL_BYTES / limits.GiB:.0f} GiB; "
                              "not a model archive")

    def copy(self, name: str, f, dest: Path) -> None:
        size = 0
        try:
            out = open(dest, "wb")
        except OSError as e:
            raise StudioError(f"cannot write {dest}: {e.strerror or e}") from None
        with out:
            while chunk := f.read(_CHUNK):
                size += len(chunk)
                self.check(name, size)
                try:
                    out.write(chunk)
                except OSError as e:
                    raise StudioError(f"cannot write {dest}: {e.strerror or e}") from None
        self.total += size


def _extract_zip(src: Path, destination: Destination, budget: _Budget, progress) -> int:
    with zipfile.ZipFile(src) as z:
        chosen = []
        for info in z.infolist():
            budget.entry()
            dest = None if info.is_dir() else destination(info.filename)
            if dest is None:
                continue
            if info.flag_bits & 0x1:
                raise StudioError(f"{src}: member {info.filename} is encrypted; Face Studio reads only "
                                  "unencrypted archives")
            if info.compress_type not in _ZIP_METHODS:
                raise StudioError(f"{src}: member {info.filename} uses zip compression method "
                                  f"{info.compress_type}, which Face Studio cannot read")
            budget.check(info.filename, info.file_size)
            chosen.append((info, dest))
        for k, (info, dest) in enumerate(chosen):
            with z.open(info) as f:
                budget.copy(info.filename, f, dest)
            report(progress, (k + 1) / len(chosen), f"unpacking {Path(info.filename).name}")
        return len(chosen)


def _extract_tar(t: tarfile.TarFile, destination: Destination, budget: _Budget, progress) -> int:
    k = 0
    for m in t:
        budget.entry()
        dest = destination(m.name) if m.isfile() else None
        if dest is None:
            continue
        budget.check(m.name, m.size)
        f = t.extractfile(m)
        if f is None:
            continue
        with f:
            budget.copy(m.name, f, dest)
        k += 1
        report(progress, min(k / 160, 1.0), f"unpacking {dest.name}")
    return k
