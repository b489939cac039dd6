"""A bounded, pickle-free reader of ``.npz`` archives (what ``np.savez`` writes).

``np.load`` trusts each member's ``.npy`` header: a header that claims a huge shape makes numpy
allocate it before reading a byte, and the zip layer's errors (BadZipFile, zlib.error, CRC, EOF)
leak out as many exception types. Here the zip goes through the same error mapping as every
archive, each ``.npy`` header is checked against the member's real size and the caller's
expected dtype and shape before anything is allocated, and only plain numeric dtypes are read.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np
from numpy.lib import format as npy

from studio.core import limits
from studio.core.archive import ARCHIVE_ERRORS
from studio.core.errors import StudioError


class NpzReader:
    """``with NpzReader(path) as z: z.read("mean", shape, dtype)``; every failure one StudioError line."""

    def __init__(self, path: str | Path, what: str = "file"):
        self.path, self.what = Path(path), what
        if not self.path.is_file():
            raise StudioError(f"{what} {self.path} does not exist")
        try:
            self._zip = zipfile.ZipFile(self.path)
            self._members = {i.filename: i for i in self._zip.infolist()}
        except ARCHIVE_ERRORS as e:
            raise StudioError(f"{self.path} is not a readable {what} ({type(e).__name__}: {e})") from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._zip.close()

    @property
    def files(self) -> list[str]:
        return [k[:-4] for k in self._members if k.endswith(".npy")]

    def read(self, key: str, shape: list | None = None, dtype: str | None = None) -> np.ndarray:
        """Array ``key``; with ``shape``/``dtype`` given, refused unless its header says exactly that."""
        out = self._load(key, shape, dtype, True)
        assert out is not None  # with data=True _load reads the array or raises
        return out

    def check(self, key: str, shape: list | None = None, dtype: str | None = None) -> None:
        """What ``read`` checks before reading data: the member's .npy header against its size."""
        self._load(key, shape, dtype, False)

    def _load(self, key: str, shape, dtype, data: bool) -> np.ndarray | None:
        info = self._info(key)
        try:
            with self._zip.open(info) as f:
                version = npy.read_magic(f)
                read_header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
                got_shape, fortran, got_dtype = read_header(f)
                nbytes = self._check(key, info, f, got_shape, got_dtype, shape, dtype)
                if not data:
                    return None
                out = np.empty(got_shape[::-1] if fortran else got_shape, got_dtype)
                if _read_into(f, out.reshape(-1).view(np.uint8).data, nbytes) != nbytes or f.read(1):
                    raise StudioError(f"{self.path} is damaged: array '{key}' has the wrong length")
        except StudioError:
            raise
        except ARCHIVE_ERRORS as e:  # CRC and zlib errors, bad .npy headers, truncated members
            raise StudioError(f"{self.path} is damaged (array '{key}': {type(e).__name__}: {e})") from None
        return out.T if fortran else out

    def _info(self, key: str) -> zipfile.ZipInfo:
        info = self._members.get(f"{key}.npy")
        if info is None:
            raise StudioError(f"{self.what} {self.path} is missing array '{key}'")
        if info.flag_bits & 0x1 or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise StudioError(f"{self.path}: array '{key}' is encrypted or compressed in a way .npz never is")
        if info.file_size > limits.MODEL_ARRAY_BYTES + 4096:  # + the .npy header
            raise StudioError(f"{self.path}: array '{key}' is {info.file_size / limits.MiB:.0f} MiB; the limit "
                              f"for one array is {limits.MODEL_ARRAY_BYTES / limits.MiB:.0f} MiB")
        return info

    def _check(self, key, info, f, got_shape, got_dtype, shape, dtype) -> int:
        if got_dtype.hasobject or got_dtype.fields is not None or got_dtype.kind not in "biuf":
            raise StudioError(f"{self.path}: array '{key}' has dtype {got_dtype}, not a plain number type")
        if shape is not None and list(got_shape) != list(shape) or dtype is not None and str(got_dtype) != dtype:
            raise StudioError(f"{self.path}: array '{key}' is {got_dtype}{list(got_shape)}, the header says "
                              f"{dtype}{shape}")
        nbytes = math.prod(got_shape) * got_dtype.itemsize
        if nbytes > limits.MODEL_ARRAY_BYTES:
            raise StudioError(f"{self.path}: array '{key}' is {nbytes / limits.MiB:.0f} MiB; the limit for one "
                              f"array is {limits.MODEL_ARRAY_BYTES / limits.MiB:.0f} MiB")
        if nbytes != info.file_size - f.tell():
            raise StudioError(f"{self.path} is damaged: array '{key}' holds {info.file_size - f.tell()} bytes, "
                              f"its shape needs {nbytes}")
        return nbytes


def _read_into(f, buf: memoryview, nbytes: int) -> int:
    got = 0
    while got < nbytes:
        k = f.readinto(buf[got:])
        if not k:
            break
        got += k
    return got
