"""``studio bench register``: registration throughput on Dask (1 and 2 workers) and the model built
from the registered scans against the source model truncated to as many components."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from studio.core.errors import StudioError


def main(model: str = "ict", scans: int = 60, speed_scans: int = 10, held: int = 10, variance: float = 0.98,
         out=None, as_json: bool = False) -> int:
    """``studio bench register``: measure, print the figures, and with ``as_json`` one JSON line last."""
    from studio.core.registry import open_model

    if scans < 3 or held < 1 or speed_scans < 0 or speed_scans > scans:
        raise StudioError("need --scans ≥ 3, --held-out ≥ 1 and 0 ≤ --speed-scans ≤ --scans")
    name, model = model, open_model(model)
    with tempfile.TemporaryDirectory(prefix="bench-register-") as tmp:
        root = Path(out or tmp)
        r = measure(model, name, root, scans, speed_scans, held, variance)
    print(f"registered {r['registered_ok']}/{r['scans']} scans; vertex RMS against the truth "
          f"{r['registered_rms_mm']:.3f} mm")
    for w, spm in r["scans_per_minute"].items():
        print(f"{w} worker(s): {spm:.1f} scans per minute")
    print(f"built model ({r['components']} components): held-out RMS {r['built_rms_mm']:.3f} mm; "
          f"{model.name} truncated to {r['components']}: {r['source_truncated_rms_mm']:.3f} mm "
          f"(ratio {r['ratio']:.2f})")
    if as_json:
        print(json.dumps(r))
    return 0


def measure(model, model_name: str, root: Path, n_scans: int, n_speed: int, n_held: int, variance: float) -> dict:
    from studio.core.registration.synthetic import truth_scan, write_scan
    from studio.jobs.register import register_job

    scans = root / "scans"
    scans.mkdir(parents=True, exist_ok=True)
    truths = {}
    for i in range(n_scans):  # faces from seeds no test or bench fit uses
        ts = truth_scan(model, 3_000_000 + i, bump_mm=0.0)
        write_scan(ts, scans / f"scan{i:03d}.ply")
        truths[f"scan{i:03d}"] = ts.truth
    speed = {}
    t = time.perf_counter()
    r2 = register_job([scans], model_name, root / "out", workers=2)
    speed["2"] = r2["registered_now"] / (time.perf_counter() - t) * 60
    if n_speed:
        t = time.perf_counter()
        r1 = register_job(sorted(scans.iterdir())[:n_speed], model_name, root / "out-1worker", workers=1)
        speed["1"] = r1["registered_now"] / (time.perf_counter() - t) * 60
    return {"bench": "register", "model": model.name, "scans": n_scans, "registered_ok": r2["ok"],
            "scans_per_minute": dict(sorted(speed.items())), "speed_scans_1_worker": n_speed,
            "registered_rms_mm": registered_rms(model, root / "out" / "registered", truths),
            **held_out(model, root / "out" / "registered", n_held, variance)}


def face_rms_mm(model, a: np.ndarray, b: np.ndarray) -> float:
    from studio.core.facemodel import UNIT_TO_MM
    from studio.core.fitting.linear_scan import region_vertices

    face = region_vertices(model, "face")
    return float(np.sqrt(np.mean(np.sum((a[face] - b[face]) ** 2, axis=1)))) * UNIT_TO_MM[model.meta.unit]


def registered_rms(model, folder: Path, truths: dict) -> float:
    from studio.core.objio import read_obj_vertices

    errs = [face_rms_mm(model, read_obj_vertices(p), truths[p.stem]) for p in sorted(folder.glob("*.obj"))]
    return float(np.mean(errs)) if errs else float("nan")


def project_rms(model, mean: np.ndarray, basis: np.ndarray, faces: list[np.ndarray]) -> float:
    """Mean face-region RMS (mm) of each face's least-squares reconstruction by mean + span(basis)."""
    from studio.core.fitting.linear_scan import region_vertices

    ids = region_vertices(model, "face")
    a = np.asarray(basis, np.float64)[:, ids].reshape(len(basis), -1).T
    out = []
    for f in faces:
        d = (f[ids] - mean[ids]).ravel()
        c, *_ = np.linalg.lstsq(a, d, rcond=None)
        rec = mean.copy()
        rec[ids] += (a @ c).reshape(-1, 3)
        out.append(face_rms_mm(model, rec, f))
    return float(np.mean(out))


def held_out(model, registered: Path, n_held: int, variance: float) -> dict:
    """The model built from ``registered`` and the source model truncated to its size, on unseen faces."""
    from studio.core import build

    v, faces, _c, _uv, _names = build.read_registered_meshes(registered)
    built, rep = build.build_pca_model("bench-built", v, faces, variance=variance, unit=model.meta.unit)
    k = built.basis("shape").shape[0]
    rng = np.random.default_rng(4_000_000)
    held = []
    for _ in range(n_held):
        p = model.zeros()
        p["shape"] = rng.normal(size=model.basis("shape").shape[0])
        held.append(np.asarray(model.vertices(p), np.float64))
    built_rms = project_rms(model, np.asarray(built.mean, np.float64), built.basis("shape"), held)
    src_rms = project_rms(model, np.asarray(model.mean, np.float64), model.basis("shape")[:k], held)
    return {"variance": variance, "components": int(k), "held_out": n_held, "built_rms_mm": built_rms,
            "source_truncated_rms_mm": src_rms, "ratio": built_rms / src_rms}
