"""How good is a scan fit: distances and surface metrics in mm, and a report PNG.

Everything is measured where the user sees the result — the fitted face placed on the scan, in
the scan's own unit converted to mm — through ``studio.core.metrics`` (Chamfer-L1, normal
consistency, F-score@1mm) so the figures compare with the other fitters'. A single-view scan
covers only part of the face and carries stray points, so the metrics use the scan points the
fitted region explains (their closest surface point is not on the region's border, and they
are not isolated stray measurements) and the
part of the fitted surface the scan covers; the share of scan points left out is reported too.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from studio.core.errors import StudioError
from studio.core.facemodel import UNIT_TO_MM, FaceModel
from studio.core.fitting.linear_scan import prepare
from studio.core.fitting.result import FitResult
from studio.core.fitting.scan_io import Scan, local_geometry
from studio.core.geometry.surface import closest_points, incident_triangles
from studio.core.metrics import sample_surface, surface_metrics

HEAT_MAX_MM = 2.0  # the colour scale's top: errors above it are all dark red
NO_DATA = np.array([0.55, 0.55, 0.58])  # vertices no scan point is near


@dataclass
class FitReport:
    metrics: dict  # figures in mm (see ``evaluate``)
    scan_distance_mm: np.ndarray  # per scan point: distance to the fitted surface (NaN: not explained)
    vertex_error_mm: np.ndarray  # per model vertex: mean distance of the scan points nearest to it (NaN: none)


@dataclass
class _Surface:
    """The fitted surface the figures are measured on: vertex ids into ``result.vertices``, triangles
    (indices into those ids), border flags and the triangles around each vertex."""

    verts: np.ndarray
    faces: np.ndarray
    border: np.ndarray
    incident: np.ndarray


def fitted_surface(model: FaceModel, result: FitResult) -> _Surface:
    if result.faces is not None:  # the fit's own mesh (a neural model's): closed, all of it fitted
        n = len(result.vertices)
        return _Surface(np.arange(n), result.faces, np.zeros(n, bool), incident_triangles(result.faces, n))
    linear = model.as_linear()
    if linear is None:
        raise StudioError(f"a fit of {model.name} without its own mesh needs a linear model")
    prep = prepare(linear, result.region)
    return _Surface(prep.verts, prep.faces, prep.border, prep.incident)


def evaluate(model: FaceModel, result: FitResult, scan: Scan, max_points: int = 60000, seed: int = 0) -> FitReport:
    prep = fitted_surface(model, result)
    mm = result.scan_to_mm()  # the unit's mm, or the estimated scale's under a free scale
    verts = result.vertices_in_scan()[prep.verts] * mm
    pts = np.asarray(scan.points, float) * mm
    rng = np.random.default_rng(seed)
    sel = np.arange(len(pts)) if len(pts) <= max_points else np.sort(rng.choice(len(pts), max_points, replace=False))
    p = pts[sel]
    near_d, near_v = cKDTree(verts).query(p)
    # Exact distances (libigl): the published errors; the fitter's own loop uses the local
    # projection around the nearest vertex (geometry/surface.py says why).
    dist, _, _ = closest_points(p, verts, prep.faces)
    # Stray measurements (isolated points floating off the surface) are not the fit's error.
    _, _, isolated = local_geometry(pts, cKDTree(pts), p)
    # The scan's face area: inside the outline of the model's face landmarks, once the scan is placed
    # on the model (hair above the forehead, ears, neck, shoulders and the back of a head are outside).
    in_face = np.ones(len(p), bool)
    if result.face_area is not None:
        in_face = result.face_area.contains(result.to_model.apply(np.asarray(scan.points, float)[sel]),
                                            UNIT_TO_MM[result.model_unit])
    explained = ~prep.border[near_v] & ~isolated & in_face
    per_point = np.full(len(pts), np.nan)
    per_point[sel[explained]] = dist[explained]
    vsum = np.bincount(near_v[explained], weights=dist[explained], minlength=len(verts))
    vcnt = np.bincount(near_v[explained], minlength=len(verts))
    vertex_err = np.full(len(result.vertices), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        vertex_err[prep.verts] = np.where(vcnt > 0, vsum / vcnt, np.nan)

    d = dist[explained]
    # Stray points (20 % in a noisy scan) would dominate means: the surface metrics use the
    # explained points within 5 mm, and say how many that is.
    inlier = explained & (dist <= 5.0)
    ref = p[inlier]
    ref_n = scan.normals[sel][inlier] if scan.normals is not None else None
    if ref_n is None and len(ref) >= 16:
        ref_n, _, _ = local_geometry(ref, cKDTree(ref), ref)
    # The fitted surface the scan covers: triangles within 5 mm of an inlier. Sampled there only, so
    # the sample density (and with it the metrics' floor) does not depend on how much more surface
    # the model has than the scan shows (a whole neural head against a single-view face scan).
    if len(ref):
        centroids = verts[prep.faces].mean(axis=1)
        shown = prep.faces[cKDTree(ref).query(centroids)[0] <= 5.0]
    else:
        shown = prep.faces[:0]
    if len(shown):
        # About one sample per (0.5 mm)² of fitted surface: a coarser sampling would count its own
        # spacing as the fit's error (completeness, recall). The figures' other side, the scan, is as
        # dense as the scanner made it.
        e = verts[shown]
        area = 0.5 * float(np.linalg.norm(np.cross(e[:, 1] - e[:, 0], e[:, 2] - e[:, 0]), axis=1).sum())
        count = int(np.clip(area / 0.25, 2000, 200_000))
        samples, sample_n = sample_surface(verts, shown, count, seed=seed)
    else:
        samples, sample_n = np.zeros((0, 3)), np.zeros((0, 3))
    figures = {"scan_points": int(len(pts)), "evaluated_points": int(len(sel)),
               "stray_fraction": float(isolated.mean()), "face_area_fraction": float(in_face.mean()),
               "explained_fraction": float(explained.mean()), "inlier_fraction": float(inlier.mean()),
               "scan_to_fit_median_mm": float(np.median(d)) if d.size else float("nan"),
               "scan_to_fit_p95_mm": float(np.percentile(d, 95)) if d.size else float("nan"),
               "scan_to_fit_inlier_rms_mm": (float(np.sqrt(np.mean(dist[inlier] ** 2))) if inlier.any()
                                             else float("nan"))}
    if len(ref) >= 10 and len(samples) >= 10:
        sm = surface_metrics(samples, ref, sample_n, ref_n, threshold=1.0)
        figures.update({"chamfer_l1_mm": sm.chamfer_l1, "accuracy_mm": sm.accuracy,
                        "completeness_mm": sm.completeness, "normal_consistency": sm.normal_consistency,
                        "fscore_1mm": sm.fscore, "precision_1mm": sm.precision, "recall_1mm": sm.recall})
    return FitReport(figures, per_point, vertex_err)


def heat_colors(values_mm: np.ndarray, vmax: float = HEAT_MAX_MM) -> np.ndarray:
    """Per-vertex RGB in [0, 1] from a perceptual colormap; grey where there is no measurement."""
    from matplotlib import colormaps

    v = np.asarray(values_mm, float)
    out = np.tile(NO_DATA, (len(v), 1))
    ok = np.isfinite(v)
    out[ok] = colormaps["turbo"](np.clip(v[ok] / vmax, 0, 1))[:, :3]
    return out


def report_png(model: FaceModel, result: FitResult, rep: FitReport, size: int = 360) -> bytes:
    """Front and three-quarter views of the fit coloured by error, a histogram and the figures."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from studio.core.render import render

    prep = fitted_surface(model, result)
    v = result.vertices[prep.verts]
    colors = heat_colors(rep.vertex_error_mm[prep.verts])
    views = [render(v, prep.faces, colors, size, yaw=yaw, background=(1, 1, 1)) for yaw in (0.0, 35.0)]
    fig = Figure(figsize=(12, 4.4), dpi=100, layout="constrained")
    axes = fig.subplots(1, 4, gridspec_kw={"width_ratios": [1, 1, 0.05, 1.2]})
    for ax, img, title in zip(axes[:2], views, ("front", "three-quarter")):
        ax.imshow(img)
        ax.set_title(f"scan → fit distance, {title}", fontsize=9)
        ax.axis("off")
    from matplotlib import cm
    from matplotlib import colors as mcolors

    sm = cm.ScalarMappable(mcolors.Normalize(0, HEAT_MAX_MM), "turbo")
    fig.colorbar(sm, cax=axes[2], label="mm (grey: no scan data)")
    d = rep.scan_distance_mm[np.isfinite(rep.scan_distance_mm)]
    ax = axes[3]
    ax.hist(np.clip(d, 0, 5), bins=50, range=(0, 5), color="#3b75af")
    ax.set_xlabel("scan → fit distance (mm; last bin: ≥ 5)")
    ax.set_ylabel("scan points")
    m = rep.metrics
    lines = [f"{model.name}, region {result.region}, {result.seconds:.2f} s",
             f"median {m['scan_to_fit_median_mm']:.2f} mm, p95 {m['scan_to_fit_p95_mm']:.2f} mm",
             f"explained {100 * m['explained_fraction']:.0f}% of the scan points"]
    if "chamfer_l1_mm" in m:
        lines += [f"Chamfer-L1 {m['chamfer_l1_mm']:.2f} mm, F@1mm {m['fscore_1mm']:.2f}",
                  f"normal consistency {m['normal_consistency']:.3f}"]
    ax.text(0.97, 0.97, "\n".join(lines), transform=ax.transAxes, ha="right", va="top", fontsize=8,
            bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "#999"})
    verdict = getattr(result, "verdict", None)
    if verdict is not None:  # the fit's own judgement, across the top: red when it failed
        import textwrap

        fig.suptitle("\n".join(textwrap.wrap(verdict.summary(), 150)[:3]), fontsize=10,
                     color="#1a7f37" if verdict.ok else "#c62828", fontweight="bold")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
