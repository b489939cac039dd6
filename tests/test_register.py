"""``studio register``: 20 synthetic ICT scans (random face, pose and unit, noise, holes, and a 3-mm
cheek bump no model component makes) registered on a local Dask cluster; resumed; a junk file
listed with its reason."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from studio.cli.main import main
from studio.core.objio import read_obj_vertices

pytestmark = pytest.mark.ict
N_SCANS = 20


@pytest.fixture(scope="module")
def registered(ict_store, tmp_path_factory):
    from studio.core.modelfile import load_model
    from studio.core.registration.synthetic import truth_scan, write_scan

    model_path = ict_store / "models" / "ict" / "model.npz"
    model = load_model(model_path)
    scans = tmp_path_factory.mktemp("scans")
    truths = {}
    for seed in range(N_SCANS):
        ts = truth_scan(model, seed)
        write_scan(ts, scans / f"face{seed:02d}.ply")
        truths[f"face{seed:02d}"] = ts
    (scans / "junk.xyz").write_text("0 0 0\n1 1 1\n")
    out = tmp_path_factory.mktemp("registered") / "out"
    status = main(["register", str(scans), "--model", str(model_path), "-o", str(out), "--workers", "2"])
    return model, model_path, scans, out, truths, status


def _rms_mm(a, b, ids):
    return float(np.sqrt(np.mean(np.sum((a[ids] - b[ids]) ** 2, axis=1)))) * 10.0  # ICT is in cm


def test_registered_meshes_match_the_truth_including_the_bump(registered):
    from studio.core import params as params_io
    from studio.core.fitting.linear_scan import region_vertices

    model, _, _, out, truths, status = registered
    assert status == 3  # the junk file failed, and the run says so
    face = region_vertices(model, "face")
    worst_face, bump_reg, bump_fit = 0.0, [], []
    for name, ts in truths.items():
        v = read_obj_vertices(out / "registered" / f"{name}.obj")
        assert v.shape == (model.n_vertices, 3)  # model topology, model frame
        worst_face = max(worst_face, _rms_mm(v, ts.truth, face))
        fitted = model.vertices(params_io.load(out / "params" / f"{name}.json", model))
        bump_reg.append(_rms_mm(v, ts.truth, ts.bump))
        bump_fit.append(_rms_mm(np.asarray(fitted, float), ts.truth, ts.bump))
    assert worst_face < 0.5, worst_face
    # The bump is beyond the model: the scan fit misses it by about 1.3 mm, the refinement catches it.
    assert min(bump_fit) > 1.0, bump_fit
    assert max(bump_reg) < 0.6 and np.mean(bump_reg) < 0.5, bump_reg


def test_summary_lists_every_scan_and_the_failure(registered):
    _, _, _, out, truths, _ = registered
    rows = {r["scan"]: r for r in csv.DictReader((out / "summary.csv").open())}
    assert set(rows) == set(truths) | {"junk"}
    assert rows["junk"]["status"] == "failed" and "usable points" in rows["junk"]["reason"]
    ok = [r for n, r in rows.items() if n != "junk"]
    assert all(r["status"] == "ok" and r["verdict"] == "fit looks right" for r in ok)
    assert all(float(r["seconds"]) > 0 and float(r["fit_median_mm"]) < 0.5 for r in ok)
    # The model is loaded once per worker process, not once per scan.
    loads = {}
    for r in rows.values():
        loads[r["worker_pid"]] = max(loads.get(r["worker_pid"], 0), int(r["model_loads"]))
    assert set(loads.values()) == {1} and len(loads) <= 2
    assert not (out / "registered" / "junk.obj").exists()
    assert not list(out.rglob("*.tmp*"))


def test_second_run_skips_finished_scans(registered, capsys):
    _, model_path, scans, out, _, _ = registered
    before = {p: p.stat().st_mtime_ns for p in (out / "registered").iterdir()}
    capsys.readouterr()
    status = main(["register", str(scans), "--model", str(model_path), "-o", str(out), "--json"])
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert status == 3 and r["registered_now"] == 0 and r["skipped"] == N_SCANS + 1
    assert {p: p.stat().st_mtime_ns for p in (out / "registered").iterdir()} == before


def test_register_refuses_bad_input(ict_store, tmp_path, capsys):
    model_path = ict_store / "models" / "ict" / "model.npz"
    assert main(["register", str(tmp_path / "none.ply"), "--model", str(model_path), "-o", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in "ab":
        (tmp_path / d / "x.ply").write_text("ply")
    assert main(["register", str(tmp_path / "a" / "x.ply"), str(tmp_path / "b" / "x.ply"), "--model",
                 str(model_path), "-o", str(tmp_path / "o")]) == 2
    assert "two scans are named x" in capsys.readouterr().err
