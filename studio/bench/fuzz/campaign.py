"""``studio bench fuzz``: the long fuzz campaign over every loader the CLI calls.

Cases come from ``studio.bench.fuzz`` (the same ones ``tests/test_fuzz_loaders.py`` runs a few
hundred of). They run in a worker process so that a crash (a signal) or a hang (no answer
within --timeout seconds) is counted, the worker replaced, and the campaign goes on. Each case
is (target, seed, index): ``--replay TARGET:INDEX`` runs one again in this process.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import tempfile
import traceback
from collections import Counter
from pathlib import Path

from studio.core.errors import StudioError


def main(count: int = 3000, seed: int = 0, timeout: float = 30.0, replay: str | None = None,
         as_json: bool = False) -> int:
    """``studio bench fuzz``: run the campaign (or ``replay`` one case), print the counts, and with
    ``as_json`` one JSON line last."""
    from studio.bench.fuzz.targets import TARGETS

    if replay:
        return _replay(replay, seed)
    if count < 1 or timeout <= 0:
        raise StudioError("--count must be at least 1 and --timeout positive")
    counts = {t: Counter() for t in TARGETS}
    examples: list[str] = []
    with _Worker(timeout) as worker:
        for i in range(count):
            target, index = TARGETS[i % len(TARGETS)], i // len(TARGETS)
            outcome, detail = worker.run(target, seed, index)
            counts[target][outcome] += 1
            if outcome not in ("ok", "refused") and len(examples) < 20:
                examples.append(f"{target}:{index} {outcome}: {detail}")
    total = sum(counts.values(), Counter())
    result = {"bench": "fuzz", "cases": count, "seed": seed, "accepted": total["ok"],
              "refused": total["refused"], "uncaught_exceptions": total["uncaught"], "hangs": total["hang"],
              "crashes": total["crash"], "accepted_unloadable": total["unloadable"],
              "per_loader": {t: dict(c) for t, c in counts.items()}, "examples": examples}
    _print(result)
    if as_json:
        print(json.dumps(result))
    return 0


def _print(r: dict) -> None:
    print(f"{r['cases']} cases (seed {r['seed']}): {r['accepted']} accepted and loadable, {r['refused']} refused "
          "with one line")
    print(f"uncaught exceptions {r['uncaught_exceptions']}   hangs {r['hangs']}   crashes {r['crashes']}   "
          f"accepted but unloadable {r['accepted_unloadable']}")
    for t, c in r["per_loader"].items():
        print(f"  {t:<11} " + "  ".join(f"{k} {v}" for k, v in sorted(c.items())))
    for e in r["examples"]:
        print(f"  replay with --replay {e}")


def _replay(spec: str, seed: int) -> int:
    from studio.bench.fuzz.targets import TARGETS, run_case

    target, _, index = spec.partition(":")
    if target not in TARGETS or not index.isdigit():
        raise StudioError(f"--replay takes TARGET:INDEX with TARGET one of {', '.join(TARGETS)}")
    with tempfile.TemporaryDirectory(prefix="studio-fuzz-") as tmp:
        try:
            print(run_case(target, seed, int(index), Path(tmp)))
        except StudioError:
            raise
        except Exception:  # the point of a replay: show the bug's traceback
            traceback.print_exc()
            return 1
    return 0


class _Worker:
    """A child process running cases one at a time; restarted after a crash or a hang."""

    def __init__(self, timeout: float):
        self.timeout, self.proc = timeout, None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._stop()

    def _start(self) -> None:
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "studio.bench.fuzz.campaign"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)

    def _stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.sel.close()
            self.proc = None

    def run(self, target: str, seed: int, index: int) -> tuple[str, str]:
        if self.proc is None:
            self._start()
        self.proc.stdin.write(f"{target} {seed} {index}\n")
        self.proc.stdin.flush()
        # The first case also pays for the worker's start (imports), hence the allowance.
        if not self.sel.select(self.timeout + 30 * (index == 0)):
            self._stop()
            return "hang", f"no answer within {self.timeout:g} s"
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            self._stop()
            return "crash", f"worker ended with status {code}"
        answer = json.loads(line)
        return answer["outcome"], answer.get("detail", "")


def _worker_main() -> None:
    """Read 'TARGET SEED INDEX' lines, answer one JSON line each (never a traceback)."""
    from studio.bench.fuzz.targets import Unloadable, run_case

    with tempfile.TemporaryDirectory(prefix="studio-fuzz-") as tmp:
        for line in sys.stdin:
            target, seed, index = line.split()
            work = Path(tmp) / index
            work.mkdir()
            try:
                answer = {"outcome": run_case(target, int(seed), int(index), work)}
            except Unloadable as e:
                answer = {"outcome": "unloadable", "detail": str(e)[:300]}
            except Exception as e:  # noqa: BLE001 — counting these is the point
                answer = {"outcome": "uncaught", "detail": f"{type(e).__name__}: {str(e)[:300]}"}
            finally:
                _remove(work)
            print(json.dumps(answer), flush=True)


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    _worker_main()
