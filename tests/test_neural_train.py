"""Neural head model: SDF signs of the training data, training, resuming, the checkpoint file, the 2D stage."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import trimesh
from conftest import make_model

from studio.core.errors import StudioError
from studio.core.neural import data as nd
from studio.core.neural.checkpoint import load_checkpoint, save_checkpoint
from studio.core.neural.config import NeuralConfig, tiny_config
from studio.core.neural.model import NeuralHead, softplus
from studio.core.neural.train import predicted_codes, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest


@pytest.fixture(scope="module")
def tiny_data():
    cfg = tiny_config(regions=())
    return cfg, nd.build_training_data(make_model(), cfg)


def _open_sphere():
    """A unit icosphere with a cap cut off below y = -0.7 (like ICT's open neck) and a small hole at the
    front (like an eye socket)."""
    s = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    v, f = np.asarray(s.vertices), np.asarray(s.faces)
    c = v[f].mean(1)
    keep = (c[:, 1] > -0.7) & ~((c[:, 2] > 0.9) & (np.abs(c[:, 0]) < 0.2) & (np.abs(c[:, 1]) < 0.2))
    return v, f[keep]


def _directions(n, seed=0):
    d = np.random.default_rng(seed).standard_normal((n, 3))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


@pytest.mark.parametrize("open_mesh", [False, True])
def test_winding_number_signs_never_flip_outside(open_mesh):
    s = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    v, f = _open_sphere() if open_mesh else (np.asarray(s.vertices), np.asarray(s.faces))
    d = _directions(400)
    far = d * np.random.default_rng(1).uniform(1.3, 4.0, (400, 1))
    assert np.all(nd.signed_distance(far, v, f) > 0)
    # Along rays from the centre: negative inside, positive at every step beyond the surface.
    radii = np.linspace(1.02, 2.0, 25)
    ray_pts = (d[:, None, :] * radii[None, :, None]).reshape(-1, 3)
    assert np.all(nd.signed_distance(ray_pts, v, f) > 0)
    inside = d * 0.5
    sd = nd.signed_distance(inside, v, f)
    assert np.all(sd < 0)
    # The distance itself is exact: 0.5 from the (remaining) surface for points at radius 0.5,
    # except towards the holes, where the nearest triangle is farther.
    # (not the scaled-by-(1 - 2w) value igl.signed_distance gives for open meshes)
    assert np.all(np.abs(sd) > 0.48)
    assert (np.abs(np.abs(sd) - 0.5) < 0.01).mean() > 0.85


def test_training_samples_have_consistent_signs(tiny_data):
    cfg, data = tiny_data
    assert data.surface.shape == (cfg.n_train, cfg.n_surface, 3)
    # all heads inside the unit ball; near points' |sdf| is about their perturbation size
    assert np.linalg.norm(data.surface, axis=-1).max() <= cfg.unit_radius + 1e-5
    half = cfg.n_near // 2
    assert np.abs(data.near_sdf[:, :half]).mean() < 3 * cfg.near_sigmas[0]
    assert np.abs(data.near_sdf[:, half:]).mean() < 3 * cfg.near_sigmas[1]
    # uniform points: outside the head (beyond any surface point's radius) they are positive
    r = np.linalg.norm(data.uniform, axis=-1)
    outside = r > np.linalg.norm(data.surface, axis=-1).max(axis=1, keepdims=True) + 1e-3
    assert outside.any() and np.all(data.uniform_sdf[outside] > 0)
    # a point perturbed along the outward normal is positive, inward negative
    assert data.corr_src.shape[:3] == (cfg.n_train, cfg.n_expr_per_id, cfg.n_corr)


def test_softplus_is_exact_and_twice_differentiable():
    x = torch.linspace(-1, 1, 2001, dtype=torch.float64, requires_grad=True)
    y = softplus(x, 100.0)
    ref = torch.nn.functional.softplus(x, beta=100.0, threshold=1000.0)
    assert torch.allclose(y, ref, atol=1e-12)
    (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    assert torch.allclose(g, torch.sigmoid(100 * x), atol=1e-10)
    (h,) = torch.autograd.grad(g.sum(), x)
    assert torch.isfinite(h).all() and h.max() > 0


def test_untrained_model_starts_near_a_sphere_and_without_deformation():
    cfg = tiny_config()
    m = NeuralHead(cfg)
    z = torch.zeros(1, cfg.id_dim)
    with torch.no_grad():
        planes = m.planes(z)
        centre = m.sdf(torch.zeros(1, 1, 3), planes)
        far = m.sdf(torch.as_tensor(_directions(200)[None] * 3.0, dtype=torch.float32), planes)
    assert planes.shape == (1, 3, cfg.plane_channels, cfg.plane_res, cfg.plane_res)
    assert centre.item() < 0 and far.mean() > 0  # geometric init: inside at the centre, outside far away
    x = torch.rand(1, 50, 3) * 2 - 1
    dx = m.deform(x, torch.randn(1, cfg.ex_dim), z)
    assert dx.shape == x.shape and dx.abs().max() < 1e-2


def test_tiny_training_reduces_loss_and_resumes(tiny_data, tmp_path):
    cfg, data = tiny_data
    cfg = tiny_config(regions=(), id_steps=40, ex_steps=20)
    out = tmp_path / "run"
    tr = train(data, cfg, out, log_every=5)
    ident = [r for r in tr.history if r["stage"] == "identity"]
    expr = [r for r in tr.history if r["stage"] == "expression"]
    assert ident[-1]["total"] < 0.7 * ident[0]["total"]
    assert expr[-1]["corr"] < expr[0]["corr"]
    assert tr.total_steps == 60
    for name in ("neural_head.safetensors", "train_state.pt", "loss.csv", "loss.png", "config.json"):
        assert (out / name).is_file(), name
    header = (out / "loss.csv").read_text().splitlines()[0].split(",")
    assert {"surface", "normal", "eikonal", "nonsurface", "near", "tv", "latent", "corr", "deform"} <= set(header)
    # a second run into the same folder is refused unless resumed
    with pytest.raises(StudioError, match="--resume"):
        train(data, cfg, out)
    # resuming a finished run changes nothing; a longer budget continues from the saved step
    cfg2 = tiny_config(regions=(), id_steps=40, ex_steps=20)
    tr2 = train(data, cfg2, out, resume=True, log_every=5)
    assert tr2.total_steps == 60 and len(tr2.history) == len(tr.history)


def test_max_minutes_stops_and_resume_continues(tiny_data, tmp_path):
    cfg, data = tiny_data
    out = tmp_path / "run"
    tr = train(data, cfg, out, max_minutes=1e-4, log_every=1)  # 6 ms: stops after a step or two
    first = tr.total_steps
    assert 1 <= first < cfg.id_steps
    state = torch.load(out / "train_state.pt", weights_only=True)
    assert state["total_steps"] == first
    tr2 = train(data, cfg, out, resume=True, max_minutes=10, log_every=1)
    assert tr2.total_steps > first


def test_init_continues_from_a_trained_checkpoint(tiny_data, tmp_path):
    """--init: a new run starts where a finished run's checkpoint left off (its optimiser state gone)."""
    cfg, data = tiny_data
    first = train(data, tiny_config(regions=(), id_steps=40, ex_steps=4), tmp_path / "a", log_every=5)
    ident = [r for r in first.history if r["stage"] == "identity"]
    ck = load_checkpoint(tmp_path / "a")
    second = train(data, tiny_config(regions=(), id_steps=5, ex_steps=1, lr_model=1e-4), tmp_path / "b",
                   log_every=5, init=ck)
    # its first steps are as good as the first run's last ones, far below a cold start
    assert second.history[0]["total"] < 0.5 * ident[0]["total"]
    assert second.history[0]["total"] < 1.5 * ident[-1]["total"]
    assert load_checkpoint(tmp_path / "b").meta["initialised_from"]["total_steps"] == 44
    with pytest.raises(StudioError, match="network sizes"):
        train(data, tiny_config(regions=(), dec_hidden=cfg.dec_hidden * 2), tmp_path / "c", init=ck)
    with pytest.raises(StudioError, match="give one"):
        train(data, cfg, tmp_path / "a", resume=True, init=ck)


def test_init_adds_identities_with_codes_predicted_from_their_shape(tiny_data, tmp_path):
    """--init into a run with more identities: the trained ones keep their codes, the added ones start at
    the code their shape coefficients predict; normalisation and expression data stay the checkpoint's."""
    cfg, data = tiny_data
    first = train(data, tiny_config(regions=(), id_steps=20, ex_steps=2), tmp_path / "a")
    ck = load_checkpoint(tmp_path / "a")
    more_cfg = tiny_config(regions=(), n_train=7, n_norm_ids=4, n_expr_ids=4, id_steps=0, ex_steps=0)
    more = nd.build_training_data(make_model(), more_cfg)
    assert more.n_ids == 7 and more.corr_src.shape[0] == 4 and more.coeffs.shape[0] == 7
    np.testing.assert_allclose(more.center, data.center)
    assert more.scale == pytest.approx(data.scale)
    np.testing.assert_allclose(more.surface[:4], data.surface)  # the same heads, the same samples
    second = train(more, more_cfg, tmp_path / "b", init=ck)
    codes = second.id_codes.detach().numpy()
    np.testing.assert_allclose(codes[:4], first.id_codes.detach().numpy(), atol=1e-7)
    np.testing.assert_allclose(codes[4:], predicted_codes(more.coeffs[:4], codes[:4], more.coeffs[4:]), atol=1e-5)
    assert second.ex_codes.shape == first.ex_codes.shape
    from studio.core.neural.quality import quality_report  # posed figures only where expressions exist
    report = quality_report(load_checkpoint(tmp_path / "b"), make_model(), n_train=7, n_heldout=0, res=32)
    assert len(report["train"]) == 7 and len(report["train_posed"]) == 4
    # expressions on other identities: other poses, so the expression codes restart (identities kept)
    other = nd.build_training_data(make_model(), tiny_config(regions=(), n_train=7, n_norm_ids=4))
    third = train(other, tiny_config(regions=(), n_train=7, n_norm_ids=4, id_steps=0, ex_steps=0), tmp_path / "c",
                  init=ck)
    np.testing.assert_allclose(third.id_codes.detach().numpy()[:4], first.id_codes.detach().numpy(), atol=1e-7)
    assert not third.ex_codes.detach().abs().any()
    assert load_checkpoint(tmp_path / "c").meta["initialised_from"]["expression_codes_restarted"]
    with pytest.raises(StudioError, match="other heads"):  # other seeds are other people
        train(more, tiny_config(regions=(), n_train=7, n_norm_ids=4, n_expr_ids=4, train_seed0=50), tmp_path / "d",
              init=ck)


def test_predicted_codes_recover_a_linear_map():
    rng = np.random.default_rng(0)
    w, b = rng.standard_normal((5, 3)), rng.standard_normal(3)
    a = rng.standard_normal((40, 5))
    new = rng.standard_normal((6, 5))
    np.testing.assert_allclose(predicted_codes(a, a @ w + b, new, ridge=1e-9), new @ w + b, atol=1e-8)


def test_checkpoint_round_trip_is_exact(tiny_data, tmp_path):
    cfg, data = tiny_data
    tr = train(data, tiny_config(regions=(), id_steps=3, ex_steps=2), tmp_path / "run")
    ck = tr.checkpoint()
    path = tmp_path / "head.safetensors"
    save_checkpoint(path, ck)
    with pytest.raises(StudioError, match="exists"):
        save_checkpoint(path, ck)
    back = load_checkpoint(path)
    x = torch.rand(1, 500, 3) * 2 - 1
    z = torch.as_tensor(back.stats["train_id_codes"][:1])
    with torch.no_grad():
        a = ck.model.sdf(x, ck.model.planes(z))
        b = back.model.sdf(x, back.model.planes(z))
    assert torch.equal(a, b)
    assert back.config == ck.config
    assert back.stats["id_directions"].shape == (cfg.id_dim, cfg.id_dim)
    np.testing.assert_allclose(np.linalg.norm(back.stats["id_directions"], axis=1), 1.0, atol=1e-6)
    assert np.all(np.diff(back.stats["id_sigmas"]) <= 1e-9)
    assert back.stats["ex_cov"].shape == (cfg.ex_dim, cfg.ex_dim)
    # model units ↔ mm
    np.testing.assert_allclose(back.to_mm(back.from_mm([1.0, 2.0, 3.0])), [1.0, 2.0, 3.0])
    assert back.scale == pytest.approx(data.scale)
    assert back.meta["total_steps"] == 5
    # the file is plain safetensors: readable without running any code
    from safetensors import safe_open
    with safe_open(str(path), "pt") as fh:
        assert "stats.center" in fh.keys()
        assert json.loads(fh.metadata()["studio_neural"])["format"] == "studio-neural-head"


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "other_safetensors"])
def test_damaged_checkpoint_gives_one_line_error(tiny_data, tmp_path, damage):
    cfg, data = tiny_data
    train(data, tiny_config(regions=(), id_steps=1, ex_steps=1), tmp_path / "run")
    good = (tmp_path / "run" / "neural_head.safetensors").read_bytes()
    bad = tmp_path / "bad.safetensors"
    if damage == "truncate":
        bad.write_bytes(good[: len(good) // 2])
    elif damage == "garbage":
        bad.write_bytes(b"\x13\x37" * 5000)
    elif damage == "empty":
        bad.write_bytes(b"")
    else:
        from safetensors.torch import save_file
        save_file({"w": torch.zeros(3)}, str(bad))
    with pytest.raises(StudioError) as e:
        load_checkpoint(bad)
    assert "\n" not in str(e.value) and "bad.safetensors" in str(e.value)


def test_config_json_round_trip_and_errors(tmp_path):
    cfg = NeuralConfig()
    assert NeuralConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(StudioError, match="unknown"):
        NeuralConfig.from_dict({"id_dimm": 3})
    with pytest.raises(StudioError, match="plane_res"):
        NeuralConfig.from_dict({"plane_res": 48})
    p = tmp_path / "c.json"
    p.write_text("{not json")
    with pytest.raises(StudioError, match="not valid JSON"):
        NeuralConfig.from_json_file(p)


def test_shipped_defaults_are_small_enough():
    m = NeuralHead(NeuralConfig())
    n = sum(p.numel() for p in m.parameters())
    assert n * 4 < 25e6  # float32 weights within the 25 MB checkpoint budget


def test_optional_render_stage_runs(tiny_data, tmp_path):
    cfg, data = tiny_data
    cfg = tiny_config(regions=(), id_steps=2, ex_steps=1, render_steps=2, stage_time_fractions=(0.4, 0.3, 0.3))
    tr = train(data, cfg, tmp_path / "run", log_every=1)
    rows = [r for r in tr.history if r["stage"] == "render"]
    assert len(rows) == 2
    for k in ("render_l1", "gan_g", "gan_d", "r1"):
        assert np.isfinite(rows[-1][k])
    assert 0 < rows[-1]["render_l1"] < 2


def test_render_normals_see_a_sphere():
    from studio.core.neural.render2d import render_normals, yaw_matrix

    class Sphere:  # the exact SDF of a sphere of radius 0.6 stands in for the model
        def sdf(self, x, planes):
            return x.norm(dim=-1) - 0.6

    img = render_normals(Sphere(), torch.zeros(1, 3, 1, 2, 2), yaw_matrix(torch.zeros(1)), 17, 64,
                         torch.tensor(0.01)).detach()
    centre, corner = img[0, :, 8, 8], img[0, :, 0, 0]
    assert centre[2] > 0.95  # facing the camera
    assert corner.norm() < 0.05  # rays that miss the head render nothing
    assert img[0, 0, 8, 12] > 0.7 and img[0, 1, 4, 8] > 0.7  # right side points right, top points up


@pytest.mark.ict
def test_ict_head_signs_never_flip_outside(ict_model):
    cfg = NeuralConfig()
    v, f = nd.identity_mesh_mm(ict_model, 123, cfg.regions)
    c = (v.min(0) + v.max(0)) / 2
    r = np.linalg.norm(v - c, axis=1).max()
    d = _directions(500, 3)
    assert np.all(nd.signed_distance(c + d * r * np.random.default_rng(2).uniform(1.05, 2.0, (500, 1)), v, f) > 0)
    # every point outside the head's convex hull is outside; points a centimetre or more from the skin
    # are clearly inside or outside (winding number near 0 or 1, never half-way, even by the open neck)
    from scipy.spatial import ConvexHull

    pts = c + np.random.default_rng(4).uniform(-1.2, 1.2, (6000, 3)) * r
    sd = nd.signed_distance(pts, v, f)
    eq = ConvexHull(v).equations
    out_hull = np.any(pts @ eq[:, :3].T + eq[:, 3] > 1e-9, axis=1)
    assert out_hull.sum() > 300 and np.all(sd[out_hull] > 0)
    # just outside the skin everywhere is outside, just inside is inside, except right at the open
    # boundaries (neck, eyes, mouth), where the winding number closes the holes smoothly
    from scipy.spatial import cKDTree

    from studio.core.geometry import vertex_normals
    from studio.core.geometry.surface import boundary_vertices

    rim = np.flatnonzero(boundary_vertices(f, len(v)))
    rng = np.random.default_rng(5)
    fi, bary = nd.sample_barycentric(v, f, 6000, rng)
    p = nd.interpolate(v, f, fi, bary)
    n = nd.interpolate(vertex_normals(v, f), f, fi, bary)
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    away = cKDTree(v[rim]).query(p)[0] > 20.0
    assert away.mean() > 0.8
    # (folds of the ears make a point or two of 6000 land across a fold: geometry, not a sign error)
    assert (nd.signed_distance(p[away] + 2.0 * n[away], v, f) > 0).mean() > 0.999
    assert (nd.signed_distance(p[away] - 1.0 * n[away], v, f) < 0).mean() > 0.999


def test_cli_trains_writes_the_run_folder_and_refuses_to_overwrite(tmp_path):
    from studio.cli.main import main
    from studio.core import store
    from studio.core.modelfile import save_model

    save_model(make_model(name="synth"), store.prepare("synth") / store.MODEL_FILE)
    cfg = tiny_config(regions=(), id_steps=20, ex_steps=5)
    cfg_path = tmp_path / "tiny.json"
    cfg_path.write_text(json.dumps(cfg.to_dict()))
    out = tmp_path / "run"
    args = ["train", "neural", "--model", "synth", "--config", str(cfg_path), "--out", str(out),
            "--cache", str(tmp_path / "cache"), "--threads", "1"]
    assert main(args) == 0
    for name in ("neural_head.safetensors", "loss.png", "loss.csv", "metrics.json", "ATTRIBUTION.md"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_mean"]["chamfer_l1"] > 0 and len(metrics["heldout"]) == cfg.eval_n
    ck = load_checkpoint(out)
    assert ck.meta["recipe"]["heldout_seeds"][0] == cfg.heldout_seed0
    assert ck.meta["attribution"] == "synthetic test model" and "metrics" in ck.meta
    assert "synthetic test model" in (out / "ATTRIBUTION.md").read_text()
    assert list((tmp_path / "cache").glob("*.npz"))  # samples cached outside the run
    assert main(args) == 2  # refuses to overwrite the run
    assert main(args + ["--resume", "--no-metrics"]) == 0  # a finished run resumes to nothing new
