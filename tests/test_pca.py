"""The linear model: evaluation, incremental updates, priors, sampling, the model file."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from conftest import make_model

from studio.core import prior
from studio.core.errors import StudioError
from studio.core.modelfile import load_model, save_model


def test_instance_equals_mean_plus_weighted_components(small_model):
    m = small_model
    rng = np.random.default_rng(1)
    p = {"shape": rng.normal(size=6), "expression": rng.uniform(0, 1, 3), "color": rng.normal(size=2)}
    expected = m.mean.astype(float) + np.einsum("k,knc->nc", p["shape"], m.basis("shape").astype(float)) \
        + np.einsum("k,knc->nc", p["expression"], m.basis("expression").astype(float))
    mesh = m.mesh(p)
    assert np.abs(mesh.vertices - expected).max() < 1e-5 * np.abs(expected).max()
    colors = m.color_mean + np.einsum("k,knc->nc", p["color"], m.basis("color"))
    assert np.allclose(mesh.colors, np.clip(colors, 0, 1), atol=1e-6)


def test_sparse_and_dense_paths_agree(small_model):
    p = {"shape": np.array([0, 0, 1.5, 0, 0, 0.0])}  # one active component takes the sparse path
    dense = small_model.mean + 1.5 * small_model.basis("shape")[2]
    assert np.allclose(small_model.vertices(p), dense, atol=1e-5)


def test_incremental_equals_full_after_many_random_edits(small_model):
    rng = np.random.default_rng(2)
    ev = small_model.evaluator()
    for _ in range(1000):
        group = "shape" if rng.random() < 0.7 else "expression"
        size = small_model.basis(group).shape[0]
        ev.set(group, int(rng.integers(size)), float(rng.normal()))
    full = small_model.vertices(ev.params)
    assert np.abs(ev.vertices - full).max() < 1e-4


def test_incremental_rejects_bad_edits(small_model):
    ev = small_model.evaluator()
    with pytest.raises(StudioError, match="out of range"):
        ev.set("shape", 99, 1.0)
    with pytest.raises(StudioError, match="unknown"):
        ev.set("nose", 0, 1.0)
    with pytest.raises(StudioError, match="finite"):
        ev.set("shape", 0, float("nan"))


def test_log_prior_and_mahalanobis(small_model):
    p = small_model.zeros()
    p["shape"][:] = [1, 2, 0, 0, 0, 0]
    assert small_model.log_prior(p) == pytest.approx(-0.5 * 5)
    d, pct = prior.mahalanobis(small_model.groups, p)
    assert d == pytest.approx(np.sqrt(5))
    assert 0 < pct < 100
    p["expression"][0] = 1.5  # outside the blendshape box
    assert small_model.log_prior(p) == float("-inf")


def test_sampling_matches_prior_statistics(small_model):
    rng = np.random.default_rng(3)
    draws = np.array([small_model.sample(rng)["shape"] for _ in range(4000)])
    assert np.abs(draws.mean(0)).max() < 0.06
    assert np.abs(draws.std(0) - 1).max() < 0.05
    scaled = np.array([small_model.sample(rng, scale=0.5)["shape"] for _ in range(2000)])
    assert np.abs(scaled.std(0) - 0.5).max() < 0.04
    # Expressions stay neutral unless asked for: random blendshape soup is not a plausible face.
    assert not small_model.sample(rng)["expression"].any()
    e = small_model.sample(rng, only=["expression"])["expression"]
    assert ((e >= 0) & (e <= 1)).all() and e.any()


def test_random_expressions_are_a_few_moderate_blendshapes_never_opposed(ict_model):
    """Random on the expression tab drew all 53 blendshapes at once: a grotesque, self-intersecting face."""
    from studio.core.expressions import opposed_both_on

    g = next(g for g in ict_model.groups if g.prior == "box")
    rng = np.random.default_rng(0)
    for _ in range(200):
        e = ict_model.sample(rng, only=[g.name])[g.name]
        on = np.flatnonzero(e)
        assert 1 <= len(on) <= 6 and e.max() <= 0.6 + 1e-9 and e[on].min() >= 0.2 - 1e-9
        assert not opposed_both_on(g.names, e, threshold=0.0)


def test_params_validation(small_model):
    with pytest.raises(StudioError, match="has 2 values, the model expects 6"):
        small_model.mesh({"shape": [1, 2]})
    with pytest.raises(StudioError, match="NaN"):
        small_model.mesh({"shape": [np.nan] * 6})
    with pytest.raises(StudioError, match="unknown parameter group 'hair'"):
        small_model.mesh({"hair": [1]})


def test_model_file_round_trip(small_model, tmp_path):
    path = save_model(small_model, tmp_path / "m.npz")
    m = load_model(path)
    p = small_model.sample(np.random.default_rng(4))
    assert np.array_equal(m.mesh(p).vertices, small_model.mesh(p).vertices)
    assert m.groups[1].prior == "box" and m.groups[1].names == small_model.groups[1].names
    assert np.array_equal(m.meta.regions["front"], small_model.meta.regions["front"])
    assert np.array_equal(m.face_uv, small_model.face_uv) and m.meta.attribution == "synthetic test model"
    with pytest.raises(StudioError, match="exists"):
        save_model(small_model, path)


def _rewrite(path, out, mutate):
    """Copy an npz, letting ``mutate`` change the dict of arrays (header included)."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    mutate(arrays)
    np.savez(out, **arrays)
    return out


def test_model_file_bad_inputs_give_one_line_errors(small_model, tmp_path):
    good = save_model(small_model, tmp_path / "m.npz")
    data = good.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.npz").write_bytes(b"\x00garbage" * 100)

    def nan(a):
        a["basis.shape"] = a["basis.shape"].copy()
        a["basis.shape"][0, 0, 0] = np.nan

    def wrong_size(a):
        a["mean"] = a["mean"][:-1]
        h = json.loads(a["header"].tobytes())
        h["arrays"]["mean"]["shape"][0] -= 1
        a["header"] = np.frombuffer(json.dumps(h).encode(), np.uint8)

    def other_format(a):
        a["header"] = np.frombuffer(json.dumps({"format": "x"}).encode(), np.uint8)

    cases = {
        tmp_path / "trunc.npz": "not a readable|damaged",
        tmp_path / "garbage.npz": "not a readable",
        _rewrite(good, tmp_path / "nan.npz", nan): "NaN",
        _rewrite(good, tmp_path / "size.npz", wrong_size): "expected|faces must be",
        _rewrite(good, tmp_path / "fmt.npz", other_format): "not a Face Studio linear model",
        tmp_path / "missing.npz": "does not exist",
    }
    for path, pattern in cases.items():
        with pytest.raises(StudioError, match=pattern) as e:
            load_model(path)
        assert "\n" not in str(e.value)
    assert zipfile.is_zipfile(good)  # the format really is a plain npz (zip of .npy)


def test_pickled_arrays_are_refused(small_model, tmp_path):
    good = save_model(small_model, tmp_path / "m.npz")

    def add_object(a):
        a["mean"] = np.array([object()] * 3, dtype=object)

    bad = _rewrite(good, tmp_path / "obj.npz", add_object)
    with pytest.raises(StudioError):
        load_model(bad)


def test_different_models_have_independent_bases():
    a, b = make_model(seed=1), make_model(seed=2)
    assert not np.allclose(a.basis("shape"), b.basis("shape"))


def test_shape_directions_are_named_by_what_they_change(ict_model):
    """PC1…PC100 said nothing; each direction is labelled by the measures it changes most at +1σ."""
    from studio.core.direction_labels import labels

    out = labels(ict_model, "shape")
    assert len(out) == 100 and all(x.label.startswith(x.name) for x in out)
    assert sum("·" in x.label for x in out) >= 70  # the rest change no measure by 0.2 % per σ
    pc1 = out[0]
    assert pc1.label == "PC1 · size ↓, face height ↓"  # ICT's first component: a smaller head overall
    assert {c[0] for c in pc1.changes} >= {"face height", "head length"} and all(c[2] < 0 for c in pc1.changes)
    # named by the measure whose variation across faces it carries most, not always the smallest one
    firsts = {x.label.split(" · ")[1].split(",")[0][:-2] for x in out if "·" in x.label}
    assert len(firsts) >= 6
    assert "mm" in pc1.tooltip(10.0)


def test_expressions_group_by_region_with_left_right_partners(ict_model):
    from studio.core.expressions import partner, regions

    g = next(g for g in ict_model.groups if g.prior == "box")
    groups = dict(regions(g.names))
    assert list(groups) == ["Brows", "Eyes", "Cheeks", "Nose", "Jaw", "Mouth"]
    assert sum(map(len, groups.values())) == 53
    assert all(g.names[i].startswith("brow") for i in groups["Brows"])
    names = list(g.names)
    assert names[partner(names, names.index("mouthSmile_L"))] == "mouthSmile_R"
    assert partner(names, names.index("jawLeft")) is None  # jawLeft/jawRight oppose; they are not two sides
    assert regions(["PC1", "PC2"]) == [("Other", [0, 1])]


def test_plausibility_readout_reads_as_a_person_expects(ict_model):
    """An ordinary random face read "Mahalanobis 10.04σ · χ² 54.1 %" and PC1 at 2.5σ "χ² percentile 0.0 %"
    (read as "0 % plausible"); expressions were ignored."""
    from studio.core.prior import readout

    groups = ict_model.groups
    assert readout(groups, ict_model.zeros())["typical_percent"] == pytest.approx(100.0)
    rng = np.random.default_rng(0)
    typical = [readout(groups, ict_model.sample(rng))["typical_percent"] for _ in range(200)]
    assert 35 < np.median(typical) < 65  # an ordinary face is typical of about half of all faces
    one = ict_model.zeros()
    one["shape"][0] = 2.5
    r = readout(groups, one)
    assert r["typical_percent"] > 99 and r["extreme"]["name"] == "PC1" and 70 < r["extreme"]["one_in"] < 90
    e = ict_model.zeros()
    names = list(next(g for g in groups if g.prior == "box").names)
    e["expression"][[names.index("eyeWide_L"), names.index("eyeSquint_L"), names.index("jawOpen")]] = 0.8
    r = readout(groups, e)
    assert r["expression_active"] == 3 and r["expression_opposed"] == [("eyeWide_L", "eyeSquint_L")]
