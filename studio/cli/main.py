"""The ``studio`` command. With no arguments it opens the window; subcommands do the same jobs
from a shell. Errors a user can fix print one line and exit with status 2; a fit that
failed, status 3."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading

from studio import __version__
from studio.core.errors import FitFailed, StudioError
from studio.core.progress import Cancelled


def build_parser() -> argparse.ArgumentParser:
    from studio.cli import bench, commands, fit, neural, register

    p = argparse.ArgumentParser(prog="studio", description="Face Studio: morph, fit and export 3D faces. "
                                "Run without a command to open the window.")
    p.add_argument("--version", action="version", version=f"studio {__version__}")
    p.add_argument("--model", help="model to open in the window (name in the store or a .npz path)")
    p.add_argument("--params", help="parameters JSON to open in the window")
    p.add_argument("--screenshot", metavar="OUT.png", help="open the window, save a screenshot, exit")
    p.add_argument("--force", dest="screenshot_force", action="store_true",
                   help="with --screenshot: replace an existing OUT.png")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_commands(sub)
    fit.add_commands(sub)
    neural.add_commands(sub)
    register.add_command(sub)
    bench.add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    _thread_env_defaults()
    parser = build_parser()
    args = parser.parse_args(argv)
    _sweep_temp_folders()
    try:
        if args.command is None:
            from studio.cli.window import run_window
            return run_window(args)  # the window handles its own signals
        with _signals_end_the_command():
            return int(args.func(args) or 0)
    except Terminated as e:
        print("studio: terminated", file=sys.stderr)
        return 128 + e.signum
    except FitFailed as e:
        print(f"studio: fit failed: {e}", file=sys.stderr)
        return FitFailed.exit_status
    except StudioError as e:
        print(f"studio: error: {e}", file=sys.stderr)
        return 2
    except Cancelled:
        print("studio: cancelled", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("studio: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug, not bad input: still one line, the traceback on request
        if os.environ.get("STUDIO_DEBUG"):
            raise
        print(f"studio: internal error: {e.__class__.__name__}: {e} (set STUDIO_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 1


class Terminated(BaseException):
    """SIGTERM/SIGHUP as an exception: like KeyboardInterrupt, not caught by ``except Exception``."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _signals_end_the_command():
    """Python's default for SIGTERM is to die on the spot, leaving temporary folders (an ICT import
    unpacks 300 MB) and temporary files behind. Raised as an exception in the main thread, where
    the commands run, it unwinds through every ``finally`` and ``with`` instead."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def handler(signum, _frame):
        raise Terminated(signum)

    # A signal the parent set to be ignored (nohup) stays ignored.
    wanted = [s for s in ("SIGTERM", "SIGHUP")
              if hasattr(signal, s) and signal.getsignal(getattr(signal, s)) is not signal.SIG_IGN]
    previous = {s: signal.signal(getattr(signal, s), handler) for s in wanted}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(getattr(signal, s), h)


def _sweep_temp_folders() -> None:
    """Remove the temporary folders of studio processes that were killed (kill -9 runs no cleanup)."""
    from studio.core import tempdirs

    tempdirs.sweep_stale()


def _thread_env_defaults() -> None:
    """OMP_NUM_THREADS & co. from the cores available (``threads.env_defaults``), where the user has
    not set them — only while neither numpy nor torch is loaded: their thread pools read these when
    they load, and afterwards the variables would only reach child processes."""
    if "numpy" in sys.modules or "torch" in sys.modules:
        return
    from studio.core import threads

    threads.env_defaults()


if __name__ == "__main__":
    raise SystemExit(main())
