"""``studio bench fit``: scan fitting speed and accuracy on synthetic scans with a known answer.

Each trial draws a face the model never saw (shape from the prior, a few blendshapes on), renders
a single-view depth scan of it (50k points, 0.5 mm noise, 20 % outliers, a random similarity
transform and unit), fits it, and compares the fitted face with the true one over the face
region — both placed on the scan (the fit by its estimated pose, the truth by the true one), in
mm. The median over the trials is reported.

The linear model is compared vertex by vertex (it shares the truth's topology). The neural head,
when the linear model is the one it was trained from, fits the very same scans; its mesh has its
own topology, so both models are also compared by the distance from each true face vertex to the
fitted surface ("surface RMS"), the figure that puts the two side by side.

The faces are drawn from seeds ``SCAN_SEED0 + seed + trial``. The neural head is trained on the faces
of seeds 0…n_train−1 (and evaluated on 100000…) drawn the same way, so small seeds would be faces
it has memorised: its figure would flatter the model that saw fewer identities more often.

``--busy`` runs a separate process keeping one core busy beside the fits (``busy_load``): a user's
machine runs other programs, and thread pools sized for an idle machine then spin-wait (see
``studio.core.threads``).
"""

from __future__ import annotations

import contextlib
import json
import os
import time

import numpy as np

SCAN_SEED0 = 1_000_000  # above every neural training / held-out seed (see the module docstring)


def _spin(stop, started, parent: int) -> None:
    """The ``--busy`` load: plain Python arithmetic on one core until ``stop`` is set or the bench
    process has gone."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the bench, which then stops us
    started.set()
    x = 0
    while not stop.is_set() and os.getppid() == parent:
        for i in range(20_000):
            x += i * i


@contextlib.contextmanager
def busy_load(enabled: bool = True):
    """A separate process keeping one core busy for the ``with`` block (yields it; None when not
    ``enabled``): another program's load beside the fits, as a user's machine has. Stopped and joined
    however the block ends (an error, Ctrl-C)."""
    if not enabled:
        yield None
        return
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: nothing of torch's state forked
    stop, started = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_spin, args=(stop, started, os.getpid()), name="studio-bench-busy", daemon=True)
    proc.start()
    try:
        started.wait(60)
        yield proc
    finally:
        stop.set()
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join()


def run_trials(model, trials: int, points: int, noise: float, outliers: float, seed: int = 0,
               neural=None) -> dict:
    """Fit ``model`` (and ``neural``, if given) to the same synthetic scans of ``model``'s faces."""
    from studio.core.fitting import fit_scan
    from studio.core.fitting.linear_scan import region_vertices
    from studio.core.fitting.scan_io import finish_scan
    from studio.core.fitting.synthetic import synthetic_scan
    from studio.jobs.fit_scan import expected_size_mm

    face = region_vertices(model, "face")
    rows: dict[str, list] = {"linear": [], "neural": []}
    warm = synthetic_scan(model, seed=SCAN_SEED0 - 1 - seed, n_points=5000, transform=False)
    fit_scan(model, warm.scan)  # warm-up: the model's restricted basis is prepared once per model
    for t in range(trials):
        syn = synthetic_scan(model, seed=SCAN_SEED0 + seed + t, n_points=points, noise_mm=noise, outliers=outliers)
        true_unit = syn.scan.unit
        scan = finish_scan(syn.scan, None, expected_size_mm(model))  # detect the unit, as a user's would be
        for kind, m in (("linear", model), ("neural", neural)):
            if m is None:
                continue
            row = _trial(m, scan, syn, face, model)
            rows[kind].append({"trial": t, **row, "unit_detected": scan.unit == true_unit,
                               "scan_points": int(len(scan))})
    out = {"linear": _summary(rows["linear"])}
    if neural is not None:
        out["neural"] = _summary(rows["neural"])
    return out


def _trial(m, scan, syn, face: np.ndarray, truth_model) -> dict:
    """Fit one scan; errors of the fitted face against the truth, in mm, both placed on the scan."""
    import igl

    from studio.core.facemodel import UNIT_TO_MM
    from studio.core.fitting import fit_scan

    t0, c0 = time.perf_counter(), time.process_time()
    res = fit_scan(m, scan)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    to_mm = UNIT_TO_MM[scan.unit]
    truth = syn.to_model.inverse().apply(syn.vertices[face]) * to_mm  # the true face on the scan, mm
    fitted = res.vertices_in_scan() * to_mm
    faces = res.faces if res.faces is not None else np.asarray(truth_model.faces, np.int64)
    d2, _, _ = igl.point_mesh_squared_distance(truth, fitted, np.ascontiguousarray(faces, np.int64))
    row = {"seconds": wall, "cpu_seconds": cpu, "surface_rms_mm": float(np.sqrt(d2.mean())),
           "surface_median_mm": float(np.median(np.sqrt(d2)))}
    if res.faces is None:  # same topology as the truth: vertex-to-vertex
        err = np.linalg.norm(fitted[face] - truth, axis=1)
        row.update({"rms_mm": float(np.sqrt(np.mean(err**2))), "median_mm": float(np.median(err)),
                    "p95_mm": float(np.percentile(err, 95))})
    return row


def _summary(rows: list[dict]) -> dict:
    med = lambda k: float(np.median([r[k] for r in rows]))  # noqa: E731
    out = {k + "_median": med(k) for k in ("seconds", "cpu_seconds", "surface_rms_mm")}
    out["surface_rms_mm_max"] = float(max(r["surface_rms_mm"] for r in rows))
    if "rms_mm" in rows[0]:
        out.update({"rms_mm_median": med("rms_mm"), "rms_mm_max": float(max(r["rms_mm"] for r in rows)),
                    "p95_mm_median": med("p95_mm")})
    out.update({"units_detected": sum(r["unit_detected"] for r in rows), "trials": rows})
    return out


def main(model=None, trials: int = 5, points: int = 50_000, noise: float = 0.5, outliers: float = 0.2,
         seed: int = 0, neural: str = "neural", busy: bool = False, shapes: bool = True,
         as_json: bool = False) -> int:
    """``studio bench fit``: measure, print the table, and with ``as_json`` one JSON line last."""
    from studio.core import store
    from studio.core.errors import StudioError
    from studio.core.fitting.synthetic import face_like_model
    from studio.core.registry import open_model
    from studio.core.threads import available_cores, fit_threads

    if trials < 1:
        raise StudioError("--trials must be at least 1")
    if points < 1000:
        raise StudioError("--points must be at least 1000")
    name = model or ("ict" if store.exists("ict") else None)
    model = open_model(name) if name else face_like_model()
    if model.kind != "pca":
        raise StudioError(f"'{model.name}' is not a linear model: the bench draws its scans from a linear model "
                          "(--model) and fits the neural one (--neural) to the same scans")
    neural, why = _neural_for(model, neural)
    with busy_load(busy):
        res = run_trials(model, trials, points, noise, outliers, seed, neural)
    lin, neu = res["linear"], res.get("neural")
    result = {"bench": "fit", "model": model.name, "vertices": int(model.n_vertices),
              "components": int(sum(g.size for g in model.groups if g.affects == "position")),
              "points": points, "noise_mm": noise, "outliers": outliers, "trials": trials,
              "busy": bool(busy), "cores": available_cores(), "fit_threads": fit_threads(),
              "linear": lin, "neural": {"available": True, "model": neural.name, **neu} if neu else
              {"available": False, "reason": why}}
    print(f"model {model.name}: {model.n_vertices} vertices, {result['components']} position components; "
          f"{trials} synthetic single-view scans of {points:,} points, {noise} mm noise, "
          f"{100 * outliers:.0f}% outliers, random similarity and unit")
    print(f"{available_cores()} cores, {fit_threads()} thread(s) per fit"
          + ("; busy: a process kept one core busy beside the fits" if busy else ""))
    na = "—" if neu else "not available"
    col = lambda k, f: f(neu[k]) if neu and k in neu else na  # noqa: E731
    print(f"{'':30}{'linear':>12}{'neural':>16}")
    print(f"{'fit time (median)':30}{lin['seconds_median']:>10.2f} s"
          f"{col('seconds_median', lambda v: f'{v:.2f} s'):>16}")
    print(f"{'  cpu time (median)':30}{lin['cpu_seconds_median']:>10.2f} s"
          f"{col('cpu_seconds_median', lambda v: f'{v:.2f} s'):>16}")
    print(f"{'face RMS, vertices (median)':30}{lin['rms_mm_median']:>9.2f} mm{'—':>16}")
    print(f"{'face RMS, vertices (worst)':30}{lin['rms_mm_max']:>9.2f} mm{'—':>16}")
    print(f"{'face p95, vertices (median)':30}{lin['p95_mm_median']:>9.2f} mm{'—':>16}")
    print(f"{'face RMS, to surface (median)':30}{lin['surface_rms_mm_median']:>9.2f} mm"
          f"{col('surface_rms_mm_median', lambda v: f'{v:.2f} mm'):>16}")
    print(f"{'face RMS, to surface (worst)':30}{lin['surface_rms_mm_max']:>9.2f} mm"
          f"{col('surface_rms_mm_max', lambda v: f'{v:.2f} mm'):>16}")
    print(f"{'unit detected':30}{lin['units_detected']:>7}/{trials:<4}")
    if not neu:
        print(f"neural: {why}")
    if shapes:
        from studio.bench import fit_shapes

        print("the shapes users bring, each written to a file and fitted as `studio fit scan` does "
              f"({fit_shapes.NOISE_MM} mm vertex noise, random pose):")
        with busy_load(busy):
            rows = fit_shapes.run_shapes(model, neural, seed)
        fit_shapes.print_table(rows)
        result["shapes"] = {k: {"summary": fit_shapes.summary(v), "scans": v} for k, v in rows.items()}
    if as_json:
        print(json.dumps(result))
    return 0


def _neural_for(model, name: str):
    """The neural model to fit beside ``model``, or (None, why not)."""
    from studio.core.errors import StudioError
    from studio.core.registry import open_model

    if name.lower() == "none":
        return None, "skipped (--neural none)"
    try:
        neural = open_model(name)
    except StudioError as e:
        return None, str(e)
    if getattr(neural, "kind", "") != "neural":
        raise StudioError(f"--neural {name}: not a neural model")
    source = ((neural.checkpoint.meta or {}).get("recipe") or {}).get("source_model", "")
    if source != model.name:
        return None, (f"the neural model was trained on {source or 'another model'}'s heads, not {model.name}'s; "
                      "its fit of these scans would measure the difference between the two")
    return neural, ""
