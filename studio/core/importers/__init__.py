"""Importers: published model files → ``PCAModel``. ``detect_format`` picks one for a path."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from studio.core import archive
from studio.core.errors import StudioError

FORMATS = ("auto", "ict", "bfm", "flame")


def detect_format(src: str | Path) -> str:
    src = Path(src)
    if not src.exists():
        raise StudioError(f"{src} does not exist")
    if src.is_dir():
        if (src / "generic_neutral_mesh.obj").is_file() or (src / "FaceXModel" / "generic_neutral_mesh.obj").is_file():
            return "ict"
        raise StudioError(f"{src} is a folder without an ICT-FaceKit FaceXModel; to build a model from "
                          "registered scans use 'studio models build'")
    name = src.name.lower()
    if name.endswith((".h5", ".hdf5", ".mat")):
        return "bfm"
    if name.endswith(".pkl"):
        return "flame"
    if archive.is_archive(src):
        return "ict"
    raise StudioError(f"cannot tell the model format of {src}: expected an ICT-FaceKit folder/zip/tar, "
                      "a BFM .h5/.mat or a FLAME .pkl (or pass --format)")


def import_model(src: str | Path, name: str, fmt: str = "auto", progress=None):
    """Read ``src`` in format ``fmt`` and return a PCAModel named ``name``."""
    if fmt not in FORMATS:
        raise StudioError(f"unknown format '{fmt}' (choose from {', '.join(FORMATS)})")
    fmt = detect_format(src) if fmt == "auto" else fmt
    if not Path(src).exists():
        raise StudioError(f"{src} does not exist")
    # Values finite in the file can overflow float32 while importing; modelcheck.check_model reports
    # that as one line, so numpy's warnings would only print confusing extra lines before it.
    with np.errstate(over="ignore", invalid="ignore"):
        return _import(src, name, fmt, progress)


def _import(src, name: str, fmt: str, progress):
    if fmt == "ict":
        from studio.core.importers.ict import load_ict
        return load_ict(src, name, progress=progress)
    if fmt == "bfm":
        from studio.core.importers import bfm
        if str(src).lower().endswith(".mat"):
            return bfm.load_bfm2009_mat(src, name, progress=progress)
        return bfm.load_bfm_h5(src, name, progress=progress)
    from studio.core.importers.flame import load_flame_pkl
    return load_flame_pkl(src, name, progress=progress)
