"""ICT-FaceKit import: the model reproduces the published files exactly, with their metadata."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
import zipfile

import numpy as np
import pytest

from studio.core.errors import StudioError
from studio.core.importers.ict import load_ict


def obj_vertices(path):
    """Independent reader: plain Python float parsing of 'v x y z' lines, float64."""
    with open(path) as f:
        return np.array([[float(t) for t in line.split()[1:4]] for line in f if line.startswith("v ")])


@pytest.fixture(scope="module")
def reference(ict_files):
    neutral = obj_vertices(ict_files / "generic_neutral_mesh.obj")
    ids = [obj_vertices(ict_files / f"identity{i:03d}.obj") - neutral for i in range(100)]
    names = json.loads((ict_files / "vertex_indices.json").read_text())["expressions"]
    used = {j: obj_vertices(ict_files / f"{names[j]}.obj") - neutral for j in (0, 10, 26, 45)}
    return neutral, np.stack(ids), used, names


def test_model_equals_neutral_plus_identity_and_expression_deltas(ict_model, reference):
    neutral, ids, expr, names = reference
    m = ict_model
    assert [g.size for g in m.groups] == [100, 53] and list(m.groups[1].names) == names
    rng = np.random.default_rng(0)
    p = m.zeros()
    p["shape"] = rng.normal(size=100)
    for j in expr:
        p["expression"][j] = rng.uniform()
    expected = neutral + np.einsum("k,knc->nc", p["shape"], ids)
    for j, d in expr.items():
        expected += p["expression"][j] * d
    got = m.mesh(p).vertices
    assert got.shape == (26719, 3)
    assert np.abs(got - expected).max() < 1e-4  # cm
    assert np.abs(m.mesh(m.zeros()).vertices - neutral).max() < 1e-5


def test_metadata_survives_import(ict_model, ict_files):
    m = ict_model
    assert m.meta.unit == "cm"
    readme = (ict_files.parent / "README.md").read_text()
    listed = re.search(r"Multi-PIE 68 point facial landmarks indices:\s*\n\s*\n?\s*([\d,\s]+)", readme).group(1)
    assert m.meta.landmarks["ibug68"].tolist() == [int(x) for x in listed.replace(",", " ").split()]
    assert m.meta.regions["face"].tolist() == list(range(0, 9409))
    assert m.meta.regions["head_and_neck"][[0, -1]].tolist() == [9409, 11247]
    assert m.meta.regions["narrow_face_area"].size == 6706
    assert len(m.materials) == 12 and m.materials[0] == "M_Face"
    assert m.uv.shape == (28911, 2) and m.face_uv.shape == m.faces.shape
    assert "MIT" in m.meta.attribution and "USC Institute for Creative Technologies" in m.meta.attribution


def test_cli_sample_obj_matches_independent_computation(ict_store, reference, tmp_path, monkeypatch):
    neutral, ids, _, _ = reference
    monkeypatch.setenv("STUDIO_HOME", str(ict_store))
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "studio", "sample", "--model", "ict", "--seed", "1",
                          "--count", "3", "-o", str(out), "--format", "obj"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    for i in range(3):
        doc = json.loads((out / f"face_{i:03d}.json").read_text())
        w = np.array(doc["groups"]["shape"])
        assert doc["model"] == "ict" and not any(doc["groups"]["expression"])
        expected = neutral + np.einsum("k,knc->nc", w, ids)
        assert np.abs(obj_vertices(out / f"face_{i:03d}.obj") - expected).max() < 1e-4
    # The same seed gives the same faces; files are not replaced without --force.
    again = subprocess.run([sys.executable, "-m", "studio", "sample", "--model", "ict", "--seed", "1",
                            "-o", str(out)], capture_output=True, text=True)
    assert again.returncode == 2 and "exists" in again.stderr and "Traceback" not in again.stderr


# --- a miniature model in ICT's layout, to test the sources and the errors quickly ---------------

def write_mini_ict(folder, n_ident=3, expressions=("jawOpen", "eyeBlink_L"), bad=None):
    fx = folder / "FaceXModel"
    fx.mkdir(parents=True)
    rng = np.random.default_rng(0)
    base = rng.normal(size=(8, 3))
    faces = "f 1/1 2/2 3/3 4/4\nf 5/5 6/6 7/7\nusemtl M_Teeth\nf 6/6 7/7 8/8\n"
    uvs = "".join(f"vt {u:.4f} {v:.4f}\n" for u, v in rng.uniform(size=(8, 2)))

    def write(name, v):
        text = "".join(f"v {x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in v)
        (fx / f"{name}.obj").write_text("# mini\nmtllib m.mtl\n" + text + uvs + "usemtl M_Face\n" + faces)

    write("generic_neutral_mesh", base)
    for i in range(n_ident):
        write(f"identity{i:03d}", base + 0.1 * (i + 1))
    for j, e in enumerate(expressions):
        write(e, base * (1.0 + 0.01 * (j + 1)) if bad != e else base[:-1])
    (fx / "vertex_indices.json").write_text(json.dumps({"expressions": list(expressions)}))
    (folder / "LICENSE").write_text("MIT License\n\nCopyright (c) 2020 USC Institute for Creative Technologies\n")
    return folder, base


def test_mini_ict_from_folder_zip_and_tar(tmp_path):
    repo, base = write_mini_ict(tmp_path / "ICT-FaceKit-master")
    zpath = tmp_path / "ICT-FaceKit-master.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for f in repo.rglob("*"):
            z.write(f, f.relative_to(tmp_path))
    tpath = tmp_path / "ict.tar.gz"
    with tarfile.open(tpath, "w:gz") as t:
        t.add(repo, arcname="ICT-FaceKit-master")
    models = [load_ict(src, "mini") for src in (repo, repo / "FaceXModel", zpath, tpath)]
    for m in models:
        assert [g.size for g in m.groups] == [3, 2]
        assert np.allclose(m.basis("shape")[1], 0.2, atol=1e-6)
        assert m.faces.shape == (4, 3)  # one quad fan-triangulated + two triangles
        assert m.materials == ("M_Face", "M_Teeth") and m.face_material.tolist() == [0, 0, 0, 1]
        assert np.array_equal(m.basis("expression"), models[0].basis("expression"))
    assert "Copyright (c) 2020 USC" in models[2].meta.attribution


def test_mini_ict_errors(tmp_path):
    repo, _ = write_mini_ict(tmp_path / "a", bad="eyeBlink_L")
    with pytest.raises(StudioError, match="eyeBlink_L.obj has 7 vertices, the neutral mesh has 8"):
        load_ict(repo, "x")
    repo, _ = write_mini_ict(tmp_path / "b")
    (repo / "FaceXModel" / "jawOpen.obj").unlink()
    with pytest.raises(StudioError, match="jawOpen.obj is missing"):
        load_ict(repo, "x")
    junk = tmp_path / "junk.tar.xz"
    junk.write_bytes(b"\xfd7zXZ\x00" + b"junk" * 50)
    with pytest.raises(StudioError):
        load_ict(junk, "x")
    with pytest.raises(StudioError, match="no generic_neutral_mesh.obj"):
        load_ict(tmp_path, "x")


def test_ict_glbs_pass_the_khronos_validator(ict_model, tmp_path):
    from gltf_check import assert_valid

    from studio.jobs.faces import export_face

    p = ict_model.sample(np.random.default_rng(1))
    plain = export_face(ict_model, p, tmp_path / "face.glb")
    morph = export_face(ict_model, p, tmp_path / "morph.glb", morph_targets=10)
    assert_valid(plain)
    assert_valid(morph)
