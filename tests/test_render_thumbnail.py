"""Face thumbnails (library, welcome): a close-up of the face with its eyes, not a bust in the void."""

from __future__ import annotations

import numpy as np


def test_ict_thumbnail_is_a_face_close_up_with_pupils(ict_model):
    from studio.core.render import BACKGROUND, face_closeup

    img = face_closeup(ict_model, ict_model.zeros(), 128).astype(float)
    background = np.abs(img - BACKGROUND * 255).sum(2) < 6
    assert background.mean() < 0.25  # the face fills the frame (the bust left 60 % empty)
    # iris and pupil: dark pixels in the upper middle (the eyes rendered blank white before)
    eyes = img[35:70, 20:108].mean(2)
    assert (eyes < 60).sum() >= 10
