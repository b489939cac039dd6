"""Turning parameters into display-ready arrays; runs ONLY on the worker thread (no Qt here).

The viewport needs vertices, smooth normals and (when the model has them) vertex colours. A PCA
model's IncrementalEvaluator keeps the current vertices and updates them in O(n) per changed
coefficient; the evaluator is stateful and not thread-safe, so exactly one MeshEvaluator owns it
and only the JobRunner's thread calls it. Requests carry full parameter snapshots (not deltas):
with latest-wins dropping, the worker diffs the request against what its evaluator holds, so a
dropped intermediate request can never leave the mesh out of step.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from studio.core import prior
from studio.core.facemodel import FaceModel, Params
from studio.core.geometry.normals import FaceTopology

# Up to this many changed coefficients are applied as O(n) updates; more means a full evaluation
# (mean + Σ over all components) is about as cheap and has no round-off drift.
MAX_INCREMENTAL = 8


@dataclass
class EvalRequest:
    serial: int
    model: Any
    params: Params  # a private snapshot: the UI thread never mutates it after sending
    t_request: float = field(default_factory=time.perf_counter)
    preview: bool = False  # a slider is being dragged: models whose preview_mesh() is coarser use it


@dataclass
class EvalResult:
    serial: int
    model: Any
    params: Params
    vertices: np.ndarray  # (n, 3) float32, a copy owned by the receiver
    normals: np.ndarray  # (n, 3) float32 unit vertex normals
    colors: np.ndarray | None  # (n, 3) float32 in [0, 1], or None when the model has no colours
    neg_log_prior: float
    readout: dict  # prior.readout: what the plausibility line says (computed here, off the UI thread)
    incremental: bool
    t_request: float
    t_done: float
    faces: np.ndarray | None = None  # set for models whose topology changes (neural): the triangles
    preview: bool = False  # the coarse preview mesh (the viewport shows a "preview" badge)


class MeshEvaluator:
    """Owns the per-model evaluation state; one instance, used from the worker thread only."""

    def __init__(self):
        self.model = None
        self._ev = None  # IncrementalEvaluator for PCA models, else None (full model.mesh())
        self._topology = None  # the triangles indexed once, for area-weighted normals
        self._colors = None
        self._color_params: Params | None = None
        self.full_evaluations = 0
        self.incremental_evaluations = 0
        self.threads: set[int] = set()  # which threads called evaluate() (the tests check: one)

    def _bind(self, model: FaceModel) -> None:
        self.model = model
        linear = model.as_linear()
        self._ev = linear.evaluator() if linear is not None else None
        self._colors = None
        self._color_params = None
        if not model.fixed_topology or linear is None:  # the topology comes with each mesh (neural models)
            self._faces = None
            return
        self._bind_faces(np.asarray(linear.faces), linear.n_vertices)

    def _bind_faces(self, faces: np.ndarray, n: int) -> None:
        faces = np.asarray(faces, np.int64)
        self._faces = faces
        self._topology = FaceTopology(faces, n)

    def evaluate(self, req: EvalRequest) -> EvalResult:
        self.threads.add(threading.get_ident())
        model = req.model
        if model is not self.model:
            self._bind(model)
        incremental = preview = False
        given_normals = None  # a model's own normals (the neural head's SDF gradient), else the triangles'
        if self._ev is not None:
            verts, incremental = self._pca_vertices(req.params)
            colors = self._pca_colors(req.params)
        else:
            preview = req.preview and model.has_preview
            mesh = model.preview_mesh(req.params) if preview else model.mesh(req.params)
            verts = np.asarray(mesh.vertices, np.float32)
            given_normals = mesh.normals
            colors = None if mesh.colors is None else np.asarray(mesh.colors, np.float32)[:, :3]
            if (self._faces is None or len(mesh.faces) != len(self._faces)
                    or not np.array_equal(mesh.faces, self._faces)):
                self._bind_faces(mesh.faces, len(verts))
            self.full_evaluations += 1
        verts = np.array(verts, np.float32, copy=True)  # the evaluator keeps mutating its own array
        normals = self._topology.normals(verts) if given_normals is None else np.asarray(given_normals, np.float32)
        nlp = -prior.log_prior(model.groups, req.params)
        return EvalResult(req.serial, model, req.params, verts, normals, colors, nlp,
                          prior.readout(model.groups, req.params),
                          incremental, req.t_request, time.perf_counter(),
                          None if self._ev is not None else self._faces, preview)

    def _pca_vertices(self, params: Params) -> tuple[np.ndarray, bool]:
        ev = self._ev
        changed = []
        for g in self.model.groups:
            if g.affects != "position":
                continue
            new = params[g.name]
            for i in np.flatnonzero(ev.params[g.name] != new):
                changed.append((g.name, int(i), float(new[i])))
                if len(changed) > MAX_INCREMENTAL:
                    break
        if not changed:
            return ev.vertices, False
        if len(changed) <= MAX_INCREMENTAL:
            for name, i, value in changed:
                ev.set(name, i, value)
            self.incremental_evaluations += 1
            return ev.vertices, True
        ev.set_params(params)
        self.full_evaluations += 1
        return ev.vertices, False

    def _pca_colors(self, params: Params) -> np.ndarray | None:
        model = self.model
        if not model.has_colors:
            return None
        names = [g.name for g in model.groups if g.affects == "color"]
        if self._colors is None or any(not np.array_equal(self._color_params[n], params[n]) for n in names):
            self._colors = np.asarray(model.colors(params), np.float32)
            self._color_params = {n: params[n].copy() for n in names}
        return self._colors


def format_plausibility(res: EvalResult) -> str:
    """The one-line readout under the parameter tabs (core/prior.readout says what each part means)."""
    if math.isinf(res.neg_log_prior):
        return "Implausible: a blendshape weight is outside its range"
    r = res.readout
    parts = [f"Typical of {_percent(r['typical_percent'])} of faces"]
    e = r["extreme"]
    if e is not None:
        parts.append(f"{e['name']} {e['sigma']:+.1f}σ (1 in {_count(e['one_in'])})")
    if r["expression_opposed"]:
        a, b = r["expression_opposed"][0]
        parts.append(f"{a} with {b}: no face does both")
    elif r["expression_active"]:
        parts.append(f"{r['expression_active']} blendshape{'s' if r['expression_active'] > 1 else ''} on")
    return "  ·  ".join(parts)


PLAUSIBILITY_TIP = ("Typical of N % of faces: the share of faces drawn from the model's prior that lie further from "
                    "the mean face than this one, over all shape components together (100 % at the mean, about "
                    "50 % for an ordinary face).\nThen the most unusual single component and how rare a face is "
                    "that lies at least that far along it, and the expression: blendshapes on, or two that "
                    "oppose each other (which no face does).")


def _percent(p: float) -> str:
    return "<0.1 %" if p < 0.1 else (f"{p:.0f} %" if p >= 1 else f"{p:.1f} %")


def _count(n: float) -> str:
    return f"{n:,.0f}" if n < 1e6 else f"{n:.1e}"
