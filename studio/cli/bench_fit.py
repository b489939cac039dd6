"""``studio bench fit``: scan fitting speed and accuracy on synthetic scans with a known answer.

Each trial draws a face the model never saw (shape from the prior, a few blendshapes on), renders
a single-view depth scan of it (50k points, 0.5 mm noise, 20 % outliers, a random similarity
transform and unit), fits it, and compares the fitted face with the true one vertex by vertex
over the face region — both placed on the scan (the fit by its estimated pose, the truth by the
true one), in mm. The median over the trials is reported.
"""

from __future__ import annotations

import json
import time

import numpy as np


def add_command(bsub) -> None:
    p = bsub.add_parser("fit", help="scan fitting: time and face-region RMS error against ground truth",
                        description="Fit synthetic single-view scans (50k points, 0.5 mm noise, 20%% outliers, "
                                    "random similarity transform) made from faces the model never saw.")
    p.add_argument("--model", help="model (default: 'ict' if imported, else a synthetic test model)")
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--points", type=int, default=50_000)
    p.add_argument("--noise", type=float, default=0.5, help="noise σ in mm")
    p.add_argument("--outliers", type=float, default=0.2, help="fraction of outlier points")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=bench_fit)


def run_trials(model, trials: int, points: int, noise: float, outliers: float, seed: int = 0) -> dict:
    from studio.core.facemodel import UNIT_TO_MM
    from studio.core.fitting import fit_scan
    from studio.core.fitting.linear_scan import region_vertices
    from studio.core.fitting.scan_io import finish_scan
    from studio.core.fitting.synthetic import synthetic_scan
    from studio.jobs.fit_scan import expected_size_mm

    face = region_vertices(model, "face")
    mm = UNIT_TO_MM[model.meta.unit]
    rows = []
    warm = synthetic_scan(model, seed=10_000 + seed, n_points=5000, transform=False)
    fit_scan(model, warm.scan)  # warm-up: the model's restricted basis is prepared once per model
    for t in range(trials):
        syn = synthetic_scan(model, seed=seed + t, n_points=points, noise_mm=noise, outliers=outliers)
        true_unit = syn.scan.unit
        scan = finish_scan(syn.scan, None, expected_size_mm(model))  # detect the unit, as a user's would be
        t0 = time.perf_counter()
        c0 = time.process_time()
        res = fit_scan(model, scan)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        placed = syn.to_model.apply(res.vertices_in_scan())  # the fit on the scan, in the truth's frame
        err = np.linalg.norm(placed[face] - syn.vertices[face], axis=1) * mm
        rows.append({"trial": t, "seconds": wall, "cpu_seconds": cpu, "rms_mm": float(np.sqrt(np.mean(err**2))),
                     "median_mm": float(np.median(err)), "p95_mm": float(np.percentile(err, 95)),
                     "unit_detected": scan.unit == true_unit, "scan_points": int(len(scan))})
    med = lambda k: float(np.median([r[k] for r in rows]))  # noqa: E731
    return {"seconds_median": med("seconds"), "cpu_seconds_median": med("cpu_seconds"),
            "rms_mm_median": med("rms_mm"), "rms_mm_max": float(max(r["rms_mm"] for r in rows)),
            "p95_mm_median": med("p95_mm"), "units_detected": sum(r["unit_detected"] for r in rows),
            "trials": rows}


def bench_fit(a) -> int:
    from studio.core import store
    from studio.core.errors import StudioError
    from studio.core.fitting.synthetic import face_like_model
    from studio.core.registry import open_model

    if a.trials < 1:
        raise StudioError("--trials must be at least 1")
    if a.points < 1000:
        raise StudioError("--points must be at least 1000")
    name = a.model or ("ict" if store.exists("ict") else None)
    model = open_model(name) if name else face_like_model()
    if getattr(model, "kind", "") != "pca":
        raise StudioError(f"'{model.name}' is not a linear model; the bench fits a linear model and reports the "
                          "neural column as not available")
    lin = run_trials(model, a.trials, a.points, a.noise, a.outliers, a.seed)
    result = {"bench": "fit", "model": model.name, "vertices": int(model.n_vertices),
              "components": int(sum(g.size for g in model.groups if g.affects == "position")),
              "points": a.points, "noise_mm": a.noise, "outliers": a.outliers, "trials": a.trials,
              "linear": lin, "neural": {"available": False, "reason": "neural-model scan fitting is not available yet"}}
    print(f"model {model.name}: {model.n_vertices} vertices, {result['components']} position components; "
          f"{a.trials} synthetic single-view scans of {a.points:,} points, {a.noise} mm noise, "
          f"{100 * a.outliers:.0f}% outliers, random similarity and unit")
    print(f"{'':28}{'linear':>12}{'neural':>16}")
    print(f"{'fit time (median)':28}{lin['seconds_median']:>10.2f} s{'not available':>16}")
    print(f"{'  cpu time (median)':28}{lin['cpu_seconds_median']:>10.2f} s{'':>16}")
    print(f"{'face RMS error (median)':28}{lin['rms_mm_median']:>9.2f} mm{'not available':>16}")
    print(f"{'face RMS error (worst)':28}{lin['rms_mm_max']:>9.2f} mm{'':>16}")
    print(f"{'face p95 error (median)':28}{lin['p95_mm_median']:>9.2f} mm{'':>16}")
    print(f"{'unit detected':28}{lin['units_detected']:>7}/{a.trials:<4}")
    if a.json:
        print(json.dumps(result))
    return 0
