"""The model's UV layout rasterised once: for every texel of the detail map, which triangle covers
it and where (barycentrics). Everything per texel (positions, normals, albedo, strain) is then a
barycentric blend of per-vertex values, the same split as the image rasteriser (raster.py).

Texel rows grow downwards as in images: row 0 is v = 1 (OBJ's v points up, an image's rows down).
Only the detail region's triangles are drawn: the face skin inside the first UV tile [0, 1]²
(ICT's other materials sit in further tiles, u > 1, and its eyes share tile 0 with other texels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from studio.core.errors import StudioError
from studio.core.geometry.raster import rasterize
from studio.core.pca import PCAModel


@dataclass
class UVRaster:
    size: int
    tri: np.ndarray  # (S, S) int64 model triangle index, -1 outside the detail region
    bary: np.ndarray  # (S, S, 3) barycentric weights of the triangle's corners

    @property
    def mask(self) -> np.ndarray:
        return self.tri >= 0

    def blend(self, values: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """(P, C): per-vertex ``values`` blended at the covered texels (row-major order of ``mask``)."""
        m = self.mask
        corners = np.asarray(faces, np.int64)[self.tri[m]]
        return (np.asarray(values, float)[corners] * self.bary[m][..., None]).sum(1)


def detail_triangles(model: PCAModel) -> np.ndarray:
    """(m,) bool: the triangles that carry detail — the face skin (landmark region) in UV tile 0."""
    from studio.core.photo.embedding import landmark_mask

    if model.uv is None or model.face_uv is None:
        raise StudioError(f"model '{model.name}' has no UV layout; fine detail needs one")
    faces = np.asarray(model.faces, np.int64)
    region = landmark_mask(model)
    uvc = np.asarray(model.uv, float)[np.asarray(model.face_uv, np.int64)]  # (m, 3, 2)
    in_tile = ((uvc >= 0) & (uvc <= 1)).all((1, 2))
    keep = region[faces].all(1) & in_tile
    if not keep.any():
        raise StudioError(f"model '{model.name}' has no face triangles in UV tile [0, 1]; fine detail needs them")
    return np.asarray(keep, bool)


def rasterize_uv(uv: np.ndarray, face_uv: np.ndarray, keep: np.ndarray, size: int) -> UVRaster:
    """Texel coverage of the triangles ``keep`` (bool (m,)) of the layout (``uv``, ``face_uv``)."""
    uv = np.asarray(uv, float)
    px = np.c_[uv[:, 0] * size, (1.0 - uv[:, 1]) * size]
    idx = np.flatnonzero(keep)
    frags = rasterize(px, np.ones(len(uv)), np.asarray(face_uv, np.int64)[idx], size, size)
    tri = np.where(frags.tri >= 0, idx[np.clip(frags.tri, 0, None)], -1)
    return UVRaster(int(size), tri, frags.bary)


def model_raster(model: PCAModel, size: int) -> UVRaster:
    keep = detail_triangles(model)  # refuses a model without a UV layout
    assert model.uv is not None and model.face_uv is not None
    return rasterize_uv(model.uv, model.face_uv, keep, size)
