"""The Face Studio linear-model file: one ``.npz`` (no pickles) holding arrays plus a JSON header.

The header (array ``header``, UTF-8 JSON) carries the format name and version, the parameter
groups (names, prior, σ, range, what they affect), materials, metadata and the expected shape
of every array, so loading can check everything and fail with one clear line.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from studio.core.atomic import atomic_path
from studio.core.errors import StudioError
from studio.core.facemodel import ModelMeta, ParamGroup
from studio.core.pca import LinearGroup, PCAModel

FORMAT = "face-studio-pca"
VERSION = 1


def save_model(model: PCAModel, path: str | Path, force: bool = False) -> Path:
    arrays: dict[str, np.ndarray] = {"mean": model.mean, "faces": model.faces}
    groups = []
    for lg in model.linear:
        g = lg.group
        arrays[f"basis.{g.name}"] = lg.basis
        groups.append({"name": g.name, "names": list(g.names), "prior": g.prior, "affects": g.affects,
                       "sigma": g.sigma.tolist(), "lower": g.lower.tolist(), "upper": g.upper.tolist()})
    optional = {"color_mean": model.color_mean, "uv": model.uv, "face_uv": model.face_uv,
                "face_material": model.face_material}
    arrays.update({k: v for k, v in optional.items() if v is not None})
    for name, idx in model.meta.regions.items():
        arrays[f"region.{name}"] = np.asarray(idx, np.int32)
    for name, idx in model.meta.landmarks.items():
        arrays[f"landmarks.{name}"] = np.asarray(idx, np.int32)
    header = {
        "format": FORMAT, "version": VERSION, "name": model.name, "groups": groups,
        "materials": list(model.materials), "unit": model.meta.unit,
        "attribution": model.meta.attribution, "source": model.meta.source,
        "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()},
    }
    arrays["header"] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    with atomic_path(path, force) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    return Path(path)


def read_header(path: str | Path) -> dict:
    """Read only the header (cheap: does not touch the large arrays)."""
    with _open(path) as z:
        return _header(z, path)


def load_model(path: str | Path) -> PCAModel:
    path = Path(path)
    with _open(path) as z:
        header = _header(z, path)
        arrays = {}
        for key, spec in header["arrays"].items():
            if key not in z.files:
                raise StudioError(f"model file {path} is missing array '{key}'")
            try:
                a = z[key]
            except Exception as e:  # zip CRC errors, truncated members, bad .npy headers
                raise StudioError(f"model file {path} is damaged (array '{key}': {e})") from None
            if list(a.shape) != spec["shape"] or str(a.dtype) != spec["dtype"]:
                raise StudioError(f"model file {path}: array '{key}' is {a.dtype}{list(a.shape)}, "
                                  f"header says {spec['dtype']}{spec['shape']}")
            if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
                raise StudioError(f"model file {path}: array '{key}' contains NaN or infinite values")
            arrays[key] = a
    return _build(header, arrays, path)


def _open(path):
    path = Path(path)
    if not path.is_file():
        raise StudioError(f"model file {path} does not exist")
    try:
        return np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise StudioError(f"{path} is not a readable Face Studio model ({e})") from None


def _header(z, path) -> dict:
    if "header" not in z.files:
        raise StudioError(f"{path} is not a Face Studio model (no header)")
    try:
        header = json.loads(z["header"].tobytes().decode("utf-8"))
    except Exception:
        raise StudioError(f"{path}: model header is damaged") from None
    if header.get("format") != FORMAT:
        raise StudioError(f"{path} is not a Face Studio linear model (format {header.get('format')!r})")
    if header.get("version") != VERSION:
        raise StudioError(f"{path} has format version {header.get('version')}; this studio reads version {VERSION}")
    return header


def _build(header: dict, a: dict, path: Path) -> PCAModel:
    mean, faces = a["mean"], a["faces"]
    n = mean.shape[0] if mean.ndim == 2 else -1
    if mean.ndim != 2 or mean.shape[1] != 3:
        raise StudioError(f"{path}: mean must be (n, 3), got {list(mean.shape)}")
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.size and (faces.min() < 0 or faces.max() >= n):
        raise StudioError(f"{path}: faces must be (m, 3) indices below {n}")
    linear = []
    for g in header["groups"]:
        basis = a[f"basis.{g['name']}"]
        if basis.shape != (len(g["names"]), n, 3):
            raise StudioError(f"{path}: basis '{g['name']}' is {list(basis.shape)}, expected "
                              f"[{len(g['names'])}, {n}, 3]")
        group = ParamGroup(g["name"], tuple(g["names"]), g["prior"], np.array(g["sigma"]),
                           np.array(g["lower"]), np.array(g["upper"]), g["affects"])
        linear.append(LinearGroup(group, basis))
    for key in ("color_mean",):
        if key in a and a[key].shape != (n, 3):
            raise StudioError(f"{path}: {key} must be ({n}, 3)")
    meta = ModelMeta(unit=header["unit"], attribution=header.get("attribution", ""),
                     source=header.get("source", ""),
                     regions={k[7:]: v for k, v in a.items() if k.startswith("region.")},
                     landmarks={k[10:]: v for k, v in a.items() if k.startswith("landmarks.")})
    for kind, d in (("region", meta.regions), ("landmarks", meta.landmarks)):
        for name, idx in d.items():
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise StudioError(f"{path}: {kind} '{name}' has vertex indices outside 0..{n - 1}")
    return PCAModel(header["name"], mean, faces, linear, a.get("color_mean"), a.get("uv"),
                    a.get("face_uv"), a.get("face_material"), tuple(header.get("materials", [])), meta)
