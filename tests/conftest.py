"""Shared fixtures: an isolated model store per test, a synthetic model, the ICT data when present,
and the one display check of the GUI tests.

Markers (registered in pyproject.toml), used the same way everywhere:

* ``gui``: the test needs a display (a window, in this process or a child). Every ``gui`` test goes
  through ``require_display`` below (the ``display`` fixture), before any of its fixtures, which
  skips it, with the reason, when there is no display (pytest-xvfb starts Xvfb for the session when
  it is installed; else ``xvfb-run -a pytest``) or no Qt. A test using ``qtbot`` is marked ``gui``
  here without asking.
* ``ict``: the test needs ``../shared/data/ict-facekit.tar.xz``; every test using the ``ict_archive``
  fixture (directly or through ``ict_files`` / ``ict_store`` / ``ict_model``) is marked here.
* ``slow``: longer than the suite's budget; left out by default (``addopts = -m 'not slow'``).

The fast inner loop: ``pytest -m "not slow and not gui"`` (add ``and not ict`` for no data at all).
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
ICT_ARCHIVE = REPO.parent / "shared" / "data" / "ict-facekit.tar.xz"
NO_ICT = (f"ICT-FaceKit archive not found at {ICT_ARCHIVE} (CI has it; elsewhere put the ICT-FaceKit "
          "tar.xz there to run these tests)")
NO_DISPLAY = ("no display for the GUI tests: install Xvfb (pytest-xvfb then starts it for the test run), "
              "run under xvfb-run -a, or run them in a desktop session")


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


@pytest.hookimpl(tryfirst=True)  # before -m deselects: the markers added here count for it
def pytest_collection_modifyitems(config, items):
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "ict_archive" in names and item.get_closest_marker("ict") is None:
            item.add_marker(pytest.mark.ict)
        if "qtbot" in names and item.get_closest_marker("gui") is None:
            item.add_marker(pytest.mark.gui)


def require_display() -> str:
    """The one display check of the suite: the display's name, or the test is skipped with the reason
    (no display, or no Qt)."""
    if not has_display():
        pytest.skip(NO_DISPLAY)
    pytest.importorskip("PySide6", reason="PySide6 is not installed (pip install -e '.[test]')")
    pytest.importorskip("pyvistaqt", reason="pyvistaqt is not installed (pip install -e '.[test]')")
    return os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    # Before any fixture: pytest-qt's session QApplication must not start without a display (it aborts).
    if item.get_closest_marker("gui") is not None:
        require_display()


@pytest.fixture
def display() -> str:
    """The display a ``gui`` test runs on (checked before the test's fixtures, above)."""
    return require_display()


@pytest.fixture(autouse=True)
def studio_home(tmp_path, monkeypatch):
    """Every test gets its own empty model store; nothing touches the user's real one."""
    home = tmp_path / "studio-home"
    monkeypatch.setenv("STUDIO_HOME", str(home))
    return home


def make_model(n_shape=6, n_expr=3, colors=True, uv=True, seed=0, name="synth", subdivisions=2):
    """A small linear model on an icosphere: σ-scaled shape PCs, box-prior blendshapes, colour PCA."""
    import trimesh

    from studio.core.facemodel import ModelMeta, ParamGroup
    from studio.core.pca import LinearGroup, PCAModel

    rng = np.random.default_rng(seed)
    sphere = trimesh.creation.icosphere(subdivisions=subdivisions, radius=10.0)
    v, f = np.asarray(sphere.vertices), np.asarray(sphere.faces)
    n = len(v)
    sig = np.linspace(2.0, 0.3, n_shape)
    q, _ = np.linalg.qr(rng.normal(size=(3 * n, n_shape)))
    shape = (q.T * sig[:, None]).reshape(n_shape, n, 3)
    linear = [LinearGroup(ParamGroup("shape", tuple(f"PC{i + 1}" for i in range(n_shape))), shape),
              LinearGroup(ParamGroup("expression", tuple(f"expr{j}" for j in range(n_expr)), "box"),
                          rng.normal(scale=0.5, size=(n_expr, n, 3)))]
    color_mean = None
    if colors:
        color_mean = np.full((n, 3), 0.6)
        linear.append(LinearGroup(ParamGroup("color", ("C1", "C2"), affects="color"),
                                  rng.normal(scale=0.02, size=(2, n, 3))))
    uvs = face_uv = None
    if uv:
        # Spherical UVs with a seam: corners of triangles crossing u=0/1 get their own UVs.
        uvs = np.c_[(np.arctan2(v[:, 1], v[:, 0]) / (2 * np.pi)) % 1.0, v[:, 2] / 20 + 0.5]
        face_uv = f.copy()
        wrap = np.ptp(uvs[f, 0], axis=1) > 0.5
        extra = uvs[f[wrap]].reshape(-1, 2).copy()
        extra[:, 0] = np.where(extra[:, 0] < 0.5, extra[:, 0] + 1.0, extra[:, 0])
        face_uv[wrap] = len(uvs) + np.arange(extra.shape[0]).reshape(-1, 3)
        uvs = np.vstack([uvs, extra])
    meta = ModelMeta(unit="mm", regions={"front": np.flatnonzero(v[:, 2] > 0).astype(np.int32)},
                     landmarks={"tip": np.array([int(np.argmax(v[:, 2]))], np.int32)},
                     attribution="synthetic test model")
    return PCAModel(name, v, f, linear, color_mean, uvs, face_uv, np.zeros(len(f), np.int32), ("skin",), meta)


@pytest.fixture
def small_model():
    return make_model()


@pytest.fixture(scope="session")
def ict_archive():
    if not ICT_ARCHIVE.is_file():
        pytest.skip(NO_ICT)
    return ICT_ARCHIVE


@pytest.fixture(scope="session")
def ict_files(ict_archive, tmp_path_factory):
    """The archive unpacked once per test session (for independent reference computations)."""
    out = tmp_path_factory.mktemp("ict-unpacked")
    with tarfile.open(ict_archive) as t:
        t.extractall(out, filter="data")
    return out / "FaceXModel"


@pytest.fixture(scope="session")
def ict_store(ict_archive, tmp_path_factory):
    """A model store holding the ICT model imported through the CLI job, once per session."""
    from studio.jobs.models import import_job

    home = tmp_path_factory.mktemp("ict-home")
    old = os.environ.get("STUDIO_HOME")
    os.environ["STUDIO_HOME"] = str(home)
    try:
        import_job(ict_archive, "ict")
    finally:
        if old is None:
            os.environ.pop("STUDIO_HOME", None)
        else:
            os.environ["STUDIO_HOME"] = old
    return home


@pytest.fixture
def ict_model(ict_store, monkeypatch):
    from studio.core.registry import open_model

    monkeypatch.setenv("STUDIO_HOME", str(ict_store))
    return open_model("ict")


@pytest.fixture
def one_torch_thread():
    """One torch thread for a test: tiny networks gain nothing from a second one, and lose a
    lot when the (CI) machine is busy."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def cancel_while_running(fit, ready, timeout: float = 60.0) -> tuple[str, float, list[str]]:
    """Run ``fit(progress)`` on a thread, make its progress callback raise ``Cancelled`` once
    ``ready(messages)`` holds, and return (outcome, seconds from the cancel to the stop, messages)."""
    import threading
    import time

    from studio.core.progress import Cancelled

    stop = threading.Event()
    messages: list[str] = []
    outcome: dict = {}

    def progress(fraction, message=""):
        messages.append(message)
        if stop.is_set():
            raise Cancelled()

    def run():
        try:
            fit(progress)
            outcome["r"] = "finished"
        except Cancelled:
            outcome["r"] = "cancelled"
        outcome["t"] = time.perf_counter()

    th = threading.Thread(target=run)
    th.start()
    while not ready(messages) and th.is_alive():
        time.sleep(0.01)
    t_cancel = time.perf_counter()
    stop.set()
    th.join(timeout=timeout)
    return outcome.get("r", "hung"), outcome.get("t", float("inf")) - t_cancel, messages
