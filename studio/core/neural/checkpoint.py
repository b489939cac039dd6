"""Saving and loading a trained neural head: one safetensors file (no pickle: loading runs no code).

File layout (``*.safetensors``):

* tensors ``model.<name>``: the ``NeuralHead`` state dict;
* tensors ``stats.<key>``: latent statistics as float32/float64 arrays —
  ``id_mean`` (D_id,), ``id_cov`` (D_id, D_id), ``id_directions`` (k, D_id) unit principal directions
  by decreasing variance, ``id_sigmas`` (k,) their standard deviations, the same ``ex_*`` for the
  expression codes, ``train_id_codes`` / ``train_ex_codes`` (the learned auto-decoder codes), and
  ``center`` (3,) in mm;
* header metadata ``studio_neural``: JSON with ``format``, ``version``, ``config`` (NeuralConfig),
  ``scale`` (mm per model unit) and ``meta`` (attribution, data recipe, seeds, metrics, timing …).

Units: ``x_mm = x_model * scale + center`` (so ``x_model = (x_mm - center) / scale``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from studio.core import atomic, jsonio
from studio.core.errors import StudioError
from studio.core.neural.config import NeuralConfig
from studio.core.neural.model import NeuralHead

FORMAT = "studio-neural-head"
VERSION = 1
FILE_NAME = "neural_head.safetensors"


@dataclass
class NeuralCheckpoint:
    model: NeuralHead
    config: NeuralConfig
    stats: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    @property
    def scale(self) -> float:
        return float(self.stats["scale"])

    @property
    def center(self) -> np.ndarray:
        return np.asarray(self.stats["center"], float)

    def to_mm(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x) * self.scale + self.center

    def from_mm(self, x_mm: np.ndarray) -> np.ndarray:
        return (np.asarray(x_mm) - self.center) / self.scale


def latent_stats(codes: np.ndarray, prefix: str) -> dict[str, np.ndarray]:
    """Mean, covariance and principal directions (unit rows, by decreasing variance) of codes (n, D)."""
    codes = np.asarray(codes, np.float64)
    mean = codes.mean(axis=0)
    centred = codes - mean
    cov = centred.T @ centred / max(len(codes) - 1, 1)
    evals, evecs = np.linalg.eigh(cov)
    order = np.argsort(evals)[::-1]
    evals = np.clip(evals[order], 0.0, None)
    dirs = evecs[:, order].T
    # A deterministic sign: each direction's largest component is positive.
    signs = np.sign(dirs[np.arange(len(dirs)), np.argmax(np.abs(dirs), axis=1)])
    dirs = dirs * np.where(signs == 0, 1.0, signs)[:, None]
    return {f"{prefix}_mean": mean, f"{prefix}_cov": cov, f"{prefix}_directions": dirs,
            f"{prefix}_sigmas": np.sqrt(evals)}


def resolve(path) -> Path:
    """A checkpoint file, or a folder holding ``neural_head.safetensors``."""
    p = Path(path)
    return p / FILE_NAME if p.is_dir() else p


def save_checkpoint(path, ckpt: NeuralCheckpoint, force: bool = False) -> Path:
    from safetensors.torch import save as st_save

    path = Path(path)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in ckpt.model.state_dict().items()}
    header_stats = {}
    for k, v in ckpt.stats.items():
        if np.ndim(v) == 0:
            header_stats[k] = float(v)
        else:
            tensors[f"stats.{k}"] = torch.from_numpy(np.ascontiguousarray(np.asarray(v)))
    if "scale" not in header_stats or "stats.center" not in tensors:
        raise StudioError("a neural checkpoint needs stats 'center' and 'scale'")
    header = {"format": FORMAT, "version": VERSION, "config": ckpt.config.to_dict(),
              "scalars": header_stats, "meta": ckpt.meta}
    data = st_save(tensors, metadata={"studio_neural": json.dumps(header)})
    atomic.write_bytes(path, data, force=force)
    return path


def load_checkpoint(path, device="cpu") -> NeuralCheckpoint:
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    path = resolve(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise StudioError(f"cannot read neural checkpoint {path}: {e.strerror or e}") from None
    try:
        header_len = int.from_bytes(data[:8], "little")
        if len(data) < 8 or header_len > len(data) - 8:
            raise ValueError("truncated")
        bad = f"{path} is not a valid neural head checkpoint:"
        header_json = jsonio.loads(data[8:8 + header_len], f"{bad} its safetensors header")
        meta_raw = (header_json.get("__metadata__") or {}).get("studio_neural")
        if not isinstance(meta_raw, str):
            raise ValueError("no studio header")
        header = jsonio.expect(jsonio.loads(meta_raw, f"{bad} its studio header"), dict, f"{bad} its studio header")
        if header.get("format") != FORMAT:
            raise ValueError("wrong format")
        tensors = st_load(data)
    except (ValueError, SafetensorError, UnicodeDecodeError, AttributeError, TypeError):
        raise StudioError(f"{path} is not a valid neural head checkpoint (corrupt, truncated or another "
                          "format)") from None
    version = header.get("version", 0)
    scalars = header.get("scalars", {})
    if not isinstance(version, int) or not isinstance(header.get("config"), dict) or not isinstance(
            header.get("meta", {}), dict) or not isinstance(scalars, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in scalars.values()):
        raise StudioError(f"{path} is not a valid neural head checkpoint (damaged header)")
    if version > VERSION:
        raise StudioError(f"{path} was written by a newer Face Studio (format version {header['version']})")
    config = NeuralConfig.from_dict(header["config"])
    model = NeuralHead(config)
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise StudioError(f"{path}: weights do not match the stored configuration") from None
    model.eval().to(device)
    stats: dict = {k[len("stats."):]: v.numpy() for k, v in tensors.items() if k.startswith("stats.")}
    stats.update(header.get("scalars", {}))
    return NeuralCheckpoint(model, config, stats, header.get("meta", {}))

