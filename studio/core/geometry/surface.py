"""Surface queries on triangle meshes: the one copy of each.

* ``boundary_edges`` / ``boundary_vertices`` — edges that only one triangle uses, and their
  vertices (an open surface's rims);
* ``incident_triangles`` — each vertex's triangles as a padded table;
* ``closest_points`` — the exact closest point on a mesh (libigl's AABB tree): what published
  errors are measured with;
* ``project_to_surface`` — the closest point among the triangles around each point's nearest
  vertex: the scan fitter's inner loop, where an AABB query per iteration would cost more than
  the whole step, and the nearest vertex is already known. It agrees with the exact one wherever
  the nearest vertex's triangles hold the closest point (all but a few points on a fine mesh).
"""

from __future__ import annotations

import numpy as np


def boundary_edges(faces: np.ndarray) -> np.ndarray:
    """(k, 2) vertex pairs of the edges that only one triangle uses (an open surface's rims)."""
    faces = np.asarray(faces, np.int64)
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    uniq, counts = np.unique(e, axis=0, return_counts=True)
    return uniq[counts == 1]


def boundary_vertices(faces: np.ndarray, n: int) -> np.ndarray:
    """(n,) bool: vertices on an edge that only one triangle uses."""
    out = np.zeros(n, bool)
    out[boundary_edges(faces).ravel()] = True
    return out


def closest_points(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray):
    """Exact closest points on the mesh: (distances (m,), triangle index (m,), points (m, 3))."""
    import igl

    p = np.ascontiguousarray(points, np.float64)
    v = np.ascontiguousarray(vertices, np.float64)
    f = np.ascontiguousarray(faces, np.int64)
    if p.ndim != 2 or p.shape[1] != 3 or v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"closest_points: points {p.shape}, vertices {v.shape}, faces {f.shape} must be (·, 3)")
    if len(f) == 0:
        raise ValueError("closest_points: the mesh has no triangles")
    sq, tri, q = igl.point_mesh_squared_distance(p, v, f)
    return np.sqrt(np.maximum(sq, 0.0)), np.asarray(tri, np.int64), np.asarray(q)


def incident_triangles(faces: np.ndarray, n: int) -> np.ndarray:
    """Each vertex's triangles as a padded (n, K) table (padding repeats the first triangle)."""
    corner_v = faces.ravel()
    order = np.argsort(corner_v, kind="stable")
    tri = (np.arange(faces.size) // 3)[order]
    counts = np.bincount(corner_v, minlength=n)
    # Up to 8 triangles per vertex (the 99th percentile of valence on ICT); padded columns cost
    # as much as real ones, and a closest point is still found among the vertex's first eight.
    k = max(min(int(counts.max()), 8), 1)
    starts = np.cumsum(counts) - counts
    col = np.arange(len(order)) - np.repeat(starts, counts)
    out = np.zeros((n, k), np.int64)
    first = np.zeros(n, np.int64)
    first[counts > 0] = tri[starts[counts > 0]]
    out[:] = first[:, None]
    ok = col < k
    out[np.repeat(np.arange(n), counts)[ok], col[ok]] = tri[ok]
    return out


def closest_on_triangles(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Barycentric coordinates (…, 3) of the point of triangle abc closest to p (Ericson,
    Real-Time Collision Detection §5.1.5), vectorised over any leading shape."""
    dot = lambda x, y: np.einsum("...i,...i->...", x, y)  # noqa: E731
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = dot(ab, ap), dot(ac, ap)
    bp = p - b
    d3, d4 = dot(ab, bp), dot(ac, bp)
    cp = p - c
    d5, d6 = dot(ab, cp), dot(ac, cp)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    with np.errstate(divide="ignore", invalid="ignore"):
        den = va + vb + vc
        v, w = vb / den, vc / den
        out = np.stack([1 - v - w, v, w], axis=-1)
        t = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        out = np.where(((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0))[..., None], np.stack([0 * t, 1 - t, t], -1), out)
        t = d2 / (d2 - d6)
        out = np.where(((vb <= 0) & (d2 >= 0) & (d6 <= 0))[..., None], np.stack([1 - t, 0 * t, t], -1), out)
        out = np.where(((d6 >= 0) & (d5 <= d6))[..., None], np.array([0.0, 0.0, 1.0]), out)
        t = d1 / (d1 - d3)
        out = np.where(((vc <= 0) & (d1 >= 0) & (d3 <= 0))[..., None], np.stack([1 - t, t, 0 * t], -1), out)
        out = np.where(((d3 >= 0) & (d4 <= d3))[..., None], np.array([0.0, 1.0, 0.0]), out)
        out = np.where(((d1 <= 0) & (d2 <= 0))[..., None], np.array([1.0, 0.0, 0.0]), out)
    return np.nan_to_num(out, nan=1.0 / 3)


def project_to_surface(p: np.ndarray, verts: np.ndarray, faces: np.ndarray, incident: np.ndarray,
                       nearest: np.ndarray):
    """The closest surface point among the triangles around each point's nearest vertex:
    (triangle vertex ids (n, 3), barycentric weights (n, 3), closest points (n, 3))."""
    tri = faces[incident[nearest]]  # (n, K, 3)
    a, b, c = verts[tri[..., 0]], verts[tri[..., 1]], verts[tri[..., 2]]
    bary = closest_on_triangles(p[:, None, :], a, b, c)
    q = bary[..., 0, None] * a + bary[..., 1, None] * b + bary[..., 2, None] * c
    best = np.argmin(np.einsum("nki,nki->nk", q - p[:, None], q - p[:, None]), axis=1)
    rows = np.arange(len(p))
    return tri[rows, best], bary[rows, best], q[rows, best]


