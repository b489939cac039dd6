"""Jobs that put models into the store: import a published model, build one from scans."""

from __future__ import annotations

from pathlib import Path

from studio.core import store
from studio.core.errors import StudioError
from studio.core.importers import import_model
from studio.core.modelcheck import check_model
from studio.core.modelfile import save_model
from studio.core.progress import report, scaled


def import_job(src: str | Path, name: str | None = None, fmt: str = "auto", force: bool = False,
               progress=None) -> Path:
    name = store.check_name(name or default_name(src))
    store.check_new(name, force)  # refused before the long work; checked again under the lock
    model = import_model(src, name, fmt, progress=scaled(progress, 0.0, 0.9))
    check_model(model, str(src))  # as the loader will, before anything in the store is replaced
    report(progress, 0.95, "writing model file")
    with store.claim(name, force) as d:
        path = save_model(model, d / store.MODEL_FILE, force=True)
    report(progress, 1.0, "done")
    return path


def build_job(folder: str | Path, name: str, components: int | None = None, variance: float | None = None,
              align: bool = False, unit: str = "mm", force: bool = False, progress=None) -> tuple[Path, dict]:
    from studio.core import build

    store.check_name(name)
    store.check_new(name, force)  # refused before the long work; checked again under the lock
    if components is not None and variance is not None:
        raise StudioError("give --components or --variance, not both")
    v, faces, colors, uvs, _names = build.read_registered_meshes(folder, progress=scaled(progress, 0, 0.7))
    uv, face_uv = uvs if uvs is not None else (None, None)
    model, rep = build.build_pca_model(name, v, faces, colors, uv, face_uv, components=components,
                                       variance=variance, align=align, unit=unit,
                                       attribution=f"Built by Face Studio from {len(v)} registered scans in {folder}",
                                       progress=scaled(progress, 0.7, 0.9))
    check_model(model, str(folder))
    with store.claim(name, force) as d:
        path = save_model(model, d / store.MODEL_FILE, force=True)
        build.write_spectrum_png(rep, d / "spectrum.png", force=True)
    report(progress, 1.0, "done")
    return path, rep


def default_name(src) -> str:
    stem = Path(src).name.lower()
    for suffix in (".tar.xz", ".tar.gz", ".tgz", ".tar", ".zip", ".h5", ".mat", ".pkl"):
        stem = stem.removesuffix(suffix)
    if "ict" in stem or "facex" in stem:
        return "ict"
    clean = "".join(c if c.isalnum() or c in "_.-" else "-" for c in stem).strip("-.")
    return clean or "model"
