"""The scan as a registration target: points (and triangles) in the model frame, with exact
closest points, normals and a flag for the scan's own border (holes, the edge of the view)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from studio.core.fitting.align import Similarity
from studio.core.fitting.scan_io import Scan, local_geometry, mesh_normals
from studio.core.geometry.surface import boundary_vertices, closest_points


@dataclass
class ScanSurface:
    points: np.ndarray  # (N, 3) model frame and unit
    normals: np.ndarray  # (N, 3) unit
    border: np.ndarray  # (N,) bool: on the scan's border (a match there is no evidence)
    faces: np.ndarray | None  # (M, 3) int64 for a mesh scan
    oriented: bool  # the normals point out of the surface
    tree: cKDTree

    @staticmethod
    def from_scan(scan: Scan, to_model: Similarity) -> "ScanSurface":
        """``to_model``: scan coordinates (scan unit) → model coordinates (a fit's ``to_model``)."""
        pts = np.ascontiguousarray(to_model.apply(np.asarray(scan.points, np.float64)))
        tree = cKDTree(pts)
        faces = None
        if scan.faces is not None and len(scan.faces):
            faces = np.ascontiguousarray(scan.faces, np.int64)
            normals, border, oriented = mesh_normals(pts, faces), boundary_vertices(faces, len(pts)), True
        else:
            normals, border, isolated = local_geometry(pts, tree, pts, sensor=None)
            border |= isolated  # a stray point is no surface to land on
            oriented = False
            if scan.normals is not None:
                normals, oriented = to_model.rotate(np.asarray(scan.normals, float)), scan.oriented
        if scan.boundary is not None:
            border = np.asarray(scan.boundary, bool)
        return ScanSurface(pts, normals, border, faces, oriented, tree)

    def closest(self, q: np.ndarray):
        """For each query: (closest point on the scan, its normal, distance, on the scan's border).

        A mesh: the exact closest point on its triangles (libigl), the normal and border of the
        triangle's nearest corner. A cloud: the nearest point's tangent plane (the nearest point
        itself would pin the vertex to the sampling grid)."""
        if self.faces is not None:
            d, fi, c = closest_points(q, self.points, self.faces)
            tri = self.faces[fi]
            corner = tri[np.arange(len(q)), np.argmin(np.linalg.norm(self.points[tri] - c[:, None], axis=2), axis=1)]
            nrm = self.normals[tri].sum(axis=1)
            nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
            return c, nrm, d, self.border[tri].any(axis=1) | self.border[corner]
        d, j = self.tree.query(q)
        n = self.normals[j]
        c = q - np.einsum("ij,ij->i", q - self.points[j], n)[:, None] * n
        return c, n, np.linalg.norm(q - c, axis=1), self.border[j]
