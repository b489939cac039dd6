"""The Khronos glTF-Validator (npm ``gltf-validator``) run from tests; skips when not installed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _validator_dir() -> Path | None:
    env = os.environ.get("STUDIO_GLTF_VALIDATOR_DIR")
    for folder in ([Path(env)] if env else []) + [REPO / ".tools" / "node_modules"]:
        if (folder / "gltf-validator").is_dir():
            return folder
    return None


def validate_glb(path: Path) -> dict:
    """Run the Khronos glTF-Validator (node) on ``path`` and return its report's issues."""
    node, folder = shutil.which("node"), _validator_dir()
    if node is None or folder is None:
        pytest.skip("gltf-validator not installed; .ci/run installs it "
                    "(or set STUDIO_GLTF_VALIDATOR_DIR to a node_modules folder holding it)")
    run = subprocess.run([node, str(REPO / "tests" / "gltf_validate.js"), str(path)], capture_output=True,
                         text=True, timeout=300, env={**os.environ, "NODE_PATH": str(folder)})
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)["issues"]


def assert_valid(path: Path) -> None:
    issues = validate_glb(path)
    problems = [m for m in issues["messages"] if m["severity"] <= 1]  # 0 error, 1 warning
    assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, problems
