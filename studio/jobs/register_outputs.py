"""What ``studio register`` writes into OUT, and how a second run knows what is done.

    OUT/registered/NAME.obj   the registered mesh: model topology (UVs, material groups), frame, unit
    OUT/params/NAME.json      the fit's parameters JSON (pose, verdict, metrics, refinement figures)
    OUT/records/NAME.json     the scan's summary row; written last, so it marks the scan as done
    OUT/summary.csv           every record as one row (time, verdict, residuals, failure reason)

Every file goes through ``core.atomic`` (a temporary name, then a rename): a run killed at any
moment leaves whole files only, and a scan without its record is simply registered again.
Failed scans (unreadable, no face found, a fit that judged itself wrong) get a record with their
one-line reason and no mesh in ``registered/``, so ``studio models build OUT/registered`` never
takes them in.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from studio.core import params as params_io
from studio.core.atomic import write_text
from studio.core.errors import StudioError
from studio.core.export import export_mesh
from studio.core.fitting.scan_io import ALL_SUFFIXES

COLUMNS = ["scan", "status", "reason", "seconds", "fit_seconds", "refine_seconds", "scan_unit",
           "fit_median_mm", "fit_p95_mm", "refine_residual_mm", "displacement_rms_mm", "displacement_max_mm",
           "matched_fraction", "verdict", "worker_pid", "model_loads", "file"]


def scan_list(scans) -> list[tuple[str, Path]]:
    """(name, absolute path) per scan file; folders are expanded to the scan files in them."""
    items = []
    for s in scans:
        p = Path(s)
        if p.is_dir():
            items += sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in ALL_SUFFIXES)
        elif p.is_file():
            items.append(p)
        else:
            raise StudioError(f"scan {p} does not exist")
    if not items:
        raise StudioError("no scan files given (meshes, point clouds or depth maps)")
    names: dict[str, Path] = {}
    for p in items:
        other = names.setdefault(p.stem, p)
        if other != p:
            raise StudioError(f"two scans are named {p.stem} ({other} and {p}); outputs are named after the scan")
    return [(n, p.resolve()) for n, p in names.items()]


class Outputs:
    def __init__(self, out, model):
        self.root, self.model = Path(out), model
        if self.root.exists() and not self.root.is_dir():
            raise StudioError(f"{self.root} is a file, not an output folder")
        for sub in ("registered", "params", "records"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.failed = 0

    def done(self, name: str) -> bool:
        return (self.root / "records" / f"{name}.json").is_file()

    def write(self, name: str, r: dict) -> None:
        """One task's result: mesh and parameters (when the fit produced them), then the record."""
        if "params" in r:
            params = {k: np.asarray(v) for k, v in r["params"].items()}
            extra = {"fit": r["fit"], "registration": r["refinement"]}
            params_io.save(self.root / "params" / f"{name}.json", self.model.name, params, True, **extra)
        if r["ok"]:
            mesh = self.model.mesh(params)
            mesh.vertices = np.asarray(r["vertices"], np.float64)
            export_mesh(mesh, self.root / "registered" / f"{name}.obj", True, model=self.model)
        else:
            self.failed += 1
        record = row(name, r)
        write_text(self.root / "records" / f"{name}.json", json.dumps(record) + "\n", force=True)

    def records(self) -> list[dict]:
        out = []
        for p in sorted((self.root / "records").glob("*.json")):
            try:
                out.append(json.loads(p.read_text(encoding="utf-8")))
            except (OSError, json.JSONDecodeError):
                raise StudioError(f"{p} is damaged; delete it to register that scan again") from None
        return out

    def write_summary(self) -> list[dict]:
        rows = self.records()
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        write_text(self.root / "summary.csv", buf.getvalue(), force=True)
        return rows


def row(name: str, r: dict) -> dict:
    fit, ref = r.get("fit", {}), r.get("refinement", {})
    m = fit.get("metrics_mm", {})
    rnd = (lambda x: None if x is None else round(float(x), 4))
    return {"scan": name, "status": "ok" if r["ok"] else "failed", "reason": r.get("reason", ""),
            "seconds": r.get("seconds"), "fit_seconds": fit.get("seconds"), "refine_seconds": ref.get("seconds"),
            "scan_unit": fit.get("scan_unit", ""), "fit_median_mm": rnd(m.get("scan_to_fit_median_mm")),
            "fit_p95_mm": rnd(m.get("scan_to_fit_p95_mm")),
            "refine_residual_mm": rnd((ref.get("residual_mm") or [None])[-1]),
            "displacement_rms_mm": rnd(ref.get("displacement_rms_mm")),
            "displacement_max_mm": rnd(ref.get("displacement_max_mm")),
            "matched_fraction": rnd(ref.get("matched_fraction")),
            "verdict": fit.get("verdict", {}).get("summary", ""), "worker_pid": r.get("worker_pid"),
            "model_loads": r.get("model_loads"),
            "file": r.get("scan", "")}
