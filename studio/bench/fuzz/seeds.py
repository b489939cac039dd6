"""Small valid inputs, one per loader, written into a folder (each well under 100 kB)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np

# A tetrahedron: 4 vertices, 4 triangles, UVs and a material, like ICT's OBJs in miniature.
_V = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float)
_F = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])


def _obj(v: np.ndarray, topology: bool) -> str:
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in v]
    if topology:
        lines += ["vt 0 0", "vt 1 0", "vt 0 1", "usemtl skin"]
        lines += [f"f {a + 1}/{a % 3 + 1} {b + 1}/{b % 3 + 1} {c + 1}/{c % 3 + 1}" for a, b, c in _F]
    return "\n".join(lines) + "\n"


def ict_files(rng: np.random.Generator | None = None) -> dict[str, bytes]:
    """FaceXModel/* of a 4-vertex ICT-like model: neutral, two identities, two expressions, JSON."""
    rng = rng or np.random.default_rng(0)
    files = {"generic_neutral_mesh.obj": _obj(_V, True)}
    for name in ("identity000", "identity001", "jawOpen", "eyeBlink_L"):
        files[f"{name}.obj"] = _obj(_V + rng.normal(scale=0.05, size=_V.shape), False)
    files["vertex_indices.json"] = json.dumps({"expressions": ["jawOpen", "eyeBlink_L"],
                                               "idx_to_landmark_verts": [i % 4 for i in range(68)]})
    return {f"ICT-FaceKit-master/FaceXModel/{k}": v.encode() for k, v in files.items()}


def flame_dict() -> dict:
    rng = np.random.default_rng(1)
    return {"v_template": _V.copy(), "f": _F.astype(np.uint32),
            "shapedirs": rng.normal(scale=0.01, size=(4, 3, 103)), "posedirs": np.zeros((4, 3, 2)),
            "kintree_table": np.zeros((2, 5), np.int64)}


def flame_pickle() -> bytes:
    return pickle.dumps(flame_dict(), protocol=2)


def write_bfm_h5(path: Path, arrays: dict[str, np.ndarray] | None = None) -> Path:
    """A statismo-like BFM file; ``arrays`` (dataset path → value) replace or add datasets."""
    import h5py

    data = bfm_arrays()
    data.update(arrays or {})
    with h5py.File(path, "w") as f:
        for key, value in data.items():
            if value is not None:
                f[key] = value
    return path


def bfm_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2)
    out = {}
    for group, k in (("shape", 3), ("expression", 2), ("color", 2)):
        u, _ = np.linalg.qr(rng.normal(size=(12, k)))
        mean = _V.reshape(-1) * 100 if group != "color" else np.full(12, 0.5)
        out.update({f"{group}/model/mean": mean.astype(np.float32), f"{group}/model/pcaBasis": u.astype(np.float32),
                    f"{group}/model/pcaVariance": np.linspace(4, 1, k).astype(np.float32)})
    out["shape/representer/cells"] = _F.T.astype(np.int32)
    return out


def linear_model(name: str = "fuzz"):
    from studio.core.facemodel import ModelMeta, ParamGroup
    from studio.core.pca import LinearGroup, PCAModel

    rng = np.random.default_rng(3)
    linear = [LinearGroup(ParamGroup("shape", ("PC1", "PC2")), rng.normal(size=(2, 4, 3))),
              LinearGroup(ParamGroup("expression", ("jawOpen",), "box"), rng.normal(size=(1, 4, 3)))]
    uv = np.array([[0, 0], [1, 0], [0, 1]], float)
    meta = ModelMeta(unit="mm", regions={"front": np.array([0, 1], np.int32)},
                     landmarks={"tip": np.array([3], np.int32)}, attribution="fuzz seed")
    return PCAModel(name, _V, _F, linear, np.full((4, 3), 0.5), uv, _F % 3, np.zeros(4, np.int32), ("skin",), meta)


def params_doc() -> dict:
    return {"format": "face-studio-params", "version": 1, "model": "fuzz",
            "groups": {"shape": [0.5, -1.0], "expression": [0.25]}}


def landmarks_doc() -> dict:
    return {"vertices": [0, 1, 2], "points": [[0, 0, 0], [1, 0, 0], None]}


def intrinsics_doc() -> dict:
    return {"fx": 500.0, "fy": 500.0, "cx": 32.0, "cy": 24.0, "depth_scale": 0.001}


def checkpoint_bytes() -> bytes:
    """A tiny neural head checkpoint (safetensors), as save_checkpoint writes it."""
    import tempfile

    from studio.core.neural.checkpoint import NeuralCheckpoint, save_checkpoint
    from studio.core.neural.config import tiny_config
    from studio.core.neural.model import NeuralHead

    cfg = tiny_config()
    ckpt = NeuralCheckpoint(NeuralHead(cfg), cfg, {"center": np.zeros(3, np.float32), "scale": 1.0}, {})
    with tempfile.TemporaryDirectory() as tmp:
        return save_checkpoint(Path(tmp) / "c.safetensors", ckpt).read_bytes()
