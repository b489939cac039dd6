"""Fine detail for a photo fit: recover the displacement map, split it into the person's part and
the expression's part, and write the maps and detailed meshes.

Files written into the detail folder (``studio fit photo … --detail DIR``):
``displacement.png`` (16-bit, at the fitted expression), ``detail_person.png`` and
``detail_gain.png`` (16-bit: the static part, and the depth per unit of skin compression),
``normal.png`` (tangent-space, glTF/Blender convention), ``detail.json`` (units, encoding, what
each file is), ``face.glb`` (photo colours + normalTexture), ``face.obj`` + ``face.mtl`` (bump map:
the normal map; ``disp``: the displacement) and ``face_dense.ply`` (the face subdivided twice and
displaced: geometry for tools that take no textures) and ``figure.png`` (photo, coarse fit,
detailed fit, map side by side).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from studio.core.atomic import check_writable, write_bytes
from studio.core.detail import io as detail_io
from studio.core.detail.animate import ExpressionDetail
from studio.core.detail.sfs import SfsOptions, recover_displacement
from studio.core.detail.strain import compression_map
from studio.core.detail.uv_raster import UVRaster, detail_triangles
from studio.core.progress import report, scaled

FILES = ("displacement.png", "detail_person.png", "detail_gain.png", "normal.png", "detail.json", "face.glb",
         "face.obj", "face.mtl", "face_dense.ply", "figure.png")


@dataclass
class FaceDetail:
    displacement: np.ndarray  # (S, S) model units, at the fitted expression
    expression: ExpressionDetail  # person part + gain per unit compression
    compression: np.ndarray  # (S, S) skin compression at the fitted expression
    raster: UVRaster
    visible: np.ndarray  # (S, S) texels the photo shows
    timings: dict = field(default_factory=dict)
    pixels_per_mm: float = float("nan")  # the photo's resolution on the face

    # below this the photo does not resolve a crease (its shading spans about 2 mm): the map then
    # holds the broader folds and what the regularisers made between the pixels
    RESOLVED_PIXELS_PER_MM = 1.0

    def resolution_note(self) -> str | None:
        """A line for the user when the photo is too coarse for the map's finer detail, else None."""
        if not self.pixels_per_mm < self.RESOLVED_PIXELS_PER_MM:
            return None
        return (f"the photo shows the face at {self.pixels_per_mm:.2f} pixels per mm; creases narrower than "
                f"{2 / self.pixels_per_mm:.0f} mm are not in it, so the map holds only broader folds")

    def at(self, model, params: dict) -> np.ndarray:
        """The displacement map of the same person at the expression in ``params``."""
        return self.expression.at(compression_map(model, self.raster, params))


def detail_job(model, fit, options: SfsOptions | None = None, progress=None) -> FaceDetail:
    """Detail for a ``jobs.fit_photo.PhotoFit`` (it must have gone through analysis by synthesis)."""
    from studio.core.errors import StudioError

    res = fit.result
    if res.albedo is None:
        raise StudioError("fine detail needs the full photo fit (not --landmarks-only)")
    rec = recover_displacement(model, fit.vertices, res.camera, fit.image, res.albedo, res.light, options,
                               scaled(progress, 0.0, 0.9))
    c0 = compression_map(model, rec.raster, res.params)
    report(progress, 1.0, "detail: done")
    return FaceDetail(rec.displacement, ExpressionDetail.split(rec.displacement, c0), c0, rec.raster, rec.visible,
                      dict(rec.timings), rec.pixels_per_mm)


def normal_map(model, vertices, detail: FaceDetail, d: np.ndarray | None = None) -> np.ndarray:
    from studio.core.detail.normalmap import normal_map_image

    d = detail.displacement if d is None else d
    return normal_map_image(detail.raster, vertices, model.faces, model.uv, model.face_uv, d)


def check_folder(folder, force: bool) -> Path:
    """Refuse a detail folder whose files exist (unless ``force``) before any fitting starts."""
    from studio.core.atomic import ensure_folder

    folder = ensure_folder(folder)
    for name in FILES:
        check_writable(folder / name, force)
    return folder


def write_detail(folder, model, vertices, detail: FaceDetail, colors=None, force: bool = False,
                 d: np.ndarray | None = None, fit=None) -> list[Path]:
    """All the detail files for the face ``vertices`` with displacement ``d`` (default: as fitted);
    with the photo ``fit`` also figure.png (photo, coarse, detailed, map)."""
    from studio.core.facemodel import UNIT_TO_MM

    folder = check_folder(folder, force)
    mm = UNIT_TO_MM[model.meta.unit]
    d = detail.displacement if d is None else d
    nmap = normal_map(model, vertices, detail, d)
    png = detail_io.rgb_png(nmap)
    out = [write_bytes(folder / "displacement.png", detail_io.displacement_png(d, mm), force),
           write_bytes(folder / "detail_person.png", detail_io.displacement_png(detail.expression.static, mm), force),
           write_bytes(folder / "detail_gain.png", detail_io.displacement_png(detail.expression.gain, mm), force),
           write_bytes(folder / "normal.png", png, force)]
    text = json.dumps(_description(model, detail, mm), indent=1)
    out.append(write_bytes(folder / "detail.json", text.encode(), force))
    out.append(_write_glb(folder / "face.glb", model, vertices, colors, png, force))
    out += _write_obj(folder, model, vertices, force)
    out.append(_write_dense(folder / "face_dense.ply", model, vertices, d, force))
    if fit is not None:
        out.append(write_bytes(folder / "figure.png", detail_io.rgb_png(figure(model, fit, detail)), force))
    return [Path(p) for p in out]


def _description(model, detail: FaceDetail, mm: float) -> dict:
    return {"format": "face-studio-detail", "version": 1, "model": model.name, "size": detail.raster.size,
            "displacement_encoding": {"zero": detail_io.ZERO, "mm_per_count": detail_io.DISPLACEMENT_STEP_MM,
                                      "direction": "along the coarse surface normal, outwards positive"},
            "files": {"displacement.png": "displacement at the fitted expression",
                      "detail_person.png": "the person's static detail",
                      "detail_gain.png": "wrinkle depth per unit of skin compression (mm per count as above, "
                                         "per unit compression)",
                      "normal.png": "tangent-space normal map (glTF / Blender convention, +Y up)"},
            "expression_model": "d = person + gain * compression(expression); compression = 1 - smaller principal "
                                "stretch of the skin against the neutral face (studio/core/detail/strain.py)",
            "eps_compression": detail.expression.eps,
            "photo_pixels_per_mm": None if np.isnan(detail.pixels_per_mm) else round(float(detail.pixels_per_mm), 3),
            "max_abs_displacement_mm": float(np.abs(detail.displacement).max() * mm)}


def _mesh(model, vertices, colors=None):
    from studio.core.facemodel import Mesh

    return Mesh(np.asarray(vertices, float), np.asarray(model.faces), colors, model.uv, model.face_uv,
                np.asarray(model.face_material), tuple(model.materials))


def detail_materials(model) -> list[str]:
    """The materials that hold detail triangles (ICT: M_Face)."""
    keep = detail_triangles(model)
    fm = np.asarray(model.face_material)
    return [model.materials[k] for k in np.unique(fm[keep])]


def glb_with_detail(model, vertices, colors, png: bytes, strength: float = 1.0) -> bytes:
    from studio.core.detail.gltf import add_normal_map, gltf_tangents
    from studio.core.export import mesh_arrays
    from studio.core.export_gltf import glb_bytes
    from studio.core.facemodel import UNIT_TO_MM

    arrays = mesh_arrays(_mesh(model, vertices, colors))
    glb = glb_bytes(arrays, scale=UNIT_TO_MM[model.meta.unit] / 1000.0, name=model.name,
                    copyright=model.meta.attribution or "")
    return add_normal_map(glb, png, gltf_tangents(arrays), detail_materials(model), strength)


def write_detailed_glb(path, model, params: dict, normal_rgb: np.ndarray, force: bool = False,
                       strength: float = 1.0) -> Path:
    """The face ``params`` as a GLB with the normal map ``normal_rgb`` (the window's File → Export
    while Detail is on; ``strength`` becomes normalTexture.scale)."""
    v = model.vertices(params)
    return Path(write_bytes(path, glb_with_detail(model, v, None, detail_io.rgb_png(normal_rgb), strength), force))


def _write_glb(path, model, vertices, colors, png, force):
    return write_bytes(path, glb_with_detail(model, vertices, colors, png), force)


def _write_obj(folder: Path, model, vertices, force) -> list:
    from studio.core.export import mesh_arrays, obj_bytes

    mesh = _mesh(model, vertices)
    data = obj_bytes(mesh_arrays(mesh), model.meta.attribution or "")
    detail_mats = set(detail_materials(model))
    # Blender's OBJ importer reads map_Bump as a tangent-space normal map (its -bm as the strength)
    lines = []
    for k, name in enumerate(model.materials):
        # the name as obj_bytes writes it after usemtl
        lines += [f"newmtl {'_'.join(name.split()) or f'material{k}'}", "Kd 0.8 0.8 0.8", "Ks 0 0 0", "illum 1"]
        if name in detail_mats:
            lines += ["map_Bump -bm 1.0 normal.png", "disp displacement.png"]
        lines.append("")
    mtl = write_bytes(folder / "face.mtl", "\n".join(lines).encode(), force)
    obj = write_bytes(folder / "face.obj", b"mtllib face.mtl\n" + data, force)
    return [obj, mtl]


def _write_dense(path, model, vertices, d, force):
    from studio.core.detail.displacement import densify
    from studio.core.export import export_mesh
    from studio.core.facemodel import Mesh

    V, F, _, _ = densify(vertices, model.faces, model.uv, model.face_uv, detail_triangles(model), d, levels=2)
    return export_mesh(Mesh(V, F), path, force)


def figure(model, fit, detail: FaceDetail, height: int = 480, with_photo: bool = True) -> np.ndarray:
    """(H, W, 3) uint8: the photo's face, the coarse fit, the fit with its detail (the displaced
    mesh, subdivided twice) and the displacement map, side by side; both renders grey under one
    frontal light so the shape alone is seen."""
    from studio.core.detail.displacement import densify
    from studio.core.photo import shading
    from studio.jobs.fit_photo import _face_box, _resize

    cam = fit.result.camera
    keep = detail_triangles(model)
    hide = shading.regions_named(model, shading.OVERLAY_WORDS)
    light = shading.ambient_light(0.3, 0.8, (0.35, 0.45, 1.0))
    V, F, dense, _ = densify(fit.vertices, model.faces, model.uv, model.face_uv, keep, detail.displacement, 2)
    meshes = [(np.asarray(fit.vertices, float), shading.drawable_faces(model)),
              (V, np.concatenate([F[~dense][~hide[F[~dense]].any(1)], F[dense]]))]
    box = _face_box(fit, fit.image.shape)
    panels = [_resize(fit.image[box[1]:box[3], box[0]:box[2]], height)] if with_photo else []
    for v, f in meshes:
        img, _ = shading.render_image(v, f, np.tile([0.8, 0.8, 0.8], (len(v), 1)), light, cam,
                                      background=np.array([1.0, 1.0, 1.0]))
        panels.append(_resize((img[box[1]:box[3], box[0]:box[2]] * 255 + 0.5).astype(np.uint8), height))
    panels.append(_resize(_map_image(detail), height))
    gap = np.full((height, 6, 3), 255, np.uint8)
    return np.concatenate([x for p in panels for x in (p, gap)][:-1], axis=1)


def _map_image(detail: FaceDetail) -> np.ndarray:
    """The displacement map in UV: grooves blue, ridges red, full scale at the 99th percentile of |d|."""
    d = detail.displacement
    scale = max(float(np.percentile(np.abs(d[detail.raster.mask]), 99)), 1e-9)
    t = np.clip(d / scale, -1, 1)[..., None]
    blue, red, white = np.array([0.15, 0.3, 0.9]), np.array([0.9, 0.25, 0.15]), np.ones(3)
    img = np.where(t < 0, white + (-t) * (blue - white), white + t * (red - white))
    img[~detail.raster.mask] = 0.85
    return (img * 255 + 0.5).astype(np.uint8)
