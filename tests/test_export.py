"""Export to OBJ / PLY / STL / GLB: files re-read by trimesh give back the exported face.

The model is synthetic (an icosphere with random σ-scaled bases) so the test needs no data
files; it has a UV layout with seams, vertex colours and one vertex no triangle uses, which are
the cases where exporters usually reorder or drop vertices.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pygltflib
import pytest
import trimesh
from gltf_check import assert_valid

from studio.core import export
from studio.core.errors import StudioError
from studio.core.export import export_mesh
from studio.core.export_gltf import split_seams, srgb_to_linear
from studio.core.facemodel import Mesh, ModelMeta, ParamGroup
from studio.core.pca import LinearGroup, PCAModel

REPO = Path(__file__).resolve().parents[1]
CM_TO_M = 0.01


# -- a small synthetic model ----------------------------------------------------------------------

def make_model(expression_prior: str = "box", uv: bool = True, colors: bool = True) -> PCAModel:
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=8.0)  # 162 vertices, "cm"
    # One extra vertex no triangle uses: it must survive every export (and get a finite normal).
    mean = np.vstack([sphere.vertices, [[0.0, 0.0, 12.0]]])
    faces = np.asarray(sphere.faces)
    n = len(mean)
    rng = np.random.default_rng(7)
    # σ-scaled bases: decreasing standard deviations like a real PCA.
    shape_basis = rng.normal(size=(6, n, 3)) * np.linspace(0.8, 0.1, 6)[:, None, None]
    expr_basis = rng.normal(size=(3, n, 3)) * 0.3
    linear = [
        LinearGroup(ParamGroup("shape", tuple(f"PC{i + 1}" for i in range(6)), prior="normal"), shape_basis),
        LinearGroup(ParamGroup("expression", ("jawOpen", "smile", "blink"), prior=expression_prior), expr_basis),
    ]
    face_uv = uv_table = None
    if uv:
        # One uv per vertex, then a seam: the first corner of 40 triangles gets its own uv entry
        # (same vertex, different texture coordinate), as at the back of a head's UV layout.
        d = sphere.vertices / np.linalg.norm(sphere.vertices, axis=1, keepdims=True)
        uv_table = np.column_stack([0.5 + np.arctan2(d[:, 0], d[:, 2]) / (2 * np.pi), 0.5 + np.arcsin(d[:, 1]) / np.pi])
        face_uv = faces.copy()
        seam = np.arange(40)
        extra = uv_table[faces[seam, 0]] + [0.25, 0.0]
        face_uv[seam, 0] = len(uv_table) + seam
        uv_table = np.vstack([uv_table, extra])
    color_mean = None
    if colors:
        color_mean = rng.uniform(0.1, 0.9, size=(n, 3))
        # A colour group: it must never become a morph target (glTF morphs positions only).
        linear.append(LinearGroup(ParamGroup("color", ("C1", "C2"), affects="color"),
                                  rng.normal(scale=0.02, size=(2, n, 3))))
    return PCAModel("synthetic", mean, faces, linear, color_mean=color_mean, uv=uv_table, face_uv=face_uv,
                    meta=ModelMeta(unit="cm", attribution="synthetic test model\nsecond line"))


def instance(model: PCAModel, seed: int = 3):
    params = model.zeros()
    rng = np.random.default_rng(seed)
    params["shape"] = rng.normal(size=6)
    params["expression"] = np.array([0.7, 0.2, 0.0])
    if "color" in params:
        params["color"] = np.array([1.5, -0.5])
    return model.mesh(params), params


@pytest.fixture
def model():
    return make_model()


@pytest.fixture
def out(tmp_path):
    """An empty folder of our own, so "nothing left behind" checks see only what export wrote."""
    folder = tmp_path / "export-out"
    folder.mkdir()
    return folder


# -- helpers: GLB reading and the Khronos validator ------------------------------------------------

def read_glb(path: Path):
    """(gltf, accessor reader): reads accessors straight from the binary chunk."""
    g = pygltflib.GLTF2().load(str(path))
    blob = g.binary_blob()

    def accessor(i: int) -> np.ndarray:
        a = g.accessors[i]
        view = g.bufferViews[a.bufferView]
        dtype = {5126: np.float32, 5125: np.uint32}[a.componentType]
        width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}[a.type]
        start = (view.byteOffset or 0) + (a.byteOffset or 0)
        return np.frombuffer(blob, dtype, a.count * width, start).reshape(a.count, width)

    return g, accessor


# -- OBJ -----------------------------------------------------------------------------------------

def test_obj_keeps_vertex_order_uv_and_colours(model, out):
    mesh, _ = instance(model)
    path = export_mesh(mesh, out / "face.obj", model=model)
    # Vertex i of the model is `v` line i+1: compare against a float64 evaluation of the model.
    lines = path.read_text().splitlines()
    v = np.array([line.split()[1:] for line in lines if line.startswith("v ")], dtype=float)
    params = instance(model)[1]
    exact = model.mean.astype(float) + sum(np.tensordot(params[lg.group.name], lg.basis.astype(float), 1)
                                           for lg in model.linear if lg.group.affects == "position")
    assert np.abs(v[:, :3] - exact).max() < 1e-4  # the acceptance tolerance (cm)
    assert np.abs(v[:, :3] - mesh.vertices).max() < 1e-6
    assert np.allclose(v[:, 3:], mesh.colors, atol=1e-6)
    # Triangles reference the same vertex and uv indices as the model (1-based).
    f = [[c.split("/") for c in line.split()[1:]] for line in lines if line.startswith("f ")]
    f = np.array(f, dtype=int) - 1
    assert np.array_equal(f[:, :, 0], model.faces) and np.array_equal(f[:, :, 1], model.face_uv)
    vt = np.array([line.split()[1:] for line in lines if line.startswith("vt ")], dtype=float)
    assert np.allclose(vt, model.uv, atol=1e-7)
    assert "# synthetic test model" in lines and "# second line" in lines

    assert len(v) == model.n_vertices  # the vertex no triangle uses is written too

    # trimesh re-reads the same vertices in the same order (maintain_order: no split at seams).
    # Its OBJ reader drops vertices no face uses; ours is the last one, so the rest keep their index.
    t = trimesh.load(path, process=False, maintain_order=True)
    assert t.vertices.shape == (model.n_vertices - 1, 3)
    assert np.abs(t.vertices - mesh.vertices[:-1]).max() < 1e-6
    assert np.array_equal(t.faces, model.faces)


def test_obj_without_uv_or_colours(out):
    model = make_model(uv=False, colors=False)
    mesh, _ = instance(model)
    t = trimesh.load(export_mesh(mesh, out / "face.obj"), process=False)
    assert np.abs(t.vertices - mesh.vertices[:-1]).max() < 1e-6  # minus the unused last vertex
    assert np.array_equal(t.faces, model.faces)


def test_obj_material_groups(model, out):
    mesh, _ = instance(model)
    mesh.face_material = (np.arange(len(mesh.faces)) % 2).astype(np.int32)
    mesh.materials = ("skin", "eye ball")
    lines = export_mesh(mesh, out / "face.obj").read_text().splitlines()
    assert lines.count("usemtl skin") == 1 and lines.count("usemtl eye_ball") == 1
    # Grouping reorders triangles, never vertices.
    v = np.array([line.split()[1:4] for line in lines if line.startswith("v ")], dtype=float)
    assert np.abs(v - mesh.vertices).max() < 1e-6
    start = lines.index("usemtl eye_ball")
    eye = [line for line in lines[start:] if line.startswith("f ")]
    want = mesh.faces[mesh.face_material == 1] + 1
    got = np.array([[c.split("/")[0] for c in line.split()[1:]] for line in eye], dtype=int)
    assert np.array_equal(got, want)


# -- PLY / STL ------------------------------------------------------------------------------------

def test_ply_keeps_order_and_colours(model, out):
    mesh, _ = instance(model)
    t = trimesh.load(export_mesh(mesh, out / "face.ply"), process=False)
    assert t.vertices.shape == mesh.vertices.shape
    assert np.abs(t.vertices - mesh.vertices).max() < 1e-5  # float32 in the file
    assert np.array_equal(t.faces, model.faces)
    assert np.array_equal(t.visual.vertex_colors[:, :3], np.round(mesh.colors * 255).astype(np.uint8))
    assert (out / "face.ply").read_bytes().startswith(b"ply\nformat binary_little_endian 1.0\n")


def test_ply_without_colours(out):
    model = make_model(colors=False)
    mesh, _ = instance(model)
    t = trimesh.load(export_mesh(mesh, out / "face.ply"), process=False)
    assert np.abs(t.vertices - mesh.vertices).max() < 1e-5


def test_stl_has_the_same_triangles(model, out):
    mesh, _ = instance(model)
    path = export_mesh(mesh, out / "face.stl")
    assert not path.read_bytes().startswith(b"solid")  # binary, not mistaken for ASCII
    t = trimesh.load(path, process=False)
    # Both sides as the float32 values the file holds, so rounding treats them alike.
    got = {tuple(np.round(tri.astype(np.float32).astype(float), 4).ravel()) for tri in t.vertices[t.faces]}
    want = {tuple(np.round(tri.astype(np.float32).astype(float), 4).ravel()) for tri in mesh.vertices[mesh.faces]}
    assert len(t.faces) == len(mesh.faces) and got == want


# -- GLB -----------------------------------------------------------------------------------------

def test_split_seams_keeps_every_vertex(model):
    source, uv_index, faces = split_seams(model.faces, model.face_uv, model.n_vertices, len(model.uv))
    assert np.array_equal(np.unique(source), np.arange(model.n_vertices))  # nothing dropped
    assert np.all(np.diff(source) >= 0)  # copies of a vertex in model order
    assert np.array_equal(source[faces], model.faces)  # same triangles
    assert np.array_equal(uv_index[faces], model.face_uv)  # same uv per corner
    pairs = set(zip(model.faces.ravel(), model.face_uv.ravel()))
    assert len(source) == len(pairs) + 1  # one per (vertex, uv) pair + the unused vertex
    assert uv_index[source == model.n_vertices - 1].tolist() == [-1]


@pytest.mark.parametrize("uv,colors", [(True, True), (False, False), (True, False), (False, True)])
def test_glb_positions_normals_and_validator(out, uv, colors):
    model = make_model(uv=uv, colors=colors)
    mesh, _ = instance(model)
    path = export_mesh(mesh, out / "face.glb", model=model, unit="cm")

    # trimesh re-reads the positions; undo the metre scaling and the seam split.
    scene = trimesh.load(path, process=False)
    (t,) = scene.geometry.values()
    if uv:
        source, uv_index, _ = split_seams(model.faces, model.face_uv, model.n_vertices, len(model.uv))
    else:
        source, uv_index = np.arange(model.n_vertices), None
    assert len(t.vertices) == len(source)
    assert np.abs(t.vertices / CM_TO_M - mesh.vertices[source]).max() < 1e-5
    assert np.array_equal(source[t.faces], model.faces)
    # Every model vertex is there (the unused one included).
    assert np.array_equal(np.unique(source), np.arange(model.n_vertices))

    g, accessor = read_glb(path)
    prim = g.meshes[0].primitives[0]
    pos = accessor(prim.attributes.POSITION)
    acc = g.accessors[prim.attributes.POSITION]
    assert acc.min == pos.min(axis=0).tolist() and acc.max == pos.max(axis=0).tolist()
    normals = accessor(prim.attributes.NORMAL)
    assert np.allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-6)
    assert np.allclose(normals[source == model.n_vertices - 1], [0, 0, 1])  # unused vertex
    # Smooth normals: area-weighted face normals summed per model vertex (computed here with a
    # plain np.add.at), the same on every copy of a seam vertex.
    v = mesh.vertices.astype(float)
    face_n = np.cross(v[model.faces[:, 1]] - v[model.faces[:, 0]], v[model.faces[:, 2]] - v[model.faces[:, 0]])
    want = np.zeros_like(v)
    for corner in range(3):
        np.add.at(want, model.faces[:, corner], face_n)
    used = source < model.n_vertices - 1
    want = want[source[used]] / np.linalg.norm(want[source[used]], axis=1, keepdims=True)
    assert np.allclose(normals[used], want, atol=1e-6)
    if uv:
        tex = accessor(prim.attributes.TEXCOORD_0)
        has = uv_index >= 0
        assert np.allclose(tex[has, 0], model.uv[uv_index[has], 0], atol=1e-6)
        assert np.allclose(tex[has, 1], 1.0 - model.uv[uv_index[has], 1], atol=1e-6)  # v flipped
    else:
        assert prim.attributes.TEXCOORD_0 is None
    if colors:
        col = accessor(prim.attributes.COLOR_0)
        assert np.allclose(col, srgb_to_linear(mesh.colors[source]), atol=1e-6)
    else:
        assert prim.attributes.COLOR_0 is None
    assert g.meshes[0].weights in (None, [])
    assert g.asset.copyright.startswith("synthetic test model")
    assert_valid(path)  # last: it skips when the validator is not installed


def test_glb_units(out):
    model = make_model(uv=False)
    mesh, _ = instance(model)
    metres = trimesh.load(export_mesh(mesh, out / "m.glb"), process=False)  # default: metres
    mm = trimesh.load(export_mesh(mesh, out / "mm.glb", unit="mm"), process=False)
    (a,), (b,) = metres.geometry.values(), mm.geometry.values()
    assert np.allclose(a.vertices, mesh.vertices, atol=1e-6)
    assert np.allclose(b.vertices, mesh.vertices / 1000.0, atol=1e-9)
    with pytest.raises(StudioError, match="unit"):
        export_mesh(mesh, out / "x.glb", unit="inch")


def _glb_morph_check(path: Path, model: PCAModel, mesh: Mesh, params, expected_names, scale):
    g, accessor = read_glb(path)
    gm = g.meshes[0]
    prim = gm.primitives[0]
    assert gm.extras["targetNames"] == expected_names
    assert len(prim.targets) == len(expected_names) == len(gm.weights)
    if model.uv is not None:
        source, _, _ = split_seams(model.faces, model.face_uv, model.n_vertices, len(model.uv))
    else:
        source = np.arange(model.n_vertices)
    base = accessor(prim.attributes.POSITION).astype(float)
    total = base.copy()
    for name, target, w in zip(expected_names, prim.targets, gm.weights):
        group, comp = name.split(".")
        i = [lg for lg in model.linear if lg.group.name == group][0].group.names.index(comp)
        assert w == pytest.approx(params[group][i])
        delta = accessor(target["POSITION"] if isinstance(target, dict) else target.POSITION)
        assert np.allclose(delta, model.basis(group)[i][source] * scale, atol=1e-7)
        acc = g.accessors[target["POSITION"] if isinstance(target, dict) else target.POSITION]
        assert acc.min == delta.min(axis=0).tolist() and acc.max == delta.max(axis=0).tolist()
        total += w * delta
    # Default pose (base + Σ weights·targets) is the exported face.
    assert np.abs(total - mesh.vertices[source] * scale).max() < 1e-6


def test_glb_morph_targets_reproduce_the_instance(model, out):
    mesh, params = instance(model)
    path = export_mesh(mesh, out / "face.glb", model=model, params=params, morph_targets=4, unit="cm")
    names = ["shape.PC1", "shape.PC2", "shape.PC3", "shape.PC4",
             "expression.jawOpen", "expression.smile", "expression.blink"]
    _glb_morph_check(path, model, mesh, params, names, CM_TO_M)
    assert_valid(path)


@pytest.mark.parametrize("uv,colors", [(False, False), (True, False), (False, True)])
def test_glb_morph_targets_validate_without_uv_or_colours(out, uv, colors):
    model = make_model(uv=uv, colors=colors)
    mesh, params = instance(model)
    path = export_mesh(mesh, out / "face.glb", model=model, params=params, morph_targets=2, unit="cm")
    _glb_morph_check(path, model, mesh, params, ["shape.PC1", "shape.PC2", "expression.jawOpen",
                                                 "expression.smile", "expression.blink"], CM_TO_M)
    assert_valid(path)


def test_glb_morph_target_selection(out):
    # Normal-prior expression (BFM/FLAME style): only its first K are included, like shape.
    model = make_model(expression_prior="normal")
    mesh, params = instance(model)
    path = export_mesh(mesh, out / "a.glb", model=model, params=params, morph_targets=2, unit="cm")
    _glb_morph_check(path, model, mesh, params,
                     ["shape.PC1", "shape.PC2", "expression.jawOpen", "expression.smile"], CM_TO_M)
    # K larger than a group takes the whole group; K=0 keeps only box (blendshape) groups.
    model = make_model()
    path = export_mesh(mesh, out / "b.glb", model=model, params=params, morph_targets=100, unit="cm")
    g, _ = read_glb(path)
    assert len(g.meshes[0].extras["targetNames"]) == 6 + 3
    path = export_mesh(mesh, out / "c.glb", model=model, params=params, morph_targets=0, unit="cm")
    g, _ = read_glb(path)
    assert g.meshes[0].extras["targetNames"] == ["expression.jawOpen", "expression.smile", "expression.blink"]
    # Zero weights by default (params omitted): the base is the instance itself.
    zero_mesh = model.mesh(model.zeros())
    path = export_mesh(zero_mesh, out / "d.glb", model=model, morph_targets=1, unit="cm")
    _glb_morph_check(path, model, zero_mesh, model.zeros(), ["shape.PC1", "expression.jawOpen",
                                                             "expression.smile", "expression.blink"], CM_TO_M)


def test_glb_morph_target_errors(model, out):
    mesh, params = instance(model)
    with pytest.raises(StudioError, match="only be exported to .glb"):
        export_mesh(mesh, out / "face.obj", model=model, params=params, morph_targets=2)
    with pytest.raises(StudioError, match="linear"):
        export_mesh(mesh, out / "face.glb", morph_targets=2)
    with pytest.raises(StudioError, match="whole number"):
        export_mesh(mesh, out / "face.glb", model=model, morph_targets=-1)
    other = make_model()
    small = Mesh(mesh.vertices[:-1], mesh.faces)
    with pytest.raises(StudioError, match="vertices"):
        export_mesh(small, out / "face.glb", model=other, morph_targets=2)
    assert not any(out.iterdir())


def test_glb_material_groups_share_vertices(model, out):
    mesh, params = instance(model)
    mesh.face_material = (np.arange(len(mesh.faces)) >= 100).astype(np.int32)
    mesh.materials = ("skin", "eyes")
    path = export_mesh(mesh, out / "face.glb", model=model, params=params, morph_targets=2, unit="cm")
    g, accessor = read_glb(path)
    prims = g.meshes[0].primitives
    assert [g.materials[p.material].name for p in prims] == ["skin", "eyes"]
    assert prims[0].attributes.POSITION == prims[1].attributes.POSITION
    assert sum(g.accessors[p.indices].count for p in prims) == 3 * len(mesh.faces)
    assert_valid(path)


# -- files: overwrite, errors, atomicity ------------------------------------------------------------

@pytest.mark.parametrize("ext", [".obj", ".ply", ".stl", ".glb"])
def test_existing_file_needs_force(model, out, ext):
    mesh, _ = instance(model)
    path = out / f"face{ext}"
    path.write_bytes(b"old")
    with pytest.raises(StudioError, match="exists"):
        export_mesh(mesh, path)
    assert path.read_bytes() == b"old"
    export_mesh(mesh, path, force=True)
    assert path.read_bytes() != b"old"
    assert sorted(p.name for p in out.iterdir()) == [path.name]  # no temp files left


def test_unknown_extension(model, out):
    mesh, _ = instance(model)
    with pytest.raises(StudioError, match=r"supported: \.obj, \.ply, \.stl, \.glb"):
        export_mesh(mesh, out / "face.fbx")
    with pytest.raises(StudioError, match="no extension"):
        export_mesh(mesh, out / "face")
    # The extension is case-insensitive.
    assert export_mesh(mesh, out / "FACE.OBJ").exists()


@pytest.mark.parametrize("ext", [".obj", ".glb"])
def test_failed_write_leaves_no_partial_file(model, out, monkeypatch, ext):
    mesh, _ = instance(model)

    def half_then_disk_full(tmp, data):
        Path(tmp).write_bytes(data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export, "_write_file", half_then_disk_full)
    with pytest.raises(StudioError, match="(?i)no space left"):
        export_mesh(mesh, out / f"face{ext}", model=model)
    assert list(out.iterdir()) == []
    # With force, the old file survives a failed replacement untouched.
    old = out / f"old{ext}"
    old.write_bytes(b"previous export")
    with pytest.raises(StudioError):
        export_mesh(mesh, old, force=True)
    assert old.read_bytes() == b"previous export"
    assert [p.name for p in out.iterdir()] == [old.name]


def test_bad_meshes_are_refused(out):
    v = np.zeros((3, 3))
    with pytest.raises(StudioError, match="NaN"):
        export_mesh(Mesh(np.full((3, 3), np.nan), np.array([[0, 1, 2]])), out / "a.obj")
    with pytest.raises(StudioError, match="vertex 3"):
        export_mesh(Mesh(v, np.array([[0, 1, 3]])), out / "a.obj")
    with pytest.raises(StudioError, match="together"):
        export_mesh(Mesh(v, np.array([[0, 1, 2]]), uv=np.zeros((3, 2))), out / "a.glb")
    assert not any(out.iterdir())
