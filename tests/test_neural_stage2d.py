"""Issue 20: the 2-D adversarial stage in the stage order, its logging and resuming, the GPU batch
sizing, the closer-to-real-heads training data (eyes, detail sampling, expression coverage) and the
ablation's evaluation code, all on tiny models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh
from conftest import make_model

from studio.core.neural import data as nd
from studio.core.neural import train as nt
from studio.core.neural.config import tiny_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest


@pytest.fixture(scope="module")
def tiny_data():
    cfg = tiny_config(regions=())
    return cfg, nd.build_training_data(make_model(), cfg)


def test_2d_stage_runs_between_identity_and_expression_and_lowers_its_loss(tiny_data, tmp_path):
    _, data = tiny_data
    cfg = tiny_config(regions=(), id_steps=20, ex_steps=3, render_steps=24, render_res=16, render_samples=12,
                      render_fine=6)
    tr = nt.train(data, cfg, tmp_path / "run", log_every=4)
    order = [r["stage"] for r in tr.history]
    assert order == sorted(order, key=nt.STAGES.index)  # identity, then render, then expression
    assert nt.STAGES == ("identity", "render", "expression")
    rows = [r for r in tr.history if r["stage"] == "render"]
    assert rows[-1]["step"] == 24
    assert rows[-1]["total"] < rows[0]["total"]
    for k in ("render_l1", "gan_g", "gan_d", "r1", "d_real", "d_fake", "surface", "sec_per_step"):
        assert np.isfinite(rows[-1][k]), k
    header = (tmp_path / "run" / "loss.csv").read_text().splitlines()[0].split(",")
    assert {"gan_g", "gan_d", "r1"} <= set(header) and (tmp_path / "run" / "loss.png").is_file()
    meta = tr.checkpoint().meta
    assert meta["stage_steps"] == {"identity": 20, "render": 24, "expression": 3} and meta["steps_per_s"] > 0


def test_states_saved_in_the_old_stage_order_resume_in_the_right_stage():
    # Before the 2-D stage moved ahead of the expression stage, index 1 was "expression".
    assert nt.STAGES[nt.restored_stage({"stage": 1})] == "expression"
    assert nt.STAGES[nt.restored_stage({"stage": 2})] == "render"
    assert nt.STAGES[nt.restored_stage({"stage": 1, "stage_name": "render"})] == "render"
    assert nt.restored_stage({"stage": 3}) == len(nt.STAGES)
    assert nt.restored_stage({"stage": 2, "stage_name": "expression", "stage_done": True}) == len(nt.STAGES)


def test_device_batch_fills_the_memory_share_within_bounds():
    gib = 1 << 30
    assert nt.sized_batch(8, 1 * gib, 100 * gib, 4000) == 480  # 60 % of 100 GiB at 1 GiB per 8
    assert nt.sized_batch(8, 1 * gib, 100 * gib, 4000, cap=256) == 256
    assert nt.sized_batch(8, 1 * gib, 100 * gib, 50) == 50  # never more identities than there are
    assert nt.sized_batch(8, 10 * gib, 1 * gib, 4000) == 8  # never below the config's batch
    assert nt.sized_batch(8, 0, 1 * gib, 4000) == 8


def test_expression_draws_cover_every_blendshape_and_keep_the_shipped_draws():
    old = nd.expression_draws(3, 53, 6, 4)
    assert all((w > 0).sum() == 6 for w in old)
    np.testing.assert_array_equal(np.array(old), np.array(nd.expression_draws(3, 53, 6, 4, 0)))
    wide = np.array([w for s in range(40) for w in nd.expression_draws(s, 53, 1, 4, 53)])
    counts = (wide > 0).sum(1)
    assert (wide > 0).any(0).all()  # every blendshape is used
    assert counts.min() < 10 and counts.max() > 40  # alone and in crowds


def test_detail_sampling_gives_curved_parts_their_share():
    # A flat square with a small bump: area-uniform samples hardly visit the bump.
    plane = trimesh.creation.box(extents=(2.0, 2.0, 0.01))
    bump = trimesh.creation.icosphere(subdivisions=3, radius=0.1)
    m = trimesh.util.concatenate([plane, bump])
    v, f = np.asarray(m.vertices), np.asarray(m.faces)
    on_bump = lambda fi: (np.linalg.norm(v[f[fi]].mean(1), axis=1) < 0.15).mean()  # noqa: E731
    uniform, _ = nd.sample_barycentric(v, f, 20000, np.random.default_rng(0))
    detail, _ = nd.sample_barycentric(v, f, 20000, np.random.default_rng(0), detail_share=0.3)
    assert on_bump(uniform) < 0.02 and on_bump(detail) > 0.1  # (the box's own edges take a share too)


def _eyed_head_model():
    """A linear 'head': a skin sphere (r 0.7) with two eye openings, and two closed eyeballs (r 0.2,
    centred at r 0.6) that fill them and bulge 0.1 beyond the skin, as eyes do."""
    from studio.core.facemodel import ModelMeta, ParamGroup
    from studio.core.pca import LinearGroup, PCAModel

    eyes = np.array([[-0.3, 0.2, 0.0], [0.3, 0.2, 0.0]])
    eyes[:, 2] = np.sqrt(0.6 ** 2 - (eyes[:, :2] ** 2).sum(1))
    skin = trimesh.creation.icosphere(subdivisions=4, radius=0.7)
    sv, sf = np.asarray(skin.vertices), np.asarray(skin.faces)
    hole = np.min(np.linalg.norm(sv[sf].mean(1)[:, None] - eyes[None] * 0.7 / 0.6, axis=2), axis=1) < 0.16
    parts, faces, regions, n = [sv], [sf[~hole]], {"skin": np.arange(len(sv))}, len(sv)
    for k, c in enumerate(eyes):
        ball = trimesh.creation.icosphere(subdivisions=3, radius=0.2)
        parts.append(np.asarray(ball.vertices) + c)
        faces.append(np.asarray(ball.faces) + n)
        regions[f"eye{k}"] = np.arange(n, n + len(ball.vertices))
        n += len(ball.vertices)
    v = np.vstack(parts) * 100.0  # mm
    rng = np.random.default_rng(0)
    shape = rng.normal(scale=0.3, size=(2, len(v), 3))
    expr = rng.normal(scale=0.3, size=(1, len(v), 3))
    meta = ModelMeta(unit="mm", regions={k: r.astype(np.int32) for k, r in regions.items()})
    return PCAModel("eyed", v, np.vstack(faces), [
        LinearGroup(ParamGroup("shape", ("PC1", "PC2")), shape),
        LinearGroup(ParamGroup("expression", ("E0",), "box"), expr)], meta=meta), eyes


def test_eyes_appear_in_the_extracted_mean_head(tmp_path):
    from studio.core.neural.checkpoint import load_checkpoint
    from studio.core.neural.quality import canonical_mesh

    model, eyes = _eyed_head_model()
    cfg = tiny_config(regions=("skin",), eye_regions=("eye0", "eye1"), plane_res=32, gen_channels=(16, 16, 8, 8),
                      n_train=2, batch_ids=2, id_steps=250, ex_steps=0, pts_surface=400, pts_near=400,
                      lr_model=3e-3, detail_share=0.3)
    data = nd.build_training_data(model, cfg)
    # the eyeballs' fronts are surface samples; their hidden backs are not
    c = (eyes * 100.0 - data.center) / data.scale
    d = np.linalg.norm(data.surface[0][:, None] - c[None], axis=2).min(1)
    on_eye = np.abs(d - 20.0 / data.scale) < 1e-3
    assert on_eye.mean() > 0.01 and (data.surface[0][on_eye, 2] > c[0, 2]).mean() > 0.9
    nt.train(data, cfg, tmp_path / "run")
    ck = load_checkpoint(tmp_path / "run")
    v, f = canonical_mesh(ck, torch.as_tensor(ck.stats["id_mean"], dtype=torch.float32), res=48)
    v_mm = ck.to_mm(v)
    for eye in eyes * 100.0:
        # inside the eye socket: in the opening's direction, beyond the skin sphere (r 70 mm)
        radial = v_mm @ (eye / np.linalg.norm(eye))
        near = np.linalg.norm(v_mm - eye, axis=1) < 20.0 + 3.0
        assert (near & (radial > 74.0)).sum() > 3, eye


def test_ablation_evaluation_runs_on_a_tiny_model(tmp_path):
    from studio.bench.neural_eval import corrupted, neural_ablation_job
    from studio.core.fitting.neural_scan import NeuralFitOptions
    from studio.core.fitting.synthetic import face_like_model
    from studio.core.neural.facemodel import load_neural

    linear = face_like_model(subdivisions=3)
    cfg = tiny_config(regions=(), n_train=3, id_steps=30, ex_steps=2, n_heldout=2)  # the closed head: no neck cut
    data = nd.build_training_data(linear, cfg)
    nt.train(data, cfg, tmp_path / "run", meta={"recipe": nd.recipe(cfg, linear.name)})
    neural = load_neural(tmp_path / "run", device="cpu")
    opts = NeuralFitOptions(samples=800, batch=400, align_samples=200, align_iterations=2, align_resolution=32,
                            identity_steps=6, expression_steps=0)
    r = neural_ablation_job({"a": neural, "b": neural}, linear, count=1, points=1500, samples=4000,
                            noise=(1.0,), outliers=(0.2,), options=opts)
    assert r["settings"] == [f"{c}/noise 1 mm/outliers 20 %" for c in ("complete", "partial")]
    assert len(r["fits"]) == 4 and {f["arm"] for f in r["fits"]} == {"a", "b"}
    for arm in ("a", "b"):
        s = r["summary"][arm]["all settings"]  # (this toy head's neck cut may leave no 'head' to compare)
        assert set(s) == {"face_chamfer_l1", "face_fscore", "head_chamfer_l1", "head_fscore"}
        assert 0 <= s["face_fscore"] <= 1 and 0 <= s["head_fscore"] <= 1
    pts = corrupted(np.zeros((800, 3)), 1.0, 0.2, 0)
    assert len(pts) == 1000 and 0.8 < pts[:800].std() < 1.2
