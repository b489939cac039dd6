"""A tqdm bar on stderr as a core progress callback (silent when stderr is not a terminal)."""

from __future__ import annotations

import contextlib
import sys

from tqdm import tqdm


@contextlib.contextmanager
def progress_bar(desc: str):
    bar = tqdm(total=1000, desc=desc, unit="", bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}",
               disable=not sys.stderr.isatty(), file=sys.stderr, leave=False)

    def callback(fraction: float, message: str = "") -> None:
        bar.n = int(fraction * 1000)
        bar.set_postfix_str(message[:40], refresh=False)
        bar.refresh()

    try:
        yield callback
    finally:
        bar.close()
