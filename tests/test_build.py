"""Building a PCA model from registered scans, checked against a known synthetic model.

The synthetic model: an icosphere mean and 5 orthonormal directions scaled by distinct σ's.
Scans sampled from it have rank 5 after centring, so PCA must give back exactly that
subspace, and the σ's of the sample (not the true ones: 60 scans are a finite sample).
"""

from __future__ import annotations

import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import trimesh
from scipy.linalg import subspace_angles
from scipy.spatial.transform import Rotation

from studio.core.build import build_pca_model, generalized_procrustes, read_registered_meshes, write_spectrum_png
from studio.core.errors import StudioError
from studio.core.modelfile import load_model, save_model
from studio.core.objio import read_obj, read_obj_vertices
from studio.core.progress import Cancelled

SIGMA = np.array([30.0, 18.0, 10.0, 5.0, 2.5])
COLOR_SIGMA = np.array([1.0, 0.6, 0.3])
N_SCANS = 60


# -- synthetic model ----------------------------------------------------------------------------

def _similarity_tangent(mean):
    """The 7 directions a small similarity transform moves the mean along (t, ω×x, scale)."""
    n = len(mean)
    dirs = []
    for a in range(3):
        t = np.zeros((n, 3))
        t[:, a] = 1
        dirs.append(t.ravel())
        w = np.zeros(3)
        w[a] = 1
        dirs.append(np.cross(w, mean).ravel())
    dirs.append(mean.ravel())
    return np.array(dirs)


def _orthonormal(rng, k, dim, avoid=None):
    """k orthonormal rows in R^dim, orthogonal to the rows of ``avoid``."""
    a = rng.standard_normal((dim, k))
    if avoid is not None:
        qa, _ = np.linalg.qr(avoid.T)
        a -= qa @ (qa.T @ a)
    q, _ = np.linalg.qr(a)
    return q.T


@pytest.fixture(scope="module")
def synth():
    rng = np.random.default_rng(7)
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=80.0)
    mean = np.asarray(sphere.vertices, dtype=np.float64)
    n = len(mean)
    # Components orthogonal to pose/size changes, so Procrustes alignment does not remove them.
    Q = _orthonormal(rng, 5, 3 * n, avoid=_similarity_tangent(mean))
    alpha = rng.standard_normal((N_SCANS, 5))
    X = mean + ((alpha * SIGMA) @ Q).reshape(N_SCANS, n, 3)

    cmean = rng.uniform(0.35, 0.65, (n, 3))
    QC = _orthonormal(rng, 3, 3 * n)
    gamma = rng.standard_normal((N_SCANS, 3))
    C = cmean + ((gamma * COLOR_SIGMA) @ QC).reshape(N_SCANS, n, 3)
    assert C.min() > 0 and C.max() < 1, "synthetic colours must not be clipped"
    return dict(mean=mean, faces=np.asarray(sphere.faces), Q=Q, X=X, QC=QC, C=C, n=n)


def _sample_sigma(data):
    """σ's of a sample, from its covariance (independent of the SVD route the builder takes)."""
    d = data.reshape(len(data), -1)
    lam = np.linalg.eigvalsh(np.cov(d - d.mean(0), rowvar=False) if d.shape[1] < 50
                             else (d - d.mean(0)) @ (d - d.mean(0)).T / (len(d) - 1))
    return np.sqrt(np.clip(np.sort(lam)[::-1], 0, None))


def _max_angle(basis, Q):
    return np.max(subspace_angles(basis.reshape(len(basis), -1).T.astype(np.float64), Q.T))


def _write_obj(path, verts, faces, colors=None):
    cols = verts if colors is None else np.hstack([verts, colors])
    lines = ["# synthetic scan"]
    lines += ["v " + " ".join(f"{x:.17g}" for x in row) for row in cols]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    path.write_text("\n".join(lines) + "\n")


def _write_scans(folder, X, faces, C=None):
    folder.mkdir(exist_ok=True)
    for i, v in enumerate(X):
        _write_obj(folder / f"scan_{i:03d}.obj", v, faces, None if C is None else C[i])
    return folder


def _one_line(excinfo):
    msg = str(excinfo.value)
    assert msg and "\n" not in msg
    return msg


# -- reading and building -------------------------------------------------------------------------

def test_obj_folder_builds_the_known_model(tmp_path, synth):
    X, faces, n = synth["X"], synth["faces"], synth["n"]
    folder = _write_scans(tmp_path / "scans", X, faces)
    (folder / "notes.txt").write_text("ignored: not a mesh")
    calls = []
    V, F, colors, uv, names = read_registered_meshes(folder, progress=lambda f, m: calls.append(f))
    assert V.shape == (N_SCANS, n, 3) and V.dtype == np.float64
    assert np.array_equal(V, X)  # %.17g round-trips float64 exactly
    assert np.array_equal(F, faces) and colors is None and uv is None
    assert names == [f"scan_{i:03d}" for i in range(N_SCANS)]
    assert calls and calls[-1] == 1.0 and all(0 <= f <= 1 for f in calls)

    model, rep = build_pca_model("synthetic", V, F, unit="mm", attribution="test data")
    shape = model.linear[0]
    assert shape.group.name == "shape" and shape.group.prior == "normal"
    assert shape.group.names == ("PC1", "PC2", "PC3", "PC4", "PC5")  # rank 5: extra PCs dropped
    assert np.allclose(shape.group.sigma, 1.0)
    assert rep["kept"] == 5 and len(rep["eigenvalues"]) == 5
    # Mean is the sample mean (up to float32 storage).
    assert np.abs(model.mean - X.mean(0)).max() < 1e-4
    # Components span the true subspace; σ's are the sample's.
    assert _max_angle(shape.basis, synth["Q"]) < 1e-5
    assert np.allclose(rep["sigma"], _sample_sigma(X)[:5], rtol=1e-9)
    assert np.allclose(np.linalg.norm(shape.basis.reshape(5, -1), axis=1), rep["sigma"], rtol=1e-5)
    assert np.allclose(rep["sigma"], SIGMA, rtol=0.4)  # and roughly the true ones
    # Basis rows orthogonal; deterministic sign: the largest-magnitude entry is positive.
    B = shape.basis.reshape(5, -1).astype(np.float64)
    gram = B @ B.T
    assert np.abs(gram - np.diag(np.diag(gram))).max() < 1e-4 * gram.max()
    assert np.all(B[np.arange(5), np.abs(B).argmax(1)] > 0)
    # Report: consistent spectrum and an exact fit of every scan with all components.
    assert np.allclose(rep["eigenvalues"], rep["sigma"] ** 2)
    assert np.isclose(rep["explained_variance_ratio"].sum(), 1) and np.isclose(rep["cumulative"][-1], 1)
    assert rep["reconstruction_rms"].shape == (N_SCANS,) and rep["reconstruction_rms"].max() < 1e-9
    assert model.meta.unit == "mm" and model.meta.attribution == "test data"


def test_components_and_variance_select_k(synth):
    X, faces = synth["X"], synth["faces"]
    lam = _sample_sigma(X)[:5] ** 2
    cum = np.cumsum(lam) / lam.sum()
    for k in (1, 3, 5):
        model, rep = build_pca_model("m", X, faces, components=k)
        assert rep["kept"] == k and model.basis("shape").shape == (k, synth["n"], 3)
        assert len(rep["eigenvalues"]) == 5  # the report keeps the whole spectrum
    for v in (0.3, 0.5, 0.8, 0.9, 0.95, 0.99, 0.999, 1.0):
        _, rep = build_pca_model("m", X, faces, variance=v)
        expected = int(np.argmax(cum >= v - 1e-12)) + 1
        assert rep["kept"] == expected, v
        assert rep["cumulative"][rep["kept"] - 1] >= v - 1e-12
        assert rep["kept"] == 1 or rep["cumulative"][rep["kept"] - 2] < v
    # Truncated fit error equals the variance in the dropped directions, per scan.
    _, rep = build_pca_model("m", X, faces, components=3)
    beta = (X - X.mean(0)).reshape(N_SCANS, -1) @ synth["Q"].T  # sample coords in the true subspace
    w, W = np.linalg.eigh(np.cov(beta, rowvar=False))
    dropped = beta @ W[:, np.argsort(w)[::-1][3:]]
    assert np.allclose(rep["reconstruction_rms"], np.sqrt((dropped ** 2).sum(1) / synth["n"]), rtol=1e-6)

    for bad in (dict(components=0), dict(components=6), dict(variance=0.0), dict(variance=1.5),
                dict(components=2, variance=0.9), dict(unit="furlong")):
        with pytest.raises(StudioError) as e:
            build_pca_model("m", X, faces, **bad)
        _one_line(e)


def test_model_face_round_trips(tmp_path, synth):
    model, _ = build_pca_model("m", synth["X"], synth["faces"])
    rng = np.random.default_rng(3)
    params = model.sample(rng)
    mesh = model.mesh(params)
    B = model.basis("shape").reshape(5, -1).astype(np.float64)
    # Orthogonal basis: coefficient i is the projection on B_i over ‖B_i‖².
    back = B @ (mesh.vertices.astype(np.float64) - model.mean).ravel() / (B ** 2).sum(1)
    assert np.allclose(back, params["shape"], atol=1e-4)
    # A training scan is reproduced by its own coefficients.
    x0 = synth["X"][0]
    a0 = B @ (x0 - model.mean).ravel() / (B ** 2).sum(1)
    assert np.abs(model.mesh({"shape": a0}).vertices - x0).max() < 1e-3
    # And the model survives the model file.
    save_model(model, tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz")
    assert np.allclose(loaded.mesh(params).vertices, mesh.vertices)
    assert loaded.groups[0].names == model.groups[0].names


def test_obj_vertex_colors_give_exact_color_model(tmp_path, synth):
    folder = _write_scans(tmp_path / "scans", synth["X"], synth["faces"], synth["C"])
    V, F, colors, _, _ = read_registered_meshes(folder)
    assert np.array_equal(colors, synth["C"])
    model, rep = build_pca_model("m", V, F, colors=colors)
    color = model.linear[1]
    assert color.group.name == "color" and color.group.affects == "color"
    assert color.group.size == 3 and rep["color"]["kept"] == 3
    assert np.abs(model.color_mean - synth["C"].mean(0)).max() < 1e-6
    assert _max_angle(color.basis, synth["QC"]) < 1e-5
    assert np.allclose(rep["color"]["sigma"], _sample_sigma(synth["C"])[:3], rtol=1e-9)
    mesh = model.mesh(model.sample(np.random.default_rng(1)))
    assert mesh.colors.shape == (synth["n"], 3) and 0 <= mesh.colors.min() and mesh.colors.max() <= 1


def test_ply_scans_with_vertex_colors(tmp_path, synth):
    folder = tmp_path / "ply"
    folder.mkdir()
    C8 = np.round(synth["C"] * 255).astype(np.uint8)
    for i, (v, c) in enumerate(zip(synth["X"], C8)):
        m = trimesh.Trimesh(v, synth["faces"], vertex_colors=np.hstack([c, np.full((len(c), 1), 255, np.uint8)]),
                            process=False)
        m.export(folder / f"s{i:03d}.ply")
    V, F, colors, uv, names = read_registered_meshes(folder)
    assert np.allclose(V, synth["X"]) and np.array_equal(F, synth["faces"]) and uv is None
    assert np.abs(colors - synth["C"]).max() <= 0.5 / 255 + 1e-12  # 8-bit quantisation only
    model, rep = build_pca_model("m", V, F, colors=colors, components=5)
    assert _max_angle(model.basis("shape"), synth["Q"]) < 1e-5
    assert model.basis("color").shape[0] == 5 and rep["color"]["kept"] == 5
    # The top 3 colour components are the true ones, tilted a little by quantisation noise.
    assert _max_angle(model.basis("color")[:3], synth["QC"]) < 0.05
    assert np.allclose(rep["color"]["sigma"][:3], _sample_sigma(synth["C"])[:3], rtol=0.02)
    assert np.abs(model.color_mean - colors.mean(0)).max() < 1e-6
    # Quantisation noise is full rank: colour has up to s-1 components, the rest is noise.
    assert len(rep["color"]["sigma"]) > 3 and rep["color"]["sigma"][3] < 0.02 * rep["color"]["sigma"][2]


# -- alignment ------------------------------------------------------------------------------------

def _random_similarity(rng, X, keep_first=True):
    out = X.copy()
    for i in range(1 if keep_first else 0, len(X)):
        R = Rotation.random(random_state=rng.integers(1 << 30)).as_matrix()
        out[i] = rng.uniform(0.7, 1.4) * X[i] @ R.T + rng.normal(0, 50, 3)
    return out


def test_align_recovers_subspace_from_posed_scans(synth):
    rng = np.random.default_rng(11)
    posed = _random_similarity(rng, synth["X"])
    # Without alignment pose dominates: the top 5 components are not the shape subspace.
    unaligned, _ = build_pca_model("m", posed, synth["faces"], components=5)
    assert _max_angle(unaligned.basis("shape"), synth["Q"]) > 0.5
    model, rep = build_pca_model("m", posed, synth["faces"], components=5, align=True)
    assert rep["aligned"]
    # The poses are undone exactly: same model as aligning the unposed scans.
    ref, ref_rep = build_pca_model("m", synth["X"], synth["faces"], components=5, align=True)
    assert np.abs(model.mean - ref.mean).max() < 1e-4
    assert np.abs(model.basis("shape") - ref.basis("shape")).max() < 1e-4
    assert np.allclose(rep["sigma"], ref_rep["sigma"], rtol=1e-8)
    # And the subspace is the true one up to alignment's curvature effect: a rigid fit of a
    # deformed sphere is exact only to first order, so the tilt grows with the deformation
    # (here ~3% of the radius → a few hundredths of a radian).
    assert _max_angle(model.basis("shape"), synth["Q"]) < 0.1
    assert np.allclose(rep["sigma"][:5], _sample_sigma(synth["X"])[:5], rtol=0.25)
    assert rep["cumulative"][4] > 0.995
    # Result stays in the first scan's frame and units (scan 0 was left unposed).
    assert np.abs(model.mean - synth["X"].mean(0)).max() < 0.01 * 80
    # Smaller deformations: the tilt shrinks in proportion.
    small = synth["mean"] + 0.1 * (synth["X"] - synth["mean"])
    m_small, _ = build_pca_model("m", _random_similarity(rng, small), synth["faces"], components=5, align=True)
    assert _max_angle(m_small.basis("shape"), synth["Q"]) < 0.01


def test_generalized_procrustes_exact_cases():
    rng = np.random.default_rng(5)
    shape = rng.normal(0, 10, (40, 3))
    copies = _random_similarity(rng, np.repeat(shape[None], 6, axis=0))
    aligned = generalized_procrustes(copies)
    assert np.abs(aligned - shape).max() < 1e-8  # first scan's frame, every copy on top of it
    # Reflection-safe: a mirrored (chiral) copy cannot be rotated onto the original.
    mirrored = np.stack([shape, shape * np.array([-1, 1, 1])])
    out = generalized_procrustes(mirrored)
    assert np.abs(out[0] - out[1]).max() > 1.0
    # scale=False keeps sizes: a copy at twice the size stays twice the size.
    two = np.stack([shape, 2 * shape @ Rotation.from_euler("z", 40, degrees=True).as_matrix().T])
    out = generalized_procrustes(two, scale=False)
    size = lambda a: np.linalg.norm(a - a.mean(0))
    assert np.isclose(size(out[1]) / size(out[0]), 2.0)
    out = generalized_procrustes(two, scale=True)
    assert np.abs(out[0] - out[1]).max() < 1e-8 and np.isclose(size(out[0]), size(shape))


# -- spectrum plot --------------------------------------------------------------------------------

def test_spectrum_png(tmp_path, synth):
    _, rep = build_pca_model("m", synth["X"], synth["faces"], variance=0.9)
    path = tmp_path / "spectrum.png"
    write_spectrum_png(rep, path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert 400 <= width <= 3000 and 200 <= height <= 2000 and len(data) > 5000
    with pytest.raises(StudioError) as e:
        write_spectrum_png(rep, path)
    _one_line(e)
    write_spectrum_png(rep, path, force=True)
    assert [p.name for p in tmp_path.iterdir()] == ["spectrum.png"]  # no temp files left


def test_core_import_does_not_load_pyplot():
    code = "import sys, studio.core.build; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


# -- bad input ------------------------------------------------------------------------------------

def test_bad_folders_give_one_line_errors(tmp_path, synth):
    X, faces = synth["X"][:3], synth["faces"]

    def expect(folder, *words):
        with pytest.raises(StudioError) as e:
            read_registered_meshes(folder)
        msg = _one_line(e)
        for w in words:
            assert w in msg, (w, msg)

    expect(tmp_path / "missing", "not a folder")
    (tmp_path / "empty").mkdir()
    expect(tmp_path / "empty", "at least 2")
    one = _write_scans(tmp_path / "one", X[:1], faces)
    expect(one, "at least 2")

    mism = _write_scans(tmp_path / "mism", X, faces)
    _write_obj(mism / "scan_001.obj", X[1][:-2], faces[:10])
    expect(mism, "scan_001.obj", str(len(X[0]) - 2), str(len(X[0])))

    nan = _write_scans(tmp_path / "nan", X, faces)
    text = (nan / "scan_002.obj").read_text().splitlines()
    text[5] = "v nan 0 0"
    (nan / "scan_002.obj").write_text("\n".join(text))
    expect(nan, "scan_002.obj", "NaN")

    for name, payload in (("junk.obj", b"\x00\x01\x02 not an obj \xff" * 50),
                          ("junk.ply", b"garbage\x00\x01"),
                          ("junk.off", b"OFF\nthis is not right"),
                          ("junk.stl", b"\x00" * 10)):
        bad = _write_scans(tmp_path / f"bad_{name}", X, faces)
        (bad / name).write_bytes(payload)
        expect(bad, name)

    words = _write_scans(tmp_path / "words", X, faces)
    (words / "scan_001.obj").write_text("v 1 2 three\nv 4 5 6\nf 1 2 1\n")
    expect(words, "scan_001.obj")

    mixed = _write_scans(tmp_path / "mixed", X, faces, synth["C"][:3])
    _write_obj(mixed / "scan_002.obj", X[2], faces)
    expect(mixed, "colour", "scan_002.obj")


def test_degenerate_build_inputs(synth):
    X, faces = synth["X"], synth["faces"]
    cases = [(X[:1], faces), (np.repeat(X[:1], 4, axis=0), faces), (np.ones((3, 12, 3)), [[0, 1, 2]]),
             (X[:, :, :2], faces),
             (np.where(np.arange(3) == 0, np.nan, X), faces), (X, faces + len(X[0]))]
    for v, f in cases:
        with pytest.raises(StudioError) as e:
            build_pca_model("m", v, f)
        _one_line(e)


def test_progress_can_cancel(tmp_path, synth):
    folder = _write_scans(tmp_path / "scans", synth["X"][:5], synth["faces"])

    calls = []

    def cancel_third(fraction, message):
        calls.append(fraction)
        if len(calls) == 3:
            raise Cancelled()

    with pytest.raises(Cancelled):
        read_registered_meshes(folder, progress=cancel_third)
    def cancel_now(fraction, message):
        raise Cancelled()

    with pytest.raises(Cancelled):
        build_pca_model("m", synth["X"], synth["faces"], progress=cancel_now)


# -- OBJ reader -----------------------------------------------------------------------------------

OBJ_UV = """\
# a quad and a triangle with v/vt/vn corners, two materials
mtllib skin.mtl
o head
v 0 0 0 0.1 0.2 0.3
v 1 0 0 0.4 0.5 0.6
v 1 1 0 0.7 0.8 0.9
v 0 1 0 1.0 1.0 1.0
v 2 0 0 0 0 0
vt 0 0
vt 1 0
vt 1 1
vt 0 1
vn 0 0 1
usemtl skin
s 1
f 1/1/1 2/2/1 3/3/1 4/4/1
usemtl lips
f -4/-4/1 -1/-3/1 -3/-2/1
usemtl skin
f 2/2 5/1 3/3
"""

OBJ_MIXED = """\
v 0 0 0
v 1 0 0
f 1 2 -1
# interleaved: negative indices count from the vertices defined so far
v\t0 1 0
v 1 1 0  # trailing comment
v 2 2 0
f 1//1 2//1 -1//1 -2//1 -3//1
usemtl teeth
f -3 -2 -1
"""


def test_objio_faces_uvs_materials(tmp_path):
    p = tmp_path / "a.obj"
    p.write_text(OBJ_UV)
    d = read_obj(p)
    assert d["vertices"].shape == (5, 3) and np.array_equal(d["vertices"][2], [1, 1, 0])
    assert np.allclose(d["colors"][:2], [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    # Quad 1 2 3 4 fans into (1 2 3) (1 3 4); -4 -1 -3 with 5 vertices is 2 5 3.
    assert d["faces"].tolist() == [[0, 1, 2], [0, 2, 3], [1, 4, 2], [1, 4, 2]]
    assert d["face_uv"].tolist() == [[0, 1, 2], [0, 2, 3], [0, 1, 2], [1, 0, 2]]
    assert d["uv"].shape == (4, 2) and np.array_equal(d["uv"][2], [1, 1])
    assert d["materials"] == ("skin", "lips")
    assert d["face_material"].tolist() == [0, 0, 1, 0]
    v, c = read_obj_vertices(p, with_colors=True)
    assert np.array_equal(v, d["vertices"]) and np.array_equal(c, d["colors"])
    assert np.array_equal(read_obj_vertices(p), v)


def test_objio_negative_indices_polygons_and_defaults(tmp_path):
    p = tmp_path / "b.obj"
    p.write_text(OBJ_MIXED)
    d = read_obj(p)
    assert d["vertices"].tolist() == [[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [2, 2, 0]]
    assert d["colors"] is None and d["uv"] is None and d["face_uv"] is None
    # "f 1 2 -1" when 2 vertices exist → 0 1 1; the pentagon fans into 3 triangles.
    assert d["faces"].tolist() == [[0, 1, 1], [0, 1, 4], [0, 4, 3], [0, 3, 2], [2, 3, 4]]
    # Faces before the first usemtl get a "default" material.
    assert d["materials"] == ("teeth", "default")
    assert d["face_material"].tolist() == [1, 1, 1, 1, 0]
    assert np.array_equal(read_obj_vertices(p), d["vertices"])


def test_objio_255_colors_and_errors(tmp_path):
    p = tmp_path / "c.obj"
    p.write_text("v 0 0 0 255 0 51\nv 1 0 0 0 255 0\nf 1 2 1\n")
    _, c = read_obj_vertices(p, with_colors=True)
    assert np.allclose(c, [[1, 0, 0.2], [0, 1, 0]])
    for text, word in (("f 1 2 3\n", "no vertices"), ("v 0 0 0\nv 1 1 1\nf 1 2 9\n", "outside"),
                       ("v 0 0 0\nf 1 1\n", "3 corners"), ("v 0 0\n", "x y z"),
                       ("v 0 0 0\nf 1/1 1/1 1/1\n", "texture")):
        p.write_text(text)
        with pytest.raises(StudioError) as e:
            read_obj(p)
        assert word in _one_line(e)
    with pytest.raises(StudioError):
        read_obj_vertices(tmp_path / "nope.obj")


def test_read_obj_vertices_is_fast(tmp_path):
    # ICT-FaceKit-sized file (26,719 vertices, ~2.5 MB with faces); the budget is 60 ms on a
    # desktop, asserted loosely here so slow CI machines do not flake.
    rng = np.random.default_rng(0)
    v = rng.normal(0, 10, (26719, 3))
    body = "\n".join(f"v {a:.6g} {b:.6g} {c:.6g}" for a, b, c in v)
    faces = "\n".join(f"f {i}/{i} {i + 1}/{i + 1} {i + 2}/{i + 2} {i + 3}/{i + 3}" for i in range(1, 26000))
    p = tmp_path / "big.obj"
    p.write_text("# big\n" + body + "\n" + faces + "\n")
    best = np.inf
    for _ in range(3):
        t = time.perf_counter()
        out = read_obj_vertices(p)
        best = min(best, time.perf_counter() - t)
    assert out.shape == (26719, 3) and np.allclose(out, v, rtol=1e-5, atol=1e-4)
    assert best < 0.3


def test_objio_interleaved_objects(tmp_path):
    # Each object with its own v block followed by its faces (as many exporters write them).
    p = tmp_path / "objects.obj"
    p.write_text("o a\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"
                 "o b\nv 5 0 0\nv 6 0 0\nv 5 1 0\nf -3 -2 -1\n")
    d = read_obj(p)
    assert d["vertices"].tolist() == [[0, 0, 0], [1, 0, 0], [0, 1, 0], [5, 0, 0], [6, 0, 0], [5, 1, 0]]
    assert d["faces"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert d["face_material"] is None and d["materials"] == ()
    assert np.array_equal(read_obj_vertices(p), d["vertices"])
