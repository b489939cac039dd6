"""The Face Studio linear-model file: one ``.npz`` (no pickles) holding arrays plus a JSON header.

The header (array ``header``, UTF-8 JSON) carries the format name and version, the parameter
groups (names, prior, σ, range, what they affect), materials, metadata and the expected shape
of every array, so loading can check everything and fail with one clear line.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from studio.core import jsonio, limits
from studio.core.atomic import atomic_path
from studio.core.errors import StudioError
from studio.core.facemodel import ModelMeta, ParamGroup
from studio.core.modelcheck import check_model
from studio.core.npzfile import NpzReader
from studio.core.pca import LinearGroup, PCAModel

FORMAT = "face-studio-pca"
VERSION = 1


def save_model(model: PCAModel, path: str | Path, force: bool = False) -> Path:
    check_model(model, f"model '{model.name}'")  # never write what load_model would refuse
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
            np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub takes the kwargs for allow_pickle
    return Path(path)


def read_header(path: str | Path) -> dict:
    """Read the header and check it against every array's own header (cheap: reads no array data)."""
    with NpzReader(path, "Face Studio model") as z:
        header = _header(z, Path(path))
        for key, spec in header["arrays"].items():
            z.check(key, spec["shape"], spec["dtype"])
        return header


def load_model(path: str | Path) -> PCAModel:
    path = Path(path)
    with NpzReader(path, "model file") as z:
        header = _header(z, path)
        arrays = {key: z.read(key, spec["shape"], spec["dtype"]) for key, spec in header["arrays"].items()}
    model = _build(header, arrays, path)
    check_model(model, f"model file {path}")  # the validator every import ran before writing
    return model


def _header(z: NpzReader, path: Path) -> dict:
    if "header" not in z.files:
        raise StudioError(f"{path} is not a Face Studio model (no header)")
    header = jsonio.expect(jsonio.loads(z.read("header").tobytes(), f"{path}: the model header"), dict,
                           f"{path}: the model header")
    if header.get("format") != FORMAT:
        raise StudioError(f"{path} is not a Face Studio linear model (format {header.get('format')!r})")
    if header.get("version") != VERSION:
        raise StudioError(f"{path} has format version {header.get('version')}; this studio reads version {VERSION}")
    _check_schema(header, path)
    return header


def _check_schema(h: dict, path: Path) -> None:
    """Every key ``_build`` and ``models list`` use, with its JSON type; arrays declared consistently."""
    def need(ok: bool, what: str):
        if not ok:
            raise StudioError(f"{path}: model header is damaged ({what})")

    need(isinstance(h.get("name"), str) and isinstance(h.get("unit"), str), "name or unit")
    need(all(isinstance(h.get(k, ""), str) for k in ("attribution", "source")), "attribution or source")
    need(isinstance(h.get("materials", []), list) and all(isinstance(m, str) for m in h.get("materials", [])),
         "materials")
    arrays: Any = h.get("arrays")
    need(isinstance(arrays, dict) and "mean" in arrays and "faces" in arrays, "array list")
    total = 0
    for key, spec in arrays.items():
        need(isinstance(spec, dict) and isinstance(spec.get("dtype"), str) and spec["dtype"] in _DTYPES
             and isinstance(spec.get("shape"), list)
             and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in spec["shape"]),
             f"array '{key}'")
        total += math.prod(spec["shape"]) * np.dtype(spec["dtype"]).itemsize
    if total > limits.MODEL_BYTES:
        raise StudioError(f"{path}: the model's arrays add up to {total / limits.GiB:.1f} GiB; the limit is "
                          f"{limits.MODEL_BYTES / limits.GiB:.0f} GiB")
    need(len(arrays["mean"]["shape"]) == 2, "mean shape")
    groups: Any = h.get("groups")
    need(isinstance(groups, list), "groups")
    for g in groups:
        need(isinstance(g, dict) and isinstance(g.get("name"), str) and f"basis.{g['name']}" in arrays, "group")
        need(isinstance(g.get("names"), list) and isinstance(g.get("prior"), str)
             and isinstance(g.get("affects"), str), f"group '{g['name']}'")
        for key in ("sigma", "lower", "upper"):
            v = g.get(key)
            need(isinstance(v, list) and len(v) == len(g["names"])
                 and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v),
                 f"group '{g['name']}' {key}")


# What save_model writes; anything else in a header (object, structured, text dtypes) is refused.
_DTYPES = {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
           "uint64", "bool"}


def _build(header: dict, a: dict, path: Path) -> PCAModel:
    mean, faces = a["mean"], a["faces"]
    n = mean.shape[0] if mean.ndim == 2 else -1
    if mean.ndim != 2 or mean.shape[1] != 3:
        raise StudioError(f"{path}: mean must be (n, 3), got {list(mean.shape)}")
    # Checked before PCAModel casts them to int32 (a larger int64 would wrap into range).
    if faces.dtype.kind not in "iu" or faces.ndim != 2 or faces.shape[1] != 3 or faces.size and (
            faces.min() < 0 or faces.max() >= n):
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
    meta = ModelMeta(unit=header["unit"], attribution=header.get("attribution", ""),
                     source=header.get("source", ""),
                     regions={k[7:]: v for k, v in a.items() if k.startswith("region.")},
                     landmarks={k[10:]: v for k, v in a.items() if k.startswith("landmarks.")})
    return PCAModel(header["name"], mean, faces, linear, a.get("color_mean"), a.get("uv"),
                    a.get("face_uv"), a.get("face_material"), tuple(header.get("materials", [])), meta)
