"""The shapes users bring, for ``studio bench fit``: each scan written to a file and fitted by the
job ``studio fit scan`` runs (reading, unit detection, dropping separate parts, the verdict), so the
bench measures the product, not a shortcut into it.

* full heads as ``studio sample`` writes them (eyeballs, teeth, mouth socket and eye shells inside),
  in millimetres and centimetres, in a random pose;
* face masks (forehead to chin) of strong expressions — smile, disgust, surprise — in a random pose;
* non-metric scales: a head at 4× metres and a face mask at 0.37× its unit's size;

all with 0.3 mm of noise on every vertex.

Per scan: the orientation error against the true pose, the median scan → fit distance over the
scan's face area (the fit's own metric, in true mm), the verdict and the time. The baseline beside
it is the model's mean face placed by the *true* pose: what a fit must beat to have done anything.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

CASES = (  # name, part, expression, unit, scale
    ("full head, mm", "head", None, "mm", 1.0),
    ("full head, cm", "head", None, "cm", 1.0),
    ("mask, smile", "mask", "smile", "mm", 1.0),
    ("mask, disgust", "mask", "disgust", "mm", 1.0),
    ("mask, surprise", "mask", "surprise", "mm", 1.0),
    ("full head, 4x metres", "head", None, "m", 4.0),
    ("mask, 0.37x mm", "mask", None, "mm", 0.37),
)
NOISE_MM = 0.3  # on every vertex: a scanner's noise
SHAPE_SEED0 = 2_000_000  # faces no neural training run or other bench uses (see studio.bench.fit.SCAN_SEED0)


def run_shapes(model, neural=None, seed: int = 0, progress=None) -> dict:
    """Fit every case with ``model`` (linear) and ``neural`` (if given); rows per model."""
    import trimesh

    from studio.core.fitting.synthetic import expression_params, mesh_scan

    rows: dict[str, list] = {"linear": [], "neural": []}
    with tempfile.TemporaryDirectory() as tmp:
        for k, (name, part, expression, unit, scale) in enumerate(CASES):
            s = SHAPE_SEED0 + seed + k
            params = expression_params(model, np.random.default_rng(s), expression)
            syn = mesh_scan(model, params, part, s, unit=unit, scale=scale, noise_mm=NOISE_MM)
            path = Path(tmp) / f"scan{k}.ply"
            trimesh.Trimesh(syn.scan.points, syn.scan.faces, process=False).export(path)
            for kind, m in (("linear", model), ("neural", neural)):
                if m is None:
                    continue
                if progress is not None:
                    progress(f"{kind}: {name}")
                rows[kind].append({"case": name, **_fit_file(m, path, syn, model, Path(tmp))})
    return {k: v for k, v in rows.items() if v}


def _fit_file(m, path: Path, syn, truth_model, tmp: Path) -> dict:
    from studio.core.errors import FitFailed
    from studio.core.fitting.align import rotation_angle_deg
    from studio.jobs.fit_scan import fit_scan_job

    t0 = time.perf_counter()
    try:
        r = fit_scan_job(m, path, tmp / "fit.json", force=True)
    except FitFailed as e:
        return {"seconds": time.perf_counter() - t0, "verdict_ok": False, "error": str(e)}
    pose = np.asarray(r["pose"]["rotation"])  # model → scan
    row = {"seconds": time.perf_counter() - t0, "fit_seconds": r["seconds"],
           "rotation_error_deg": rotation_angle_deg(pose.T, syn.to_model.R),
           "face_median_mm": r["metrics_mm"]["scan_to_fit_median_mm"],
           "verdict_ok": bool(r["verdict"]["ok"]), "alignment": r["alignment"]["method"],
           "free_scale": bool(r["free_scale"])}
    if m is truth_model:
        row["mean_face_median_mm"] = _mean_face_baseline(m, path, syn)
    return row


def _mean_face_baseline(model, path: Path, syn) -> float:
    """Median scan → mean-face distance over the face area, the mean face placed by the true pose."""
    from studio.core.fitting.linear_scan import model_side, prepare
    from studio.core.fitting.report import evaluate
    from studio.core.fitting.result import FitResult
    from studio.core.fitting.rigid import face_area
    from studio.jobs.fit_scan import load

    scan = load(model, path)
    prep = prepare(model, "face")
    true = syn.to_model  # scan (its unit) → model
    zero = model.zeros()
    res = FitResult(model.name, zero, true, "face", scan.unit, model.meta.unit,
                    np.asarray(model.vertices(zero), np.float64), prep.verts, 0, 0.0,
                    free_scale=True, face_area=face_area(model_side(model, prep)))
    return float(evaluate(model, res, scan).metrics["scan_to_fit_median_mm"])


def summary(rows: list[dict]) -> dict:
    ok = [r for r in rows if "rotation_error_deg" in r]
    out = {"scans": len(rows), "verdict_ok": sum(r["verdict_ok"] for r in rows),
           "within_5_degrees": sum(r.get("rotation_error_deg", 180) <= 5.0 for r in rows)}
    if ok:
        out.update({"rotation_error_deg_max": max(r["rotation_error_deg"] for r in ok),
                    "face_median_mm_median": float(np.median([r["face_median_mm"] for r in ok])),
                    "face_median_mm_max": float(max(r["face_median_mm"] for r in ok)),
                    "seconds_median": float(np.median([r["seconds"] for r in rows]))})
        base = [r["mean_face_median_mm"] for r in ok if "mean_face_median_mm" in r]
        if base:
            out["mean_face_median_mm_median"] = float(np.median(base))
    return out


def print_table(res: dict) -> None:
    kinds = list(res)
    print(f"{'shape':24}" + "".join(f"{k + ': rot, face median, verdict, s':>44}" for k in kinds)
          + f"{'mean face (true pose)':>24}")
    for i, (name, *_rest) in enumerate(CASES):
        line = f"{name:24}"
        base = ""
        for k in kinds:
            r = res[k][i]
            if "error" in r:
                line += f"{'refused: ' + r['error'][:30]:>44}"
                continue
            line += (f"{r['rotation_error_deg']:>12.1f}°{r['face_median_mm']:>11.3f} mm"
                     f"{'ok' if r['verdict_ok'] else 'FAILED':>9}{r['seconds']:>8.1f} s")
            if "mean_face_median_mm" in r:
                base = f"{r['mean_face_median_mm']:>21.3f} mm"
        print(line + base)
