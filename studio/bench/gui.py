"""``studio bench gui``: how long a parameter change takes to reach the viewport, in the real window.

Latency is measured from the slider's setValue (the moment a user's drag delivers a value) to the
moment the worker's result has been written into the viewport's PolyData (Viewport.apply), with
drawing switched off, so it covers: undo command, evaluation request, the worker's incremental
update + normals + prior readout, the queued signal back and the in-place copy. The GL frame time
(plotter.render() after a data change) is measured separately: on this machine that is Mesa's
software rasteriser (llvmpipe) and says nothing about a desktop GPU.

The window is driven through ``studio.app.harness`` (the Qt side: open it, wait in a real event
loop), imported inside ``run_bench``: this is the one module of studio/bench that reaches the window
(tests/test_layers.py), and every other bench runs without Qt.
"""

from __future__ import annotations

import json
import time

import numpy as np

from studio.core.errors import StudioError


def synthetic_ict_sized(seed: int = 0):
    """A linear model with ICT's size (≈26.7k vertices, 52k triangles, 100 + 53 components)."""
    from studio.core.facemodel import ModelMeta, ParamGroup
    from studio.core.pca import LinearGroup, PCAModel

    rng = np.random.default_rng(seed)
    rows, cols = 163, 164  # 26,732 vertices, 52,812 triangles
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    x, y = (x / (cols - 1) - 0.5) * 16, (y / (rows - 1) - 0.5) * 22
    z = 6 * np.exp(-(x / 8) ** 2 - (y / 11) ** 2)
    mean = np.c_[x.ravel(), y.ravel(), z.ravel()]
    idx = np.arange(rows * cols).reshape(rows, cols)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    faces = np.r_[np.c_[a, c, b], np.c_[b, c, d]]
    n = len(mean)
    linear = [
        LinearGroup(ParamGroup("shape", tuple(f"PC{i + 1}" for i in range(100))),
                    rng.normal(scale=0.05, size=(100, n, 3)).astype(np.float32)),
        LinearGroup(ParamGroup("expression", tuple(f"E{i}" for i in range(53)), "box"),
                    rng.normal(scale=0.05, size=(53, n, 3)).astype(np.float32)),
    ]
    return PCAModel("synthetic", mean, faces, linear, meta=ModelMeta(unit="cm"))


def main(model=None, changes: int = 200, as_json: bool = False) -> int:
    """``studio bench gui``: measure in the real window, print the figures, and with ``as_json`` one
    JSON line last."""
    if changes < 10:
        raise StudioError("--changes must be at least 10")
    try:
        r = run_bench(model, changes)
    except ImportError as e:
        raise StudioError(f"the GUI bench needs the GUI packages ({e.name} is missing): pip install -e .") from None
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
    if as_json:
        print(json.dumps(r))
    return 0


def run_bench(model_name: str | None = None, changes: int = 200, frames: int = 30) -> dict:
    """The figures of ``studio bench gui`` (a dict; see ``_result``)."""
    from studio.app import harness  # the Qt side; only here (see the module docstring)
    from studio.core import store

    harness.require_display()
    name = model_name or ("ict" if store.exists("ict") else None)
    app, window = harness.open_window(name, synthetic_ict_sized)
    probe = _Probe(window, harness.wait)
    sliders = _slider_latency(probe, changes)
    bare = _latency_without_repaint(probe, min(changes, 100))
    full = _random_face_latency(probe, 20)
    frame_ms = _gl_frames(probe, frames)
    result = _result(window, changes, sliders, bare, full, frame_ms, harness.gl_renderer(window))
    harness.close(app, window)
    return result


class _Probe:
    """Times one change of the face from the call that makes it to its vertices in the viewport."""

    def __init__(self, window, wait):
        self.window, self.vp, self._wait = window, window.viewport, wait
        self.vp.auto_render = False  # latency excludes drawing; frames are timed on their own
        self.worker_ms: list[float] = []
        self.vp.applied.connect(lambda res: self.worker_ms.append((res.t_done - res.t_request) * 1e3))
        self.rng = np.random.default_rng(1)
        self.group = next(g for g in window.doc.model.groups if g.prior == "normal")
        self.sliders = [window.panel.slider(self.group.name, i) for i in range(min(10, self.group.size))]

    def timed(self, make_change) -> float:
        """ms from ``make_change()`` to its result written into the viewport's mesh."""
        t0 = time.perf_counter()
        make_change()
        target = self.window._serial
        self._wait(self.window, lambda: self.vp.applied_serial >= target)
        return (self.vp.last_apply_time - t0) * 1e3

    def new_value(self, current: float) -> float:
        v = round(float(self.rng.uniform(-2.5, 2.5)), 2)
        while v == current:
            v = round(float(self.rng.uniform(-2.5, 2.5)), 2)
        return v

    def slider_change(self, k: int) -> float:
        """One slider moved as a user's drag moves it (setValue), timed."""
        s = self.sliders[k % len(self.sliders)]
        v = self.new_value(s.value())
        return self.timed(lambda: s.setValue(v))


def _slider_latency(probe: _Probe, changes: int) -> dict:
    """Slider value → viewport vertices over ``changes`` changes (after 10 warm-up changes: first-touch
    page faults, caches), with the worker's share and how many evaluations were incremental."""
    for k in range(10):
        probe.slider_change(k)
    probe.worker_ms.clear()
    runner = probe.window.runner
    evals0, reqs0, inc0 = runner.evaluations, runner.requests, runner.evaluator.incremental_evaluations
    lat = np.array([probe.slider_change(k) for k in range(changes)])
    return {"latency_ms": lat, "worker_ms": np.array(probe.worker_ms),
            "incremental": runner.evaluator.incremental_evaluations - inc0,
            "evaluations": runner.evaluations - evals0, "requests": runner.requests - reqs0}


def _latency_without_repaint(probe: _Probe, changes: int) -> list[float]:
    """The same changes with the parameter dock hidden: no slider repaint competes with the result
    for the UI thread. On Xvfb every widget repaint is composited by software GL (~10 ms for this
    window), so this separates the pipeline's own latency from that."""
    window, group, n = probe.window, probe.group, len(probe.sliders)
    window.docks["Parameters"].hide()
    bare = []
    for k in range(changes):
        v = probe.new_value(window.doc.value(group.name, k % n))
        bare.append(probe.timed(lambda: window.doc.edit_value(group.name, k % n, v)))  # noqa: B023 (called right here)
    window.docks["Parameters"].show()
    return bare


def _random_face_latency(probe: _Probe, count: int) -> list[float]:
    """Random face: every normal-prior group redrawn, the full-evaluation path."""
    return [probe.timed(probe.window.panel.randomize_all) for _ in range(count)]


def _gl_frames(probe: _Probe, frames: int) -> list[float]:
    """ms of one ``plotter.render()`` after a data change."""
    frame_ms = []
    for k in range(frames):
        probe.slider_change(k)
        t0 = time.perf_counter()
        probe.vp.plotter.render()
        frame_ms.append((time.perf_counter() - t0) * 1e3)
    return frame_ms


def _result(window, changes: int, sliders: dict, bare, full, frame_ms, renderer: str) -> dict:
    vp, lat, worker = window.viewport, sliders["latency_ms"], sliders["worker_ms"]
    return {
        "bench": "gui", "model": window.doc.model.name, "vertices": int(len(vp.points)),
        "triangles": int(len(vp.visible_faces)), "changes": int(changes),
        "param_to_vertices_median_ms": float(np.median(lat)),
        "param_to_vertices_p95_ms": float(np.percentile(lat, 95)),
        "param_to_vertices_max_ms": float(lat.max()),
        "worker_median_ms": float(np.median(worker)) if len(worker) else None,
        "param_to_vertices_no_repaint_median_ms": float(np.median(bare)),
        "incremental_fraction": sliders["incremental"] / max(sliders["evaluations"], 1),
        "evaluations": int(sliders["evaluations"]), "requests": int(sliders["requests"]),
        "random_face_median_ms": float(np.median(full)),
        "gl_frame_median_ms": float(np.median(frame_ms)), "gl_frame_p95_ms": float(np.percentile(frame_ms, 95)),
        "gl_renderer": renderer,
        "note": "GL frame time here is software rendering; it says nothing about a desktop GPU",
    }
