"""The files in the repository's ``resources/`` folder (the window's icon, small example files).

They are found beside the source tree (a checkout, or the editable install scripts/setup.sh makes),
or, after a plain ``pip install .``, where pyproject.toml's ``data-files`` put them:
``<prefix>/share/face-studio/resources``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOTS = (Path(__file__).resolve().parents[1] / "resources",
         Path(sys.prefix) / "share" / "face-studio" / "resources")


def resource(*parts: str) -> Path | None:
    """The path of ``resources/<parts…>``, or None when neither place holds it."""
    for root in ROOTS:
        path = root.joinpath(*parts)
        if path.is_file():
            return path
    return None
