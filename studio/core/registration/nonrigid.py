"""Non-rigid refinement beyond the model's span: optimal-step non-rigid ICP (Amberg, Romdhani &
Vetter 2007) on per-vertex displacements.

The scan fit leaves a face the model can make; a bump, a scar or an unusual nose is beyond its
components. Here every vertex of the fitted region gets a displacement d_i, found by alternating
closest points c_i on the scan with one sparse linear solve of

    min  Σ_i w_i ‖v_i + d_i − c_i‖²  +  α Σ_(i,j) ‖d_i − d_j‖²  +  ε Σ_i ‖d_i‖²

(the membrane energy of the displacement field, a Laplacian regulariser: neighbours move
alike, so vertices keep their place on the face and stay in correspondence). The stiffness α
is lowered step by step, Amberg's schedule: first the whole face shifts as one, at the end
local detail follows the scan. Edges to vertices outside the region pin the border (d = 0
there), so the registered mesh stays one piece with the rest of the model's head. A vertex whose
closest scan point lies on the scan's border (a hole, the edge of the view), too far away or
facing another way has w_i = 0: there the field is interpolated from its neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from studio.core.fitting.linear_scan import _compatible
from studio.core.geometry import vertex_normals
from studio.core.progress import report
from studio.core.registration.surface import ScanSurface


@dataclass
class RefineOptions:
    # Stiffness α per stage, relative to one matched vertex's data weight. The last value sets
    # how local the captured detail may be: ICT's cheek vertices are 4-5 mm apart, so a 3-mm bump
    # of 5 mm σ moves about a dozen vertices, and with 1 (or 0.1) at the end it came out 0.9 (0.5)
    # mm short; at 0.01 the 0.2-mm scan noise costs 0.05 mm of face RMS and the bump is 0.3-0.5 mm.
    stiffness: tuple[float, ...] = (10.0, 1.0, 0.1, 0.03, 0.01)
    iterations: int = 2  # closest-point updates per stiffness (a third changed nothing measurable)
    max_distance_mm: float = 5.0  # farther matches are not the same surface
    anchor: float = 1e-3  # ε: keeps a patch no scan point reaches from drifting


@dataclass
class Refinement:
    vertices: np.ndarray  # every model vertex, model frame: the fit's, plus the displacements
    region: np.ndarray  # the displaced vertex ids
    matched_fraction: float  # region vertices with a scan match in the last iteration
    residual_mm: list[float] = field(default_factory=list)  # RMS of the matches, per stage
    displacement_rms_mm: float = 0.0
    displacement_max_mm: float = 0.0


def unique_edges(faces: np.ndarray) -> np.ndarray:
    """Each undirected edge of the triangles once, as (E, 2) with i < j."""
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    return np.unique(e, axis=0)


def membrane(faces: np.ndarray, region: np.ndarray, n: int):
    """The region's graph Laplacian (r × r) plus, on its diagonal, the count of edges that
    leave the region (pinned neighbours)."""
    e = unique_edges(np.asarray(faces, np.int64))
    local = np.full(n, -1)
    local[region] = np.arange(len(region))
    a, b = local[e[:, 0]], local[e[:, 1]]
    inner = (a >= 0) & (b >= 0)
    crossing = (a >= 0) ^ (b >= 0)
    r = len(region)
    adj = sp.coo_matrix((np.ones(2 * inner.sum()), (np.r_[a[inner], b[inner]], np.r_[b[inner], a[inner]])),
                        shape=(r, r)).tocsr()
    pinned = np.bincount(np.maximum(a, b)[crossing], minlength=r)
    return sp.diags(np.asarray(adj.sum(axis=1)).ravel() + pinned) - adj


def refine(vertices: np.ndarray, faces: np.ndarray, region: np.ndarray, surface: ScanSurface, mm: float,
           options: RefineOptions | None = None, progress=None) -> Refinement:
    """Displace ``region`` of ``vertices`` (model frame, ``mm`` millimetres per model unit) onto
    ``surface``; see the module docstring."""
    opt = options or RefineOptions()
    v0 = np.asarray(vertices, np.float64)
    region = np.asarray(region, np.int64)
    lap = membrane(faces, region, len(v0)).tocsc()
    eye = sp.identity(len(region), format="csc")
    d = np.zeros((len(region), 3))
    residuals, w = [], np.zeros(len(region))
    steps = len(opt.stiffness) * opt.iterations
    for s, alpha in enumerate(opt.stiffness):
        for it in range(opt.iterations):
            report(progress, (s * opt.iterations + it) / steps, f"non-rigid: stiffness {alpha:g}")
            v = v0.copy()
            v[region] += d
            target, w = _matches(v, faces, region, surface, opt.max_distance_mm / mm)
            a = sp.diags(w) + alpha * lap + opt.anchor * eye
            rhs = w[:, None] * (target - v0[region])
            d = splu(a.tocsc()).solve(rhs)
        ok = w > 0
        moved = v0[region] + d
        residuals.append(float(np.sqrt(np.mean(np.sum((moved[ok] - target[ok]) ** 2, axis=1))) * mm) if ok.any()
                         else float("nan"))
    out = v0.copy()
    out[region] += d
    length = np.linalg.norm(d, axis=1) * mm
    report(progress, 1.0, "non-rigid: done")
    return Refinement(out, region, float(np.mean(w > 0)), residuals, float(np.sqrt(np.mean(length**2))),
                      float(length.max(initial=0.0)))


def _matches(v: np.ndarray, faces: np.ndarray, region: np.ndarray, surface: ScanSurface, max_dist: float):
    """Closest scan points of the region's vertices and their weights (0: no evidence)."""
    nrm = vertex_normals(v, faces)[region]
    c, cn, dist, on_border = surface.closest(v[region])
    w = (~on_border) & (dist <= max_dist) & _compatible(nrm, cn, surface.oriented)
    return c, w.astype(np.float64)
