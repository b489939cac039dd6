"""What each latent direction of the neural head does, in the words of ``direction_labels``.

A linear model's direction is a per-vertex displacement, so its landmarks move exactly and its
labels are computed when the window opens. The neural head has no fixed mesh and no landmark
vertices: every identity is its own marching-cubes surface. So the measuring is done once, offline
(``python -m studio.core.neural.labels checkpoints/neural``), and shipped as a small table beside
the checkpoint (``direction_labels.json``); the window only reads it.

* identity direction i: the heads at ±``ID_STEP``σ along it are extracted (``RESOLUTION``³), their
  iBUG-68 landmarks found as the scan fitter finds the mean head's (a grey-relief render, MediaPipe
  Face Mesh, lifted back onto the surface: ``rigid.model_landmarks``), and the anthropometric
  measures of ``direction_labels.MEASURES`` plus the head length taken on both; the change per +1σ
  is their central difference;
* expression direction j: the mean head's landmarks are moved by the expression field itself
  (a forward deformation: exact correspondences, no detection) at ±``EX_STEP``σ and measured with
  ``direction_labels.EXPRESSION_MEASURES`` (jaw drop, mouth opening and width, brow height, eye
  opening).

The table records the per-σ changes, not the words, so the words follow ``direction_labels.described``
(the same rules as the linear models'). It carries a fingerprint of the latent directions: a table
that does not belong to the checkpoint (another training run, other sizes) is ignored, and the
sliders keep their plain names.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from studio.core import atomic, jsonio
from studio.core.errors import StudioError
from studio.core.facemodel import Mesh, ParamGroup

if TYPE_CHECKING:
    from studio.core.direction_labels import DirectionLabel
    from studio.core.neural.facemodel import NeuralFaceModel

TABLE_NAME = "direction_labels.json"
FORMAT = "studio-neural-direction-labels"
VERSION = 1
# σ along an identity direction at which heads are measured: the slope is the least-squares fit
# through them. Detection repeats to 0.3-0.6 mm (std of a measure over near-identical heads), so
# the slope is good to ~0.1 mm per σ; changes below NOISE_FACTOR × that are not named.
ID_STEPS = (-3.0, -1.5, 1.5, 3.0)
NOISE_PROBES = 6  # near-identical heads (±0.05σ) whose spread estimates the detection noise
NOISE_FACTOR = 2.0
EX_STEP = 1.0
RESOLUTION = 128


def fingerprint(model: NeuralFaceModel) -> str:
    """Identifies the latent directions (and so the sliders) the table was measured for."""
    h = hashlib.sha256()
    for a in (model.id_mean, model.id_dirs, model.id_sigmas, model.ex_dirs, model.ex_sigmas):
        h.update(np.ascontiguousarray(a, np.float32).tobytes())
    return h.hexdigest()[:16]


def table_path(model: NeuralFaceModel) -> Path | None:
    src = model.meta.source
    return Path(src).parent / TABLE_NAME if src else None


def _landmarks(mesh) -> np.ndarray | None:
    """iBUG-68 points (mm) on a neural mesh, or None when no face is found on its render."""
    from studio.core.fitting import rigid
    from studio.core.geometry import vertex_normals
    from studio.core.photo.landmarks import ibug68_from_mediapipe

    v = np.asarray(mesh.vertices, float)
    f = np.asarray(mesh.faces, np.int64)
    found = rigid.model_landmarks(v, f, vertex_normals(v, f))
    if found is None or not found.valid.all():
        return None
    return ibug68_from_mediapipe(np.vstack([found.points, np.full((10, 3), np.nan)]))


def _head_length(vertices: np.ndarray, chin_y: float) -> float:
    """Front to back over the head above the chin (the shoulders are below it)."""
    v = np.asarray(vertices, float)
    z = v[v[:, 1] > chin_y, 2]
    return float(z.max() - z.min())


def _moved(zeros, group: str, i: int, s: float):
    p = {k: v.copy() for k, v in zeros.items()}
    p[group][i] = s
    return p


def compute_table(model: NeuralFaceModel, progress=None, only: tuple[str, ...] = ("identity", "expression"),
                  previous: dict | None = None) -> dict:
    """Measure every identity and expression direction of a ``NeuralFaceModel`` (the identity group
    takes minutes: four extractions and detections per direction). ``only`` with ``previous``:
    measure those groups again and keep the others from ``previous``."""
    say = progress or (lambda msg: None)
    mean = model.mesh(model.zeros(), RESOLUTION)
    lm0 = _landmarks(mean)
    if lm0 is None:
        raise StudioError("no face found on the neural head's mean surface")
    groups = dict((previous or {}).get("groups", {}))
    if "identity" in only:
        groups["identity"] = _identity_group(model, mean, lm0, say)
    if "expression" in only:
        groups["expression"] = _expression_group(model, mean, lm0)
        say(f"expression: {len(model.ex_sigmas)} directions")
    return {"format": FORMAT, "version": VERSION, "fingerprint": fingerprint(model), "resolution": RESOLUTION,
            "unit": "mm", "groups": groups}


def _identity_group(model: NeuralFaceModel, mean: Mesh, lm0: np.ndarray, say) -> dict:
    """Detection at ``ID_STEPS``; a least-squares slope per measure."""
    from studio.core.direction_labels import HEAD_LENGTH, MEASURES, _measures

    zeros = model.zeros()

    def measured(p):
        mesh = model.mesh(p, RESOLUTION)
        lm = _landmarks(mesh)
        found = lm is not None
        if lm is None:  # no face detected: the mean's landmarks, moved to the nearest vertex
            from scipy.spatial import cKDTree

            lm = np.asarray(mesh.vertices, float)[cKDTree(mesh.vertices).query(lm0)[1]]
        return found, np.append(_measures(lm, np.asarray(0.0))[:-1], _head_length(mesh.vertices, lm[8, 1]))

    base = np.append(_measures(lm0, np.asarray(0.0))[:-1], _head_length(mean.vertices, lm0[8, 1]))
    rng = np.random.default_rng(0)
    k = len(model.id_sigmas)
    probes = [measured(_moved(zeros, "identity", int(rng.integers(k)), float(rng.choice([-0.05, 0.05]))))[1]
              for _ in range(NOISE_PROBES)]
    steps = np.asarray(ID_STEPS, float)
    slope_noise = np.std(probes, axis=0, ddof=1) / np.sqrt((steps ** 2).sum())
    rows, detected = [], 0
    for i in range(k):
        vals = []
        for s in steps:
            ok, m = measured(_moved(zeros, "identity", i, float(s)))
            detected += ok
            vals.append(m)
        rows.append(steps @ (np.asarray(vals) - base) / (steps ** 2).sum())
        say(f"identity {i + 1}/{k}")
    return {"measures": list(MEASURES) + [HEAD_LENGTH], "base": base.tolist(),
            "delta": np.round(rows, 5).tolist(), "noise": np.round(slope_noise, 5).tolist(),
            "steps_sigma": list(ID_STEPS), "detected": f"{detected} of {len(steps) * k} heads"}


def _expression_group(model: NeuralFaceModel, mean: Mesh, lm0: np.ndarray) -> dict:
    """The forward field carries the mean's landmarks (and vertices) exactly: central differences,
    and the largest vertex displacement per σ."""
    from studio.core.direction_labels import EXPRESSION_MEASURES, _measures

    zeros = model.zeros()
    z_id, _ = model.latents(zeros)
    x0 = (lm0 - model.center) / model.scale
    v0 = (np.asarray(mean.vertices, float) - model.center) / model.scale
    base = _measures(lm0, np.asarray(0.0), EXPRESSION_MEASURES)[:-1]
    rows, moves = [], []
    for j in range(len(model.ex_sigmas)):
        sides, disp = [], []
        for s in (EX_STEP, -EX_STEP):
            _, z_ex = model.latents(_moved(zeros, "expression", j, s))
            lm = lm0 + model.deform(x0, z_ex, z_id).astype(float) * model.scale
            sides.append(_measures(lm, np.asarray(0.0), EXPRESSION_MEASURES)[:-1])
            disp.append(model.deform(v0, z_ex, z_id).astype(float) * model.scale)
        rows.append((sides[0] - sides[1]) / (2 * EX_STEP))
        moves.append(float(np.linalg.norm((disp[0] - disp[1]) / (2 * EX_STEP), axis=1).max()))
    return {"measures": list(EXPRESSION_MEASURES), "base": base.tolist(), "delta": np.round(rows, 5).tolist(),
            "noise": [0.0] * len(EXPRESSION_MEASURES), "max_move_mm": np.round(moves, 3).tolist(),
            "steps_sigma": [-EX_STEP, EX_STEP], "detected": "exact (the expression field moves the mean's landmarks)"}


def shipped_labels(model: NeuralFaceModel, group: ParamGroup) -> list[DirectionLabel]:
    """The labels of ``group`` from the table beside the model's checkpoint; plain names when there
    is no table, or one measured for other directions."""
    from studio.core.direction_labels import DirectionLabel, described

    plain = [DirectionLabel(n, n, ()) for n in group.names]
    path = table_path(model)
    if path is None or not path.is_file():
        return plain
    try:
        t = jsonio.expect(jsonio.read(path), dict, str(path))
        g = t["groups"][group.name]
        names = [str(n) for n in g["measures"]]
        base = np.asarray(g["base"], float)
        delta = np.asarray(g["delta"], float)
        noise = np.asarray(g.get("noise", np.zeros(len(names))), float)
        moves = g.get("max_move_mm")
        moves = None if moves is None else np.asarray(moves, float).reshape(group.size)
    except (StudioError, KeyError, TypeError, ValueError):
        return plain
    if (t.get("format") != FORMAT or t.get("fingerprint") != fingerprint(model)
            or delta.shape != (group.size, len(names)) or base.shape != (len(names),)
            or noise.shape != (len(names),)
            or not (np.isfinite(delta).all() and np.isfinite(base).all() and np.isfinite(noise).all())):
        return plain
    # a change within the detection's noise is not a change this direction can be named for
    out = described(group.names, names, base, np.where(np.abs(delta) > NOISE_FACTOR * noise, delta, 0.0))
    for k, lab in enumerate(out):
        if not lab.changes:  # no measure moves: say so rather than show a bare number
            how = (f"barely moves (≤ {moves[k]:.2f} mm per σ)" if moves is not None and np.isfinite(moves[k])
                   else "no measured change")
            out[k] = DirectionLabel(lab.name, f"{lab.name} · {how}", ())
    return out


def main(argv=None) -> int:
    """``python -m studio.core.neural.labels CHECKPOINT_FOLDER [--only identity|expression]``:
    measure and write the table (``--only``: that group again, the other kept from the table)."""
    import json

    from studio.core import threads
    from studio.core.neural.facemodel import load_neural

    args = list(sys.argv[1:] if argv is None else argv)
    only: tuple[str, ...] = ("identity", "expression")
    if "--only" in args:
        i = args.index("--only")
        only = (args[i + 1],)
        del args[i:i + 2]
    folder = Path(args[0] if args else "checkpoints/neural")
    model = load_neural(folder)
    threads.ensure()
    out = folder / TABLE_NAME
    previous = jsonio.read(out) if len(only) == 1 and out.is_file() else None
    table = compute_table(model, progress=lambda m: print(m, file=sys.stderr, flush=True), only=only,
                          previous=previous)
    atomic.write_text(out, json.dumps(table, indent=1) + "\n", force=True)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
