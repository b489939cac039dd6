"""Writes that fail (full disk, read-only folder, a file where a folder should be), the store's lock,
temporary folders after SIGTERM and kill -9, and model names: one line, exit 2, nothing left behind.

A full disk is simulated without root with RLIMIT_FSIZE in a child process (writes past the limit
fail with EFBIG; Python ignores SIGXFSZ), or in-process by making the write raise ENOSPC. A
read-only folder is chmod 0555, except as root, which ignores that: there the low-level calls that
create files and folders under it are made to fail with EROFS, as on a read-only mount.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from conftest import make_model
from test_ict import write_mini_ict

from studio.cli.main import main
from studio.core import atomic, store, tempdirs
from studio.core.errors import StudioError
from studio.core.modelfile import load_model, save_model

WAIT_S = 120  # a guard against a hung child only; nothing is asserted about time


@pytest.fixture
def synth(studio_home):
    save_model(make_model(name="synth"), store.prepare("synth") / store.MODEL_FILE)


def run_main(capsys, *args) -> tuple[int, str]:
    rc = main([str(a) for a in args])
    err = capsys.readouterr().err.strip()
    return rc, err


def assert_one_line(rc, err, *parts):
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and "internal error" not in err and "Traceback" not in err, err
    for p in parts:
        assert p in err, err


def studio(*args, env=None, fsize=None, timeout=WAIT_S):
    """``studio`` in its own process; ``fsize`` caps the size of any file it writes (a full disk)."""
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    full_env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "studio", *map(str, args)], capture_output=True, text=True,
                          env=full_env, preexec_fn=limit if fsize is not None else None, timeout=timeout)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*"))


# -- the shared write mechanism --------------------------------------------------------------------
def test_failed_write_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "p.json"
    target.write_text("old")

    def full(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(StudioError, match=rf"^cannot write {target}: no space left on device$"):
        atomic.write_text(target, "new", force=True)
    assert leftovers(tmp_path) == ["p.json"] and target.read_text() == "old"


def test_full_disk_gives_one_line_and_no_file(synth, tmp_path, studio_home):
    repo, _ = write_mini_ict(tmp_path / "ict")
    out = tmp_path / "out"
    out.mkdir()
    cases = [
        (["export", "--model", "synth", "-o", out / "p.json"], out / "p.json"),
        (["export", "--model", "synth", "-o", out / "face.glb"], out / "face.glb"),
        (["sample", "--model", "synth", "-o", out / "s"], out / "s" / "face_000.obj"),
        (["models", "import", repo, "--name", "mini"], store.models_dir() / "mini" / store.MODEL_FILE),
    ]
    for args, path in cases:
        r = studio(*args, fsize=64)
        assert_one_line(r.returncode, r.stderr.strip(), f"cannot write {path}: file too large")
    assert leftovers(out) == ["s"]  # the sample folder, empty: no half-written or temporary file
    assert store.names() == ["synth"] and not (store.models_dir() / "mini").exists()


@pytest.fixture
def read_only(monkeypatch):
    """Make a folder read-only for this process: chmod for a normal user; as root (which chmod does
    not stop) creating files and folders under it fails with EROFS, as on a read-only mount."""
    folders = []

    def make(folder: Path) -> Path:
        folders.append(folder)
        if os.geteuid() != 0:
            folder.chmod(0o555)
        return folder

    def under(path) -> bool:
        return any(Path(os.path.abspath(path)).is_relative_to(f) for f in folders)

    real_open, real_mkdir = os.open, os.mkdir

    def fake_open(path, flags, *a, **kw):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and under(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *a, **kw)

    def fake_mkdir(path, *a, **kw):
        if under(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_mkdir(path, *a, **kw)

    if os.geteuid() == 0:
        monkeypatch.setattr(os, "open", fake_open)
        monkeypatch.setattr(os, "mkdir", fake_mkdir)
    yield make
    for f in folders:
        f.chmod(0o755)


def test_read_only_folders_give_one_line(synth, tmp_path, capsys, read_only):
    (tmp_path / "ro").mkdir()
    ro = read_only(tmp_path / "ro")
    for args, path in [(["export", "--model", "synth", "-o", ro / "p.json"], ro / "p.json"),
                       (["export", "--model", "synth", "-o", ro / "f.obj"], ro / "f.obj"),
                       (["sample", "--model", "synth", "-o", ro], ro / "face_000.obj")]:
        rc, err = run_main(capsys, *args)
        assert_one_line(rc, err, f"cannot write {path}")
    rc, err = run_main(capsys, "sample", "--model", "synth", "-o", ro / "sub")
    assert_one_line(rc, err, f"{ro / 'sub'}")
    assert leftovers(ro) == []


def test_import_into_a_read_only_store(synth, tmp_path, capsys, read_only):
    repo, _ = write_mini_ict(tmp_path / "ict")
    read_only(store.models_dir())
    rc, err = run_main(capsys, "models", "import", repo, "--name", "mini")
    assert_one_line(rc, err, f"cannot write {store.models_dir()}")
    assert store.names() == ["synth"] and not (store.models_dir() / "mini").exists()


def test_sample_onto_an_existing_file(synth, tmp_path, capsys):
    f = tmp_path / "taken"
    f.write_text("keep")
    rc, err = run_main(capsys, "sample", "--model", "synth", "-o", f)
    assert_one_line(rc, err, f"cannot write into {f}: it is a file, not a folder")
    rc, err = run_main(capsys, "export", "--model", "synth", "-o", f / "p.json")
    assert_one_line(rc, err, f"{f} is a file, not a folder")
    assert f.read_text() == "keep"


@pytest.mark.gui
def test_screenshot_on_a_full_disk(synth, tmp_path):
    """It used to print a traceback from inside Qt, wait for the 180 s timeout, then blame the model."""
    out = tmp_path / "shot.png"
    r = studio("--screenshot", out, "--model", "synth", fsize=4096, timeout=170)
    assert_one_line(r.returncode, r.stderr.strip(), f"cannot write {out}: file too large")
    assert not out.exists() and not list(tmp_path.glob(".shot.png*"))


# -- model names -----------------------------------------------------------------------------------
def test_name_with_a_trailing_newline_is_refused(synth, tmp_path, capsys):
    for bad in ("nl\n", "synth\n", "a\nb"):
        with pytest.raises(StudioError, match="invalid model name"):
            store.check_name(bad)
    repo, _ = write_mini_ict(tmp_path / "ict")
    rc, err = run_main(capsys, "models", "import", repo, "--name", "nl\n")
    assert rc == 2 and "invalid model name" in err
    assert sorted(p.name for p in store.models_dir().iterdir() if p.is_dir()) == ["synth"]


# -- processes: the store's lock, temporary folders -------------------------------------------------
# A child that runs the real CLI with two hooks that line up two imports of one name: both read
# the model and pass the early "exists?" check, then both go for the store together. The second
# wait gives up after a moment, because with the lock in place the sibling never arrives: it waits
# for the lock (the outcome does not depend on that moment; only the old race needed it).
RACE = r"""
import os, sys, time
from pathlib import Path
import studio.jobs.models as jobs
from studio.core import store
barrier, n = Path(sys.argv[1]), int(sys.argv[2])
def meet(step, patience):
    (barrier / f"{step}-{os.getpid()}").touch()
    deadline = time.monotonic() + patience
    while len(list(barrier.glob(f"{step}-*"))) < n and time.monotonic() < deadline:
        time.sleep(0.02)
real_import, real_prepare = jobs.import_model, store.prepare
def import_then_meet(*a, **kw):
    model = real_import(*a, **kw)
    meet("imported", 60)
    return model
def prepare_then_meet(*a, **kw):
    folder = real_prepare(*a, **kw)
    meet("prepared", 2)
    return folder
jobs.import_model, store.prepare = import_then_meet, prepare_then_meet
from studio.cli.main import main
sys.exit(main(sys.argv[3:]))
"""

# A child whose ICT import stops, once unpacked into its temporary folder, until it is signalled.
STALL = r"""
import sys, time
from pathlib import Path
import studio.core.importers.ict as ict
def stall(folder, *a, **kw):
    Path(sys.argv[1]).touch()
    time.sleep(300)
ict._load_folder = stall
from studio.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def child(code, *args, env=None):
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def wait_for(path: Path, proc) -> None:
    deadline = time.monotonic() + WAIT_S
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the child never got there"
        time.sleep(0.05)


def test_two_imports_of_one_name_cannot_both_win(tmp_path, studio_home):
    repo, _ = write_mini_ict(tmp_path / "ict")
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [child(RACE, barrier, 2, "models", "import", repo, "--name", "twin") for _ in range(2)]
    try:
        results = [p.communicate(timeout=WAIT_S) for p in procs]
    finally:
        for p in procs:
            p.kill()
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], results
    err = next(e for p, (_, e) in zip(procs, results) if p.returncode == 2).strip()
    assert "model named 'twin' exists already" in err and "--force" in err and len(err.splitlines()) == 1
    assert store.names() == ["twin"] and load_model(store.model_file("twin")).name == "twin"


def test_forced_imports_of_one_name_both_succeed(tmp_path, studio_home):
    repo, _ = write_mini_ict(tmp_path / "ict")
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [child(RACE, barrier, 2, "models", "import", repo, "--name", "twin", "--force") for _ in range(2)]
    results = [p.communicate(timeout=WAIT_S) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert store.names() == ["twin"] and load_model(store.model_file("twin")).name == "twin"


@pytest.fixture
def ict_tar(tmp_path):
    repo, _ = write_mini_ict(tmp_path / "ICT-FaceKit-master")
    path = tmp_path / "ict.tar.gz"
    with tarfile.open(path, "w:gz") as t:
        t.add(repo, arcname=repo.name)
    return path


def studio_temp_folders(tmp: Path) -> list[Path]:
    return sorted(tmp.glob("studio-*"))


def stalled_import(tmp_path: Path, ict_tar):
    """An ICT import that stops once it has unpacked, with a TMPDIR of its own:
    (that folder, the file it touches when ready, the process)."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    ready = tmp_path / "ready"
    p = child(STALL, ready, "models", "import", ict_tar, "--name", "mini", env={"TMPDIR": str(tmp)})
    return tmp, ready, p


def test_sigterm_during_an_import_removes_its_temporary_folder(tmp_path, ict_tar):
    tmp, ready, p = stalled_import(tmp_path, ict_tar)
    try:
        wait_for(ready, p)
        assert [f.name.startswith(f"studio-ict-p{p.pid}-") for f in studio_temp_folders(tmp)] == [True]
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=WAIT_S)
    finally:
        p.kill()
    assert p.returncode == 128 + signal.SIGTERM and err.strip() == "studio: terminated"
    assert studio_temp_folders(tmp) == [] and store.names() == []


def test_folders_of_killed_imports_are_swept_at_start_up(tmp_path, ict_tar):
    tmp, ready, p = stalled_import(tmp_path, ict_tar)
    try:
        wait_for(ready, p)
    finally:
        p.kill()  # SIGKILL: no cleanup runs
        p.communicate(timeout=WAIT_S)
    killed = studio_temp_folders(tmp)
    assert len(killed) == 1 and (killed[0] / "FaceXModel").is_dir()
    mine = tmp / f"studio-ict-p{os.getpid()}-alive"  # a live owner: kept
    other = tmp / "studio-notes"  # not one of ours: kept
    mine.mkdir()
    other.mkdir()
    r = studio("models", "list", env={"TMPDIR": str(tmp)})
    assert r.returncode == 0, r.stderr
    assert studio_temp_folders(tmp) == [mine, other]


def test_sweep_removes_only_dead_owners_and_old_legacy_folders(tmp_path):
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(done.stdout)
    gone = [tmp_path / f"studio-ict-p{dead}-abc", tmp_path / "studio-ict-a1b2c3d4"]
    kept = [tmp_path / f"studio-ict-p{os.getpid()}-abc", tmp_path / "studio-ict-z9y8x7w6", tmp_path / "studio-x"]
    for d in gone + kept:
        d.mkdir()
        (d / "big.obj").write_text("v 0 0 0\n")
    old = time.time() - 2 * tempdirs.LEGACY_AGE_S
    os.utime(gone[1], (old, old))
    assert sorted(tempdirs.sweep_stale(tmp_path)) == sorted(gone)
    assert sorted(tmp_path.iterdir()) == sorted(kept)


def test_temp_folder_is_removed_on_error_and_names_its_owner(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    with pytest.raises(RuntimeError):
        with tempdirs.temp_folder("ict") as d:
            assert d.parent == tmp_path and d.name.startswith(f"studio-ict-p{os.getpid()}-")
            (d / "x").write_text("x")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
