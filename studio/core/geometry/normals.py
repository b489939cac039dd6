"""Vertex normals: the one kernel, for numpy arrays and (differentiably) for torch tensors."""

from __future__ import annotations

import numpy as np


def vertex_normals(vertices, faces):
    """Smooth unit normals: the area-weighted sum of adjacent face normals.

    The un-normalised cross product is twice the triangle area times its normal, so summing it
    weights large triangles more. Vertices that touch no (non-degenerate) triangle get +Z, since
    glTF requires unit-length normals and NaN would break viewers. A torch tensor in gives a
    torch tensor out, differentiable with respect to the positions (the photo fitter's shading).
    """
    if type(vertices).__module__.startswith("torch"):
        return _torch_normals(vertices, faces)
    vertices = np.asarray(vertices)
    faces = np.asarray(faces, np.int64)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"vertex_normals: vertices {vertices.shape} and faces {faces.shape} must be (n, 3)")
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


def _torch_normals(v, faces):
    import torch

    faces = torch.as_tensor(faces)
    a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
    fn = torch.cross(b - a, c - a, dim=1)
    n = torch.zeros_like(v)
    n = n.index_add(0, faces[:, 0], fn).index_add(0, faces[:, 1], fn).index_add(0, faces[:, 2], fn)
    return n / n.norm(dim=1, keepdim=True).clamp_min(1e-12)
