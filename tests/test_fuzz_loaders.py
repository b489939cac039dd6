"""Seeded, bounded fuzzing of every loader the CLI calls: StudioError or success, and success loads.

A few hundred mutations per loader (studio.bench.fuzz); ``studio bench fuzz`` runs the long
campaign, in a worker process that also counts hangs and crashes. A failing case is replayed with
``studio bench fuzz --seed 1 --replay TARGET:INDEX``.
"""

from __future__ import annotations

import pytest

from studio.bench.fuzz.targets import TARGETS, Unloadable, run_case

SEED = 1  # the bench's default campaign uses seed 0: the suite adds different cases
CASES = {"checkpoint": 150, "model-npz": 200}  # the slower loaders; the rest run 250 each


@pytest.mark.parametrize("target", TARGETS)
def test_loader_refuses_or_loads(target, tmp_path):
    outcomes, bugs = {"ok": 0, "refused": 0}, []
    for index in range(CASES.get(target, 250)):
        work = tmp_path / str(index)
        work.mkdir()
        try:
            outcomes[run_case(target, SEED, index, work)] += 1
        except Unloadable as e:
            bugs.append(f"{target}:{index} accepted but unloadable: {e}")
        except Exception as e:  # noqa: BLE001 — anything but StudioError is the bug looked for
            bugs.append(f"{target}:{index} {type(e).__name__}: {e}")
    assert not bugs, "\n".join(bugs[:10])
    # The mutations must exercise both paths, or the loader is not really being fuzzed.
    assert outcomes["ok"] > 0 and outcomes["refused"] > 0, outcomes
