"""A z-buffer rasteriser in numpy whose output buffers feed torch (the "deferred" split).

Why this split: on a CPU a fully differentiable soft rasteriser (SoftRas/PyTorch3D style) costs
O(pixels × overlapping triangles) per iteration in autograd and needs compiled kernels to be fast.
Here the discrete part — which triangle covers each pixel (z-buffer) and where inside it
(barycentrics) — is computed once in vectorised numpy with no gradients, and everything
continuous is done in torch: ``interpolate`` forms each pixel as the barycentric blend of
per-vertex quantities (positions, colours, normals, shading), so gradients reach vertex colours,
the light and (through shading/normals) the geometry. The fitter (fit.py) goes one step further
and compares the photo with the model at the visible vertices only (one sample per vertex, a
vertex per pixel or so on a face-sized mesh); the buffers here give it visibility, and give the
landmark embedding its triangle + barycentric back-projection.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Fragments:
    """Per-pixel buffers of one rasterisation (rows grow downwards, as in images)."""

    tri: np.ndarray  # (H, W) int64 triangle index, -1 where nothing is drawn
    bary: np.ndarray  # (H, W, 3) float barycentric weights of the triangle's corners
    depth: np.ndarray  # (H, W) float distance along the view direction, +inf where empty

    @property
    def mask(self) -> np.ndarray:
        return self.tri >= 0


def screen_barycentrics(sx, sy, x, y, area=None) -> np.ndarray:
    """(m, 3) screen-space barycentrics of the points (sx, sy) (m,) in the triangles with corner
    pixel positions ``x``, ``y`` (m, 3); ``area``: their signed doubled areas, when known."""
    if area is None:
        area = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (x[:, 2] - x[:, 0]) * (y[:, 1] - y[:, 0])
    l1 = ((x[:, 2] - sx) * (y[:, 0] - sy) - (x[:, 0] - sx) * (y[:, 2] - sy)) / area
    l2 = ((x[:, 0] - sx) * (y[:, 1] - sy) - (x[:, 1] - sx) * (y[:, 0] - sy)) / area
    return np.stack([1 - l1 - l2, l1, l2], 1)


def perspective_correct(lam: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Screen-space barycentrics (m, 3) → the surface's own (1/depth interpolates linearly on the
    screen), and the depth there. ``depth``: (m, 3) of the corners."""
    inv = lam / depth
    z = 1.0 / inv.sum(1)
    return inv * z[:, None], z


def rasterize(xy: np.ndarray, depth: np.ndarray, faces: np.ndarray, height: int, width: int,
              budget: int = 4_000_000) -> Fragments:
    """Rasterise triangles given per-vertex pixel positions ``xy`` (n, 2: x right, y down, pixel
    centres at +0.5) and ``depth`` (n,: larger is farther). Nearest triangle wins per pixel.

    Every triangle's bounding box is expanded into pixel candidates at once (chunked to bound the
    memory), the inside test gives barycentrics, and a lexsort keeps the nearest per pixel.
    """
    xy = np.asarray(xy, np.float64)
    depth = np.asarray(depth, np.float64)
    faces = np.asarray(faces, np.int64)
    H, W = int(height), int(width)
    x, y = xy[faces, 0], xy[faces, 1]
    x0 = np.clip(np.floor(x.min(1) - 0.5), 0, W - 1).astype(np.int64)
    x1 = np.clip(np.ceil(x.max(1) - 0.5), 0, W - 1).astype(np.int64)
    y0 = np.clip(np.floor(y.min(1) - 0.5), 0, H - 1).astype(np.int64)
    y1 = np.clip(np.ceil(y.max(1) - 0.5), 0, H - 1).astype(np.int64)
    w, h = x1 - x0 + 1, y1 - y0 + 1
    area = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (x[:, 2] - x[:, 0]) * (y[:, 1] - y[:, 0])
    dz = depth[faces]
    keep = ((np.abs(area) > 1e-12) & (x.max(1) >= 0) & (x.min(1) < W) & (y.max(1) >= 0) & (y.min(1) < H)
            & np.all(dz > 0, axis=1) & np.all(np.isfinite(xy[faces]).reshape(len(faces), -1), axis=1))
    idx = np.flatnonzero(keep)
    counts = (w * h)[idx]
    zbuf = np.full(H * W, np.inf)
    tbuf = np.full(H * W, -1, np.int64)
    bbuf = np.zeros((H * W, 3))
    cum = np.cumsum(counts)
    start = 0
    while start < idx.size:
        base = cum[start - 1] if start else 0
        stop = max(int(np.searchsorted(cum, base + budget, side="right")), start + 1)
        ids, cnt = idx[start:stop], counts[start:stop]
        t = np.repeat(ids, cnt)
        offs = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        cx = x0[t] + offs % w[t]
        cy = y0[t] + offs // w[t]
        sx, sy = cx + 0.5, cy + 0.5
        lam = screen_barycentrics(sx, sy, x[t], y[t], area[t])
        inside = (lam >= -1e-9).all(1)
        t, cx, cy = t[inside], cx[inside], cy[inside]
        lam, z = perspective_correct(lam[inside], dz[t])
        pix = cy * W + cx
        order = np.lexsort((z, pix))
        first = order[np.unique(pix[order], return_index=True)[1]]
        pix, z = pix[first], z[first]
        nearer = z < zbuf[pix]
        pix, first, z = pix[nearer], first[nearer], z[nearer]
        zbuf[pix] = z
        tbuf[pix] = t[first]
        bbuf[pix] = lam[first]
        start = stop
    return Fragments(tbuf.reshape(H, W), bbuf.reshape(H, W, 3), zbuf.reshape(H, W))


def interpolate(values, faces, frags: Fragments):
    """Per-pixel barycentric blend of per-vertex ``values`` (n, C), torch or numpy.

    With a torch tensor the result is differentiable w.r.t. ``values``; pixels where nothing is
    drawn get 0. Returns (H, W, C).
    """
    H, W = frags.tri.shape
    m = frags.mask.reshape(-1)
    tri = frags.tri.reshape(-1)[m]
    corners = np.asarray(faces, np.int64)[tri]  # (P, 3)
    import torch

    if isinstance(values, torch.Tensor):
        bary = torch.as_tensor(frags.bary.reshape(-1, 3)[m], dtype=values.dtype)
        c = torch.as_tensor(corners)
        px = (values[c] * bary[..., None]).sum(1)
        out = values.new_zeros((H * W, values.shape[1]))
        out = out.index_put((torch.as_tensor(np.flatnonzero(m)),), px)
        return out.reshape(H, W, -1)
    arr = np.asarray(values, np.float64)
    blended = (arr[corners] * frags.bary.reshape(-1, 3)[m][..., None]).sum(1)
    image = np.zeros((H * W, arr.shape[1]))
    image[m] = blended
    return image.reshape(H, W, -1)


def visible_vertices(xy: np.ndarray, depth: np.ndarray, frags: Fragments, tolerance: float) -> np.ndarray:
    """Boolean (n,): a vertex is visible when it lies inside the image and no more than
    ``tolerance`` (depth units) behind the z-buffer at its pixel."""
    H, W = frags.tri.shape
    px = np.floor(xy).astype(np.int64)
    inside = (px[:, 0] >= 0) & (px[:, 0] < W) & (px[:, 1] >= 0) & (px[:, 1] < H) & np.isfinite(depth)
    vis = np.zeros(len(xy), bool)
    z = frags.depth[px[inside, 1], px[inside, 0]]
    vis[inside] = depth[inside] <= z + tolerance
    return vis
