"""Photo fitting on the real portrait beside the repository (takeo, 68 points annotated by hand),
as a user runs it with the studio's own detector; and outputs that would collide are refused
before the fit starts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from studio.cli.main import main

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"


def read_pts(path: Path) -> np.ndarray:
    """iBUG .pts: 1-based pixel coordinates → 0-based pixel centres."""
    body = path.read_text().split("{")[1].split("}")[0]
    return np.array([[float(v) for v in line.split()] for line in body.strip().splitlines()]) - 1.0


def test_takeo_landmarks_lie_on_the_annotation(ict_store, monkeypatch, tmp_path, capsys):
    """NME over the outer-eye-corner distance: the brows sat 10 % high (the model's brow vertices and
    Face Mesh's upper brow contour both run above where the 68-point convention puts the brow)."""
    if not (PHOTOS / "takeo.ppm").is_file():
        pytest.skip(f"real portrait {PHOTOS / 'takeo.ppm'} not found (CI has ../shared/data/photos)")
    monkeypatch.setenv("STUDIO_HOME", str(ict_store))
    assert main(["fit", "photo", str(PHOTOS / "takeo.ppm"), "--model", "ict", "-o", str(tmp_path / "f.json"),
                 "--json"]) == 0
    out = json.loads([ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")][-1])
    assert out["detector"] == "mediapipe+dlib"  # both sources when dlib is installed (it is a dependency)
    fitted, truth = np.asarray(out["landmarks68_px"]), read_pts(PHOTOS / "takeo.pts")
    err = np.linalg.norm(fitted - truth, axis=1) / np.linalg.norm(truth[36] - truth[45])
    assert err.mean() <= 0.045
    assert err[:17].mean() <= 0.08  # jaw
    assert err[17:27].mean() <= 0.06  # brows


@pytest.mark.parametrize("detector", ["dlib", "mediapipe"])
def test_takeo_with_one_landmark_source(ict_store, monkeypatch, tmp_path, capsys, detector):
    """Each source alone still fits takeo (the default averages their 68: NME 4.3 % against 4.4 % and 4.6 %)."""
    if not (PHOTOS / "takeo.ppm").is_file():
        pytest.skip(f"real portrait {PHOTOS / 'takeo.ppm'} not found (CI has ../shared/data/photos)")
    monkeypatch.setenv("STUDIO_HOME", str(ict_store))
    assert main(["fit", "photo", str(PHOTOS / "takeo.ppm"), "--model", "ict", "-o", str(tmp_path / "f.json"),
                 "--json", "--detector", detector, "--landmarks-only"]) == 0
    out = json.loads([ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")][-1])
    assert out["detector"] == detector
    fitted, truth = np.asarray(out["landmarks68_px"]), read_pts(PHOTOS / "takeo.pts")
    err = np.linalg.norm(fitted - truth, axis=1) / np.linalg.norm(truth[36] - truth[45])
    assert err.mean() <= 0.055 and out["verdict"]["ok"]


def test_outputs_that_would_collide_are_refused_before_the_fit(ict_store, monkeypatch, tmp_path, capsys):
    """--mesh out/x.obj writes its texture as out/x.png; --overlay out/x.png once overwrote it and then
    stopped with "exists" after the whole fit."""
    monkeypatch.setenv("STUDIO_HOME", str(ict_store))
    import imageio.v3 as iio

    photo = tmp_path / "p.png"
    iio.imwrite(photo, np.full((200, 200, 3), 128, np.uint8))  # never read: refused first
    rc = main(["fit", "photo", str(photo), "--model", "ict", "-o", str(tmp_path / "x.json"),
               "--mesh", str(tmp_path / "x.obj"), "--overlay", str(tmp_path / "x.png")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "written twice" in err[0]
    assert not any(tmp_path.glob("x.*"))


def test_a_neutral_rendered_face_keeps_its_blendshape_weights_small(ict_model):
    """Fitted with the studio's own detector, a neutral face once came back with about 4.4 units of
    blendshape weight: detector noise, counted as hundreds of independent points, became expression."""
    from studio.core.photo import synthetic
    from studio.jobs.fit_photo import fit_photo_job

    photo = synthetic.render_photo(ict_model, np.random.default_rng(7), size=640, n_expressions=0,
                                   face_fraction=(0.3, 0.4))
    fit = fit_photo_job(ict_model, photo.image)
    expr = fit.result.params["expression"]
    assert expr.sum() < 2.0 and expr.max() <= 0.4  # 1.7 here, where it was about 4.4
