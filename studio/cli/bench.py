"""``studio bench …``: measured figures and ratios, printed (with --json, one JSON object last)."""

from __future__ import annotations

import json
import time

import numpy as np

from studio.core import store


def add_commands(sub) -> None:
    bench = sub.add_parser("bench", help="measure speed (prints figures; --json for one JSON line)")
    bsub = bench.add_subparsers(dest="bench_command", metavar="BENCH", required=True)
    p = bsub.add_parser("pca", help="full evaluation vs incremental slider update of a linear model")
    p.add_argument("--model", help="model to measure (default: 'ict' if imported, else a synthetic "
                   "model of ICT's size)")
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=bench_pca)

    p = bsub.add_parser("gui", help="parameter change → viewport vertices latency in the real window "
                        "(needs a display: run under xvfb-run)")
    p.add_argument("--model", help="model to open (default: 'ict' if imported, else a synthetic model of "
                   "ICT's size)")
    p.add_argument("--changes", type=int, default=200, help="slider changes to time")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=bench_gui)

    # Benchmarks of the other capabilities live beside their commands.
    from studio.cli import bench_extract, bench_fit, bench_fuzz, bench_photo, bench_register
    for module in (bench_fit, bench_extract, bench_photo, bench_fuzz, bench_register):
        module.add_command(bsub)


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


def bench_pca(a) -> int:
    from studio.core.registry import open_model

    name = a.model or ("ict" if store.exists("ict") else None)
    model = open_model(name) if name else _synthetic_ict_sized()
    rng = np.random.default_rng(0)
    params = model.sample(rng)
    params["expression"] = rng.uniform(0, 1, model.basis("expression").shape[0]) if "expression" in params else None
    params = {k: v for k, v in params.items() if v is not None}
    full = _timeit(lambda: model.vertices(params), max(a.repeats // 4, 20))
    ev = model.evaluator(params)
    values = rng.normal(size=4096)
    state = {"i": 0}

    def one_slider_step():
        i = state["i"] = state["i"] + 1
        ev.set("shape", i % min(7, model.basis("shape").shape[0]), float(values[i % values.size]))

    inc = _timeit(one_slider_step, a.repeats * 10)
    drift = float(np.abs(ev.vertices - model.vertices(ev.params)).max())
    comps = sum(g.size for g in model.groups if g.affects == "position")
    result = {"bench": "pca", "model": model.name, "vertices": int(model.n_vertices), "components": comps,
              "full_ms": full * 1e3, "incremental_ms": inc * 1e3, "speedup": full / inc,
              "max_drift": drift, "unit": model.meta.unit}
    print(f"model {model.name}: {model.n_vertices} vertices, {comps} position components")
    print(f"full evaluation      {full * 1e3:8.3f} ms")
    print(f"incremental update   {inc * 1e3:8.3f} ms  (one slider step, O(n))")
    print(f"speed-up             {full / inc:8.1f} x")
    print(f"max drift after {a.repeats * 10 + 1} incremental steps: {drift:.2e} {model.meta.unit}")
    if a.json:
        print(json.dumps(result))
    return 0


def bench_gui(a) -> int:
    from studio.core.errors import StudioError

    if a.changes < 10:
        raise StudioError("--changes must be at least 10")
    try:
        from studio.app.bench import run_bench
    except ImportError as e:
        raise StudioError(f"the GUI bench needs the GUI packages ({e.name} is missing): pip install -e .") from None
    r = run_bench(a.model, a.changes)
    print(f"model {r['model']}: {r['vertices']} vertices, {r['triangles']} triangles shown")
    print(f"parameter → viewport vertices  median {r['param_to_vertices_median_ms']:7.2f} ms   "
          f"p95 {r['param_to_vertices_p95_ms']:7.2f} ms   ({r['changes']} slider changes, drawing excluded)")
    print(f"  of which worker evaluation   median {r['worker_median_ms']:7.2f} ms   "
          f"({100 * r['incremental_fraction']:.0f}% incremental updates)")
    print(f"  without the slider repaint   median {r['param_to_vertices_no_repaint_median_ms']:7.2f} ms   "
          "(parameter dock hidden; on Xvfb a widget repaint is composited in software GL)")
    print(f"random face (full evaluation)  median {r['random_face_median_ms']:7.2f} ms")
    print(f"GL frame (plotter.render)      median {r['gl_frame_median_ms']:7.2f} ms   "
          f"p95 {r['gl_frame_p95_ms']:7.2f} ms   on {r['gl_renderer']}")
    print("note: the GL frame time on software GL (Xvfb/llvmpipe) says nothing about a real desktop")
    if a.json:
        print(json.dumps(r))
    return 0
