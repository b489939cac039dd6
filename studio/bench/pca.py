"""``studio bench pca``: a linear model's full evaluation against the incremental slider update
(one coefficient, O(n), in place), and how far the incremental vertices drift from the full ones."""

from __future__ import annotations

import json
import time

import numpy as np

from studio.core import store


def _timeit(fn, repeats: int) -> float:
    """Median seconds per call over ``repeats`` calls (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _synthetic_ict_sized():
    from studio.core.facemodel import ParamGroup
    from studio.core.pca import LinearGroup, PCAModel

    rng = np.random.default_rng(0)
    n = 26719
    return PCAModel("synthetic", rng.normal(size=(n, 3)), np.zeros((1, 3), int), [
        LinearGroup(ParamGroup("shape", tuple(f"PC{i + 1}" for i in range(100))), rng.normal(size=(100, n, 3))),
        LinearGroup(ParamGroup("expression", tuple(f"E{i}" for i in range(53)), "box"), rng.normal(size=(53, n, 3))),
    ])


def main(model=None, repeats: int = 200, as_json: bool = False) -> int:
    """Measure, print the figures, and with ``as_json`` one JSON line last."""
    from studio.core.registry import open_model

    name = model or ("ict" if store.exists("ict") else None)
    model = open_model(name) if name else _synthetic_ict_sized()
    rng = np.random.default_rng(0)
    params = model.sample(rng)
    params["expression"] = rng.uniform(0, 1, model.basis("expression").shape[0]) if "expression" in params else None
    params = {k: v for k, v in params.items() if v is not None}
    full = _timeit(lambda: model.vertices(params), max(repeats // 4, 20))
    ev = model.evaluator(params)
    values = rng.normal(size=4096)
    state = {"i": 0}

    def one_slider_step():
        i = state["i"] = state["i"] + 1
        ev.set("shape", i % min(7, model.basis("shape").shape[0]), float(values[i % values.size]))

    inc = _timeit(one_slider_step, repeats * 10)
    drift = float(np.abs(ev.vertices - model.vertices(ev.params)).max())
    comps = sum(g.size for g in model.groups if g.affects == "position")
    result = {"bench": "pca", "model": model.name, "vertices": int(model.n_vertices), "components": comps,
              "full_ms": full * 1e3, "incremental_ms": inc * 1e3, "speedup": full / inc,
              "max_drift": drift, "unit": model.meta.unit}
    print(f"model {model.name}: {model.n_vertices} vertices, {comps} position components")
    print(f"full evaluation      {full * 1e3:8.3f} ms")
    print(f"incremental update   {inc * 1e3:8.3f} ms  (one slider step, O(n))")
    print(f"speed-up             {full / inc:8.1f} x")
    print(f"max drift after {repeats * 10 + 1} incremental steps: {drift:.2e} {model.meta.unit}")
    if as_json:
        print(json.dumps(result))
    return 0
