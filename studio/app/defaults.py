"""The embedded default model: the first start opens ``checkpoints/*.npz`` when one ships.

None ships yet; dropping a Face Studio model file (``studio/core/modelfile.py`` format, e.g.
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
    return found[0] if found else None
