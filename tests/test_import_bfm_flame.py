"""Importers for BFM 2017/2019 (.h5), BFM 2009 (.mat) and FLAME (.pkl), on small synthetic files
written in the published layouts (the real models are licence-restricted and never in the repo)."""

from __future__ import annotations

import io
import os
import pickle
import sys
import types

import h5py
import numpy as np
import pytest
import scipy.io
import scipy.sparse

from studio.core.errors import StudioError
from studio.core.importers.bfm import load_bfm2009_mat, load_bfm_h5
from studio.core.importers.flame import load_flame_pkl
from studio.core.modelfile import load_model, save_model
from studio.core.progress import Cancelled

N, K, KE, KC, M = 50, 4, 3, 5, 60  # vertices, shape / expression / colour components, triangles


def _orthonormal(rng, rows, cols):
    q, _ = np.linalg.qr(rng.standard_normal((rows, cols)))
    return q


def _one_line_error(exc_info, path):
    msg = str(exc_info.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    assert str(path.name) in msg
    return msg


# ----------------------------------------------------------------------------------------------
# BFM 2017 / 2019 (statismo HDF5)
# ----------------------------------------------------------------------------------------------

def _bfm17_arrays(seed=0):
    rng = np.random.default_rng(seed)
    a = {
        "shape_mean": rng.uniform(-80, 80, 3 * N),
        "shape_U": _orthonormal(rng, 3 * N, K),
        "shape_var": rng.uniform(1, 100, K),
        "expr_mean": rng.normal(0, 0.01, 3 * N),
        "expr_U": _orthonormal(rng, 3 * N, KE),
        "expr_var": rng.uniform(1, 10, KE),
        "color_mean": rng.uniform(0.2, 0.8, 3 * N),
        "color_U": _orthonormal(rng, 3 * N, KC),
        "color_var": rng.uniform(1e-3, 1e-2, KC),
        "cells": rng.integers(0, N, (3, M)).astype(np.uint32),
    }
    return a


def _write_bfm17(path, a, expression=True, color=True, landmarks=None, skip=()):
    with h5py.File(path, "w") as f:
        groups = [("shape", "shape")] + [("expression", "expr")] * expression + [("color", "color")] * color
        for group, key in groups:
            for ds, arr in (("mean", a[f"{key}_mean"]), ("pcaBasis", a[f"{key}_U"]),
                            ("pcaVariance", a[f"{key}_var"]), ("noiseVariance", np.float64(0.0))):
                if f"{group}/model/{ds}" not in skip:
                    f[f"{group}/model/{ds}"] = arr
            f[f"{group}/representer/points"] = a["shape_mean"].reshape(N, 3).T
            f[f"{group}/representer/cells"] = a["cells"]
        if landmarks is not None:
            f["metadata/landmarks/json"] = landmarks
    return path


def _bfm17_expected(a, alpha, beta, gamma):
    v = a["shape_mean"] + a["expr_mean"]
    v = v + a["shape_U"] @ (alpha * np.sqrt(a["shape_var"])) + a["expr_U"] @ (beta * np.sqrt(a["expr_var"]))
    c = a["color_mean"] + a["color_U"] @ (gamma * np.sqrt(a["color_var"]))
    return v.reshape(N, 3), np.clip(c.reshape(N, 3), 0, 1)


def test_bfm17_evaluates_mean_plus_scaled_orthonormal_basis(tmp_path):
    a = _bfm17_arrays()
    model = load_bfm_h5(_write_bfm17(tmp_path / "model2017-1_bfm_nomouth.h5", a), "bfm17")
    assert [g.name for g in model.groups] == ["shape", "expression", "color"]
    assert model.groups[0].names == ("PC1", "PC2", "PC3", "PC4")
    assert all(g.prior == "normal" and np.all(g.sigma == 1) for g in model.groups)
    assert model.groups[2].affects == "color" and model.groups[0].affects == "position"
    assert model.meta.unit == "mm" and "Gerig" in model.meta.attribution and "licence" in model.meta.attribution
    np.testing.assert_array_equal(model.faces, a["cells"].T)

    rng = np.random.default_rng(1)
    alpha, beta, gamma = rng.normal(size=K), rng.normal(size=KE), rng.normal(size=KC)
    mesh = model.mesh({"shape": alpha, "expression": beta, "color": gamma})
    v, c = _bfm17_expected(a, alpha, beta, gamma)
    np.testing.assert_allclose(mesh.vertices, v, atol=1e-3)
    np.testing.assert_allclose(mesh.colors, c, atol=1e-5)
    assert mesh.colors.min() >= 0 and mesh.colors.max() <= 1
    # Zero parameters give the shape mean plus the (small) expression mean offset.
    np.testing.assert_allclose(model.mesh({}).vertices, (a["shape_mean"] + a["expr_mean"]).reshape(N, 3), atol=1e-4)
    # One σ along PC2 moves the face by exactly sqrt(variance_2) (the columns are orthonormal).
    step = np.linalg.norm(model.basis("shape")[1])
    assert step == pytest.approx(np.sqrt(a["shape_var"][1]), rel=1e-5)


def test_bfm_h5_accepts_statismo_08_prescaled_basis(tmp_path):
    # statismo 0.8 wrote U·σ instead of U; the evaluated model must be the same.
    a = _bfm17_arrays()
    reference = load_bfm_h5(_write_bfm17(tmp_path / "u.h5", a), "u")
    for key in ("shape", "expr", "color"):
        a[f"{key}_U"] = a[f"{key}_U"] * np.sqrt(a[f"{key}_var"])
    old = load_bfm_h5(_write_bfm17(tmp_path / "ud.h5", a), "ud")
    for g in ("shape", "expression", "color"):
        np.testing.assert_allclose(old.basis(g), reference.basis(g), rtol=1e-5, atol=1e-6)


def test_bfm_h5_without_expression_or_colour(tmp_path):
    a = _bfm17_arrays()
    model = load_bfm_h5(_write_bfm17(tmp_path / "shape_only.h5", a, expression=False, color=False), "s")
    assert [g.name for g in model.groups] == ["shape"] and model.color_mean is None
    np.testing.assert_allclose(model.mesh({}).vertices, a["shape_mean"].reshape(N, 3), atol=1e-4)
    assert model.mesh({}).colors is None


def test_bfm_h5_landmarks_are_optional(tmp_path):
    a = _bfm17_arrays()
    mean = (a["shape_mean"] + a["expr_mean"]).reshape(N, 3)
    lm = [{"id": "center.nose.tip", "coordinates": (mean[7] + 0.01).tolist()},
          {"id": "left.eye.corner_outer", "coordinates": mean[30].tolist()}]
    import json

    model = load_bfm_h5(_write_bfm17(tmp_path / "lm.h5", a, landmarks=json.dumps(lm)), "lm")
    np.testing.assert_array_equal(model.meta.landmarks["bfm"], [7, 30])
    broken = load_bfm_h5(_write_bfm17(tmp_path / "lm_bad.h5", a, landmarks="{not json"), "lm")
    assert broken.meta.landmarks == {}


def test_bfm_h5_progress_and_cancel(tmp_path):
    path = _write_bfm17(tmp_path / "p.h5", _bfm17_arrays())
    seen = []
    load_bfm_h5(path, "p", progress=lambda f, msg="": seen.append(f))
    assert seen == sorted(seen) and seen[-1] == 1.0

    def cancel(f, msg=""):
        if f > 0.3:
            raise Cancelled()

    with pytest.raises(Cancelled):  # cancellation is not turned into a "bad file" error
        load_bfm_h5(path, "p", progress=cancel)


def test_bfm_h5_round_trip_through_model_file(tmp_path):
    a = _bfm17_arrays()
    model = load_bfm_h5(_write_bfm17(tmp_path / "b.h5", a), "bfm17")
    again = load_model(save_model(model, tmp_path / "bfm17.npz"))
    params = {"shape": np.arange(K) * 0.3, "expression": -np.ones(KE), "color": np.full(KC, 0.5)}
    m1, m2 = model.mesh(params), again.mesh(params)
    np.testing.assert_array_equal(m1.vertices, m2.vertices)
    np.testing.assert_array_equal(m1.colors, m2.colors)
    np.testing.assert_array_equal(m1.faces, m2.faces)
    assert again.meta.unit == "mm" and again.meta.attribution == model.meta.attribution
    assert [g.names for g in again.groups] == [g.names for g in model.groups]


def _bad_bfm17(tmp_path, case):
    a = _bfm17_arrays()
    path = tmp_path / f"{case}.h5"
    if case == "garbage":
        path.write_bytes(b"this is not an HDF5 file at all" * 10)
    elif case == "truncated":
        _write_bfm17(path, a)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
    elif case == "missing_basis":
        _write_bfm17(path, a, skip=("shape/model/pcaBasis",))
    elif case == "nan":
        a["shape_U"][5, 1] = np.nan
        _write_bfm17(path, a)
    elif case == "basis_mismatch":
        a["shape_U"] = a["shape_U"][:-3]
        _write_bfm17(path, a)
    elif case == "variance_count":
        a["shape_var"] = a["shape_var"][:-1]
        _write_bfm17(path, a)
    elif case == "cells_out_of_range":
        a["cells"][1, 4] = N
        _write_bfm17(path, a)
    elif case == "expression_size":
        a["expr_mean"] = a["expr_mean"][:-6]
        a["expr_U"] = a["expr_U"][:-6]
        _write_bfm17(path, a)
    elif case == "negative_variance":
        a["shape_var"][0] = -5
        _write_bfm17(path, a)
    elif case == "not_orthonormal":
        a["shape_U"][:, 2] *= 3
        _write_bfm17(path, a)
    elif case == "color_range":
        a["color_mean"] = a["color_mean"] * 255
        _write_bfm17(path, a)
    return path


@pytest.mark.parametrize("case, words", [
    ("garbage", "HDF5"), ("truncated", ""), ("missing_basis", "shape/model/pcaBasis"), ("nan", "NaN"),
    ("basis_mismatch", "pcaBasis"), ("variance_count", "pcaVariance"), ("cells_out_of_range", "cells"),
    ("expression_size", "expression"), ("negative_variance", "negative"), ("color_range", "colour"),
    ("not_orthonormal", "unit length"),
])
def test_bfm_h5_bad_input_is_one_line_error(tmp_path, case, words):
    path = _bad_bfm17(tmp_path, case)
    with pytest.raises(StudioError) as e:
        load_bfm_h5(path, "bad")
    assert words in _one_line_error(e, path)


def test_bfm_h5_missing_file(tmp_path):
    with pytest.raises(StudioError) as e:
        load_bfm_h5(tmp_path / "nope.h5", "x")
    _one_line_error(e, tmp_path / "nope.h5")


# ----------------------------------------------------------------------------------------------
# BFM 2009 (.mat)
# ----------------------------------------------------------------------------------------------

def _bfm09_vars(seed=2):
    rng = np.random.default_rng(seed)
    tl = rng.integers(1, N + 1, (M, 3))
    tl[0] = [1, 2, N]  # make sure both ends of the 1-based range occur
    return {
        "shapeMU": rng.uniform(-8e4, 8e4, (3 * N, 1)),  # micrometres
        "shapePC": _orthonormal(rng, 3 * N, K),
        "shapeEV": rng.uniform(1e3, 5e4, (K, 1)),  # standard deviations, micrometres
        "texMU": rng.uniform(40, 220, (3 * N, 1)),  # 0..255
        "texPC": _orthonormal(rng, 3 * N, KC),
        "texEV": rng.uniform(1, 20, (KC, 1)),
        "tl": tl.astype(np.float64),  # MATLAB stores the triangle list as double
        "segbin": np.ones((N, 4)),  # present in the real file, not used
    }


def _write_mat73(path, variables):
    """A MATLAB v7.3 file: HDF5 behind a 512-byte user block that starts with MATLAB's header."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for k, v in variables.items():
            f[k] = np.asarray(v).T  # MATLAB is column-major: HDF5 sees every array transposed
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    with open(path, "r+b") as fh:
        fh.write(header.ljust(116) + b"\0" * 8 + b"\x00\x02IM")
    return path


def _bfm09_expected(v, alpha, gamma):
    verts = (v["shapeMU"][:, 0] + v["shapePC"] @ (alpha * v["shapeEV"][:, 0])) / 1000
    cols = (v["texMU"][:, 0] + v["texPC"] @ (gamma * v["texEV"][:, 0])) / 255
    return verts.reshape(N, 3), np.clip(cols.reshape(N, 3), 0, 1)


@pytest.mark.parametrize("version", ["v5", "v7.3"])
def test_bfm2009_micrometres_to_mm_and_one_based_triangles(tmp_path, version):
    v = _bfm09_vars()
    path = tmp_path / "01_MorphableModel.mat"
    if version == "v5":
        scipy.io.savemat(path, v)
    else:
        _write_mat73(path, v)
        assert h5py.is_hdf5(path)
    model = load_bfm2009_mat(path, "bfm09")
    assert [g.name for g in model.groups] == ["shape", "color"]
    assert model.meta.unit == "mm" and "Paysan" in model.meta.attribution
    np.testing.assert_array_equal(model.faces, v["tl"].astype(int) - 1)
    assert model.faces.min() == 0 and model.faces.max() == N - 1
    np.testing.assert_allclose(model.mean, v["shapeMU"].reshape(N, 3) / 1000, rtol=1e-6)
    np.testing.assert_allclose(model.color_mean, v["texMU"].reshape(N, 3) / 255, rtol=1e-6)

    rng = np.random.default_rng(3)
    alpha, gamma = rng.normal(size=K), rng.normal(size=KC)
    mesh = model.mesh({"shape": alpha, "color": gamma})
    verts, cols = _bfm09_expected(v, alpha, gamma)
    np.testing.assert_allclose(mesh.vertices, verts, atol=1e-3)  # mm
    np.testing.assert_allclose(mesh.colors, cols, atol=1e-5)
    assert 0 <= mesh.colors.min() and mesh.colors.max() <= 1


def test_bfm2009_round_trip(tmp_path):
    path = tmp_path / "m.mat"
    scipy.io.savemat(path, _bfm09_vars())
    model = load_bfm2009_mat(path, "bfm09")
    again = load_model(save_model(model, tmp_path / "m.npz"))
    p = {"shape": np.ones(K), "color": -np.ones(KC)}
    np.testing.assert_array_equal(model.mesh(p).vertices, again.mesh(p).vertices)
    np.testing.assert_array_equal(model.mesh(p).colors, again.mesh(p).colors)


@pytest.mark.parametrize("case, words", [
    ("garbage", "MATLAB"), ("truncated", ""), ("missing_pc", "shapePC"), ("zero_based", "1-based"),
    ("out_of_range", "tl"), ("ev_count", "shapeEV"), ("nan", "NaN"), ("tex_partial", "texEV"),
    ("pc_rows", "shapePC"),
])
def test_bfm2009_bad_input_is_one_line_error(tmp_path, case, words):
    v = _bfm09_vars()
    path = tmp_path / f"{case}.mat"
    if case == "garbage":
        path.write_bytes(os.urandom(3000))
    elif case == "truncated":
        scipy.io.savemat(path, v)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        if case == "missing_pc":
            del v["shapePC"]
        elif case == "zero_based":
            v["tl"] = v["tl"] - 1
        elif case == "out_of_range":
            v["tl"][3, 2] = N + 1
        elif case == "ev_count":
            v["shapeEV"] = v["shapeEV"][:-1]
        elif case == "nan":
            v["shapeMU"][4, 0] = np.inf
        elif case == "tex_partial":
            del v["texEV"]
        elif case == "pc_rows":
            v["shapePC"] = v["shapePC"][:-3]
        scipy.io.savemat(path, v)
    with pytest.raises(StudioError) as e:
        load_bfm2009_mat(path, "bad")
    assert words in _one_line_error(e, path)


# ----------------------------------------------------------------------------------------------
# FLAME (.pkl)
# ----------------------------------------------------------------------------------------------

FS, FE = 4, 100  # FLAME layout: shape directions first, then always 100 expression directions


def _flame_arrays(seed=4):
    rng = np.random.default_rng(seed)
    return {
        "v_template": rng.uniform(-0.1, 0.1, (N, 3)),  # metres
        "f": rng.integers(0, N, (M, 3)).astype(np.uint32),
        "shapedirs": rng.normal(0, 1e-3, (N, 3, FS + FE)),
        "posedirs": rng.normal(0, 1e-3, (N, 3, 36)),
        "J_regressor": scipy.sparse.csc_matrix(rng.uniform(0, 1, (5, N)) * (rng.uniform(size=(5, N)) > 0.8)),
        "weights": rng.uniform(0, 1, (N, 5)),
        "kintree_table": np.array([[2**32 - 1, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
        "J": rng.normal(size=(5, 3)),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }


@pytest.fixture
def fake_chumpy(monkeypatch):
    """Register a stand-in ``chumpy.ch.Ch`` only while pickles are written, never while loading."""

    class Ch:
        def __init__(self, x):
            self.x = x

        def __getstate__(self):
            # Mimics chumpy's own state dict: the value in 'x' plus bookkeeping (a set among it).
            return {"x": self.x, "_dirty_vars": set(), "_itr": None, "_depends_on_deps": {},
                    "_make_dense": False, "_make_sparse": False}

    class add:  # a derived chumpy node: no stored value
        def __getstate__(self):
            return {"a": Ch(np.zeros(3)), "b": Ch(np.ones(3))}

    # Make pickle write them as chumpy.ch.Ch and chumpy.ch_ops.add, as in the published files.
    Ch.__module__, Ch.__qualname__, add.__module__, add.__qualname__ = "chumpy.ch", "Ch", "chumpy.ch_ops", "add"
    pkg, ch, ops = types.ModuleType("chumpy"), types.ModuleType("chumpy.ch"), types.ModuleType("chumpy.ch_ops")
    ch.Ch, ops.add, pkg.ch, pkg.ch_ops = Ch, add, ch, ops
    with monkeypatch.context() as m:
        for mod in (pkg, ch, ops):
            m.setitem(sys.modules, mod.__name__, mod)
        yield types.SimpleNamespace(Ch=Ch, add=add)
    assert "chumpy" not in sys.modules


def _chumpyfy(a, Ch):
    out = dict(a)
    for k in ("v_template", "shapedirs", "posedirs", "J", "weights"):
        out[k] = Ch(a[k])
    return out


class _Py2Pickler(pickle.Pickler):
    """Writes arrays as Python 2 did: the raw data is a (latin-1) text string, not bytes."""

    def reducer_override(self, obj):
        if type(obj) is np.ndarray:
            rebuild = np.zeros(1).__reduce__()[0]
            return rebuild, (np.ndarray, (0,), "b"), (1, obj.shape, obj.dtype, False,
                                                      obj.tobytes().decode("latin1"))
        return NotImplemented


def _py2_style(obj, protocol) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=protocol).dump(obj)
    # Python 2 files name numpy's and scipy's old modules; GLOBAL opcodes are plain text lines.
    return (buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
            .replace(b"cscipy.sparse._csc\n", b"cscipy.sparse.csc\n"))


def _flame_expected(a, beta, psi, n_shape=FS, n_expr=FE):
    sd = a["shapedirs"]
    return a["v_template"] + sd[:, :, :n_shape] @ beta + sd[:, :, FS:FS + n_expr] @ psi


@pytest.mark.parametrize("protocol", [0, 1, 2])
def test_flame_chumpy_pickle(tmp_path, fake_chumpy, protocol):
    a = _flame_arrays()
    path = tmp_path / "generic_model.pkl"
    path.write_bytes(_py2_style(_chumpyfy(a, fake_chumpy.Ch), protocol))
    raw = path.read_bytes()
    assert b"chumpy.ch\nCh" in raw and b"numpy.core.multiarray\n" in raw and b"scipy.sparse.csc\n" in raw
    for mod in ("chumpy", "chumpy.ch", "chumpy.ch_ops"):  # load as on a machine without chumpy
        sys.modules.pop(mod)
    _check_flame(path, a)
    assert "chumpy" not in sys.modules


def test_flame_plain_numpy_pickle_loads_without_chumpy(tmp_path):
    a = _flame_arrays()
    path = tmp_path / "flame2023.pkl"
    path.write_bytes(pickle.dumps(a, protocol=5))
    _check_flame(path, a)
    assert "chumpy" not in sys.modules


def _check_flame(path, a):
    model = load_flame_pkl(path, "flame")
    assert [g.name for g in model.groups] == ["shape", "expression"]
    assert model.groups[0].names == tuple(f"PC{i + 1}" for i in range(FS))
    assert model.groups[1].names[0] == "EXP1" and model.groups[1].size == FE
    assert all(g.prior == "normal" and np.all(g.sigma == 1) for g in model.groups)
    assert model.meta.unit == "m" and "Li" in model.meta.attribution and "licence" in model.meta.attribution
    np.testing.assert_array_equal(model.faces, a["f"].astype(int))
    rng = np.random.default_rng(5)
    beta, psi = rng.normal(size=FS), rng.normal(size=FE)
    mesh = model.mesh({"shape": beta, "expression": psi})
    np.testing.assert_allclose(mesh.vertices, _flame_expected(a, beta, psi), atol=1e-6)
    np.testing.assert_allclose(model.mesh({}).vertices, a["v_template"], atol=1e-7)
    assert mesh.colors is None


def test_flame_truncated_components_and_round_trip(tmp_path):
    a = _flame_arrays()
    path = tmp_path / "generic_model.pkl"
    path.write_bytes(pickle.dumps(a, protocol=2))
    model = load_flame_pkl(path, "flame", n_shape=2, n_expr=3)
    assert [g.size for g in model.groups] == [2, 3]
    beta, psi = np.array([1.0, -2.0]), np.array([0.5, 1.5, -1.0])
    np.testing.assert_allclose(model.mesh({"shape": beta, "expression": psi}).vertices,
                               _flame_expected(a, beta, psi, 2, 3), atol=1e-6)
    again = load_model(save_model(model, tmp_path / "flame.npz"))
    np.testing.assert_array_equal(again.mesh({"shape": beta, "expression": psi}).vertices,
                                  model.mesh({"shape": beta, "expression": psi}).vertices)
    assert again.meta.unit == "m" and [g.names for g in again.groups] == [g.names for g in model.groups]
    assert [g.name for g in load_flame_pkl(path, "f", n_expr=0).groups] == ["shape"]


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.marker}",))


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_flame_refuses_malicious_pickle_without_running_it(tmp_path, capfd, protocol):
    marker = tmp_path / "pwned.txt"
    a = _flame_arrays()
    a["v_template"] = _Evil(marker)
    path = tmp_path / "generic_model.pkl"
    path.write_bytes(pickle.dumps(a, protocol=protocol))
    with pytest.raises(StudioError) as e:
        load_flame_pkl(path, "evil")
    msg = _one_line_error(e, path)
    assert "refuses to load" in msg and "system" in msg and "not part of a FLAME model" in msg
    assert not marker.exists()
    assert "pwned" not in capfd.readouterr().out


@pytest.mark.parametrize("payload, what", [
    # builtins.eval('...') via protocol-0 opcodes
    (b"c__builtin__\neval\n(S'1+1'\ntR.", "eval"),
    # copy_reg._reconstructor used to build something other than a stub
    (b"ccopy_reg\n_reconstructor\n(c__builtin__\nset\nc__builtin__\nset\n(lp0\ntR.", "_reconstructor"),
    # _codecs.encode with a codec other than latin-1
    (b"c_codecs\nencode\n(Vabc\nVrot13\ntR.", "encode"),
    # a scipy object that is not a sparse matrix
    (b"cscipy.sparse.linalg\nspsolve\n(tR.", "spsolve"),
])
def test_flame_refuses_other_globals(tmp_path, payload, what):
    path = tmp_path / "evil.pkl"
    path.write_bytes(payload)
    with pytest.raises(StudioError) as e:
        load_flame_pkl(path, "evil")
    msg = _one_line_error(e, path)
    assert "refuses to load" in msg and what in msg


def _bad_flame(tmp_path, case, fake_chumpy):
    a = _flame_arrays()
    path = tmp_path / f"{case}.pkl"
    if case == "garbage":
        path.write_bytes(os.urandom(2000))
        return path
    if case == "truncated":
        data = pickle.dumps(a, protocol=2)
        path.write_bytes(data[: len(data) // 2])
        return path
    data = a
    if case == "not_dict":
        data = [a["v_template"]]
    elif case == "missing":
        del data["shapedirs"]
    elif case == "nan":
        data["v_template"][3, 1] = np.nan
    elif case == "nan_dirs":
        data["shapedirs"][3, 1, 2] = np.inf
    elif case == "wrong_size":
        data["shapedirs"] = data["shapedirs"][:-1]
    elif case == "too_few_dirs":
        data["shapedirs"] = data["shapedirs"][:, :, :60]
    elif case == "faces_out_of_range":
        data["f"][2, 0] = N
    elif case == "chumpy_expression":
        data["v_template"] = fake_chumpy.add()
    elif case == "text_array":
        data["v_template"] = "not an array"
    path.write_bytes(pickle.dumps(data, protocol=2))
    return path


@pytest.mark.parametrize("case, words", [
    ("garbage", "pickle"), ("truncated", "pickle"), ("not_dict", "list"), ("missing", "shapedirs"),
    ("nan", "NaN"), ("nan_dirs", "NaN"), ("wrong_size", "shapedirs"), ("too_few_dirs", "100 expression"),
    ("faces_out_of_range", "f refers"), ("chumpy_expression", "chumpy.ch_ops.add"),
    ("text_array", "numeric"),
])
def test_flame_bad_input_is_one_line_error(tmp_path, fake_chumpy, case, words):
    path = _bad_flame(tmp_path, case, fake_chumpy)
    with pytest.raises(StudioError) as e:
        load_flame_pkl(path, "bad")
    assert words in _one_line_error(e, path)


@pytest.mark.parametrize("kwargs", [{"n_shape": FS + 1}, {"n_expr": -1}, {"n_shape": 1.5}, {"n_expr": True}])
def test_flame_bad_component_counts(tmp_path, kwargs):
    path = tmp_path / "generic_model.pkl"
    path.write_bytes(pickle.dumps(_flame_arrays(), protocol=2))
    with pytest.raises(StudioError) as e:
        load_flame_pkl(path, "f", **kwargs)
    _one_line_error(e, path)
