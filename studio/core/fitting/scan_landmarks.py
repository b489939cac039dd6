"""Face landmarks found on a 3-D surface: render it, detect in the image, lift back to 3-D.

A scan arrives in any pose and may carry hair, shoulders, holes or an expression; a shape-only
alignment (principal axes + ICP) can settle in a wrong basin on such input and nothing in its
residual says so. A face detector knows what a face looks like. So the surface (a scan, or a
model's mean head) is rendered as a plain shaded grey relief from a viewing rotation, MediaPipe
Face Mesh runs on the image (the photo fitter's detector), and each detected point is lifted back
onto the surface through the rasteriser's triangle and barycentric buffers.

The same render style on both sides: the model's landmarks come from a render of its own mean
surface made the same way, so the detector's systematic offsets on grey relief (where an
eyebrow or a lip line "is" without colour) cancel between scan and model.

Only the stable points are used for alignment: the 468 face-mesh points minus the face oval,
whose position depends on the silhouette and so on the view; the irises sit on the eyeballs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from studio.core.errors import StudioError
from studio.core.photo.landmarks import FACE_OVAL

RENDER_SIZE = 448  # a full head with shoulders leaves the face a third of the frame: 320 px lost it
N_MESH = 468
# Outer eye corners (MediaPipe ids 33 and 263): the inter-ocular distance that scales residuals.
EYE_CORNERS = (33, 263)


def stable_mask() -> np.ndarray:
    m = np.ones(N_MESH, bool)
    m[list(FACE_OVAL)] = False
    return m


@dataclass
class SurfaceLandmarks:
    """468 face-mesh landmarks on a surface, in the surface's own coordinates."""

    points: np.ndarray  # (468, 3); NaN where the point did not land on the surface
    valid: np.ndarray  # (468,) bool
    tri: np.ndarray  # (468,) triangle index under each landmark (−1 invalid)
    bary: np.ndarray  # (468, 3) barycentric weights in that triangle

    def on(self, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """The same landmarks on another face of the same mesh (``faces`` as when they were found),
        e.g. the mean's landmarks carried to a fitted face; NaN where there were none."""
        t = np.maximum(self.tri, 0)
        out = np.einsum("lk,lkd->ld", self.bary, np.asarray(vertices, float)[np.asarray(faces)[t]])
        out[~self.valid] = np.nan
        return out

    def interocular(self) -> float:
        a, b = self.points[list(EYE_CORNERS)]
        return float(np.linalg.norm(a - b)) if np.isfinite(a).all() and np.isfinite(b).all() else float("nan")


def _splats(points: np.ndarray, radius: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Screen-space squares (two triangles each) around projected points: a point cloud drawn as a
    surface by the one triangle rasteriser."""
    n = len(points)
    offs = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float)
    xy = (points[:, None, :2] + offs[None] * radius[:, None, None]).reshape(-1, 2)
    base = 4 * np.arange(n)[:, None]
    faces = np.concatenate([base + [0, 1, 2], base + [0, 2, 3]]).astype(np.int64)
    return xy, faces


def render_relief(points: np.ndarray, faces: np.ndarray | None, normals: np.ndarray, view: np.ndarray,
                  size: int = RENDER_SIZE):
    """A grey, two-sided Lambert image of the surface seen along −z of ``view`` (orthographic, y up,
    framed on the surface's robust extent). Returns (uint8 image, Fragments, pixel → view map, the
    triangles rasterised)."""
    from studio.core.geometry.raster import interpolate, rasterize

    p = np.asarray(points, float) @ view.T
    n = np.asarray(normals, float) @ view.T
    lo, hi = np.percentile(p[:, :2], [1, 99], axis=0)
    centre = (lo + hi) / 2
    half = 0.55 * float(np.max(hi - lo)) or 1.0
    scale = (size / 2) / half
    xy = np.c_[(p[:, 0] - centre[0]) * scale + size / 2, size / 2 - (p[:, 1] - centre[1]) * scale]
    depth = (p[:, 2].max() - p[:, 2]) * scale + 1.0
    if faces is None:  # a point cloud: splats the size of the local spacing
        from scipy.spatial import cKDTree

        d, _ = cKDTree(xy).query(xy, k=min(4, len(xy)))
        r = np.clip(1.1 * np.median(d[:, -1]), 0.7, 6.0) * np.ones(len(xy))  # overlapping: no holes
        sxy, tris = _splats(xy, r)
        sdepth = np.repeat(depth, 4)
        frags = rasterize(sxy, sdepth, tris, size, size)
        shade_v = np.repeat(np.abs(n[:, 2]), 4)
        vertex_of_tri = np.tile(np.arange(len(xy)), 2)  # _splats: all first triangles, then all second
        tris_used = tris
    else:
        faces = np.asarray(faces, np.int64)
        frags = rasterize(xy, depth, faces, size, size)
        shade_v = np.abs(n[:, 2])
        vertex_of_tri = None
        tris_used = faces
    # Two-sided Lambert, light from the viewer and a little above: relief reads as a face.
    lam = np.clip(0.2 + 0.8 * interpolate(shade_v[:, None], tris_used, frags)[..., 0], 0, 1)
    img = np.where(frags.mask, lam * 0.82 + 0.1, 0.25)
    rgb = (np.repeat(img[..., None], 3, axis=2) * np.array([1.0, 0.88, 0.8]) * 255 + 0.5).astype(np.uint8)
    return rgb, frags, vertex_of_tri


def find(points: np.ndarray, faces: np.ndarray | None, normals: np.ndarray, view: np.ndarray,
         size: int = RENDER_SIZE) -> SurfaceLandmarks | None:
    """Landmarks of the surface seen through the viewing rotation ``view``; None when the detector
    finds no face there."""
    from studio.core.photo.landmarks import detect_faces

    points = np.asarray(points, float)
    img, frags, vot = render_relief(points, faces, normals, view, size)
    found = detect_faces(img)
    return _lift(found[0][:N_MESH], frags, points, faces, vot) if found else None


def _lift(px: np.ndarray, frags, points, faces, vertex_of_tri) -> SurfaceLandmarks:
    """Pixel positions → surface points through the buffers (nearest covered pixel within 2 px)."""
    h, w = frags.tri.shape
    out = np.full((N_MESH, 3), np.nan)
    tri = np.full(N_MESH, -1, np.int64)
    bary = np.zeros((N_MESH, 3))
    x = np.clip(np.floor(px[:, 0]).astype(int), 0, w - 1)
    y = np.clip(np.floor(px[:, 1]).astype(int), 0, h - 1)
    for i in range(len(px)):
        y0, y1, x0, x1 = max(y[i] - 2, 0), min(y[i] + 3, h), max(x[i] - 2, 0), min(x[i] + 3, w)
        win = frags.tri[y0:y1, x0:x1]
        if win[2 if y[i] >= 2 else y[i], 2 if x[i] >= 2 else x[i]] >= 0:
            yy, xx = y[i], x[i]
        else:
            cand = np.argwhere(win >= 0)
            if not len(cand):
                continue
            yy, xx = cand[np.argmin(np.abs(cand - [y[i] - y0, x[i] - x0]).sum(1))] + [y0, x0]
        t = int(frags.tri[yy, xx])
        if vertex_of_tri is not None:  # a splat: the point itself
            out[i] = points[vertex_of_tri[t]]
            continue
        b = frags.bary[yy, xx]
        out[i] = b @ points[faces[t]]
        tri[i], bary[i] = t, b
    return SurfaceLandmarks(out, np.isfinite(out).all(1), tri, bary)


def robust_similarity(src: np.ndarray, dst: np.ndarray, with_scale: bool, rounds: int = 3, keep: float = 0.75):
    """Umeyama on landmark pairs with the worst quarter dropped and re-fitted (detector misses on
    relief — a brow on hair, a lip in a beard — are single points far off)."""
    from studio.core.fitting.align import umeyama

    ok = np.isfinite(src).all(1) & np.isfinite(dst).all(1)
    idx = np.flatnonzero(ok)
    if len(idx) < 6:
        raise StudioError("too few landmarks on both surfaces")
    sel = idx
    for _ in range(rounds):
        sim = umeyama(src[sel], dst[sel], with_scale=with_scale)
        err = np.linalg.norm(sim.apply(src[idx]) - dst[idx], axis=1)
        sel = idx[err <= np.quantile(err, keep)]
    sim = umeyama(src[sel], dst[sel], with_scale=with_scale)
    err = np.linalg.norm(sim.apply(src[idx]) - dst[idx], axis=1)
    return sim, err, idx
