"""Tangent frames and tangent-space normal maps in glTF's convention (the one Blender uses).

glTF 2.0 §3.9.3: a normal texture's texel (r, g, b) decodes to n_t = 2·rgb − 1 in the frame
(T, B, N), with T the vertex TANGENT, B = (N × T)·w, and +Y "up" in the image (OpenGL style).
Up the image is OBJ's +v, so B must point along ∂P/∂v(OBJ): the tangents here are built from the
UV derivatives like MikkTSpace (per-triangle ∂P/∂u, ∂P/∂v accumulated at each UV corner,
Gram-Schmidt against the normal, w the handedness), and a map encoded in that frame decodes to the
same normal in a viewer. ``decode`` is the viewer's side, for tests.
"""

from __future__ import annotations

import numpy as np

from studio.core.detail.displacement import TexelFrames, triangle_uv_jacobians
from studio.core.detail.uv_raster import UVRaster
from studio.core.photo.texture import dilate

FLAT = np.array([128, 128, 255], np.uint8)  # (0, 0, 1): no detail


def uv_tangents(vertices, faces, uv, face_uv) -> tuple[np.ndarray, np.ndarray]:
    """Per UV index (t, 3) sums of the adjacent triangles' ∂P/∂u and ∂P/∂v (area-weighted by the
    UV-space area, as MikkTSpace weights by angle; on a smooth mesh the difference is slight)."""
    dpdu, dpdv = triangle_uv_jacobians(vertices, faces, uv, face_uv)
    t = np.asarray(uv, float)[np.asarray(face_uv, np.int64)]
    area = 0.5 * np.abs((t[:, 1, 0] - t[:, 0, 0]) * (t[:, 2, 1] - t[:, 0, 1])
                        - (t[:, 2, 0] - t[:, 0, 0]) * (t[:, 1, 1] - t[:, 0, 1]))
    T, B = np.zeros((len(uv), 3)), np.zeros((len(uv), 3))
    for k in range(3):
        np.add.at(T, np.asarray(face_uv)[:, k], dpdu * area[:, None])
        np.add.at(B, np.asarray(face_uv)[:, k], dpdv * area[:, None])
    return T, B


def orthonormal_tangents(T: np.ndarray, B: np.ndarray, N: np.ndarray) -> np.ndarray:
    """(n, 4) glTF TANGENT: T made unit and orthogonal to the unit normal N, w = handedness of B."""
    t = T - N * (T * N).sum(1, keepdims=True)
    norm = np.linalg.norm(t, axis=1, keepdims=True)
    bad = norm[:, 0] < 1e-12
    if bad.any():  # no UV gradient here: any unit vector orthogonal to N
        alt = np.where(np.abs(N[bad, :1]) < 0.9, [[1.0, 0, 0]], [[0, 1.0, 0]])
        t[bad] = alt - N[bad] * (alt * N[bad]).sum(1, keepdims=True)
        norm[bad] = np.linalg.norm(t[bad], axis=1, keepdims=True)
    t = t / norm
    w = np.where((np.cross(N, t) * B).sum(1) < 0, -1.0, 1.0)
    return np.c_[t, w]


def texel_tangent_frames(raster: UVRaster, frames: TexelFrames, tangents_uv: np.ndarray, face_uv) -> tuple:
    """(T, B, N) per covered texel as a glTF viewer forms them: T and N interpolated, B = (N × T)·w."""
    m = raster.mask
    corners = np.asarray(face_uv, np.int64)[raster.tri[m]]
    tan = (tangents_uv[corners] * raster.bary[m][..., None]).sum(1)
    N = frames.normal
    T = tan[:, :3] - N * (tan[:, :3] * N).sum(1, keepdims=True)
    T /= np.maximum(np.linalg.norm(T, axis=1, keepdims=True), 1e-12)
    w = np.where(tan[:, 3] < 0, -1.0, 1.0)[:, None]
    return T, np.cross(N, T) * w, N


def encode(normals: np.ndarray, frame: tuple, raster: UVRaster) -> np.ndarray:
    """(S, S, 3) uint8 tangent-space normal map of object-space ``normals`` at the covered texels;
    texels outside the region are flat."""
    T, B, N = frame
    nt = np.stack([(normals * T).sum(1), (normals * B).sum(1), (normals * N).sum(1)], 1)
    nt /= np.maximum(np.linalg.norm(nt, axis=1, keepdims=True), 1e-12)
    out = np.tile(FLAT, (raster.size, raster.size, 1))
    out[raster.mask] = np.clip(np.round((nt * 0.5 + 0.5) * 255), 0, 255).astype(np.uint8)
    # flat texels next to the region take their neighbour's value, so bilinear filtering at the
    # region's border does not blend in a tilt of zero detail (a visible seam line)
    return dilate(out, raster.mask, steps=3)


def decode(rgb: np.ndarray, T: np.ndarray, B: np.ndarray, N: np.ndarray) -> np.ndarray:
    """What a glTF viewer does with a texel: n = normalize(T·x + B·y + N·z), (x, y, z) = 2·rgb/255 − 1."""
    n_t = np.asarray(rgb, float) / 255.0 * 2 - 1
    n = T * n_t[:, :1] + B * n_t[:, 1:2] + N * n_t[:, 2:3]
    return n / np.linalg.norm(n, axis=1, keepdims=True)


def normal_map_image(raster: UVRaster, vertices, faces, uv, face_uv, d: np.ndarray) -> np.ndarray:
    """(S, S, 3) uint8: the tangent-space normal map of the surface ``vertices`` displaced by ``d``,
    in the frame a glTF viewer builds from ``gltf.gltf_tangents`` of the same mesh."""
    import torch

    from studio.core.detail.displacement import detailed_normals, texel_frames
    from studio.core.geometry import vertex_normals

    faces = np.asarray(faces, np.int64)
    normals = vertex_normals(np.asarray(vertices, float), faces)
    frames = texel_frames(raster, vertices, faces, uv, face_uv, normals)
    with torch.no_grad():
        n = detailed_normals(torch.as_tensor(np.asarray(d, float)), frames).numpy()
    T, B = uv_tangents(vertices, faces, uv, face_uv)
    uv2v = np.zeros(len(uv), np.int64)
    uv2v[np.asarray(face_uv, np.int64).ravel()] = faces.ravel()
    tangents = orthonormal_tangents(T, B, normals[uv2v])
    return encode(n, texel_tangent_frames(raster, frames, tangents, face_uv), raster)
