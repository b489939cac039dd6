"""The embedded default model: the first start opens ``checkpoints/*.npz`` when one ships.

Failing that, the trained neural head model in ``checkpoints/neural/`` opens. No linear default
ships yet; dropping a Face Studio model file (``studio/core/modelfile.py`` format, e.g.
``checkpoints/default.npz``) into the repository's ``checkpoints/`` folder makes a first start open
it instead of the welcome view.
"""

from __future__ import annotations

from pathlib import Path

CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"
PREFERRED = "default.npz"


def default_model_path(folder: Path | None = None) -> Path | None:
    folder = CHECKPOINTS if folder is None else Path(folder)
    if not folder.is_dir():
        return None
    if (folder / PREFERRED).is_file():
        return folder / PREFERRED
    found = sorted(p for p in folder.glob("*.npz") if p.is_file())
    if found:
        return found[0]
    # Otherwise the trained neural head the repository ships (checkpoints/neural/).
    neural = folder / "neural" / "neural_head.safetensors"
    return neural if neural.is_file() else None
