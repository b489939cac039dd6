"""Jaw-line landmarks on a turned face: re-tied to the face's outline (contour.py), and the photo
fit's verdict."""

from __future__ import annotations

import numpy as np
import pytest


def _outline(frags, faces, allowed, width) -> np.ndarray:
    """Pixel centres on the occluding outline of the allowed triangles: a pixel that is in front of a
    neighbour by more than 3 % of the face's width, or next to the background."""
    depth = np.where(frags.mask, frags.depth, np.inf)
    edge = np.zeros(frags.mask.shape, bool)
    for axis in (0, 1):
        for shift in (1, -1):
            nb = np.roll(depth, shift, axis=axis)
            with np.errstate(invalid="ignore"):
                edge |= frags.mask & (nb - depth > 0.03 * width)
    ok = np.r_[allowed[faces].all(1), False]
    edge &= ok[frags.tri]
    y, x = np.nonzero(edge)
    return np.c_[x + 0.5, y + 0.5]


@pytest.mark.parametrize("yaw", [30.0, -30.0])
def test_far_side_jaw_points_lie_on_the_outline_of_a_turned_face(ict_model, yaw):
    """Fixed jaw vertices sat up to 10-30 % of the eye distance inside the far-side outline at 30° (the
    held-out portraits: the far jaw line 30-40 px inside the face)."""
    from scipy.spatial import cKDTree

    from studio.core.geometry.raster import rasterize
    from studio.core.photo import contour, embedding, shading
    from studio.core.photo.camera import Camera, default_focal, euler_to_matrix, matrix_to_axis_angle

    model = ict_model
    lm = np.asarray(model.meta.landmarks["ibug68"])
    region = embedding.landmark_region(model)
    c = contour.build(np.asarray(model.mean, float), lm[:17], region, np.arange(17), np.asarray(model.mean)[lm[30]])
    v = model.vertices(model.sample(np.random.default_rng(3))).astype(float)
    R = euler_to_matrix(yaw, 5.0, 0.0)
    size, f = 800, default_focal(800, 800)
    centre = (v[region].min(0) + v[region].max(0)) / 2
    width = float(np.ptp(v[region][:, 0]))
    cam = Camera(size, size, f, matrix_to_axis_angle(R), -R @ centre + np.array([0, 0, -f * width / (size * 0.4)]))
    xy, depth = cam.project(v)
    faces = shading.drawable_faces(model)
    allowed = np.zeros(model.n_vertices, bool)
    allowed[region] = True
    tree = cKDTree(_outline(rasterize(xy, depth, faces, size, size), faces, allowed, width))
    iod = np.linalg.norm(xy[lm[36]] - xy[lm[45]])

    chosen = contour.select(c, v, cam.R, cam.translation, f)
    moved = chosen != lm[:17]
    assert 5 <= moved.sum() <= 9  # the side turned away, not the near side
    on_outline = tree.query(xy[chosen[moved]])[0] / iod
    fixed = tree.query(xy[lm[:17][moved]])[0] / iod
    assert on_outline.max() <= 0.02, on_outline
    assert fixed.max() > 0.08  # where the fixed vertices were


def test_a_frontal_face_keeps_its_jaw_vertices(ict_model):
    from studio.core.photo import contour, embedding

    lm = np.asarray(ict_model.meta.landmarks["ibug68"])
    mean = np.asarray(ict_model.mean, float)
    c = contour.build(mean, lm[:17], embedding.landmark_region(ict_model), np.arange(17), mean[lm[30]])
    t = np.array([0.0, 0.0, -60.0])
    np.testing.assert_array_equal(contour.select(c, mean, np.eye(3), t, 1000.0), lm[:17])


# -- the photo verdict -------------------------------------------------------------------------------
def test_photo_verdict_fails_a_face_the_fit_could_not_follow_or_an_implausible_one(ict_model):
    from studio.core.photo.verdict import judge

    zeros = ict_model.zeros()
    assert judge(ict_model, zeros, np.full(68, 2.0), 60.0).ok  # 3 % of the eye distance
    far = judge(ict_model, zeros, np.full(68, 9.0), 60.0)  # 15 %
    assert not far.ok and "detected landmarks" in far.reasons[0]
    odd = {k: v.copy() for k, v in zeros.items()}
    shape = next(g for g in ict_model.groups if g.name == "shape")
    odd["shape"][0] = 6.0 * np.broadcast_to(np.asarray(shape.sigma, float), shape.size)[0]
    assert not judge(ict_model, odd, np.full(68, 2.0), 60.0).ok


def test_fit_photo_exits_3_after_writing_when_the_verdict_fails(ict_store, monkeypatch, tmp_path, capsys):
    """A result the program cannot stand behind is a failure (status 3), with its outputs kept to look at."""
    import imageio.v3 as iio
    from skimage import data

    from studio.cli.main import main
    from studio.core.fitting.verdict import Verdict
    from studio.jobs import fit_photo

    monkeypatch.setenv("STUDIO_HOME", str(ict_store))
    monkeypatch.setattr(fit_photo, "judge", lambda *a, **k: Verdict(False, ["the fitted face lies 40% away"]))
    photo = tmp_path / "a.png"
    iio.imwrite(photo, data.astronaut())
    rc = main(["fit", "photo", str(photo), "--model", "ict", "-o", str(tmp_path / "a.json"), "--landmarks-only"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 3 and err[-1] == "studio: fit failed: the fitted face lies 40% away"
    assert (tmp_path / "a.json").is_file()
