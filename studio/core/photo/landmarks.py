"""Facial landmarks that run offline: MediaPipe Face Mesh (478 points, models inside the wheel).

``detect_faces`` returns every face found, largest first, as (478, 2) pixel positions. Small faces
(which Face Mesh's own short-range detector misses) are found with the full-range BlazeFace
detector, cropped with a margin, enlarged and given to Face Mesh again. ``load_photo`` reads an
image file and refuses what cannot be a portrait, each with one line saying why.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from studio.core.errors import StudioError

MIN_SIDE = 64  # px: below this no detector finds facial features
MAX_SIDE = 2048  # px: larger photos are scaled down first (landmark accuracy does not improve)
N_POINTS = 478

# MediaPipe Face Mesh index → the 68 iBUG / dlib points (0-based iBUG order: jaw 0-16, brows 17-26,
# nose 27-35, eyes 36-47, outer lips 48-59, inner lips 60-67). Two indices: their mean. The brows
# are the midline of Face Mesh's upper and lower brow contours: its upper contour runs above the
# brow hair, where no 68-point annotation puts the brow (on takeo it was 4.7 % of the eye distance
# high; the midline 1.5 %).
MP_TO_IBUG68: tuple[tuple[int, ...], ...] = (
    (127,), (234,), (93,), (132, 58), (58, 172), (136,), (150,), (176,), (152,),
    (400,), (379,), (365,), (397, 288), (361,), (323,), (454,), (356,),
    (70, 46), (63, 53), (105, 52), (66, 65), (107, 55),
    (336, 285), (296, 295), (334, 282), (293, 283), (300, 276),
    (168, 6), (197, 195), (5,), (4,), (75,), (97,), (2,), (326,), (305,),
    (33,), (160,), (158,), (133,), (153,), (144,),
    (362,), (385,), (387,), (263,), (373,), (380,),
    (61,), (39,), (37,), (0,), (267,), (269,), (291,), (321,), (314,), (17,), (84,), (91,),
    (78,), (82,), (13,), (312,), (308,), (317,), (14,), (87,),
)
IBUG68_EYE_OUTER = (36, 45)
# MediaPipe's FACEMESH_FACE_OVAL: points on the face's outline, which depend on the view (a turned
# face shows another part of the cheek as its outline), so no fixed surface point matches them.
FACE_OVAL = (10, 21, 54, 58, 67, 93, 103, 109, 127, 132, 136, 148, 149, 150, 152, 162, 172, 176, 234, 251, 284,
             288, 297, 323, 332, 338, 356, 361, 365, 377, 378, 379, 389, 397, 400, 454)
IBUG68_BROWS = tuple(range(17, 27))  # outer eye corners: the inter-ocular distance of the 300-W benchmark

_lock = threading.Lock()
_models: dict[str, object] = {}


def ibug68_from_mediapipe(points: np.ndarray) -> np.ndarray:
    """(478, D) MediaPipe points → (68, D) iBUG points by the standard correspondence table."""
    points = np.asarray(points, float)
    return np.stack([points[list(ix)].mean(0) for ix in MP_TO_IBUG68])


def load_photo(path: str | os.PathLike) -> np.ndarray:
    """Read a photo as (H, W, 3) uint8 RGB; scale huge ones down; refuse tiny or unreadable ones."""
    path = Path(path)
    if not path.exists():
        raise StudioError(f"photo {path} does not exist")
    if path.is_dir():
        raise StudioError(f"{path} is a folder, not a photo")
    import imageio.v3 as iio

    try:
        img = np.asarray(iio.imread(path))
    except Exception:
        raise StudioError(f"{path} is not an image file this program can read (use PNG, JPEG, TIFF, BMP…)") from None
    if img.ndim == 4:  # animated GIF / multi-page TIFF: the first frame
        img = img[0]
    return prepare_image(img, str(path))


def prepare_image(img: np.ndarray, what: str = "the photo") -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise StudioError(f"{what} is not a colour or grey image (array of shape {img.shape})")
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    img = img[..., :3]
    if img.dtype != np.uint8:
        f = img.astype(np.float64)
        if np.issubdtype(img.dtype, np.integer):
            f = f / np.iinfo(img.dtype).max
        img = (np.clip(f, 0, 1) * 255 + 0.5).astype(np.uint8)
    h, w = img.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise StudioError(f"{what} is {w}×{h} pixels; a face needs at least {MIN_SIDE} pixels on each side")
    if max(h, w) > MAX_SIDE:
        from skimage.transform import resize

        s = MAX_SIDE / max(h, w)
        img = (resize(img, (round(h * s), round(w * s)), anti_aliasing=True, preserve_range=True)
               + 0.5).astype(np.uint8)
    return np.ascontiguousarray(img)


def _mediapipe(kind: str):
    """One Face Mesh / face detector per process (they hold their TFLite interpreters)."""
    if kind not in _models:
        os.environ.setdefault("GLOG_minloglevel", "2")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import warnings

        # protobuf's deprecation notice from inside mediapipe: nothing a user can act on.
        warnings.filterwarnings("ignore", message=r"SymbolDatabase\.GetPrototype", category=UserWarning)
        try:
            import mediapipe as mp
        except ImportError:
            raise StudioError("landmark detection needs mediapipe: pip install mediapipe==0.10.14") from None
        if kind == "mesh":
            _models[kind] = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=6,
                                                            refine_landmarks=True, min_detection_confidence=0.5)
        else:  # model_selection=1: the full-range detector (faces down to ~20 px in a large photo)
            _models[kind] = mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)
    return _models[kind]


def _mesh_points(img: np.ndarray) -> list[np.ndarray]:
    res = _mediapipe("mesh").process(np.ascontiguousarray(img))
    h, w = img.shape[:2]
    out = []
    for face in res.multi_face_landmarks or []:
        out.append(np.array([[p.x * w, p.y * h] for p in face.landmark]))
    return out


def _face_boxes(img: np.ndarray) -> list[tuple[float, float, float, float]]:
    res = _mediapipe("detect").process(np.ascontiguousarray(img))
    h, w = img.shape[:2]
    boxes = []
    for d in res.detections or []:
        b = d.location_data.relative_bounding_box
        boxes.append((b.xmin * w, b.ymin * h, b.width * w, b.height * h))
    return boxes


def _size(points: np.ndarray) -> float:
    return float(np.ptp(points[:, 0]) * np.ptp(points[:, 1]))


def detect_faces(img: np.ndarray) -> list[np.ndarray]:
    """All faces in an RGB uint8 image as (478, 2) pixel arrays (x right, y down), largest first."""
    from skimage.transform import resize

    with _lock:
        faces = _mesh_points(img)
        boxes = _face_boxes(img)
        # Faces the full-range detector sees that Face Mesh missed (small, far away): crop + enlarge.
        for (x, y, bw, bh) in boxes:
            cx, cy = x + bw / 2, y + bh / 2
            if any(np.hypot(*(f.mean(0) - (cx, cy))) < max(bw, bh) * 0.5 for f in faces):
                continue
            half = 1.0 * max(bw, bh)
            x0, y0 = int(max(cx - half, 0)), int(max(cy - half, 0))
            x1, y1 = int(min(cx + half, img.shape[1])), int(min(cy + half, img.shape[0]))
            if x1 - x0 < 8 or y1 - y0 < 8:
                continue
            crop = img[y0:y1, x0:x1]
            s = 384.0 / max(crop.shape[:2])
            big = (resize(crop, (round(crop.shape[0] * s), round(crop.shape[1] * s)), preserve_range=True)
                   + 0.5).astype(np.uint8)
            found = _mesh_points(big)
            if found:
                best = max(found, key=lambda f: -np.hypot(*(f.mean(0) / s - (cx - x0, cy - y0))))
                faces.append(best / s + (x0, y0))
    return sorted(faces, key=_size, reverse=True)


def detect_one(img: np.ndarray, face: int | None = None, what: str = "the photo") -> np.ndarray:
    """The (478, 2) landmarks of the one face in ``img``; ``face`` (1-based, largest first) picks one
    when there are several."""
    faces = detect_faces(img)
    if not faces:
        raise StudioError(f"no face found in {what}; use a photo that shows one face, roughly frontal "
                          "(up to about 45° to the side) and at least about 40 pixels across")
    return faces[pick_face(len(faces), face, what)]


def pick_face(count: int, face: int | None, what: str) -> int:
    """The index of the face to fit among ``count`` found (largest first), whichever detector found
    them: the only one, or ``face`` (1-based); one line when that is ambiguous or out of range."""
    if face is None:
        if count > 1:
            raise StudioError(f"{what} shows {count} faces; crop it to one face or pick one with "
                              f"--face N (1 = the largest … {count})")
        return 0
    if not 1 <= face <= count:
        raise StudioError(f"--face {face} is out of range: {what} shows {count} face(s)")
    return face - 1
