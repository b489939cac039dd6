"""The face's outline against the photo's edges: a silhouette cue for the identity.

Why: a detector's landmarks say little about a face's shape (on rendered photos its deviations
from the mean face's points correlate 0.23 with the true ones), and a free albedo absorbs most of
what shading says. The occluding contour does not depend on albedo: where the cheek, temple or
chin turns away from the camera, the photo has an edge (against the background, the neck, the
hair or the far ear), and the model's outline must lie on it. As in the edge terms of
Romdhani & Vetter (2005) and the contour fitting of eos, the model's outline vertices are pulled
each iteration to the nearest image edge (the distance transform's nearest edge pixel), with
matches too far away, or across an edge of the wrong orientation, rejected as clutter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

GRAZING = 0.35  # |n·view| below this: the surface turns away from the camera (an outline candidate)
ON_BOUNDARY_PX = 1.5  # how close to the rendered region's boundary an outline vertex projects
REACH = 0.035  # farthest accepted edge match, in face sizes (the landmark fit is this close)
ALIGN = 0.6  # |cos| between the image gradient and the outline's 2-D normal at an accepted match


@dataclass
class EdgeField:
    """Edges of a photo and, per pixel, the nearest edge pixel and that edge's gradient direction."""

    distance: np.ndarray  # (H, W) px to the nearest edge pixel
    nearest: np.ndarray  # (2, H, W) row, col of that edge pixel
    direction: np.ndarray  # (H, W, 2) unit image-gradient direction (x, y) at edge pixels
    origin: tuple[int, int] = (0, 0)  # (x, y) of the field's first pixel in the photo

    def match(self, xy: np.ndarray, normal2d: np.ndarray, reach_px: float) -> tuple[np.ndarray, np.ndarray]:
        """Nearest edge point (x, y pixel centres) for each point ``xy`` (n, 2), and whether the
        match is accepted: within ``reach_px`` and across an edge whose gradient runs along the
        outline's normal."""
        H, W = self.distance.shape
        local = np.asarray(xy, np.float64) - np.asarray(self.origin, np.float64)
        c = np.clip(np.floor(local).astype(np.int64), 0, [W - 1, H - 1])
        r0, c0 = self.nearest[0][c[:, 1], c[:, 0]], self.nearest[1][c[:, 1], c[:, 0]]
        target = np.stack([c0 + 0.5, r0 + 0.5], 1).astype(np.float64) + np.asarray(self.origin, np.float64)
        ok = self.distance[c[:, 1], c[:, 0]] <= reach_px
        inside = (local[:, 0] >= 0) & (local[:, 0] < W) & (local[:, 1] >= 0) & (local[:, 1] < H)
        cos = np.abs(np.sum(self.direction[r0, c0] * normal2d, axis=1))
        return target, ok & inside & (cos >= ALIGN)


def edge_field(image: np.ndarray, sigma: float, box: tuple[int, int, int, int] | None = None) -> EdgeField:
    """Canny edges of each colour channel, joined (skin against a background of the same
    brightness differs in hue), then the distance transform; over ``box`` (x0, y0, x1, y1) only
    when given (the face and its surroundings: a fifth of an 800-px portrait's pixels)."""
    from skimage.feature import canny

    H, W = np.asarray(image).shape[:2]
    x0, y0, x1, y1 = (0, 0, W, H) if box is None else box
    x0, y0, x1, y1 = max(0, int(x0)), max(0, int(y0)), min(W, int(x1)), min(H, int(y1))
    if x1 - x0 < 8 or y1 - y0 < 8:
        x0, y0, x1, y1 = 0, 0, W, H
    img = np.asarray(image, np.float64)[y0:y1, x0:x1] / 255.0
    edges = np.zeros(img.shape[:2], bool)
    gx = np.zeros(img.shape[:2])
    gy = np.zeros(img.shape[:2])
    best = np.zeros(img.shape[:2])
    for ch in range(img.shape[2]):
        edges |= canny(img[..., ch], sigma=sigma, low_threshold=0.02, high_threshold=0.05)
        s = ndimage.gaussian_filter(img[..., ch], sigma)
        dx, dy = ndimage.sobel(s, axis=1), ndimage.sobel(s, axis=0)
        mag = dx * dx + dy * dy
        take = mag > best  # the direction of the strongest channel's gradient
        gx[take], gy[take], best[take] = dx[take], dy[take], mag[take]
    norm = np.maximum(np.sqrt(gx * gx + gy * gy), 1e-12)
    direction = np.stack([gx / norm, gy / norm], -1)
    if not edges.any():
        edges[0, 0] = True  # nothing to match: every match is then far away and rejected
    distance, nearest = ndimage.distance_transform_edt(~edges, return_indices=True)
    return EdgeField(distance, nearest, direction, (x0, y0))


def outline_vertices(xy: np.ndarray, normals: np.ndarray, view: np.ndarray, visible: np.ndarray,
                     mask: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Indices of vertices on the occluding outline of a rendered mesh: visible, turning away
    from the camera, and projecting onto the boundary of the rendered ``mask`` (H, W).
    ``candidates`` (n,) bool: vertices allowed to be outline (the face, not the scalp)."""
    grazing = np.abs(np.sum(normals * view, axis=1)) < GRAZING
    inner = ndimage.binary_erosion(mask, iterations=1)
    boundary = mask & ~inner
    d = ndimage.distance_transform_edt(~boundary)
    H, W = mask.shape
    c = np.clip(np.floor(xy).astype(np.int64), 0, [W - 1, H - 1])
    near = d[c[:, 1], c[:, 0]] <= ON_BOUNDARY_PX
    return np.flatnonzero(grazing & visible & near & candidates)


def normal_2d(xy: np.ndarray, normals_cam: np.ndarray) -> np.ndarray:
    """The outline's normal in the image (x right, y down) from camera-frame surface normals."""
    n = np.stack([normals_cam[:, 0], -normals_cam[:, 1]], 1)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
