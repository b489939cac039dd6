"""A face mesh textured from the photo.

Visible vertices of the fitted face (z-buffer visibility through the fitted camera) take the
photo's colour there; hidden ones take the median colour of the visible skin. Models with UVs
(ICT) also get a UV texture: every texel of a triangle seen in the photo is looked up in the photo
at its own 3-D position (sharper than vertex colours), the rest is the vertex colours blended in UV
space. Written as OBJ + MTL + PNG (``.obj``) or as a GLB with vertex colours (``.glb``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from studio.core.atomic import check_writable, write_bytes
from studio.core.errors import StudioError
from studio.core.facemodel import Mesh
from studio.core.geometry.raster import rasterize, visible_vertices
from studio.core.pca import PCAModel
from studio.core.photo.shading import default_albedo, drawable_faces, regions_named

EYE_WORDS = ("eyeball", "iris", "sclera", "pupil", "cornea")  # region names of the eyes


@dataclass
class PhotoTexture:
    vertex_colors: np.ndarray  # (n, 3) in [0, 1]
    visible: np.ndarray  # (n,) bool
    image: np.ndarray | None  # (S, S, 3) uint8 UV texture, when the model has UVs


def _bilinear(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    from scipy.ndimage import map_coordinates

    f = image.astype(np.float64) / 255.0
    coords = [xy[:, 1] - 0.5, xy[:, 0] - 0.5]
    return np.stack([map_coordinates(f[..., c], coords, order=1, mode="nearest") for c in range(3)], 1)


def photo_texture(model: PCAModel, vertices: np.ndarray, camera, image: np.ndarray, size: int = 1024,
                  uv_texture: bool = True) -> PhotoTexture:
    faces = drawable_faces(model)
    xy, depth = camera.project(vertices)
    frags = rasterize(xy, depth, faces, camera.height, camera.width)
    scale = float(np.ptp(np.asarray(vertices)[:, 0])) or 1.0
    from studio.core.geometry import vertex_normals

    pc = camera.to_camera(vertices)
    n = vertex_normals(pc, faces)
    facing = (n * (-pc / np.linalg.norm(pc, axis=1, keepdims=True))).sum(1) > 0.1
    vis = visible_vertices(xy, depth, frags, 0.005 * scale) & facing
    # Only the face skin and the eyes take the photo's colours: beyond them a portrait shows hair,
    # collars and background, which would be painted onto the scalp and the neck.
    from studio.core.photo.embedding import landmark_mask

    skin_region = landmark_mask(model)
    eyes = regions_named(model, EYE_WORDS) & ~skin_region
    colors = np.zeros((len(vertices), 3))
    skin_vis = vis & skin_region
    colors[skin_vis] = _bilinear(image, xy[skin_vis])
    skin = np.median(colors[skin_vis], 0) if skin_vis.any() else np.array([0.8, 0.65, 0.55])
    colors[~skin_vis] = skin
    # The eyeballs seen through the fitted lids take the photo's iris and sclera; hidden eyeball
    # parts stay the model's own eye tint rather than skin.
    eye_vis = vis & eyes
    colors[eyes] = default_albedo(model)[eyes]
    colors[eye_vis] = _bilinear(image, xy[eye_vis])
    vis = skin_vis | eye_vis
    tex = None
    if uv_texture and model.uv is not None and model.face_uv is not None:
        uv = np.asarray(model.uv, float)
        fuv = np.asarray(model.face_uv, np.int64)
        allf = np.asarray(model.faces, np.int64)
        uv_px = np.c_[uv[:, 0] * size, (1 - uv[:, 1]) * size]
        uf = rasterize(uv_px, np.ones(len(uv)), fuv, size, size)
        m = uf.mask
        tri = uf.tri[m]
        bary = uf.bary[m]
        corners = allf[tri]
        # vertex colours blended in UV space everywhere, photo lookups where the triangle is seen
        col = (colors[corners] * bary[..., None]).sum(1)
        seen = vis[corners].all(1)
        p3 = (np.asarray(vertices, float)[corners[seen]] * bary[seen][..., None]).sum(1)
        pxy, _ = camera.project(p3)
        col[seen] = _bilinear(image, pxy)
        tex = np.tile((skin * 255).astype(np.uint8), (size, size, 1))
        tex[m] = (np.clip(col, 0, 1) * 255 + 0.5).astype(np.uint8)
        tex = dilate(tex, m)
    return PhotoTexture(colors, vis, tex)


def dilate(tex: np.ndarray, mask: np.ndarray, steps: int = 4) -> np.ndarray:
    """Grow texels over UV-island borders (each texel within ``steps`` of ``mask`` takes its nearest
    masked texel's value) so texture filtering does not bleed background, or a flat tilt, in."""
    from scipy.ndimage import distance_transform_edt

    d, (iy, ix) = distance_transform_edt(~mask, return_indices=True)
    near = (d > 0) & (d <= steps)
    out = tex.copy()
    out[near] = tex[iy[near], ix[near]]
    return out


def write_textured(path: str | Path, model: PCAModel, vertices: np.ndarray, texture: PhotoTexture,
                   force: bool = False) -> list[Path]:
    """``.obj``: OBJ (+ .mtl + .png when there is a UV texture); ``.glb``: vertex-coloured GLB."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in (".obj", ".glb"):
        raise StudioError(f"--mesh must end in .obj or .glb, not '{path.suffix or path.name}'")
    mesh = Mesh(np.asarray(vertices, float), np.asarray(model.faces), texture.vertex_colors,
                model.uv, model.face_uv)
    if ext == ".glb":
        from studio.core.export import export_mesh

        return [export_mesh(mesh, path, force, model=model, unit=model.meta.unit)]
    from studio.core.export import mesh_arrays, obj_bytes

    png, mtl = path.with_suffix(".png"), path.with_suffix(".mtl")
    outputs = [path] + ([mtl, png] if texture.image is not None else [])
    for p in outputs:
        check_writable(p, force)
    mesh.face_material = np.zeros(len(mesh.faces), np.int64)
    mesh.materials = ("photo",)
    data = obj_bytes(mesh_arrays(mesh), model.meta.attribution)
    if texture.image is not None:
        import imageio.v3 as iio

        buf = io.BytesIO()
        iio.imwrite(buf, texture.image, extension=".png")
        write_bytes(png, buf.getvalue(), force)
        material = f"newmtl photo\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nd 1\nillum 1\nmap_Kd {png.name}\n"
        write_bytes(mtl, material.encode(), force)
        data = f"mtllib {mtl.name}\n".encode() + data
    write_bytes(path, data, force)
    return outputs
