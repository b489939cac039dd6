"""Issue 16 items 2, 3, 4 and 9 (loaders): every bad input is one StudioError line, never a crash,
an "internal error", a read outside the archive or a stored model that does not load."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from pickle_craft import evil_object_field_pickle

from studio.bench.fuzz import seeds
from studio.cli.main import main
from studio.core import limits
from studio.core.errors import StudioError
from studio.core.importers import import_model


def _zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path


def _ict(tmp_path: Path, change: dict[str, bytes] | None = None, name="ict.zip") -> Path:
    files = seeds.ict_files()
    files.update({f"ICT-FaceKit-master/FaceXModel/{k}": v for k, v in (change or {}).items()})
    return _zip(tmp_path / name, files)


def _cli(capsys, *argv) -> tuple[int, list[str]]:
    code = main(list(argv))
    return code, capsys.readouterr().err.strip().splitlines()


# --- item 2: the FLAME unpickler -------------------------------------------------------------------

def test_crafted_object_dtype_pickle_is_one_line_not_a_segfault(tmp_path):
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(evil_object_field_pickle())
    env = dict(os.environ, STUDIO_HOME=str(tmp_path / "home"))
    r = subprocess.run([sys.executable, "-m", "studio.cli.main", "models", "import", str(evil)],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2, (r.returncode, r.stderr)  # was -11 (SIGSEGV)
    assert len(r.stderr.strip().splitlines()) == 1 and "not a numeric array" in r.stderr


def test_flame_arrays_still_import_from_python2_and_protocol5_pickles(tmp_path):
    import pickle

    for protocol in (2, 5):
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(pickle.dumps(seeds.flame_dict(), protocol=protocol))
        m = import_model(path, "f")
        assert np.allclose(m.mean, seeds.flame_dict()["v_template"]) and m.faces.shape == (4, 3)


# --- item 3: one validator, run before anything in the store is replaced ------------------------------

@pytest.mark.parametrize("change", [
    {"identity000.obj": b"v 1e39 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\n"},  # finite in float64, inf in float32
    {"jawOpen.obj": b"v 1e300 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\n"},
])
def test_float32_overflow_is_refused_and_force_keeps_the_working_model(tmp_path, capsys, change):
    from studio.core.registry import open_model

    good = _ict(tmp_path, name="good.zip")
    assert _cli(capsys, "models", "import", str(good), "--name", "ict")[0] == 0
    bad = _ict(tmp_path, change, name="bad.zip")
    code, err = _cli(capsys, "models", "import", str(bad), "--name", "ict", "--force")
    assert code == 2 and len(err) == 1 and "NaN or infinite" in err[0]
    assert open_model("ict").n_vertices == 4  # the working model is still there and loads
    assert _cli(capsys, "models", "info", "ict")[0] == 0


def test_nan_uvs_and_out_of_range_landmarks_are_refused(tmp_path, capsys, studio_home):
    neutral = seeds.ict_files()["ICT-FaceKit-master/FaceXModel/generic_neutral_mesh.obj"]
    nan_uv = _ict(tmp_path, {"generic_neutral_mesh.obj": neutral.replace(b"vt 1 0", b"vt nan 0")}, "uv.zip")
    doc = {"expressions": ["jawOpen"], "idx_to_landmark_verts": [70] * 68}
    far_ids = _ict(tmp_path, {"vertex_indices.json": json.dumps(doc).encode()}, "ids.zip")
    for src, why in ((nan_uv, "uv contains NaN"), (far_ids, "idx_to_landmark_verts")):
        code, err = _cli(capsys, "models", "import", str(src), "--name", "x")
        assert code == 2 and len(err) == 1 and why in err[0]
    assert not (studio_home / "models" / "x" / "model.npz").exists()


def test_models_list_shows_a_broken_model_and_lists_the_rest(tmp_path, capsys, studio_home):
    from studio.core.modelfile import save_model

    for name in ("good", "bad"):
        (studio_home / "models" / name).mkdir(parents=True)
        path = save_model(seeds.linear_model(name), studio_home / "models" / name / "model.npz")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(arrays["header"].tobytes())
    header["arrays"]["mean"]["shape"] = [5, 3]  # CRCs stay consistent: the header itself lies
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    code = main(["models", "list"])
    out = capsys.readouterr().out
    assert code == 0 and "DAMAGED" in out.splitlines()[0] and "mean" in out and "good" in out.splitlines()[1]


# --- item 4: one clear line and exit 2 for every bad input ------------------------------------------

def _patch_zip(path: Path, local_offset: int, central_offset: int, value: int) -> None:
    """Set a 2-byte field in every local and central header (CRCs cover data, not headers)."""
    data = bytearray(path.read_bytes())
    for sig, off in ((b"PK\x03\x04", local_offset), (b"PK\x01\x02", central_offset)):
        i = data.find(sig)
        while i >= 0:
            data[i + off:i + off + 2] = value.to_bytes(2, "little")
            i = data.find(sig, i + 4)
    path.write_bytes(bytes(data))


def test_archive_errors_are_one_line(tmp_path, capsys):
    import tarfile

    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w:xz") as t:
        for name, data in seeds.ict_files().items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    cases = {"corrupt.tar.xz": tar.getvalue()[:200] + b"\0" * 64 + tar.getvalue()[264:]}
    cases["corrupt.zip"] = bytearray(_ict(tmp_path).read_bytes())
    cases["corrupt.zip"][60:80] = b"\xff" * 20
    enc = _ict(tmp_path, name="enc.zip")
    _patch_zip(enc, 6, 8, 1)  # general-purpose flag bit 0: encrypted
    method = _ict(tmp_path, name="method.zip")
    _patch_zip(method, 8, 10, 99)  # compression method 99 (AES), which zipfile cannot read
    paths = [enc, method]
    for name, data in cases.items():
        (tmp_path / name).write_bytes(bytes(data))
        paths.append(tmp_path / name)
    for p in paths:
        code, err = _cli(capsys, "models", "import", str(p), "--format", "ict", "--name", "x")
        assert code == 2 and len(err) == 1, (p.name, err)
    assert "encrypted" in _cli(capsys, "models", "import", str(enc), "--name", "x")[1][0]


@pytest.mark.parametrize("doc", [b"\xff\xfe{}", b"[1, 2]", b"[" * 5000 + b"]" * 5000,
                                 json.dumps({"idx_to_landmark_verts": ["7"] * 68}).encode(),
                                 json.dumps({"idx_to_landmark_verts": [10 ** 30] * 68}).encode(),
                                 b'{"idx_to_landmark_verts": [' + b"9" * 5000 + b"]}"])
def test_bad_vertex_indices_json_is_refused(tmp_path, doc):
    with pytest.raises(StudioError):
        import_model(_ict(tmp_path, {"vertex_indices.json": doc}), "x")


def test_npz_member_header_claiming_a_huge_shape_is_refused(tmp_path):
    from studio.core.modelfile import load_model, save_model

    path = save_model(seeds.linear_model(), tmp_path / "m.npz")
    with zipfile.ZipFile(path) as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    members["mean.npy"] = members["mean.npy"].replace(b"(4, 3)", b"(400000000000, 3)")
    _zip(path, members)  # rewritten, so every CRC matches the lying header
    with pytest.raises(StudioError, match="mean"):
        load_model(path)


def test_neural_config_sizes_are_bounded():
    from studio.core.neural.config import NeuralConfig

    for bad in ({"dec_layers": 10 ** 6}, {"dec_hidden": 200000}, {"dec_layers": 1e6}, {"gen_channels": 5},
                {"dec_hidden": 4096, "def_hidden": 4096, "dec_layers": 64}):
        with pytest.raises(StudioError, match="neural config"):
            NeuralConfig.from_dict(bad)


def test_user_json_with_deep_nesting_or_long_integers_is_one_line(tmp_path, capsys):
    from studio.core import params
    from studio.core.fitting.scan_io import read_intrinsics, read_landmarks

    model = seeds.linear_model()
    for text in ("[" * 5000 + "]" * 5000, '{"groups": {"shape": [' + "9" * 5000 + "]}}"):
        path = tmp_path / "doc.json"
        path.write_text(text)
        for read in (lambda p=path: params.load(p, model), lambda p=path: read_landmarks(p),
                     lambda p=path: read_intrinsics(tmp_path / "d.png", p)):
            with pytest.raises(StudioError):
                read()


# --- item 9: loose edges in the loaders -------------------------------------------------------------

@pytest.mark.parametrize("name", ["../../outside", "/tmp/outside", "..", "a/../../b"])
def test_expression_names_cannot_read_outside_the_archive(tmp_path, name):
    (tmp_path / "outside.obj").write_bytes(seeds.ict_files()["ICT-FaceKit-master/FaceXModel/jawOpen.obj"])
    doc = json.dumps({"expressions": [name]}).encode()
    with pytest.raises(StudioError, match="not the name of an OBJ file"):
        import_model(_ict(tmp_path, {"vertex_indices.json": doc}), "x")


def test_oversized_archive_member_and_npz_array_are_refused(tmp_path, monkeypatch):
    from studio.core.modelfile import load_model, save_model

    monkeypatch.setattr(limits, "ARCHIVE_MEMBER_BYTES", 64 * 1024)
    big = _ict(tmp_path, {"jawOpen.obj": b"v 0 0 0\n" * 20000})  # 160 kB of OBJ, a few hundred bytes zipped
    with pytest.raises(StudioError, match="limit for one member"):
        import_model(big, "x")
    path = save_model(seeds.linear_model(), tmp_path / "m.npz")
    monkeypatch.setattr(limits, "MODEL_ARRAY_BYTES", 40)  # the basis arrays are 96 and 48 bytes
    with pytest.raises(StudioError, match="limit for one array"):
        load_model(path)


def test_expression_weights_outside_their_box_are_refused(tmp_path):
    from studio.core import params

    model = seeds.linear_model()
    path = tmp_path / "p.json"
    for value, ok in ((1.0, True), (0.0, True), (1.5, False), (-0.2, False)):
        params.save(path, "fuzz", {"shape": np.zeros(2), "expression": np.array([value])}, force=True)
        if ok:
            assert params.load(path, model)["expression"][0] == value
        else:
            with pytest.raises(StudioError, match="outside its range"):
                params.load(path, model)
