"""The registration job: raw scans → meshes in the model's topology and frame (``studio register``).

Per scan (``register_scan``): the scan fit with its verdict (``jobs.fit_scan``), then the non-rigid
refinement beyond the model's span (``core.registration.nonrigid``). ``register_job`` runs one
task per scan on Dask (``jobs.register_dask``) and writes each result as it arrives
(``jobs.register_outputs``), so an interrupted run keeps every finished scan and a second run
skips them.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from studio.core.errors import StudioError
from studio.core.facemodel import UNIT_TO_MM
from studio.core.progress import report, scaled
from studio.core.registration.nonrigid import RefineOptions, refine
from studio.core.registration.surface import ScanSurface


@dataclass
class RegisterOptions:
    region: str = "face"
    unit: str | None = None  # the scans' unit (default: detected per scan)
    free_scale: bool = False
    refine: RefineOptions = field(default_factory=RefineOptions)


# -- one scan (runs on a Dask worker) ---------------------------------------------------------------
_models: dict = {}  # this process's model, by (path, mtime): loaded once per worker, not per scan
MODEL_LOADS = {"count": 0}


def worker_model(path: str):
    from studio.core.registry import open_model

    key = (path, os.stat(path).st_mtime_ns)
    if key not in _models:
        _models.clear()  # one model at a time: tens of MB each
        _models[key] = open_model(path)
        MODEL_LOADS["count"] += 1
    return _models[key]


def check_model(model) -> None:
    if not model.fixed_topology or model.as_linear() is None:
        raise StudioError(f"model {model.name} has no fixed topology to register scans to (a linear model is needed)")


def register_scan(model, scan_path, options: RegisterOptions | None = None, progress=None) -> dict:
    """Fit and refine one scan: {"vertices" (model frame), "params", "fit", "refinement", "ok", …}."""
    from studio.core.fitting import fit_options
    from studio.jobs import fit_scan as fs

    opt = options or RegisterOptions()
    check_model(model)
    t0 = time.perf_counter()
    scan = fs.load(model, scan_path, opt.unit)
    result, rep = fs.fit(model, scan, opt.region, None, scaled(progress, 0.0, 0.7), None,
                         fit_options(model, opt.free_scale))
    t_fit = time.perf_counter() - t0
    surface = ScanSurface.from_scan(scan, result.to_model)
    ref = refine(result.vertices, np.asarray(model.faces), result.region_vertices, surface,
                 UNIT_TO_MM[model.meta.unit], opt.refine, scaled(progress, 0.7, 1.0))
    verdict = result.verdict.as_json()
    return {"ok": bool(verdict["ok"]), "reason": "" if verdict["ok"] else verdict["summary"],
            "vertices": ref.vertices, "params": {k: np.asarray(v).tolist() for k, v in result.params.items()},
            "fit": {"scan": str(scan_path), "region": opt.region, "scan_unit": scan.unit, "scan_points": len(scan),
                    "free_scale": result.free_scale, "pose": result.pose_json(), "alignment": fs.alignment_json(result),
                    "metrics_mm": rep.metrics, "verdict": verdict, "seconds": round(t_fit, 3)},
            "refinement": {"stiffness": list(opt.refine.stiffness), "matched_fraction": ref.matched_fraction,
                           "residual_mm": ref.residual_mm, "displacement_rms_mm": ref.displacement_rms_mm,
                           "displacement_max_mm": ref.displacement_max_mm,
                           "seconds": round(time.perf_counter() - t0 - t_fit, 3)},
            "seconds": round(time.perf_counter() - t0, 3)}


def register_task(model_path: str, scan_path: str, options: RegisterOptions) -> dict:
    """One Dask task. Never raises for a scan that cannot be registered: it comes back as a failure
    with its one-line reason (an exception would be retried elsewhere, for nothing)."""
    from studio.core.threads import limited

    t0 = time.perf_counter()
    try:
        model = worker_model(model_path)
        with limited(1):  # one thread per task: the cluster's parallelism is its workers
            out = register_scan(model, scan_path, options)
    except StudioError as e:  # bad file, not a face (FitFailed): the scan's own problem
        out = {"ok": False, "reason": str(e), "seconds": round(time.perf_counter() - t0, 3)}
    except Exception as e:  # a bug: one line in the summary, the traceback in the record
        out = {"ok": False, "reason": f"internal error: {e.__class__.__name__}: {e}",
               "traceback": traceback.format_exc(limit=8), "seconds": round(time.perf_counter() - t0, 3)}
    out.update({"scan": str(scan_path), "worker_pid": os.getpid(), "model_loads": MODEL_LOADS["count"]})
    return out


# -- many scans (the client) ------------------------------------------------------------------------
def register_job(scans, model_name: str, out, scheduler: str | None = None, workers: int | None = None,
                 options: RegisterOptions | None = None, progress=None) -> dict:
    """``studio register``: every scan not yet done in ``out``, one Dask task each."""
    from studio.core import store
    from studio.core.registry import open_model
    from studio.jobs.register_dask import dask_client, run_tasks
    from studio.jobs.register_outputs import Outputs, scan_list

    opt = options or RegisterOptions()
    model = open_model(model_name)
    check_model(model)
    model_path = str(Path(store.resolve(model_name)).resolve())
    items = scan_list(scans)
    outputs = Outputs(out, model)
    todo = [(name, path) for name, path in items if not outputs.done(name)]
    report(progress, 0.0, f"{len(items) - len(todo)} of {len(items)} scans already registered")
    t0 = time.perf_counter()
    info = {"workers": 0, "scheduler": scheduler or "local"}
    unfinished: list[str] = []
    if todo:
        with dask_client(scheduler, workers) as client:
            info["workers"] = len(client.scheduler_info()["workers"])

            def done(name, record, k):
                if record is None:
                    unfinished.append(name)
                else:
                    outputs.write(name, record)
                report(progress, k / len(todo), f"{k}/{len(todo)} scans, {outputs.failed} failed")

            run_tasks(client, register_task, model_path, todo, opt, done)
    summary = outputs.write_summary()
    return {"scans": len(items), "registered_now": len(todo), "skipped": len(items) - len(todo),
            "ok": sum(r["status"] == "ok" for r in summary), "failed": [(r["scan"], r["reason"]) for r in summary
                                                                         if r["status"] != "ok"],
            "unfinished": unfinished, "seconds": round(time.perf_counter() - t0, 3), "out": str(out), **info,
            "options": {"region": opt.region, "refine": asdict(opt.refine)}}
