"""Small geometry helpers shared by export, rendering and fitting."""

from __future__ import annotations

import numpy as np


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Smooth unit normals: the area-weighted sum of adjacent face normals.

    The un-normalised cross product is twice the triangle area times its normal, so summing it
    weights large triangles more. Vertices that touch no (non-degenerate) triangle get +Z, since
    glTF requires unit-length normals and NaN would break viewers.
    """
    v0, v1, v2 = (vertices[faces[:, i]] for i in range(3))
    face_n = np.cross(v1 - v0, v2 - v0)
    idx = faces.ravel()  # corner order: f0c0, f0c1, f0c2, f1c0, …
    normals = np.column_stack([np.bincount(idx, weights=np.repeat(face_n[:, c], 3), minlength=len(vertices))
                               for c in range(3)])
    length = np.linalg.norm(normals, axis=1)
    ok = np.isfinite(length) & (length > 1e-30)
    normals[ok] /= length[ok, None]
    normals[~ok] = (0.0, 0.0, 1.0)
    return normals
