"""The FaceModel contract (studio/core/facemodel.py) is explicit: both model kinds declare every
capability the code asks about, and nothing under studio/ probes a model with hasattr/getattr."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from studio.core.facemodel import FaceModel, Mesh, ModelMeta, ParamGroup
from studio.core.pca import LinearGroup, PCAModel

ROOT = Path(__file__).resolve().parents[1]
CAPABILITIES = ("kind", "fixed_topology", "has_colors", "has_preview", "supports_photo_fit")


def _linear(colours: bool = False) -> PCAModel:
    rng = np.random.default_rng(0)
    n = 6
    faces = np.array([[0, 1, 2], [2, 3, 4], [3, 4, 5]])
    linear = [LinearGroup(ParamGroup("shape", ("PC1", "PC2")), rng.normal(size=(2, n, 3))),
              LinearGroup(ParamGroup("expression", ("jawOpen",), "box"), rng.normal(size=(1, n, 3)))]
    colour_mean = None
    if colours:
        linear.append(LinearGroup(ParamGroup("color", ("PC1",), affects="color"), rng.normal(size=(1, n, 3)) * 0.01))
        colour_mean = np.full((n, 3), 0.5)
    meta = ModelMeta(unit="mm", landmarks={"tip": np.array([0, 5])})
    return PCAModel("toy", rng.normal(size=(n, 3)), faces, linear, color_mean=colour_mean, meta=meta)


@pytest.fixture(scope="module")
def neural():
    pytest.importorskip("torch")
    from studio.core.neural.config import tiny_config
    from studio.core.neural.facemodel import NeuralFaceModel, untrained_checkpoint

    return NeuralFaceModel(untrained_checkpoint(tiny_config()), name="tiny", resolution=24,
                           preview_resolution=16, device="cpu")


def test_linear_model_declares_the_contract():
    m = _linear()
    assert isinstance(m, FaceModel)
    assert (m.kind, m.fixed_topology, m.has_colors, m.has_preview, m.supports_photo_fit) == \
        ("pca", True, False, False, True)
    assert _linear(colours=True).has_colors
    assert m.as_linear() is m and m.linear[0].basis.shape == (2, 6, 3)
    assert m.landmarks("tip").tolist() == [0, 5] and m.landmarks("ibug68") is None
    p = m.sample(np.random.default_rng(1))
    assert set(p) == {"shape", "expression"} and not p["expression"].any()  # only normal groups by default
    full, preview = m.mesh(p), m.preview_mesh(p)
    assert isinstance(full, Mesh) and np.array_equal(full.vertices, preview.vertices)
    assert len(full.vertices) == m.n_vertices and np.array_equal(full.faces, m.faces)
    assert m.log_prior(m.zeros()) == pytest.approx(m.log_prior(m.check({})))


def test_neural_model_declares_the_contract(neural):
    m = neural
    assert isinstance(m, FaceModel)
    assert (m.kind, m.fixed_topology, m.has_colors, m.has_preview, m.supports_photo_fit) == \
        ("neural", False, False, True, False)
    assert m.as_linear() is None and m.landmarks("ibug68") is None
    p = m.sample(np.random.default_rng(1))
    assert set(p) == {g.name for g in m.groups} and not p["expression"].any()  # neutral expression
    preview = m.preview_mesh(p)
    assert isinstance(preview, Mesh) and len(preview.vertices) > 0 and preview.colors is None


def test_the_protocol_declares_every_capability():
    members = set(dir(FaceModel))
    for name in CAPABILITIES + ("name", "groups", "meta", "mesh", "preview_mesh", "sample", "zeros", "check",
                                "log_prior", "landmarks", "as_linear"):
        assert name in members, name


# What models were asked with before the contract was declared: hasattr(model, ...) and
# getattr(model, "kind"/"color_mean"/..., default), on any name that holds a model.
_PROBE = re.compile(
    r"hasattr\(\s*[\w.]*model\b"
    r"|getattr\(\s*[\w.]*model\s*,\s*[\"'](kind|evaluator|faces|preview_mesh|color_mean|mean|sample|uv|face_uv"
    r"|linear|n_vertices|materials|name|meta)[\"']"
    r"|getattr\(\s*[\w.]*model\.meta\b")


def test_no_capability_probing_under_studio():
    hits = []
    for path in sorted((ROOT / "studio").rglob("*.py")):
        for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if _PROBE.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{no}: {line.strip()}")
    assert not hits, "ask the declared capabilities (studio/core/facemodel.py) instead:\n" + "\n".join(hits)


def test_model_parameters_of_core_functions_are_typed():
    """Every function in studio/core that takes a ``model`` says which contract it needs."""
    import ast

    untyped = []
    for path in sorted((ROOT / "studio" / "core").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
                untyped += [f"{path.relative_to(ROOT)}:{node.lineno} {node.name}" for a in args
                            if a.arg == "model" and a.annotation is None]
    assert not untyped, "annotate model (FaceModel, or PCAModel where the linear model is needed):\n" + \
        "\n".join(untyped)
