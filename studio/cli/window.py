"""``studio`` with no command: open the window (the app layer is imported only here)."""

from __future__ import annotations

from studio.core.errors import StudioError


def run_window(args) -> int:
    try:
        from studio.app.main import run
    except ImportError as e:
        raise StudioError(f"the window needs the GUI packages ({e.name} is missing): pip install -e .") from None
    return run(model=args.model, params=args.params, screenshot=args.screenshot,
               force=getattr(args, "screenshot_force", False))
