"""Mesh extraction from the neural head and the neural model as a FaceModel (CLI and window).

Everything here runs on analytic SDFs or on a tiny untrained network saved as a real checkpoint
(``untrained_checkpoint`` + ``save_checkpoint``): no training data and no trained model needed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from studio.bench.extract import capsule_head
from studio.cli.main import main
from studio.core.metrics import nearest
from studio.core.neural.extract import extract


def torus(x: torch.Tensor) -> torch.Tensor:
    q = torch.stack([torch.linalg.norm(x[:, [0, 2]], dim=-1) - 0.55, x[:, 1]], dim=-1)
    return torch.linalg.norm(q, dim=-1) - 0.2


def max_distance_voxels(a, b) -> float:
    worst = max(float(nearest(a.vertices, b.vertices)[0].max()), float(nearest(b.vertices, a.vertices)[0].max()))
    return worst / a.voxel


@pytest.fixture(autouse=True)
def small_grids(monkeypatch):
    """Models opened by path (CLI, window) extract at these resolutions here: the tiny network is
    smooth, and the tests are about plumbing, not detail."""
    from studio.core.neural import facemodel

    monkeypatch.setattr(facemodel, "FULL_RESOLUTION", 96)
    monkeypatch.setattr(facemodel, "PREVIEW_RESOLUTION", 40)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    from studio.core.neural.checkpoint import save_checkpoint
    from studio.core.neural.config import tiny_config
    from studio.core.neural.facemodel import untrained_checkpoint

    path = tmp_path_factory.mktemp("neural") / "tiny.safetensors"
    ck = untrained_checkpoint(tiny_config(), seed=3)
    ck.meta["attribution"] = "tiny test network"
    save_checkpoint(path, ck)
    return path


@pytest.fixture
def tiny(tiny_ckpt):
    from studio.core.neural.facemodel import load_neural

    return load_neural(tiny_ckpt, resolution=48, preview_resolution=24, device="cpu")


# -- extraction ------------------------------------------------------------------------------------
@pytest.mark.parametrize("sdf,n", [(capsule_head, 64), (torus, 57)])
def test_narrow_band_mesh_equals_dense_within_half_a_voxel(sdf, n):
    dense = extract(sdf, n, narrow_band=False)
    band = extract(sdf, n, narrow_band=True)
    assert len(band.faces) > 1000
    assert max_distance_voxels(band, dense) <= 0.5
    # the band asks a fraction of the grid
    assert dense.queries == n ** 3 and band.queries < 0.35 * dense.queries


def test_extracted_mesh_is_closed_outward_and_where_the_surface_is():
    import trimesh

    def sphere(x):
        return torch.linalg.norm(x - x.new_tensor([0.1, -0.05, 0.0]), dim=-1) - 0.6

    e = extract(sphere, 64, bounds=(-1.0, 1.0))
    mesh = trimesh.Trimesh(e.vertices, e.faces, process=True)
    assert mesh.is_watertight
    assert mesh.volume == pytest.approx(4 / 3 * np.pi * 0.6 ** 3, rel=0.02)  # positive: faces point out
    r = np.linalg.norm(e.vertices - [0.1, -0.05, 0.0], axis=1)
    assert np.abs(r - 0.6).max() < 0.25 * e.voxel
    # bounds per axis: the same sphere in a shifted box lands in the same place
    e2 = extract(sphere, 64, bounds=((-0.9, -1.0, -0.8), (1.1, 0.9, 0.9)))
    assert np.abs(np.linalg.norm(e2.vertices - [0.1, -0.05, 0.0], axis=1) - 0.6).max() < 0.25 * e2.voxel


def test_narrow_band_on_a_network_sdf_equals_dense(tiny):
    z_id, _ = tiny.latents(tiny.sample(np.random.default_rng(1), scale=2.0))
    fn = tiny.sdf_fn(z_id)
    dense = extract(fn, 48, narrow_band=False)
    band = extract(fn, 48)
    assert len(dense.faces) > 500
    assert max_distance_voxels(band, dense) <= 0.5


def test_extraction_refuses_bad_settings():
    from studio.core.errors import StudioError

    with pytest.raises(StudioError, match="resolution"):
        extract(torus, 2)
    with pytest.raises(StudioError, match="bounds"):
        extract(torus, 16, bounds=(1.0, -1.0))


# -- the FaceModel ---------------------------------------------------------------------------------
def test_neural_model_satisfies_the_facemodel_protocol(tiny):
    from studio.core.facemodel import FaceModel

    assert isinstance(tiny, FaceModel) and tiny.kind == "neural"
    groups = {g.name: g for g in tiny.groups}
    assert set(groups) == {"identity", "expression"}
    assert groups["identity"].names[:2] == ("ID1", "ID2") and groups["expression"].names[0] == "EX1"
    assert all(g.prior == "normal" for g in tiny.groups)
    mesh = tiny.mesh(tiny.zeros())
    assert tiny.meta.unit == "mm" and tiny.meta.attribution == "tiny test network"
    assert mesh.vertices.shape[1] == 3 and mesh.faces.max() < len(mesh.vertices)
    # all-zero parameters are the mean identity code and the neutral (zero) expression code
    z_id, z_ex = tiny.latents(tiny.zeros())
    np.testing.assert_allclose(z_id, tiny.checkpoint.stats["id_mean"], atol=1e-9)
    assert not np.any(z_ex)
    # parameters are σ units along the principal directions: params_for inverts latents
    p = tiny.sample(np.random.default_rng(0))
    z_id, z_ex = tiny.latents(p)
    np.testing.assert_allclose(tiny.params_for(z_id, z_ex)["identity"], p["identity"], atol=1e-6)


def test_a_latent_slider_change_changes_the_extracted_mesh(tiny):
    base = tiny.mesh(tiny.zeros())
    p = tiny.zeros()
    p["identity"][0] = 2.5
    moved = tiny.mesh(p)
    d = nearest(moved.vertices, base.vertices)[0]
    assert d.max() > 1.0  # mm (the tiny model is ~120 mm across)

    # an expression change re-runs only the deformation on the cached canonical mesh
    n = tiny.extractions
    q = {k: v.copy() for k, v in p.items()}
    q["expression"][0] = 3.0
    posed = tiny.mesh(q)
    assert tiny.extractions == n
    np.testing.assert_array_equal(posed.faces, moved.faces)
    assert np.abs(posed.vertices - moved.vertices).max() > 1e-3
    # preview meshes are coarser
    assert len(tiny.preview_mesh(p).faces) < len(moved.faces)


def test_fitting_the_latent_code_reduces_the_surface_distance(tiny):
    from studio.core.neural.fitting import fit_identity

    rng = np.random.default_rng(5)
    target = tiny.sample(rng, scale=1.5)
    z_true, _ = tiny.latents(target)
    v, _ = tiny.canonical(z_true, 48)
    st = tiny.checkpoint.stats
    before = fit_identity(tiny.net, v, st["id_mean"], st["id_cov"], steps=1, lr=0.0)
    after = fit_identity(tiny.net, v, st["id_mean"], st["id_cov"], steps=80, lr=0.05)
    assert after.mean_abs_sdf < 0.5 * before.mean_abs_sdf


# -- CLI -------------------------------------------------------------------------------------------
def test_sample_export_interpolate_on_a_neural_checkpoint(tiny_ckpt, tmp_path, capsys):
    import trimesh

    out = tmp_path / "out"
    assert main(["sample", "--model", str(tiny_ckpt), "--count", "2", "--seed", "4", "-o", str(out)]) == 0
    a, b = out / "face_000", out / "face_001"
    ma, mb = trimesh.load(a.with_suffix(".obj"), process=False), trimesh.load(b.with_suffix(".obj"), process=False)
    assert len(ma.vertices) > 1000 and len(ma.faces) > 1000
    assert "tiny test network" in a.with_suffix(".obj").read_text()[:2000]  # attribution travels along
    pa = json.loads(a.with_suffix(".json").read_text())
    assert set(pa["groups"]) == {"identity", "expression"} and not any(pa["groups"]["expression"])
    assert np.any(pa["groups"]["identity"])
    assert len(ma.vertices) != len(mb.vertices) or not np.allclose(ma.vertices, mb.vertices)

    ply = tmp_path / "a.ply"
    assert main(["export", "--model", str(tiny_ckpt), "--params", str(a.with_suffix(".json")), "-o", str(ply)]) == 0
    mp = trimesh.load(ply, process=False)
    np.testing.assert_allclose(np.asarray(mp.vertices), np.asarray(ma.vertices), atol=1e-3)
    assert main(["export", "--model", str(tiny_ckpt), "-o", str(tmp_path / "mean.glb")]) == 0
    assert main(["export", "--model", str(tiny_ckpt), "-o", str(tmp_path / "m.glb"), "--morph-targets", "3"]) == 2
    assert "linear" in capsys.readouterr().err

    frames = tmp_path / "frames"
    assert main(["interpolate", "--model", str(tiny_ckpt), str(a.with_suffix(".json")), str(b.with_suffix(".json")),
                 "--steps", "3", "-o", str(frames), "--gif", str(tmp_path / "m.gif"), "--size", "64"]) == 0
    mid = json.loads((frames / "frame_001.json").read_text())["groups"]["identity"]
    np.testing.assert_allclose(mid, 0.5 * (np.array(pa["groups"]["identity"]) +
                                           np.array(json.loads(b.with_suffix(".json").read_text())["groups"]["identity"])))
    m0 = trimesh.load(frames / "frame_000.obj", process=False)
    np.testing.assert_allclose(np.asarray(m0.vertices), np.asarray(ma.vertices), atol=1e-3)
    assert (tmp_path / "m.gif").stat().st_size > 0


def test_model_name_neural_opens_the_shipped_checkpoint(tiny_ckpt, tmp_path, monkeypatch, capsys):
    from studio.core import registry, store
    from studio.core.errors import StudioError

    monkeypatch.setattr(store, "CHECKPOINTS", tmp_path / "none")
    with pytest.raises(StudioError, match="no model named 'neural'"):
        store.resolve("neural")
    shipped = tmp_path / "ckpts" / "neural" / "neural_head.safetensors"
    shipped.parent.mkdir(parents=True)
    shipped.write_bytes(tiny_ckpt.read_bytes())
    monkeypatch.setattr(store, "CHECKPOINTS", tmp_path / "ckpts")
    model = registry.open_model("neural")
    assert model.kind == "neural" and model.name == "neural"
    # a first start without a linear default model opens the shipped neural head
    from studio.app.defaults import default_model_path

    assert default_model_path(tmp_path / "ckpts") == shipped
    assert registry.open_model(str(shipped)).name == "neural"
    assert main(["models", "list"]) == 0  # the store listing is untouched by shipped models
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    assert main(["export", "--model", str(bad), "-o", str(tmp_path / "x.obj")]) == 2
    assert "not a valid neural head checkpoint" in capsys.readouterr().err


# -- the window ------------------------------------------------------------------------------------
@pytest.mark.gui
def test_window_opens_a_neural_model_and_sliders_change_the_mesh(tiny_ckpt, qtbot):
    from studio.app.window import MainWindow

    w = MainWindow(session_enabled=False, seed=0)
    qtbot.addWidget(w)
    w.resize(1200, 800)
    w.show()
    with qtbot.waitSignal(w.displayed, timeout=60000):
        w.startup(str(tiny_ckpt))

    def settle():
        qtbot.waitUntil(lambda: w.up_to_date and not w.runner.busy, timeout=60000)

    settle()
    model, vp = w.doc.model, w.viewport
    assert model.kind == "neural" and set(w.panel.tabs_by_group) == {"identity", "expression"}
    full = model.mesh(w.doc.params)
    np.testing.assert_allclose(vp.points, full.vertices, atol=1e-4)
    np.testing.assert_array_equal(vp._faces, full.faces)
    before = vp.points.copy()

    # dragging a slider shows preview meshes; releasing it refines to the full resolution
    tab = w.panel.tabs_by_group["identity"]
    tab._begin_drag()
    w.panel.slider("identity", 0).setValue(2.5)
    settle()
    preview = model.preview_mesh(w.doc.params)
    assert len(vp.points) == len(preview.vertices)
    np.testing.assert_allclose(vp.points, preview.vertices, atol=1e-4)
    tab._end_drag()
    settle()
    refined = model.mesh(w.doc.params)
    assert len(refined.faces) > len(preview.faces)
    np.testing.assert_allclose(vp.points, refined.vertices, atol=1e-4)
    assert len(vp.points) != len(before) or not np.allclose(vp.points, before)
    # the viewport's cells are the new triangles
    assert vp.poly.n_cells == len(refined.faces)

    # an expression slider moves the same vertices (same topology)
    n = len(vp.points)
    w.panel.slider("expression", 0).setValue(3.0)
    settle()
    assert len(vp.points) == n
    np.testing.assert_allclose(vp.points, model.mesh(w.doc.params).vertices, atol=1e-4)
    w.close()


# -- eval neural (needs the ICT data) --------------------------------------------------------------
@pytest.mark.ict
def test_eval_neural_fits_held_out_heads_with_both_models(ict_model, tmp_path, capsys):
    from studio.bench.neural_eval import clouds, fit_linear, region_metrics, truth
    from studio.core.neural.checkpoint import save_checkpoint
    from studio.core.neural.config import tiny_config
    from studio.core.neural.data import recipe
    from studio.core.neural.facemodel import untrained_checkpoint

    # The linear model, fitted by the studio's scan fitter to a complete cloud of one of its own
    # heads, recovers that head.
    t = truth(ict_model, 100000, ("face", "head_and_neck"))
    c = clouds(t, 3000, 0)
    assert np.all(c["partial"][1][:, 2] > 0) and len(c["partial"][0]) == 3000  # seen from +z
    fitted = fit_linear(ict_model, t, c["complete"][0])
    r = region_metrics(fitted, t.faces, t, 30000)
    mean_only = region_metrics(ict_model.mean[t.used] * 10.0, t.faces, t, 30000)
    assert r["head"]["chamfer_l1"] < 0.7 * mean_only["head"]["chamfer_l1"]

    # The CLI runs end to end on a (tiny, untrained) checkpoint naming its held-out seeds.
    ck = untrained_checkpoint(tiny_config(), seed=1)
    ck.meta["recipe"] = recipe(ck.config, "ict")
    ck.stats["center"], ck.stats["scale"] = np.array([0.0, -20.0, 10.0]), 250.0
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(path, ck)
    assert main(["eval", "neural", "--model", str(path), "--linear", "ict", "--count", "1", "--points", "1000",
                 "--steps", "3", "--resolution", "32", "--samples", "5000", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["seeds"] == [ck.config.heldout_seed0]
    for key in ("complete/neural/face", "complete/linear/head", "partial/neural/head", "partial/linear/face"):
        s = out["summary"][key]
        assert s["chamfer_l1"] > 0 and 0 <= s["fscore"] <= 1 and 0 <= s["normal_consistency"] <= 1
