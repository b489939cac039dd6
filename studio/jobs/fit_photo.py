"""Fit a model to a photo: detect landmarks, tie them to the model, fit, write the outputs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from studio.core import params as params_io
from studio.core.atomic import check_writable
from studio.core.errors import StudioError
from studio.core.photo import embedding
from studio.core.photo.fit import PhotoFitOptions, PhotoFitResult, fit_photo
from studio.core.photo.landmarks import (
    IBUG68_BROWS,
    IBUG68_EYE_OUTER,
    detect_one,
    ibug68_from_mediapipe,
    load_photo,
    pick_face,
    prepare_image,
)
from studio.core.photo.verdict import Verdict, judge
from studio.core.progress import report, scaled


@dataclass
class PhotoFit:
    model_name: str
    image: np.ndarray  # the photo as fitted (uint8; scaled down when it was huge)
    image_scale: float  # photo pixels per fitted-image pixel (1 unless scaled down)
    mediapipe_px: np.ndarray | None  # (478, 2) Face Mesh's points, fitted-image pixels (None: dlib alone)
    result: PhotoFitResult
    vertices: np.ndarray  # the fitted face (model coordinates)
    landmarks68_px: np.ndarray | None  # fitted model's 68 iBUG points, photo pixels
    detected68_px: np.ndarray  # the detected 68 the fit used, photo pixels
    verdict: Verdict | None = None  # whether the fit can be trusted (photo/verdict.py)
    detector: str = "mediapipe"  # which landmark source(s): mediapipe, dlib, mediapipe+dlib

    @property
    def interocular_px(self) -> float:
        a, b = IBUG68_EYE_OUTER
        return float(np.linalg.norm(self.detected68_px[a] - self.detected68_px[b]))

    def errors68(self) -> np.ndarray | None:
        """Per-landmark distance of the fitted 68 from the detected 68, in photo pixels."""
        if self.landmarks68_px is None:
            return None
        return np.linalg.norm(self.landmarks68_px - self.detected68_px, axis=1)

    def summary(self) -> dict:
        out = {"model": self.model_name, "detector": self.detector, "landmarks_fitted": int(len(self.result.points_px)),
               "landmark_rms_px": float(np.sqrt(np.mean(self.result.landmark_error_px ** 2)) * self.image_scale),
               "interocular_px": self.interocular_px, "timings_s": self.result.timings}
        e = self.errors68()
        if e is not None:
            out["landmarks68_px"] = [[float(x), float(y)] for x, y in self.landmarks68_px]
            out["landmark68_error_px"] = [float(x) for x in e]
            out["landmark68_mean_error_iod"] = float(e.mean() / self.interocular_px)
            out["landmark68_max_error_iod"] = float(e.max() / self.interocular_px)
        if self.verdict is not None:
            out["verdict"] = self.verdict.as_json()
        return out


DETECTORS = ("auto", "mediapipe", "dlib", "both")  # auto: both when dlib is installed


def fit_photo_job(model, photo, face: int | None = None, options: PhotoFitOptions | None = None, progress=None,
                  preview=None, detector: str = "auto") -> PhotoFit:
    """``photo``: a path or an (H, W, 3) array. ``face``: 1-based, largest first, when there are several.
    ``detector``: one of DETECTORS (dlib68.py says what each does best)."""
    if not model.supports_photo_fit:
        raise StudioError("photo fitting needs a linear (PCA) model")
    if detector not in DETECTORS:
        raise StudioError(f"unknown detector '{detector}' (choose from {', '.join(DETECTORS)})")
    if isinstance(photo, (str, Path)):
        what = str(photo)
        original = load_photo(photo)  # already scaled down when huge
        h0 = _original_height(photo, original)
    else:
        what = "the photo"
        h0 = np.asarray(photo).shape[0]
        original = prepare_image(photo, what)
    image = original
    scale = h0 / image.shape[0]
    report(progress, 0.01, "finding the face")
    points, lm68, used = _detect(image, face, what, detector)
    emb = embedding.load_or_compute(model, scaled(progress, 0.02, 0.08))
    corr = embedding.correspondences(model, emb, points, ibug68_points=lm68)
    res = fit_photo(model, image, corr, options, scaled(progress, 0.08, 1.0), preview)
    vertices = model.vertices(res.params)
    fitted = embedding.model_ibug68(model, emb, vertices, embedded_brows=points is not None)
    fitted68 = None if fitted is None else res.camera.project(fitted)[0] * scale
    fit = PhotoFit(model.name, image, scale, points, res, vertices, fitted68, lm68 * scale, detector=used)
    errors = fit.errors68() if fitted68 is not None else res.landmark_error_px * scale
    fit.verdict = judge(model, res.params, errors, fit.interocular_px)
    return fit


def _detect(image, face, what, detector):
    """(Face Mesh's 478 points or None, the 68 points to fit, which detectors were used)."""
    from studio.core.photo import dlib68

    use_dlib = detector in ("dlib", "both") or (detector == "auto" and dlib68.available())
    if detector == "dlib":
        found = dlib68.detect_faces(image)
        if not found:
            raise StudioError(f"dlib finds no face in {what}; try --detector mediapipe")
        return None, found[pick_face(len(found), face, what)][0], "dlib"
    points = detect_one(image, face, what)
    mp68 = ibug68_from_mediapipe(points)
    other = dlib68.match(dlib68.detect_faces(image), mp68) if use_dlib else None
    if other is None:
        return points, mp68, "mediapipe"
    both = (mp68 + other) / 2
    both[list(IBUG68_BROWS)] = mp68[list(IBUG68_BROWS)]  # Face Mesh's brow midline is the closer (dlib68.py)
    return points, both, "mediapipe+dlib"


def _original_height(path, loaded: np.ndarray) -> int:
    try:
        from PIL import Image

        with Image.open(path) as im:
            return int(im.size[1])
    except Exception:
        return loaded.shape[0]


def overlay_image(model, fit: PhotoFit, alpha: float = 0.5) -> np.ndarray:
    """The full photo and, beside it, the face cropped and enlarged: the fitted face blended over the
    photo, detected landmarks in green and the model's in red.

    The face is drawn in a neutral skin tone under a fixed frontal light (not the fitted albedo
    and light, which reproduce the photo so well that the overlay would be invisible), so its
    shape and placement can be judged against the photo. In a group photo or a half-length
    portrait the face is a small part of the frame; the crop shows it CROP_PX tall.
    """
    blended = _blend(model, fit, alpha)
    box = _face_box(fit, blended.shape)
    crop = _resize(blended[box[1]:box[3], box[0]:box[2]], CROP_PX)
    s = CROP_PX / (box[3] - box[1])
    _draw_landmarks(crop, fit, s, -np.array(box[:2], float) * s)
    full = _resize(blended, CROP_PX)
    _draw_landmarks(full, fit, CROP_PX / blended.shape[0], np.zeros(2))
    x0, y0, x1, y1 = (np.array(box, float) * CROP_PX / blended.shape[0]).round().astype(int)
    _rectangle(full, x0, y0, x1, y1)  # where the crop comes from
    gap = np.full((CROP_PX, 8, 3), 255, np.uint8)
    return np.concatenate([full, gap, crop], axis=1)


CROP_PX = 640  # height of the overlay (the full photo and the face crop side by side)


def _blend(model, fit: PhotoFit, alpha: float) -> np.ndarray:
    from studio.core.photo import shading
    from studio.core.photo.embedding import fit_region

    albedo = np.tile([0.75, 0.75, 0.78], (model.n_vertices, 1))
    light = shading.ambient_light(0.35, 0.75, (0.25, 0.3, 1.0))
    region = np.zeros(model.n_vertices, bool)
    region[fit_region(model)] = True
    faces = shading.drawable_faces(model)
    faces = faces[region[faces].all(1)]
    rend, frags = shading.render_image(fit.vertices, faces, albedo, light, fit.result.camera)
    out = fit.image.astype(np.float64) / 255.0
    m = frags.mask[..., None]
    out = np.where(m, (1 - alpha) * out + alpha * rend, out)
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)


def _face_box(fit: PhotoFit, shape) -> tuple[int, int, int, int]:
    """A square around the detected face with a margin, clipped to the image (x0, y0, x1, y1)."""
    pts = fit.mediapipe_px if fit.mediapipe_px is not None else fit.detected68_px / fit.image_scale
    lo, hi = pts.min(0), pts.max(0)
    c, half = (lo + hi) / 2, 0.65 * float(np.max(hi - lo))
    h, w = shape[:2]
    half = min(half, w / 2, h / 2)
    x0, y0 = np.clip(c - half, 0, None)
    x0, y0 = min(x0, w - 2 * half), min(y0, h - 2 * half)
    return int(x0), int(y0), int(round(x0 + 2 * half)), int(round(y0 + 2 * half))


def _resize(img: np.ndarray, height: int) -> np.ndarray:
    from skimage.transform import resize

    width = max(1, round(img.shape[1] * height / img.shape[0]))
    return (resize(img, (height, width), preserve_range=True, anti_aliasing=True) + 0.5).astype(np.uint8)


def _draw_landmarks(img: np.ndarray, fit: PhotoFit, scale: float, offset: np.ndarray) -> None:
    from skimage.draw import disk

    res = fit.result
    r = max(1.5, img.shape[0] / 220)
    if fit.landmarks68_px is not None:  # the 68 read best; all fitted points otherwise
        pairs = ((fit.detected68_px / fit.image_scale, (40, 230, 60)),
                 (fit.landmarks68_px / fit.image_scale, (240, 40, 40)))
    else:
        pairs = ((res.points_px, (40, 230, 60)), (res.fitted_px, (240, 40, 40)))
    for pts, col in pairs:
        for x, y in pts * scale + offset:
            rr, cc = disk((y - 0.5, x - 0.5), r, shape=img.shape[:2])
            img[rr, cc] = col


def _rectangle(img: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> None:
    from skimage.draw import rectangle_perimeter

    for k in range(2):
        rr, cc = rectangle_perimeter((y0 + k, x0 + k), end=(y1 - 1 - k, x1 - 1 - k), shape=img.shape[:2])
        img[rr, cc] = (255, 220, 0)


def write_outputs(model, fit: PhotoFit, params_path=None, mesh_path=None, overlay_path=None,
                  force: bool = False) -> list[Path]:
    written = []
    res = fit.result
    if params_path is not None:
        extra = {"pose": {"rotation_axis_angle": [float(x) for x in res.camera.rotation],
                          "translation": [float(x) for x in res.camera.translation],
                          "yaw_pitch_roll_deg": res.camera.as_json()["yaw_pitch_roll_deg"]},
                 "camera": res.camera.as_json() | {"image_scale": fit.image_scale},
                 "light": {"model": "spherical harmonics, 2nd order, per RGB channel (9 x 3)",
                           "coefficients": res.light.tolist()},
                 "fit": fit.summary()}
        written.append(params_io.save(params_path, model.name, res.params, force, **extra))
    if mesh_path is not None:
        from studio.core.photo.texture import photo_texture, write_textured

        tex = photo_texture(model, fit.vertices, res.camera, fit.image)
        written += write_textured(mesh_path, model, fit.vertices, tex, force)
    if overlay_path is not None:
        from studio.core.render import write_png

        written.append(Path(write_png(overlay_path, overlay_image(model, fit), force)))
    return written


def check_outputs(paths, force: bool) -> None:
    """Refuse existing outputs, and outputs that would land on one another (an OBJ's texture
    FACE.png and an overlay FACE.png), before a fit spends seconds on them."""
    planned: dict[Path, str] = {}
    for p in paths:
        if p is None:
            continue
        p = Path(p)
        files = [(p, p.name)]
        if p.suffix.lower() == ".obj":
            files += [(p.with_suffix(".png"), f"the texture of {p.name}"),
                      (p.with_suffix(".mtl"), f"the material of {p.name}")]
        for f, what in files:
            key = f.resolve()
            if key in planned:
                raise StudioError(f"{f.name} would be written twice ({planned[key]} and {what}); give different names")
            planned[key] = what
            check_writable(f, force)
