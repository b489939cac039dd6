"""A small software rasteriser (numpy): shaded images of a mesh with no GL context.

Used for thumbnails, turntable GIFs and reports from the CLI, on machines with no display or GPU.
Orthographic camera framed on the mesh, Lambert shading of vertex colours (or a neutral skin
tone), drawn by the one z-buffer rasteriser (core/geometry/raster.py).
"""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np
from numpy.typing import ArrayLike

from studio.core.facemodel import FaceModel
from studio.core.geometry import vertex_normals
from studio.core.geometry.raster import interpolate, rasterize

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
           background: ArrayLike = BACKGROUND) -> np.ndarray:
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
    xy = np.column_stack([p[:, 0] * scale + size / 2, size / 2 - p[:, 1] * scale])  # rows grow downwards
    # An orthographic view through the one rasteriser: depth is the distance behind a plane far in
    # front of the mesh, where its perspective-correct interpolation is linear to 1e-6.
    far = 1000.0 * half
    frags = rasterize(xy, far - p[:, 2], faces, size, size)
    img = np.empty((size, size, 3))
    img[:] = background
    img[frags.mask] = interpolate(vcol, faces, frags)[frags.mask]
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def write_png(path: str | os.PathLike, image: np.ndarray, force: bool = False) -> str | os.PathLike:
    import imageio.v3 as iio

    from studio.core.atomic import atomic_path

    with atomic_path(path, force) as tmp:
        iio.imwrite(tmp, image, extension=".png")
    return path


def face_closeup(model: FaceModel, params: Mapping[str, np.ndarray], size: int = 256) -> np.ndarray:
    """A thumbnail of a face: framed on the face (not the bust), eyes with iris and pupil.

    Linear models frame their face region and draw without translucent overlay shells; other
    models (the neural head, a mesh that changes with the identity) frame the front of the
    upper half of the head."""
    from studio.core.photo import shading
    from studio.core.photo.embedding import landmark_region

    mesh = model.mesh(params)
    v = np.asarray(mesh.vertices, float)
    linear = model.as_linear()
    if model.fixed_topology and linear is not None and len(v) == linear.n_vertices:
        faces = shading.drawable_faces(linear)
        colours = (np.asarray(mesh.colors, float)[:, :3].copy() if mesh.colors is not None
                   else shading.default_albedo(linear))
        shading.paint_pupils(colours, v, linear)
        lm = model.landmarks("ibug68")
        face = v[lm] if lm is not None and len(lm) == 68 else v[landmark_region(linear)]
    else:
        faces, colours = np.asarray(mesh.faces), mesh.colors
        top = v[:, 1] > v[:, 1].max() - 0.55 * np.ptp(v[:, 1])
        face = v[top & (v[:, 2] > np.median(v[top, 2]))]
    centre = (face.min(0) + face.max(0)) / 2
    half = 0.62 * float(np.ptp(face[:, :2], axis=0).max())  # the 68 points span brow to chin; a margin
    return render(v, faces, colours, size, frame=(centre, half))
