"""One fuzz case: make a mutated input from a seed, feed it to its loader, classify the ending.

``run_case(target, seed, index, workdir)`` → "ok" (accepted, and it loads again), "refused"
(StudioError), or raises ``Unloadable`` / any other exception (a bug). A case is a pure function
of (target, seed, index), so a failure found by ``studio bench fuzz`` replays in a test.
"""

from __future__ import annotations

import io
import json
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np

from studio.bench.fuzz import mutate, seeds
from studio.core.errors import StudioError


class Unloadable(Exception):
    """A loader accepted an input whose result does not load again (or cannot be used)."""


def run_case(target: str, seed: int, index: int, workdir: Path) -> str:
    rng = np.random.default_rng([seed, index, TARGETS.index(target)])
    try:
        _RUN[target](rng, Path(workdir))
    except StudioError:
        return "refused"
    return "ok"


# --- importers ---------------------------------------------------------------------------------

def _imported_loads(path: Path, fmt: str, workdir: Path) -> None:
    """What ``models import`` does, then the loader: accepted must mean loadable."""
    from studio.core.importers import import_model
    from studio.core.modelcheck import check_model
    from studio.core.modelfile import load_model, save_model

    model = import_model(path, "fuzz", fmt)
    check_model(model, str(path))
    out = save_model(model, workdir / "imported.npz", force=True)
    try:
        load_model(out).vertices({})
    except StudioError as e:
        raise Unloadable(f"imported but does not load: {e}") from None


def _ict_members(rng) -> dict[str, bytes]:
    files = seeds.ict_files()
    name = sorted(files)[int(rng.integers(len(files)))]
    if name.endswith(".json"):
        doc = json.loads(files[name])
        if rng.random() < 0.2:  # expression names pointing outside the archive
            doc["expressions"][0] = str(rng.choice(["../identity000", "/etc/hostname", "..", "a/b", "x" * 300]))
            files[name] = json.dumps(doc).encode()
        else:
            files[name] = mutate.mutate_json(doc, rng)
    else:
        files[name] = mutate.mutate_obj_text(files[name], rng)
    return files


def _ict_zip(rng, workdir: Path) -> None:
    files = seeds.ict_files() if rng.random() < 0.4 else _ict_members(rng)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for k, v in files.items():
            z.writestr(k, v)
    data = buf.getvalue()
    if rng.random() < 0.5:
        data = mutate.mutate_bytes(data, rng)
    (workdir / "ict.zip").write_bytes(data)
    _imported_loads(workdir / "ict.zip", "auto", workdir)


def _ict_tar(rng, workdir: Path) -> None:
    files = seeds.ict_files() if rng.random() < 0.4 else _ict_members(rng)
    mode = "w:xz" if rng.random() < 0.5 else "w:gz"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as t:
        for k, v in files.items():
            info = tarfile.TarInfo(k)
            info.size = len(v)
            t.addfile(info, io.BytesIO(v))
    data = mutate.mutate_bytes(buf.getvalue(), rng) if rng.random() < 0.6 else buf.getvalue()
    path = workdir / ("ict.tar.xz" if mode == "w:xz" else "ict.tar.gz")
    path.write_bytes(data)
    _imported_loads(path, "ict", workdir)


_EDGE_ARRAYS = [lambda a, r: np.full_like(a, 1e300, dtype=float), lambda a, r: np.full_like(a, 1e39, dtype=float),
                lambda a, r: np.where(r.random(a.shape) < 0.5, np.nan, a), lambda a, r: a.reshape(-1),
                lambda a, r: a[..., :1], lambda a, r: np.zeros((0,) + a.shape[1:], a.dtype),
                lambda a, r: (a * 0 + 10 ** 9).astype(np.int64), lambda a, r: -np.ones_like(a),
                lambda a, r: np.array([b"x"] * 3), lambda a, r: a.astype(np.float16), lambda a, r: a.T]


def _edge_array(a: np.ndarray, rng) -> np.ndarray:
    with np.errstate(all="ignore"):
        return _EDGE_ARRAYS[int(rng.integers(len(_EDGE_ARRAYS)))](np.asarray(a), rng)


def _flame(rng, workdir: Path) -> None:
    if rng.random() < 0.5:
        data = mutate.mutate_bytes(seeds.flame_pickle(), rng)
    else:
        d = seeds.flame_dict()
        key = sorted(d)[int(rng.integers(len(d)))]
        d[key] = _edge_array(d[key], rng)
        data = pickle.dumps(d, protocol=int(rng.choice([2, 4, 5])))
    (workdir / "flame.pkl").write_bytes(data)
    _imported_loads(workdir / "flame.pkl", "flame", workdir)


def _bfm(rng, workdir: Path) -> None:
    arrays = seeds.bfm_arrays()
    key = sorted(arrays)[int(rng.integers(len(arrays)))]
    arrays[key] = None if rng.random() < 0.15 else _edge_array(arrays[key], rng)
    path = seeds.write_bfm_h5(workdir / "bfm.h5", arrays)
    _imported_loads(path, "bfm", workdir)


# --- files the studio reads back -----------------------------------------------------------------

def _model_npz(rng, workdir: Path) -> None:
    from studio.core.modelfile import load_model, read_header, save_model

    path = save_model(seeds.linear_model(), workdir / "model.npz", force=True)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    kind = rng.random()
    if kind < 0.3:
        path.write_bytes(mutate.mutate_bytes(path.read_bytes(), rng))
    else:
        if kind < 0.65:  # the header: rewritten whole, so every CRC stays consistent
            arrays["header"] = np.frombuffer(mutate.mutate_json(json.loads(arrays["header"].tobytes()), rng), np.uint8)
        else:
            key = sorted(k for k in arrays if k != "header")[int(rng.integers(len(arrays) - 1))]
            arrays[key] = _edge_array(arrays[key], rng)
        with open(path, "wb") as f:
            np.savez(f, **arrays)
    read_header(path)  # what 'models list' reads
    load_model(path).vertices({})


def _json_target(doc, run):
    def case(rng, workdir: Path) -> None:
        path = workdir / "doc.json"
        path.write_bytes(mutate.mutate_json(doc(), rng))
        run(path, workdir)
    return case


def _params(path: Path, workdir: Path) -> None:
    from studio.core import params

    model = seeds.linear_model()
    p = params.load(path, model)
    if not np.all(np.isfinite(model.mesh(p).vertices)):
        raise Unloadable("parameters accepted but the face has non-finite vertices")


def _landmarks(path: Path, workdir: Path) -> None:
    from studio.core.fitting.scan_io import read_landmarks

    read_landmarks(path)


def _intrinsics(path: Path, workdir: Path) -> None:
    from studio.core.fitting.scan_io import read_intrinsics

    read_intrinsics(workdir / "depth.png", path)


def _checkpoint(rng, workdir: Path) -> None:
    from studio.core.neural.checkpoint import load_checkpoint

    data = _seed_checkpoint()
    if rng.random() < 0.7:
        n = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + n])
        inner = json.loads(header["__metadata__"]["studio_neural"])
        header["__metadata__"]["studio_neural"] = mutate.mutate_json(inner, rng).decode("utf-8", "replace")
        text = json.dumps(header).encode()
        text += b" " * (-len(text) % 8)
        data = len(text).to_bytes(8, "little") + text + data[8 + n:]
    else:
        data = mutate.mutate_bytes(data, rng)
    (workdir / "c.safetensors").write_bytes(data)
    load_checkpoint(workdir / "c.safetensors")


_CACHE: dict[str, bytes] = {}


def _seed_checkpoint() -> bytes:
    if "checkpoint" not in _CACHE:
        _CACHE["checkpoint"] = seeds.checkpoint_bytes()
    return _CACHE["checkpoint"]


_RUN = {"ict-zip": _ict_zip, "ict-tar": _ict_tar, "flame": _flame, "bfm": _bfm, "model-npz": _model_npz,
        "params": _json_target(seeds.params_doc, _params),
        "landmarks": _json_target(seeds.landmarks_doc, _landmarks),
        "intrinsics": _json_target(seeds.intrinsics_doc, _intrinsics), "checkpoint": _checkpoint}
TARGETS = tuple(_RUN)
