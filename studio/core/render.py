"""A small software rasteriser (numpy): shaded images of a mesh with no GL context.

Used for thumbnails, turntable GIFs and reports from the CLI, on machines with no display or GPU.
Orthographic camera framed on the mesh, z-buffer visibility, Lambert shading of vertex colours
(or a neutral skin tone) interpolated per pixel. Vectorised per triangle-pixel candidate: every
triangle's bounding box is expanded into pixel candidates at once, and the nearest candidate per
pixel wins.
"""

from __future__ import annotations

import numpy as np

from studio.core.geometry import vertex_normals

SKIN = np.array([0.85, 0.72, 0.64])
BACKGROUND = np.array([0.16, 0.17, 0.19])


def rotation(yaw_deg: float = 0.0, pitch_deg: float = 0.0) -> np.ndarray:
    """Rotation about the vertical (y) axis, then about x; faces look along +z at yaw 0."""
    y, p = np.radians(yaw_deg), np.radians(pitch_deg)
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    return rx @ ry


def render(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None = None, size: int = 256,
           yaw: float = 0.0, pitch: float = 0.0, frame: tuple[np.ndarray, float] | None = None,
           background=BACKGROUND) -> np.ndarray:
    """Render to an (size, size, 3) uint8 image.

    ``frame`` = (centre, half_extent) fixes the framing (e.g. for every frame of a turntable so
    the head does not jump); by default the mesh's bounding sphere is framed.
    """
    v = np.asarray(vertices, float)
    faces = np.asarray(faces, np.int64)
    if frame is None:
        centre = (v.min(0) + v.max(0)) / 2
        half = float(np.linalg.norm(v - centre, axis=1).max()) or 1.0
    else:
        centre, half = frame
    r = rotation(yaw, pitch)
    p = (v - centre) @ r.T
    normals = vertex_normals(v, faces) @ r.T
    light = np.array([0.3, 0.4, 1.0]) / np.linalg.norm([0.3, 0.4, 1.0])
    shade = 0.25 + 0.75 * np.clip(np.abs(normals @ light), 0, 1)  # two-sided: open meshes show inside
    base = SKIN[None] if colors is None else np.asarray(colors, float)[:, :3]
    vcol = np.broadcast_to(base, v.shape) * shade[:, None]

    scale = (size / 2) / (half * 1.05)
    px = p[:, 0] * scale + size / 2
    py = size / 2 - p[:, 1] * scale  # image rows grow downwards
    img = np.empty((size, size, 3))
    img[:] = background
    tri = faces
    x, y = px[tri], py[tri]
    x0 = np.clip(np.floor(x.min(1)), 0, size - 1).astype(np.int64)
    x1 = np.clip(np.ceil(x.max(1)), 0, size - 1).astype(np.int64)
    y0 = np.clip(np.floor(y.min(1)), 0, size - 1).astype(np.int64)
    y1 = np.clip(np.ceil(y.max(1)), 0, size - 1).astype(np.int64)
    w, h = x1 - x0 + 1, y1 - y0 + 1
    area = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (x[:, 2] - x[:, 0]) * (y[:, 1] - y[:, 0])
    keep = (np.abs(area) > 1e-12) & (x.max(1) >= 0) & (x.min(1) < size) & (y.max(1) >= 0) & (y.min(1) < size)
    idx = np.flatnonzero(keep)
    counts = (w * h)[idx]
    # Triangles are processed in chunks so huge ones (a mesh filling the view) stay in memory bounds.
    zbuf = np.full(size * size, -np.inf)
    cbuf = np.zeros((size * size, 3))
    chunk_start = 0
    cum = np.cumsum(counts)
    budget = 4_000_000
    while chunk_start < idx.size:
        base_count = cum[chunk_start - 1] if chunk_start else 0
        chunk_end = max(int(np.searchsorted(cum, base_count + budget, side="right")), chunk_start + 1)
        ids = idx[chunk_start:chunk_end]
        cnt = counts[chunk_start:chunk_end]
        t = np.repeat(ids, cnt)
        offs = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        cx = x0[t] + offs % w[t]
        cy = y0[t] + offs // w[t]
        sx, sy = cx + 0.5, cy + 0.5
        xa, ya = x[t], y[t]
        d = area[t]
        l1 = ((xa[:, 2] - sx) * (ya[:, 0] - sy) - (xa[:, 0] - sx) * (ya[:, 2] - sy)) / d
        l2 = ((xa[:, 0] - sx) * (ya[:, 1] - sy) - (xa[:, 1] - sx) * (ya[:, 0] - sy)) / d
        l0 = 1 - l1 - l2
        inside = (l0 >= 0) & (l1 >= 0) & (l2 >= 0)
        t, cx, cy, l0, l1, l2 = t[inside], cx[inside], cy[inside], l0[inside], l1[inside], l2[inside]
        tv = tri[t]
        z = l0 * p[tv[:, 0], 2] + l1 * p[tv[:, 1], 2] + l2 * p[tv[:, 2], 2]
        pix = cy * size + cx
        order = np.lexsort((-z, pix))
        first = order[np.unique(pix[order], return_index=True)[1]]
        pix, z = pix[first], z[first]
        nearer = z > zbuf[pix]
        pix, first, z = pix[nearer], first[nearer], z[nearer]
        zbuf[pix] = z
        tv = tv[first]
        cbuf[pix] = (l0[first, None] * vcol[tv[:, 0]] + l1[first, None] * vcol[tv[:, 1]]
                     + l2[first, None] * vcol[tv[:, 2]])
        chunk_start = chunk_end
    hit = np.isfinite(zbuf)
    img.reshape(-1, 3)[hit] = cbuf[hit]
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def write_png(path, image: np.ndarray, force: bool = False):
    import imageio.v3 as iio

    from studio.core.atomic import atomic_path

    with atomic_path(path, force) as tmp:
        iio.imwrite(tmp, image, extension=".png")
    return path


def face_closeup(model, params, size: int = 256) -> np.ndarray:
    """A thumbnail of a face: framed on the face (not the bust), eyes with iris and pupil.

    Linear models frame their face region and draw without translucent overlay shells; other
    models (the neural head, a mesh that changes with the identity) frame the front of the
    upper half of the head."""
    from studio.core.photo import shading
    from studio.core.photo.embedding import landmark_region

    mesh = model.mesh(params)
    v = np.asarray(mesh.vertices, float)
    if getattr(model, "kind", "") == "pca" and len(v) == model.n_vertices:
        faces = shading.drawable_faces(model)
        colours = (np.asarray(mesh.colors, float)[:, :3].copy() if mesh.colors is not None
                   else shading.default_albedo(model))
        shading.paint_pupils(colours, v, model)
        lm = model.meta.landmarks.get("ibug68")
        face = v[np.asarray(lm, np.int64)] if lm is not None and len(lm) == 68 else v[landmark_region(model)]
    else:
        faces, colours = np.asarray(mesh.faces), mesh.colors
        top = v[:, 1] > v[:, 1].max() - 0.55 * np.ptp(v[:, 1])
        face = v[top & (v[:, 2] > np.median(v[top, 2]))]
    centre = (face.min(0) + face.max(0)) / 2
    half = 0.62 * float(np.ptp(face[:, :2], axis=0).max())  # the 68 points span brow to chin; a margin
    return render(v, faces, colours, size, frame=(centre, half))
