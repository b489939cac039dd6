"""A displacement map on a mesh: texel frames, the detailed surface's normals, densified geometry.

The detailed surface is P'(u, v) = P(u, v) + d(u, v)·N(u, v), d in model units along the coarse
surface's normal. Its tangents are P'_u = P_u + d_u·N and P'_v = P_v + d_v·N (the d·N_u term is
dropped: d is under a millimetre where the surface bends over centimetres), so the detailed normal
needs only the coarse frame per texel and finite differences of the map — cheap enough for torch
to differentiate every optimiser step over a 256² or 512² map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from studio.core.detail.uv_raster import UVRaster
from studio.core.geometry import vertex_normals


@dataclass
class TexelFrames:
    """The coarse surface at each covered texel (in the order of ``raster.mask``)."""

    rows: np.ndarray  # (P,) texel row
    cols: np.ndarray  # (P,) texel column
    position: np.ndarray  # (P, 3)
    normal: np.ndarray  # (P, 3) unit, interpolated vertex normals (what a renderer interpolates)
    # ∂P/∂u and ∂P/∂v (OBJ's v, up the image) of the covering triangle, per unit of u and v, projected
    # onto the plane normal to ``normal``: with the triangle's own, a zero map would shade as the
    # flat facets (2.5° off on ICT's face) instead of the smooth surface a renderer draws
    dpdu: np.ndarray  # (P, 3)
    dpdv: np.ndarray  # (P, 3)


def triangle_uv_jacobians(vertices, faces, uv, face_uv) -> tuple[np.ndarray, np.ndarray]:
    """Per triangle (∂P/∂u, ∂P/∂v), each (m, 3): [Δp1 Δp2] · [Δuv1 Δuv2]⁻¹."""
    p = np.asarray(vertices, float)[np.asarray(faces, np.int64)]
    t = np.asarray(uv, float)[np.asarray(face_uv, np.int64)]
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    (u1, v1), (u2, v2) = (t[:, 1] - t[:, 0]).T, (t[:, 2] - t[:, 0]).T
    det = u1 * v2 - u2 * v1
    det = np.where(np.abs(det) > 1e-20, det, 1e-20)  # degenerate UV triangles: huge but finite
    dpdu = (e1 * v2[:, None] - e2 * v1[:, None]) / det[:, None]
    dpdv = (e2 * u1[:, None] - e1 * u2[:, None]) / det[:, None]
    return dpdu, dpdv


def texel_frames(raster: UVRaster, vertices, faces, uv, face_uv, normals=None) -> TexelFrames:
    faces = np.asarray(faces, np.int64)
    if normals is None:
        normals = vertex_normals(np.asarray(vertices, float), faces)
    rows, cols = np.nonzero(raster.mask)
    n = raster.blend(normals, faces)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    dpdu, dpdv = triangle_uv_jacobians(vertices, faces, uv, face_uv)
    tri = raster.tri[rows, cols]
    tangential = lambda t: t - n * (t * n).sum(1, keepdims=True)  # noqa: E731
    return TexelFrames(rows, cols, raster.blend(vertices, faces), n, tangential(dpdu[tri]), tangential(dpdv[tri]))


def map_gradients(d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(∂d/∂u, ∂d/∂v) of an (S, S) map per unit of u and v (central differences, edges replicated).
    Rows grow downwards, so +v is one row up."""
    S = d.shape[0]
    p = torch.nn.functional.pad(d[None, None], (1, 1, 1, 1), mode="replicate")[0, 0]
    du = (p[1:-1, 2:] - p[1:-1, :-2]) * (S / 2.0)
    dv = (p[:-2, 1:-1] - p[2:, 1:-1]) * (S / 2.0)
    return du, dv


def detailed_normals(d: torch.Tensor, frames: TexelFrames, tensors: dict | None = None) -> torch.Tensor:
    """(P, 3) unit normals of the displaced surface at the covered texels; differentiable in ``d``.
    ``tensors``: a cache of the frames as torch tensors (the optimiser calls this every step)."""
    t = tensors if tensors is not None else frame_tensors(frames, d.dtype)
    du, dv = map_gradients(d)
    du, dv = du[t["rows"], t["cols"]][:, None], dv[t["rows"], t["cols"]][:, None]
    n = torch.cross(t["pu"] + du * t["n"], t["pv"] + dv * t["n"], dim=1) * t["sign"]
    return n / n.norm(dim=1, keepdim=True).clamp_min(1e-12)


def frame_tensors(frames: TexelFrames, dtype=torch.float32) -> dict:
    # a mirrored UV island has P_u × P_v against the normal: the sign keeps normals outward
    sign = np.sign((np.cross(frames.dpdu, frames.dpdv) * frames.normal).sum(1))
    sign[sign == 0] = 1
    as_t = lambda x: torch.as_tensor(np.asarray(x), dtype=dtype)  # noqa: E731
    return {"rows": torch.as_tensor(frames.rows), "cols": torch.as_tensor(frames.cols), "n": as_t(frames.normal),
            "pu": as_t(frames.dpdu), "pv": as_t(frames.dpdv), "sign": as_t(sign)[:, None]}


def sample_map(d: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear values of an (S, S) map at UV points (n, 2); 0 outside the tile."""
    from scipy.ndimage import map_coordinates

    S = d.shape[0]
    uv = np.asarray(uv, float)
    coords = [(1.0 - uv[:, 1]) * S - 0.5, uv[:, 0] * S - 0.5]
    return map_coordinates(np.asarray(d, float), coords, order=1, mode="constant", cval=0.0)


def densify(vertices, faces, uv, face_uv, keep, d: np.ndarray, levels: int = 2, extra: dict | None = None):
    """The mesh with its detail triangles ``keep`` subdivided ``levels`` times (each 1 → 4) and moved
    along the coarse normals by the map ``d``: real geometry for formats without textures (PLY,
    STL) and for renders. Returns (vertices, faces, detail_face_mask, extra): the other triangles keep
    the original vertices, which come first; ``extra`` per-vertex arrays (colours) come back
    interpolated onto the new vertices."""
    vertices = np.asarray(vertices, float)
    faces = np.asarray(faces, np.int64)
    normals = vertex_normals(vertices, faces)
    fd, fuv = faces[keep], np.asarray(face_uv, np.int64)[keep]
    # one vertex per (vertex, uv) corner pair, so each dense vertex has one texture coordinate
    pairs, inverse = np.unique(np.stack([fd.ravel(), fuv.ravel()], 1), axis=0, return_inverse=True)
    f = inverse.reshape(-1, 3)
    p, attrs = vertices[pairs[:, 0]], {"uv": np.asarray(uv, float)[pairs[:, 1]], "n": normals[pairs[:, 0]]}
    extra = extra or {}
    attrs.update({f"x.{k}": np.asarray(a, float)[pairs[:, 0]] for k, a in extra.items()})
    for _ in range(int(levels)):
        p, f = _subdivide_with(p, f, attrs)
    n = attrs["n"] / np.maximum(np.linalg.norm(attrs["n"], axis=1, keepdims=True), 1e-12)
    p = p + sample_map(d, attrs["uv"])[:, None] * n
    others = faces[~keep]
    out_f = np.concatenate([others, f + len(vertices)])
    mask = np.r_[np.zeros(len(others), bool), np.ones(len(f), bool)]
    more = {k: np.concatenate([np.asarray(a, float), attrs[f"x.{k}"]]) for k, a in extra.items()}
    return np.concatenate([vertices, p]), out_f, mask, more


def _subdivide_with(p, f, attrs, alpha: float = 0.75):
    """One 1 → 4 split. New vertices sit on the Phong-tessellated surface (Boubekeur & Alexa 2008:
    the edge midpoint averaged with its projections onto both ends' tangent planes), not on the flat
    triangle: flat midpoints would show every coarse triangle as a facet in the shading, a pattern
    of detail the coarse face does not have. Per-vertex ``attrs`` are averaged (in place)."""
    e = np.sort(np.stack([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]], 1).reshape(-1, 2), 1)
    edges, inv = np.unique(e, axis=0, return_inverse=True)
    mid = len(p) + inv.reshape(-1, 3)  # midpoints of edges (0 1), (1 2), (2 0)
    a, b = edges[:, 0], edges[:, 1]
    n = attrs["n"] / np.maximum(np.linalg.norm(attrs["n"], axis=1, keepdims=True), 1e-12)
    q = 0.5 * (p[a] + p[b])
    proj = [q - ((q - p[k]) * n[k]).sum(1, keepdims=True) * n[k] for k in (a, b)]
    new = (1 - alpha) * q + alpha * 0.5 * (proj[0] + proj[1])
    for k, v in attrs.items():
        attrs[k] = np.concatenate([v, 0.5 * (v[a] + v[b])])
    f0, f1, f2 = f.T
    m01, m12, m20 = mid.T
    faces = np.concatenate([np.stack(x, 1) for x in ((f0, m01, m20), (m01, f1, m12), (m20, m12, f2), (m01, m12, m20))])
    return np.concatenate([p, new]), faces
