"""Detail maps as files: displacement as a 16-bit grey PNG, normal maps as 8-bit RGB PNG.

16-bit PNG counts: value = ZERO + d / step, with the step in millimetres stated in the detail
JSON (``DISPLACEMENT_STEP_MM`` = 1 µm: ±32 mm range, far beyond any wrinkle). Rows are images'
(row 0 is v = 1), the same as the UV texture and the normal map, so the three overlay in any editor.
"""

from __future__ import annotations

import io

import numpy as np

from studio.core.errors import StudioError

ZERO = 32768
DISPLACEMENT_STEP_MM = 0.001


def displacement_png(d: np.ndarray, mm_per_unit: float) -> bytes:
    import imageio.v3 as iio

    counts = np.clip(np.round(ZERO + np.asarray(d, float) * mm_per_unit / DISPLACEMENT_STEP_MM), 0, 65535)
    buf = io.BytesIO()
    iio.imwrite(buf, counts.astype(np.uint16), extension=".png")
    return buf.getvalue()


def read_displacement_png(data_or_path, mm_per_unit: float) -> np.ndarray:
    """The map back in model units; refuses anything but a square 16-bit grey PNG."""
    import imageio.v3 as iio

    try:
        if isinstance(data_or_path, bytes):
            img = iio.imread(data_or_path, extension=".png")
        else:
            img = iio.imread(data_or_path)
    except Exception as e:  # noqa: BLE001 - any decoder failure is bad input
        raise StudioError(f"cannot read the displacement map: {e}") from None
    if img.dtype != np.uint16 or img.ndim != 2 or img.shape[0] != img.shape[1]:
        raise StudioError(f"the displacement map must be a square 16-bit grey PNG, not {img.dtype} {img.shape}")
    return (img.astype(float) - ZERO) * DISPLACEMENT_STEP_MM / mm_per_unit


def rgb_png(img: np.ndarray) -> bytes:
    import imageio.v3 as iio

    buf = io.BytesIO()
    iio.imwrite(buf, np.asarray(img, np.uint8), extension=".png")
    return buf.getvalue()
