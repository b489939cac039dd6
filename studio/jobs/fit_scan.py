"""The scan-fitting job: read a scan, fit a model, write parameters, fitted mesh and a report.

Used by ``studio fit scan`` and by the window (which loads the scan and fits it as two jobs so the
scan can be looked at first). Progress goes through ``progress(fraction, message)`` at least once
per fitting iteration, so a Cancel (the callback raising ``Cancelled``) stops within one
iteration; ``on_update(params, to_model)`` receives every intermediate estimate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from studio.core import params as params_io
from studio.core.atomic import check_writable, write_bytes
from studio.core.errors import StudioError
from studio.core.export import export_mesh
from studio.core.facemodel import UNIT_TO_MM, Mesh
from studio.core.fitting import fit_scan
from studio.core.fitting.scan_io import Scan, load_scan, read_landmarks, robust_extent
from studio.core.progress import report, scaled


def expected_size_mm(model) -> float:
    """The largest extent of the model's head, in mm (for detecting a scan's unit)."""
    linear = model.as_linear()
    # a model without a fixed mean shape (the neural head): its mean mesh, coarsely
    mean = linear.mean if linear is not None else model.preview_mesh(model.zeros()).vertices
    return robust_extent(np.asarray(mean)) * UNIT_TO_MM[model.meta.unit]


def load(model, scan_path: str | Path, unit: str | None = None, intrinsics=None, max_bytes=None) -> Scan:
    return load_scan(scan_path, unit, intrinsics, expected_mm=expected_size_mm(model), max_bytes=max_bytes)


def fit(model, scan: Scan, region: str = "face", landmarks: dict | None = None, progress=None,
        on_update=None, options=None):
    """Fit, measure and judge: (FitResult with its ``verdict``, FitReport)."""
    from studio.core.fitting.report import evaluate
    from studio.core.fitting.verdict import judge

    result = fit_scan(model, scan, region=region, landmarks=landmarks, options=options,
                      progress=scaled(progress, 0.0, 0.95), on_update=on_update)
    report(progress, 0.96, "measuring the fit")
    rep = evaluate(model, result, scan)
    result.verdict = judge(model, result, rep.metrics, scan.notes)
    return result, rep


def fitted_mesh(model, result) -> Mesh:
    """The fitted face placed on the scan (scan coordinates and unit)."""
    # A topology of its own (a neural head): the fit's mesh is the model's mesh at the result.
    mesh = model.mesh(result.params) if result.faces is None else Mesh(result.vertices, result.faces)
    mesh.vertices = result.vertices_in_scan()
    return mesh


def fit_scan_job(model, scan_path: str | Path, out: str | Path, mesh: str | Path | None = None,
                 report_png: str | Path | None = None, region: str = "face", unit: str | None = None,
                 landmarks: str | Path | None = None, intrinsics=None, force: bool = False,
                 progress=None, on_update=None, options=None) -> dict:
    """``studio fit scan``: every output is checked before the work starts."""
    from studio.core.fitting.report import report_png as make_png

    out = Path(out)
    if out.suffix.lower() != ".json":
        raise StudioError(f"-o must name a parameters .json file, not {out.name}")
    for p in (out, mesh, report_png):
        if p is not None:
            check_writable(p, force)
    if report_png is not None and Path(report_png).suffix.lower() != ".png":
        raise StudioError(f"--report must name a .png file, not {Path(report_png).name}")
    lm = read_landmarks(landmarks) if landmarks is not None else None
    report(progress, 0.0, "reading the scan")
    scan = load(model, scan_path, unit, intrinsics)
    result, rep = fit(model, scan, region, lm, scaled(progress, 0.02, 0.9), on_update, options)
    verdict = result.verdict.as_json()
    alignment = alignment_json(result)
    extra = {"fit": {"scan": str(scan_path), "region": region, "scan_unit": scan.unit,
                     "free_scale": result.free_scale, "pose": result.pose_json(), "alignment": alignment,
                     "metrics_mm": rep.metrics, "verdict": verdict,
                     "seconds": round(result.seconds, 3), "iterations": result.iterations}}
    params_io.save(out, model.name, result.params, force, **extra)
    written = [str(out)]
    if mesh is not None:
        report(progress, 0.92, "writing the fitted mesh")
        export_mesh(fitted_mesh(model, result), mesh, force, model=model, unit=scan.unit)
        written.append(str(mesh))
    if report_png is not None:
        report(progress, 0.95, "drawing the report")
        write_bytes(report_png, make_png(model, result, rep), force)
        written.append(str(report_png))
    report(progress, 1.0, "done")
    return {"model": model.name, "scan": str(scan_path), "scan_points": len(scan), "scan_kind": scan.kind,
            "scan_unit": scan.unit, "region": region, "seconds": result.seconds,
            "free_scale": result.free_scale, "metrics_mm": rep.metrics, "written": written,
            "pose": result.pose_json(), "alignment": alignment, "verdict": verdict}


def alignment_json(result) -> dict:
    """How the pose was found, for the outputs: method, the estimated scale and what was noticed."""
    rig = result.rigid
    out = {"method": rig.method if rig is not None else "unknown", "free_scale": result.free_scale,
           "mm_per_scan_unit": result.scan_to_mm(), "notes": list(rig.notes) if rig is not None else []}
    if rig is not None and rig.scan_landmarks is not None:
        ok = np.isfinite(rig.scan_landmarks).all(1)
        out["landmarks_found"] = int(ok.sum())
    return out
