"""Surface compression under an expression: where wrinkles form and how deep.

Skin wrinkles when it is compressed along the surface (forehead lines when the brows rise, crow's
feet when the eyes squint, the nasolabial fold when the cheek rises in a smile). Per triangle the
deformation from the neutral face to the expressed one is a 2×2 map of the tangent plane; its
principal stretches are √eig(G₀⁻¹ G), G = JᵀJ the metric of the triangle in its UV chart (J = ∂P/∂(u, v),
so the UV parametrisation cancels out and only the surface's own change counts). Compression is
1 − the smaller principal stretch, clipped at 0 (stretched skin does not wrinkle): 0.2 means the
skin got 20 % shorter in its most compressed direction. Unlike area strain this sees a triangle
squashed one way and stretched the other (the usual case for skin).
"""

from __future__ import annotations

import numpy as np

from studio.core.detail.displacement import triangle_uv_jacobians
from studio.core.detail.uv_raster import UVRaster
from studio.core.pca import PCAModel


def principal_stretches(neutral, expressed, faces, uv, face_uv) -> tuple[np.ndarray, np.ndarray]:
    """Per triangle (smaller, larger) principal stretch of ``expressed`` relative to ``neutral``."""
    metrics = []
    for v in (neutral, expressed):
        pu, pv = triangle_uv_jacobians(v, faces, uv, face_uv)
        metrics.append(np.stack([np.stack([(pu * pu).sum(1), (pu * pv).sum(1)], 1),
                                 np.stack([(pu * pv).sum(1), (pv * pv).sum(1)], 1)], 1))
    g0, g = metrics
    # eigenvalues of G₀⁻¹G (a 2×2 generalised problem): from the trace and the determinant
    det0 = np.linalg.det(g0)
    ok = det0 > 1e-30
    inv = np.zeros_like(g0)
    inv[ok] = np.linalg.inv(g0[ok])
    m = inv @ g
    tr, det = m[:, 0, 0] + m[:, 1, 1], np.linalg.det(m)
    disc = np.sqrt(np.maximum(tr * tr / 4 - det, 0))
    lo, hi = np.maximum(tr / 2 - disc, 0), np.maximum(tr / 2 + disc, 0)
    lo[~ok], hi[~ok] = 1.0, 1.0  # degenerate neutral triangles: no strain to speak of
    return np.sqrt(lo), np.sqrt(hi)


def triangle_compression(neutral, expressed, faces, uv, face_uv) -> np.ndarray:
    """(m,) 1 − the smaller principal stretch, clipped at 0."""
    lo, _ = principal_stretches(neutral, expressed, faces, uv, face_uv)
    return np.clip(1.0 - lo, 0.0, 1.0)


def texel_compression(raster: UVRaster, per_triangle: np.ndarray, smooth_texels: float = 1.5) -> np.ndarray:
    """(S, S) map of per-triangle compression, lightly blurred over the region so the strain of
    neighbouring triangles blends (a triangle is ~3 mm on ICT; wrinkle fields are smooth)."""
    from studio.core.detail.blur import masked_blur_grid

    m = raster.mask
    out = np.zeros(m.shape)
    out[m] = per_triangle[raster.tri[m]]
    return np.where(m, masked_blur_grid(out, m.astype(float), smooth_texels), 0.0)


def compression_map(model: PCAModel, raster: UVRaster, params: dict) -> np.ndarray:
    """(S, S) compression of the face ``params`` against the same identity with every blendshape off."""
    neutral_params = {g.name: np.zeros(g.size) if g.prior == "box" else np.asarray(params.get(g.name, np.zeros(g.size)))
                      for g in model.groups}
    neutral = model.vertices(neutral_params)
    expressed = model.vertices(params)
    c = triangle_compression(neutral, expressed, model.faces, model.uv, model.face_uv)
    return texel_compression(raster, c)


def blendshape_compression(model: PCAModel, raster: UVRaster, group: str = "expression") -> dict[str, np.ndarray]:
    """Each blendshape at full weight on the mean face: name → (S, S) compression map."""
    g = next(x for x in model.groups if x.name == group)
    basis = model.basis(group)
    mean = np.asarray(model.mean, float)
    out = {}
    for i, name in enumerate(g.names):
        c = triangle_compression(mean, mean + basis[i], model.faces, model.uv, model.face_uv)
        out[name] = texel_compression(raster, c)
    return out
