"""The loop closed: 60 registered ICT-sampled scans → ``studio models build`` → a model that
reconstructs 10 held-out ICT faces within 1.5× the RMS of ICT truncated to as many components
(through ``studio bench register --json``, which does exactly that).

Slow (several minutes on 2 cores): 60 scan fits, each with its face detector on renders of the
scan, cannot be made cheap without testing something other than ``studio register``."""

from __future__ import annotations

import json

import pytest

from studio.cli.main import main

pytestmark = [pytest.mark.ict, pytest.mark.slow]


@pytest.mark.timeout(2400)

def test_model_built_from_registered_scans_reconstructs_held_out_faces(ict_store, tmp_path, capsys):
    model_path = ict_store / "models" / "ict" / "model.npz"
    out = tmp_path / "bench"
    assert main(["bench", "register", "--model", str(model_path), "--scans", "60", "--speed-scans", "0",
                 "--held-out", "10", "--out", str(out), "--json"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["registered_ok"] == 60 and r["registered_rms_mm"] < 0.5
    # 60 scans support about 30 components at 98 % of the variance; all 59 would not be supported
    # (even exact ICT samples give 1.53× there: the span of 60 draws misses the weak directions).
    assert 10 <= r["components"] <= 59
    assert r["ratio"] < 1.5, r
    assert main(["models", "build", str(out / "out" / "registered"), "--name", "mine", "--variance", "0.98"]) == 0
    capsys.readouterr()
    assert main(["models", "info", "mine", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert "shape" in json.dumps(info)
