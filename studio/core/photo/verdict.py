"""Whether a photo fit can be trusted, judged from its own evidence (as the scan verdict does).

* **landmark agreement** — the fitted face's 68 points against the detected ones, as a fraction
  of the eye distance (median over the points): a face the fit could not follow (a wrong pose, a
  profile, a detection on something that is not a face) shows here;
* **plausibility** — the coefficients under the model's prior (fitting/verdict.py).

What the verdict cannot see, and the bench measures: how well the identity itself is determined.
From one photo and a face detector it is weakly determined (README: `studio bench photo`).
"""

from __future__ import annotations

import numpy as np

from studio.core.facemodel import FaceModel
from studio.core.fitting.verdict import Verdict, plausibility

MAX_LANDMARK_ERROR = 0.08  # median fitted ↔ detected distance, × the eye distance (fits that follow
# the face: 2-4 %; a pose off by 20° or a face the model cannot take: above 10 %)


def judge(model: FaceModel, params: dict, landmark_error: np.ndarray, interocular_px: float) -> Verdict:
    """``landmark_error``: per-landmark distance (px) between the fitted and the detected points."""
    v = Verdict(True)
    err = float(np.median(landmark_error) / max(interocular_px, 1e-9))
    v.evidence["landmark_error_iod"] = err
    if not np.isfinite(err) or err > MAX_LANDMARK_ERROR:
        v.reasons.append(f"the fitted face lies {100 * err:.0f}% of the eye distance from the detected landmarks "
                         "(median); the pose or the face is likely wrong")
    plausibility(model, params, v)
    v.ok = not v.reasons
    return v
