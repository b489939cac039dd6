"""Meshes from signed distance functions: coarse-to-fine narrow-band evaluation + marching cubes.

Extraction time is the SDF's cost per point times the number of points asked, so the points asked
decide everything. A dense N³ grid asks N³ (16.7 M at 256³). The narrow band asks only near the
surface:

1. evaluate a coarse lattice (stride ``s = 2^L`` fine voxels, about ``coarse`` cells per axis);
2. a cell can only contain the surface if no corner is farther from it than the cell diagonal
   (an SDF is 1-Lipschitz: |f(c)| ≤ |c − p| for a surface point p in the cell). Cells whose
   corners change sign, or whose largest corner |f| is within ``margin ×`` the diagonal, are split
   into 8 and their 19 new lattice points evaluated; the others are left whole;
3. repeat down to stride 1, then run ``skimage.measure.marching_cubes`` on the fine grid, masked to
   the finest refined cells.

Points never evaluated are filled with ±``FILL`` carrying the sign of the coarse cell they lie in
(all corners of an unrefined cell share one sign), so marching cubes sees no fake surface between
evaluated and filled values. A learned SDF is only approximately 1-Lipschitz (its gradient norm is
trained towards 1, not held there), hence ``margin`` > 1 by default; ``studio bench extract``
measures that the narrow-band mesh matches the dense one.

``sdf_fn`` maps an (n, 3) float32 tensor of points on ``device`` to (n,) signed distances
(negative inside). Points are sent in batches of ``batch`` (default 64k on a CPU, 1M on CUDA), under
``torch.inference_mode``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from studio.core.errors import StudioError

SDFFn = Callable[[torch.Tensor], torch.Tensor]
FILL = 1e3  # magnitude written into never-evaluated voxels (only its sign matters)


@dataclass
class Extraction:
    vertices: np.ndarray  # (n, 3) float32, in the units of ``bounds``
    faces: np.ndarray  # (m, 3) int64, outward-facing (counter-clockwise seen from outside)
    queries: int  # SDF evaluations asked
    seconds: float  # wall time (evaluation + marching cubes)
    resolution: int  # grid points per axis
    voxel: float  # grid spacing (largest axis), in the units of ``bounds``
    narrow_band: bool


def _bounds(bounds) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = bounds
    lo = np.broadcast_to(np.asarray(lo, np.float64), (3,)).copy()
    hi = np.broadcast_to(np.asarray(hi, np.float64), (3,)).copy()
    if not np.all(hi > lo):
        raise StudioError(f"extraction bounds must have hi > lo on every axis, got {bounds}")
    return lo, hi


def _batch(batch: int | None, device) -> int:
    # A GPU wants large launches; on a CPU 64k points keep the activations in cache-sized blocks.
    return int(batch) if batch else (1 << 20 if str(device).startswith("cuda") else 1 << 16)


def _evaluate(sdf_fn: SDFFn, points: np.ndarray, batch: int | None, device) -> np.ndarray:
    """sdf_fn over (n, 3) float points, batched; float32 numpy out."""
    batch = _batch(batch, device)
    out = np.empty(len(points), np.float32)
    with torch.inference_mode():
        for a in range(0, len(points), batch):
            x = torch.from_numpy(np.ascontiguousarray(points[a:a + batch], np.float32)).to(device)
            out[a:a + batch] = sdf_fn(x).reshape(-1).float().cpu().numpy()
    return out


def _points(lo: np.ndarray, h: np.ndarray, ijk: tuple[np.ndarray, ...], stride: int) -> np.ndarray:
    """Positions of lattice indices (at ``stride`` fine voxels per step)."""
    pts = np.empty((len(ijk[0]), 3), np.float32)
    for a in range(3):
        pts[:, a] = lo[a] + ijk[a] * (stride * h[a])
    return pts


def _blocks(cells: np.ndarray) -> np.ndarray:
    """Upsample a per-cell array (n, n, n) to its 2×2×2 children (2n, 2n, 2n) without copies per axis."""
    n0, n1, n2 = cells.shape
    return np.broadcast_to(cells[:, None, :, None, :, None], (n0, 2, n1, 2, n2, 2)).reshape(2 * n0, 2 * n1, 2 * n2)


def _corners(v: np.ndarray):
    """The 8 corner views of every cell of the lattice array v (n+1)³ → 8 × (n, n, n)."""
    return [v[a:a + v.shape[0] - 1, b:b + v.shape[1] - 1, c:c + v.shape[2] - 1]
            for a in (0, 1) for b in (0, 1) for c in (0, 1)]


def _marching_cubes(vol: np.ndarray, lo: np.ndarray, h: np.ndarray, mask: np.ndarray | None, level: float):
    from skimage.measure import marching_cubes

    if not (vol.min() <= level <= vol.max()):
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)
    try:
        verts, faces, _, _ = marching_cubes(vol, level, spacing=tuple(float(x) for x in h), mask=mask)
    except (RuntimeError, ValueError):  # "No surface found at the given iso value"
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)
    # skimage's default winding (gradient_direction="descent") is counter-clockwise seen from the
    # side where the field is larger: for an SDF that is outside, so the triangles face outwards.
    return (verts + lo).astype(np.float32), np.ascontiguousarray(faces, np.int64)


def dense_volume(sdf_fn: SDFFn, resolution: int, bounds=(-1.0, 1.0), batch: int | None = None,
                 device="cpu") -> np.ndarray:
    """The SDF on every point of an N³ grid (N = resolution), as float32 (N, N, N) indexed [x, y, z]."""
    lo, hi = _bounds(bounds)
    n = int(resolution)
    h = (hi - lo) / (n - 1)
    vol = np.empty(n ** 3, np.float32)
    plane = n * n
    batch = _batch(batch, device)
    step = max(1, batch // plane) * plane if batch >= plane else batch
    for a in range(0, n ** 3, step):
        idx = np.arange(a, min(a + step, n ** 3))
        vol[a:a + len(idx)] = _evaluate(sdf_fn, _points(lo, h, np.unravel_index(idx, (n, n, n)), 1), batch, device)
    return vol.reshape(n, n, n)


def extract(sdf_fn: SDFFn, resolution: int, bounds=(-1.0, 1.0), narrow_band: bool = True, *,
            coarse: int = 8, margin: float = 1.5, batch: int | None = None, device="cpu",
            level: float = 0.0) -> Extraction:
    """The ``level`` iso-surface of ``sdf_fn`` on an N³ grid over ``bounds`` (N = ``resolution``).

    ``narrow_band=False`` evaluates every grid point (the reference); otherwise coarse-to-fine as in
    the module docstring, starting from a lattice of about ``coarse`` cells per axis.
    """
    n = int(resolution)
    if n < 4:
        raise StudioError(f"extraction resolution must be at least 4, got {resolution}")
    if not margin > 0:
        raise StudioError("narrow-band margin must be positive")
    lo, hi = _bounds(bounds)
    h = (hi - lo) / (n - 1)
    t0 = time.perf_counter()
    levels = max(0, int(math.floor(math.log2((n - 1) / max(int(coarse), 1))))) if narrow_band else 0
    if levels == 0:
        vol = dense_volume(sdf_fn, n, bounds, batch, device)
        v, f = _marching_cubes(vol, lo, h, None, level)
        return Extraction(v, f, n ** 3, time.perf_counter() - t0, n, float(h.max()), False)
    v, refined, org, queries = _narrow_band(sdf_fn, n, lo, h, levels, margin, batch, device, level)
    if refined is None or not refined.any():
        return Extraction(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64), int(queries),
                          time.perf_counter() - t0, n, float(h.max()), True)
    verts, faces = _band_surface(v, refined, org, n, lo, h)
    return Extraction(verts, faces, int(queries), time.perf_counter() - t0, n, float(h.max()), True)


def _narrow_band(sdf_fn: SDFFn, n: int, lo: np.ndarray, h: np.ndarray, levels: int, margin: float, batch, device,
                 level: float):
    """Steps 1-3 of the module docstring: (the finest lattice's values, less ``level``; the finest
    split cells, or None; the fine-grid index of the lattice's first point; the SDF queries asked)."""
    stride = 1 << levels
    cells = -(-(n - 1) // stride)  # coarse cells per axis; the lattice may overhang hi a little
    ijk = np.indices((cells + 1,) * 3).reshape(3, -1)
    vals = _evaluate(sdf_fn, _points(lo, h, tuple(ijk), stride), batch, device) - level
    v = vals.reshape((cells + 1,) * 3)
    queries = v.size
    refined = None
    org = np.zeros(3, np.int64)  # fine-grid index of the lattice's first point (after cropping)
    for level_i in range(levels):
        corners = _corners(v)
        refined = _cells_to_split(corners, margin * float(np.linalg.norm(h * stride)))
        if level_i == 0:
            # Later levels only split cells inside this level's split ones: from here on, work in
            # the box holding them (a head fills a fraction of its cube; every array shrinks).
            box = _split_box(refined)
            if box is None:
                break
            org = np.array([x.start for x in box], np.int64) * stride
            refined = refined[box]
            corners = [c[box] for c in corners]
            v = v[tuple(slice(x.start, x.stop + 1) for x in box)]
        nxt = _finer_lattice(v, corners[0], refined)
        idx, new = _points_to_ask(nxt, refined)
        stride //= 2
        nxt.reshape(-1)[idx] = _evaluate(sdf_fn, _points(lo + org * h, h, new, stride), batch, device) - level
        queries += len(idx)
        v = nxt
    return v, refined, org, queries


def _cells_to_split(corners, threshold: float) -> np.ndarray:
    """Cells whose corners change sign, or whose corners all lie within ``threshold`` of the
    surface: the surface may pass through them."""
    pos = np.zeros(corners[0].shape, bool)
    neg = np.zeros(corners[0].shape, bool)
    far = np.zeros(corners[0].shape, bool)
    for c in corners:
        pos |= c > 0
        neg |= c <= 0
        far |= np.abs(c) > threshold
    return (pos & neg) | ~far


def _split_box(refined: np.ndarray) -> tuple[slice, ...] | None:
    """The smallest box of cells holding every split cell (None when no cell is split)."""
    box = [np.flatnonzero(refined.any(axis=tuple(b for b in range(3) if b != a))) for a in range(3)]
    if any(len(b) == 0 for b in box):
        return None
    return tuple(slice(int(b[0]), int(b[-1]) + 1) for b in box)


def _finer_lattice(v: np.ndarray, first_corner: np.ndarray, refined: np.ndarray) -> np.ndarray:
    """The next, twice finer lattice: filled with the sign of each cell, old points kept. The last
    layers (the lattice's high faces) take the sign of the cells they close, so a cropped box's
    faces hold no fake sign change either."""
    fill = np.where(first_corner > 0, np.float32(FILL), np.float32(-FILL))
    m = tuple(2 * k + 1 for k in refined.shape)
    nxt = np.ascontiguousarray(_blocks(np.pad(fill, 1, mode="edge")[1:, 1:, 1:])[:m[0], :m[1], :m[2]])
    nxt[::2, ::2, ::2] = v
    return nxt


def _points_to_ask(nxt: np.ndarray, refined: np.ndarray):
    """(flat indices, index arrays) into ``nxt`` of the points to evaluate: the 19 new points of every
    split cell (duplicates between neighbours merged by the mask), and any of its 8 corners that only
    hold a fill value (a cell split because an evaluated corner disagrees in sign with a filled one:
    the field was steeper than the margin allowed)."""
    ci = np.nonzero(refined)
    need = np.zeros(nxt.shape, bool)
    for a in (0, 1, 2):
        for b in (0, 1, 2):
            for c in (0, 1, 2):
                pts = (2 * ci[0] + a, 2 * ci[1] + b, 2 * ci[2] + c)
                if a % 2 or b % 2 or c % 2:
                    need[pts] = True
                else:
                    need[pts] |= np.abs(nxt[pts]) >= FILL
    idx = np.flatnonzero(need)
    return idx, np.unravel_index(idx, need.shape)


def _band_surface(v: np.ndarray, refined: np.ndarray, org: np.ndarray, n: int, lo: np.ndarray, h: np.ndarray):
    """Marching cubes only in the finest split cells (2×2×2 cubes each). skimage tests the mask at
    one corner of each cube; marking both the low and the high corner is right either way (the
    extra neighbouring cubes hold sign-consistent values, so they add no triangles)."""
    cubes = _blocks(refined)
    mask = np.zeros(v.shape, bool)
    mask[:-1, :-1, :-1] = cubes
    mask[1:, 1:, 1:] |= cubes
    # The grid ends at n points per axis (the lattice may overhang it).
    sl = tuple(slice(0, int(n - org[a])) for a in range(3))
    return _marching_cubes(v[sl], lo + org * h, h, mask[sl], 0.0)
