"""Jobs that make files from faces: sample, export, interpolate (meshes, parameters, GIFs)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from studio.core import params as params_io
from studio.core.atomic import atomic_path, check_writable, ensure_folder
from studio.core.errors import StudioError
from studio.core.export import export_mesh
from studio.core.interpolate import lerp
from studio.core.progress import report
from studio.core.render import render

MESH_FORMATS = ("obj", "ply", "stl", "glb")


def export_face(model, params: Mapping[str, np.ndarray], path: str | Path, force: bool = False,
                morph_targets: int | None = None) -> Path:
    """One face to one file; the format comes from the extension (.json writes the parameters)."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return params_io.save(path, model.name, params, force)
    mesh = model.mesh(params)
    if morph_targets is not None and path.suffix.lower() != ".glb":
        raise StudioError("--morph-targets needs a .glb output")
    if morph_targets is not None and model.as_linear() is None:
        raise StudioError("morph targets are only available for linear (PCA) models")
    return export_mesh(mesh, path, force, model=model, params=params, morph_targets=morph_targets,
                       unit=model.meta.unit)


def _outputs(out_dir: Path, stems: Sequence[str], fmt: str, force: bool) -> list[tuple[Path, Path]]:
    """Plan every output file first, so a refusal happens before anything is written."""
    if fmt not in MESH_FORMATS:
        raise StudioError(f"unknown mesh format '{fmt}' (choose from {', '.join(MESH_FORMATS)})")
    ensure_folder(out_dir)
    plan = [(out_dir / f"{s}.{fmt}", out_dir / f"{s}.json") for s in stems]
    for pair in plan:
        for p in pair:
            check_writable(p, force)
    return plan


def sample_job(model, out_dir: str | Path, count: int = 1, seed: int | None = None, scale: float = 1.0,
               fmt: str = "obj", force: bool = False, morph_targets: int | None = None,
               progress=None) -> list[Path]:
    if count < 1:
        raise StudioError("--count must be at least 1")
    if not np.isfinite(scale) or scale < 0:
        raise StudioError("--scale must be a non-negative number")
    rng = np.random.default_rng(seed)
    plan = _outputs(Path(out_dir), [f"face_{i:03d}" for i in range(count)], fmt, force)
    written = []
    for i, (mesh_path, json_path) in enumerate(plan):
        p = model.sample(rng, scale)
        export_face(model, p, mesh_path, force, morph_targets)
        params_io.save(json_path, model.name, p, force, seed=seed, index=i, scale=scale)
        written.append(mesh_path)
        report(progress, (i + 1) / count, f"wrote {mesh_path.name}")
    return written


def interpolate_job(model, a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], out_dir: str | Path,
                    steps: int = 5, fmt: str = "obj", gif: str | Path | None = None, force: bool = False,
                    size: int = 256, fps: float = 10.0, progress=None) -> list[Path]:
    if steps < 2:
        raise StudioError("--steps must be at least 2")
    ts = np.linspace(0.0, 1.0, steps)
    plan = _outputs(Path(out_dir), [f"frame_{i:03d}" for i in range(steps)], fmt, force)
    if gif is not None:
        check_writable(gif, force)
    frames, written, framing = [], [], None
    for i, (t, (mesh_path, json_path)) in enumerate(zip(ts, plan)):
        p = lerp(a, b, float(t))
        export_face(model, p, mesh_path, force)
        params_io.save(json_path, model.name, p, force, t=float(t))
        written.append(mesh_path)
        if gif is not None:
            mesh = model.mesh(p)
            if framing is None:  # frame on the first face so the sequence does not jump
                c = (mesh.vertices.min(0) + mesh.vertices.max(0)) / 2
                framing = (c, float(np.linalg.norm(mesh.vertices - c, axis=1).max()) * 1.05)
            frames.append(render(mesh.vertices, mesh.faces, mesh.colors, size, yaw=20.0, frame=framing))
        report(progress, (i + 1) / steps, f"wrote {mesh_path.name}")
    if gif is not None:
        write_animation(gif, frames + frames[-2:0:-1], fps, force)  # ping-pong loop
        written.append(Path(gif))
    return written


def write_animation(path: str | Path, frames: Sequence[np.ndarray], fps: float, force: bool = False) -> Path:
    import imageio.v3 as iio

    path = Path(path)
    ext = path.suffix.lower()
    if ext not in (".gif", ".mp4"):
        raise StudioError(f"animation must be .gif or .mp4, not '{ext or path.name}'")
    with atomic_path(path, force) as tmp:
        if ext == ".gif":
            iio.imwrite(tmp, np.stack(frames), extension=".gif", duration=1000.0 / fps, loop=0)
        else:
            try:
                iio.imwrite(tmp, np.stack(frames), extension=".mp4", fps=fps)
            except Exception as e:  # imageio-ffmpeg missing or codec failure
                raise StudioError(f"cannot write MP4 ({e.__class__.__name__}); write a .gif instead") from None
    return path
