"""``studio fit scan SCAN --model NAME -o params.json``: fit a model to a 3-D scan."""

from __future__ import annotations

import json
import sys

from studio.core.errors import FitFailed


def add_command(fsub) -> None:
    p = fsub.add_parser(
        "scan", help="fit a model to a 3-D scan (mesh, point cloud or depth map)",
        description="Fit a model's shape and expression to a scan in any pose, size and unit: a mesh "
                    "(.obj .ply .stl .glb), a point cloud (.ply .xyz .npy) or a depth map (16-bit .png or "
                    "2-D .npy, with intrinsics JSON {fx, fy, cx, cy, depth_scale}). Writes the parameters "
                    "JSON (with the pose that places the model on the scan and the fit's figures in mm). "
                    "Exit status 3: the fit judged itself wrong (its outputs are written; the reason is printed).")
    p.add_argument("scan", help="scan file")
    p.add_argument("--model", required=True, help="model name in the store (or a .npz path)")
    p.add_argument("-o", "--out", required=True, help="parameters JSON to write")
    p.add_argument("--mesh", help="also write the fitted mesh, placed on the scan (.obj .ply .stl .glb)")
    p.add_argument("--report", help="also write a report PNG (error heatmap and histogram)")
    p.add_argument("--region", default="face", choices=["face", "head"],
                   help="the part of the model fitted to the scan (default: face)")
    p.add_argument("--unit", choices=["m", "cm", "mm"], help="the scan's length unit (default: detected "
                   "from its size)")
    p.add_argument("--landmarks", help="3-D landmarks on the scan for the initial alignment (any model): JSON "
                   "{\"set\": \"ibug68\", \"points\": [[x, y, z] or null, ...]}; without them the face is found "
                   "by a face detector on renders of the scan")
    p.add_argument("--intrinsics", help="depth maps: camera intrinsics JSON (default: SCAN.json beside it)")
    p.add_argument("--free-scale", action="store_true", help="the scan's scale is arbitrary (e.g. "
                   "photogrammetry without a scale bar): estimate it instead of trusting the unit (done "
                   "automatically, and said, when the face found on the scan fits no unit)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON line")
    p.add_argument("--force", action="store_true", help="replace existing output files")
    p.set_defaults(func=cmd_fit_scan)


def cmd_fit_scan(a) -> int:
    from studio.cli.progressbar import progress_bar
    from studio.core.fitting import fit_options
    from studio.core.registry import open_model
    from studio.jobs.fit_scan import fit_scan_job

    model = open_model(a.model)
    with progress_bar("fitting") as cb:
        r = fit_scan_job(model, a.scan, a.out, a.mesh, a.report, a.region, a.unit, a.landmarks,
                         a.intrinsics, a.force, progress=cb, options=fit_options(model, a.free_scale))
    m = r["metrics_mm"]
    v = r["verdict"]
    if a.json:
        print(json.dumps(r))
    else:
        _print_summary(r, m)
    if not v["ok"]:  # outputs are written (to look at); the status says they are not to be trusted
        print(f"studio: {v['summary']}", file=sys.stderr)
        return FIT_FAILED
    return 0


FIT_FAILED = FitFailed.exit_status  # the fit ran, wrote its outputs, and judged itself wrong (verdict.py)


def _print_summary(r: dict, m: dict) -> None:
    unit = (f"free scale, {r['alignment']['mm_per_scan_unit']:.4g} mm per scan unit" if r["free_scale"]
            else f"unit {r['scan_unit']}")
    print(f"fitted {r['model']} to {r['scan']} ({r['scan_points']:,} points, {r['scan_kind']}, {unit}) in "
          f"{r['seconds']:.2f} s; pose from {r['alignment']['method']}")
    print(f"scan → fit distance: median {m['scan_to_fit_median_mm']:.2f} mm, 95th percentile "
          f"{m['scan_to_fit_p95_mm']:.2f} mm ({100 * m['explained_fraction']:.0f}% of the scan points on the "
          f"fitted {r['region']})")
    if "chamfer_l1_mm" in m:
        print(f"Chamfer-L1 {m['chamfer_l1_mm']:.2f} mm, normal consistency {m['normal_consistency']:.3f}, "
              f"F-score@1mm {m['fscore_1mm']:.3f}")
    for note in r["verdict"]["warnings"]:
        print(f"note: {note}")
    print("wrote " + ", ".join(r["written"]))
