"""The ``studio`` command as a user drives it: files written, numbers in them, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import trimesh
from conftest import make_model

from studio.cli.main import build_parser
from studio.core import params as params_io
from studio.core import store
from studio.core.modelfile import save_model


def studio(*args, env_home=None, check=True):
    import os

    env = dict(os.environ)
    if env_home is not None:
        env["STUDIO_HOME"] = str(env_home)
    r = subprocess.run([sys.executable, "-m", "studio", *map(str, args)], capture_output=True, text=True, env=env)
    if check:
        assert r.returncode == 0, r.stderr
    return r


@pytest.fixture
def synth(studio_home):
    m = make_model(name="synth")
    save_model(m, store.prepare("synth") / store.MODEL_FILE)
    return m


def test_every_command_has_help():
    parser = build_parser()
    commands = [["models", "import"], ["models", "build"], ["models", "list"], ["models", "info"],
                ["models", "remove"], ["sample"], ["export"], ["interpolate"], ["bench", "pca"]]
    for cmd in commands:
        with pytest.raises(SystemExit) as e:
            parser.parse_args([*cmd, "--help"])
        assert e.value.code == 0


def test_list_and_info(synth, studio_home):
    rows = json.loads(studio("models", "list", "--json").stdout.strip().splitlines()[-1])
    assert rows == [{"name": "synth", "kind": "pca", "unit": "mm", "vertices": 162,
                     "groups": {"shape": 6, "expression": 3, "color": 2}}]
    info = json.loads(studio("models", "info", "synth", "--json").stdout)
    assert info["landmarks"] == {"tip": 1} and info["colors"] and info["uv"]


def test_export_every_format_and_refuse_overwrite(synth, tmp_path):
    p = synth.sample(np.random.default_rng(5))
    pj = params_io.save(tmp_path / "p.json", "synth", p)
    expected = synth.mesh(p).vertices
    for ext in ("obj", "ply", "stl", "glb"):
        out = tmp_path / f"face.{ext}"
        studio("export", "--model", "synth", "--params", pj, "-o", out)
        mesh = trimesh.load(out, force="mesh", process=False, maintain_order=True)
        assert len(mesh.faces) == len(synth.faces)
        if ext in ("obj", "ply"):
            assert np.abs(np.asarray(mesh.vertices) - expected).max() < 1e-4
    before = (tmp_path / "face.obj").read_bytes()
    r = studio("export", "--model", "synth", "-o", tmp_path / "face.obj", check=False)
    assert r.returncode == 2 and "exists" in r.stderr and (tmp_path / "face.obj").read_bytes() == before
    studio("export", "--model", "synth", "-o", tmp_path / "face.obj", "--force")
    assert (tmp_path / "face.obj").read_bytes() != before


def test_interpolate_midpoint_and_gif(synth, tmp_path):
    rng = np.random.default_rng(6)
    a, b = synth.sample(rng), synth.sample(rng)
    pa, pb = params_io.save(tmp_path / "a.json", "synth", a), params_io.save(tmp_path / "b.json", "synth", b)
    studio("interpolate", "--model", "synth", pa, pb, "--steps", "3", "-o", tmp_path / "frames",
           "--gif", tmp_path / "morph.gif", "--size", "96")
    mid = params_io.load(tmp_path / "frames" / "frame_001.json", synth)
    assert np.allclose(mid["shape"], (a["shape"] + b["shape"]) / 2)
    mesh = trimesh.load(tmp_path / "frames" / "frame_001.obj", process=False, maintain_order=True)
    assert np.abs(np.asarray(mesh.vertices) - synth.mesh(mid).vertices).max() < 1e-4
    import imageio.v3 as iio

    frames = iio.imread(tmp_path / "morph.gif", index=None)
    assert frames.shape[0] == 4 and frames.shape[1:3] == (96, 96)  # 3 frames, ping-pong back
    assert np.abs(frames[0].astype(int) - frames[1].astype(int)).sum() > 0  # the face really changes
    assert frames[0].std() > 5  # not a blank image


@pytest.mark.parametrize("content,message", [
    ("{not json", "not valid JSON"),
    ('{"groups": {"shape": [1, 2]}}', "has 2 values, the model expects 6"),
    ('{"groups": {"shape": [NaN, 0, 0, 0, 0, 0]}}', "NaN"),
    ('{"groups": {"hair": [1]}}', "unknown parameter group"),
    ('[1, 2, 3]', "not a parameters file"),
])
def test_bad_params_file_gives_one_line(synth, tmp_path, content, message):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    r = studio("export", "--model", "synth", "--params", bad, "-o", tmp_path / "x.obj", check=False)
    assert r.returncode == 2 and message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.obj").exists()


def test_bad_inputs_give_one_line(synth, tmp_path):
    cases = [
        (["sample", "--model", "nope", "-o", tmp_path / "o"], "no model named 'nope'"),
        (["export", "--model", "synth", "-o", tmp_path / "face.xyz"], "xyz"),
        (["models", "import", tmp_path / "missing.h5"], "does not exist"),
        (["models", "import", tmp_path, "--name", "bad name"], "invalid model name"),
        (["sample", "--model", "synth", "--count", "0", "-o", tmp_path / "o"], "--count"),
        (["export", "--model", "synth", "-o", tmp_path / "f.obj", "--morph-targets", "2"], "glb"),
    ]
    for args, message in cases:
        r = studio(*args, check=False)
        assert r.returncode == 2, args
        assert message in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_build_refuses_to_replace_a_model(synth, tmp_path):
    r = studio("models", "build", tmp_path, "--name", "synth", check=False)
    assert r.returncode == 2 and "exists already" in r.stderr


def test_bench_pca_json_last_line(synth):
    r = studio("bench", "pca", "--model", "synth", "--repeats", "20", "--json")
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    assert doc["bench"] == "pca" and doc["components"] == 9
    assert doc["full_ms"] > 0 and doc["incremental_ms"] > 0 and doc["speedup"] == pytest.approx(
        doc["full_ms"] / doc["incremental_ms"])
    assert doc["max_drift"] < 1e-3


def test_build_from_scans_via_cli(synth, tmp_path, studio_home):
    scans = tmp_path / "scans"
    scans.mkdir()
    rng = np.random.default_rng(8)
    for i in range(12):
        mesh = synth.mesh(synth.sample(rng))
        trimesh.Trimesh(mesh.vertices, mesh.faces, process=False).export(scans / f"scan_{i:02d}.ply")
    r = studio("models", "build", scans, "--name", "built", "--variance", "0.99")
    assert "built built:" in r.stdout
    info = json.loads(studio("models", "info", "built", "--json").stdout)
    assert info["vertices"] == 162 and 1 <= info["groups"][0]["size"] <= 6  # 6 true shape PCs at most
    png = studio_home / "models" / "built" / "spectrum.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
