"""``studio bench gui``: how long a parameter change takes to reach the viewport, in the real window.

Latency is measured from the slider's setValue (the moment a user's drag delivers a value) to the
moment the worker's result has been written into the viewport's PolyData (Viewport.apply), with
drawing switched off, so it covers: undo command, evaluation request, the worker's incremental
update + normals + prior readout, the queued signal back and the in-place copy. The GL frame time
(plotter.render() after a data change) is measured separately: on this machine that is Mesa's
software rasteriser (llvmpipe) and says nothing about a desktop GPU.
"""

from __future__ import annotations

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


def _wait(app, window, predicate, timeout_s: float = 30.0) -> None:
    """Block in a real event loop (not a processEvents spin: a spinning UI thread would hold the
    GIL and starve the worker, inflating the very latency being measured)."""
    from PySide6.QtCore import QEventLoop, QTimer

    if predicate():
        return
    loop = QEventLoop()
    timer = QTimer()
    timer.setSingleShot(True)
    timer.timeout.connect(loop.quit)
    def on_applied(_res=None) -> None:  # slots return None: a bool returned to PySide is mis-counted
        if predicate():
            loop.quit()

    check = QTimer()  # catches state changes that emit no signal we listen to (model opened, …)
    check.timeout.connect(on_applied)
    check.start(20)
    window.viewport.applied.connect(on_applied)
    window.openFailed.connect(loop.quit)
    timer.start(int(timeout_s * 1000))
    try:
        loop.exec()
    finally:
        window.viewport.applied.disconnect(on_applied)
        window.openFailed.disconnect(loop.quit)
        check.stop()
    if not predicate() and not timer.isActive():
        raise StudioError("the window did not update in time")


def run_bench(model_name: str | None = None, changes: int = 200, frames: int = 30) -> dict:
    import os

    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise StudioError("the GUI bench needs a display: run it under xvfb-run -a studio bench gui")
    from PySide6.QtWidgets import QApplication

    from studio.app.window import MainWindow
    from studio.core import store

    app = QApplication.instance() or QApplication(["studio-bench"])
    window = MainWindow(session_enabled=False, seed=0)  # never touches the user's session
    window.resize(1600, 1000)
    window.show()
    name = model_name or ("ict" if store.exists("ict") else None)
    if name is not None:
        window.open_model(name)
    else:
        window.show_model(synthetic_ict_sized())
    failed = []
    window.openFailed.connect(failed.append)
    _wait(app, window, lambda: window.displayed_params is not None or bool(failed), 120)
    if failed:
        raise StudioError(failed[0])
    model = window.doc.model
    vp = window.viewport
    vp.auto_render = False  # latency excludes drawing; frames are timed on their own below

    worker_ms = []
    vp.applied.connect(lambda res: worker_ms.append((res.t_done - res.t_request) * 1e3))
    rng = np.random.default_rng(1)
    group = next(g for g in model.groups if g.prior == "normal")
    sliders = [window.panel.slider(group.name, i) for i in range(min(10, group.size))]

    def change(k: int) -> float:
        s = sliders[k % len(sliders)]
        v = round(float(rng.uniform(-2.5, 2.5)), 2)
        while v == s.value():
            v = round(float(rng.uniform(-2.5, 2.5)), 2)
        t0 = time.perf_counter()
        s.setValue(v)
        target = window._serial
        _wait(app, window, lambda: vp.applied_serial >= target)
        return (vp.last_apply_time - t0) * 1e3

    for k in range(10):  # warm-up (first-touch page faults, caches)
        change(k)
    worker_ms.clear()
    evals0, reqs0 = window.runner.evaluations, window.runner.requests
    inc0 = window.runner.evaluator.incremental_evaluations
    lat = np.array([change(k) for k in range(changes)])
    inc = window.runner.evaluator.incremental_evaluations - inc0
    evals, reqs = window.runner.evaluations - evals0, window.runner.requests - reqs0
    worker = np.array(worker_ms)

    # The same changes with the parameter dock hidden: no slider repaint competes with the result
    # for the UI thread. On Xvfb every widget repaint is composited by software GL (~10 ms for
    # this window), so this separates the pipeline's own latency from that.
    window.docks["Parameters"].hide()
    bare = []
    for k in range(min(changes, 100)):
        v = round(float(rng.uniform(-2.5, 2.5)), 2)
        while v == window.doc.value(group.name, k % len(sliders)):
            v = round(float(rng.uniform(-2.5, 2.5)), 2)
        t0 = time.perf_counter()
        window.doc.edit_value(group.name, k % len(sliders), v)
        target = window._serial
        _wait(app, window, lambda: vp.applied_serial >= target)  # noqa: B023 (called right here)
        bare.append((vp.last_apply_time - t0) * 1e3)
    window.docks["Parameters"].show()

    full = []
    for _ in range(20):  # every normal-prior group redrawn: the full-evaluation path
        t0 = time.perf_counter()
        window.panel.randomize_all()
        target = window._serial
        _wait(app, window, lambda: vp.applied_serial >= target)  # noqa: B023 (called right here)
        full.append((vp.last_apply_time - t0) * 1e3)

    frame_ms = []
    for k in range(frames):
        change(k)
        t0 = time.perf_counter()
        vp.plotter.render()
        frame_ms.append((time.perf_counter() - t0) * 1e3)
    caps = vp.plotter.ren_win.ReportCapabilities() or ""
    renderer = next((ln.split(":", 1)[1].strip() for ln in caps.splitlines() if "renderer string" in ln), "unknown")
    result = {
        "bench": "gui", "model": model.name, "vertices": int(len(vp.points)),
        "triangles": int(len(vp.visible_faces)), "changes": int(changes),
        "param_to_vertices_median_ms": float(np.median(lat)),
        "param_to_vertices_p95_ms": float(np.percentile(lat, 95)),
        "param_to_vertices_max_ms": float(lat.max()),
        "worker_median_ms": float(np.median(worker)) if len(worker) else None,
        "param_to_vertices_no_repaint_median_ms": float(np.median(bare)),
        "incremental_fraction": inc / max(evals, 1), "evaluations": int(evals), "requests": int(reqs),
        "random_face_median_ms": float(np.median(full)),
        "gl_frame_median_ms": float(np.median(frame_ms)), "gl_frame_p95_ms": float(np.percentile(frame_ms, 95)),
        "gl_renderer": renderer,
        "note": "GL frame time here is software rendering; it says nothing about a desktop GPU",
    }
    window.close()  # stops the worker thread and finalises the GL context while Qt is alive
    window.deleteLater()
    app.processEvents()
    return result
