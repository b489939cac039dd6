"""Fine detail in the window (studio/app/detail_view.py): the Photo dock's Detail toggle and
strength slider, the viewport's PBR shading with the normal texture, and the map following the
expression sliders. The detail is made by hand on the small synthetic model (grooves in its UV
layout), so no photo fit is needed."""

from __future__ import annotations

import numpy as np
import pytest
from test_app import TIMEOUT, open_window, save_synth, settle

pytestmark = pytest.mark.gui


def hand_made_detail(model, size=64):
    from studio.core.detail.animate import ExpressionDetail
    from studio.core.detail.strain import compression_map
    from studio.core.detail.uv_raster import model_raster
    from studio.jobs.detail import FaceDetail

    raster = model_raster(model, size)
    rows, cols = np.mgrid[0:size, 0:size]
    d = np.where(raster.mask, -0.4 * (0.5 + 0.5 * np.cos(2 * np.pi * rows / 8)), 0.0)  # mm: grooves
    params = {g.name: np.zeros(g.size) for g in model.groups}
    params["expression"][:] = 0.8
    c0 = compression_map(model, raster, params)
    return FaceDetail(d, ExpressionDetail.split(d, c0), c0, raster, raster.mask)


def test_detail_toggle_shows_a_normal_map_that_follows_the_sliders(qtbot, studio_home):
    model = save_synth(subdivisions=4)
    w = open_window(qtbot)
    vp, controls = w.viewport, w.detail_controls
    before = vp.image().astype(float)
    controls.set_detail(hand_made_detail(w.doc.model))
    qtbot.waitUntil(lambda: controls.image is not None, timeout=TIMEOUT)
    settle(qtbot, w)
    prop = vp.actor.GetProperty()
    assert controls.toggle.isChecked() and controls.slider.isEnabled()
    assert prop.GetInterpolationAsString() == "Physically based rendering"
    assert prop.GetTexture("normalTex") is not None
    assert vp.poly.GetPointData().GetTangents() is not None and vp.poly.active_texture_coordinates is not None
    vp._render_now()
    detailed = vp.image().astype(float)
    assert np.abs(detailed - before).mean() > 0.5  # the grooves change the shading

    controls.slider.setValue(0)  # strength 0: the normal map tilts nothing
    assert prop.GetNormalScale() == 0.0
    controls.slider.setValue(200)
    assert prop.GetNormalScale() == pytest.approx(2.0)

    first = controls.image.copy()
    w.panel.slider("expression", 0).setValue(1.0)  # the skin folds: the map is recomputed
    qtbot.waitUntil(lambda: controls.image is not None and not np.array_equal(controls.image, first),
                    timeout=TIMEOUT)
    settle(qtbot, w)

    # a photo too coarse for creases: the status bar says so
    coarse = hand_made_detail(w.doc.model)
    coarse.pixels_per_mm = 0.4
    controls.set_detail(coarse)
    assert "0.40 pixels per mm" in w.status.last_message
    settle(qtbot, w)

    controls.toggle.setChecked(False)
    assert prop.GetTexture("normalTex") is None
    assert prop.GetInterpolationAsString() == "Phong"
    assert model.n_vertices == len(vp.points)


def test_glb_export_carries_the_detail_on_screen(qtbot, studio_home, tmp_path, monkeypatch):
    import pygltflib
    from gltf_check import assert_valid

    from studio.app import dialogs

    save_synth(subdivisions=3)
    w = open_window(qtbot)
    controls = w.detail_controls
    controls.set_detail(hand_made_detail(w.doc.model))
    qtbot.waitUntil(lambda: controls.image is not None, timeout=TIMEOUT)
    settle(qtbot, w)
    out = tmp_path / "face.glb"
    monkeypatch.setattr(dialogs, "save_path", lambda *a, **k: out)
    w.exporter.export_face("glTF binary (*.glb)", ".glb", False)
    qtbot.waitUntil(lambda: out.exists() and not w.runner.busy, timeout=TIMEOUT)
    doc = pygltflib.GLTF2().load(str(out))
    assert doc.materials[0].normalTexture is not None and doc.images
    assert_valid(out)
