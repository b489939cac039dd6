"""glTF 2.0 binary (.glb) export, optionally with the model's components as morph targets.

glTF stores one set of attributes per vertex, so a vertex with different texture coordinates on
different triangles (a UV seam) has to become several glTF vertices. ``split_seams`` does that and
keeps the map back to model vertices; everything per-vertex (positions, normals, colours, morph
deltas) is computed on model vertices first and then gathered through that map, which keeps
normals smooth across seams and makes the split trivially reversible.

glTF lengths are metres (spec §3.4), so positions and morph deltas are multiplied by ``scale``
(model unit → metres). Vertex colours are linear in glTF, while model colours are sRGB-encoded
like the PLY/OBJ colours, so they are converted on the way out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

import numpy as np
import pygltflib as gl

from studio.core.errors import StudioError
from studio.core.facemodel import FaceModel

if TYPE_CHECKING:
    from studio.core.export import MeshArrays
from studio.core.geometry import vertex_normals

# glTF enums (spec §5): component types and buffer-view targets.
_FLOAT, _UINT = 5126, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963


@dataclass
class MorphTarget:
    """One model component exported as a glTF morph target."""

    name: str  # "<group>.<component name>", shown as the slider name in Blender / three.js
    delta: np.ndarray  # (n, 3) per model vertex, in model units (a σ-scaled basis vector)
    weight: float  # the component's current coefficient, so the default pose is the exported face


def morph_targets_from_model(model: FaceModel | None, params: Mapping[str, np.ndarray] | None, k: int,
                             n_vertices: int) -> list[MorphTarget]:
    """Pick the components to export as morph targets.

    Normal-prior groups (PCA shape, and expression for BFM/FLAME-style models) are ordered by
    variance, so their first ``k`` components carry most of the variation; box-prior groups are
    named blendshapes (jawOpen, …) where every one matters, so all of them are included.
    Colour groups cannot be morph targets (glTF only morphs positions, normals and tangents).
    """
    linear = model.as_linear() if model is not None else None
    if linear is None:
        raise StudioError("morph targets need a linear (PCA) model; pass the model that made the mesh")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise StudioError(f"morph_targets must be a whole number ≥ 0, got {k!r}")
    if linear.n_vertices != n_vertices:
        raise StudioError(f"the mesh has {n_vertices} vertices but model '{linear.name}' has "
                          f"{linear.n_vertices}; morph targets need the model's own mesh")
    params = linear.check(params or {})
    out: list[MorphTarget] = []
    for lg in linear.linear:
        g = lg.group
        if g.affects != "position":
            continue
        count = g.size if g.prior == "box" else min(int(k), g.size)
        for i in range(count):
            out.append(MorphTarget(f"{g.name}.{g.names[i]}", lg.basis[i], float(params[g.name][i])))
    return out


def split_seams(faces: np.ndarray, face_uv: np.ndarray | None, n_vertices: int,
                n_uv: int = 0) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Split vertices so that each glTF vertex has exactly one texture coordinate.

    Returns ``(source, uv_index, new_faces)``: for every glTF vertex the model vertex it copies
    and its uv index (-1: vertex used by no triangle, so it has none), and the triangles
    re-indexed into glTF vertices. Without UVs nothing is split (identity map).

    Each (vertex, uv) corner pair is encoded as one int64 key ``vertex·(t+1) + uv+1`` so a single
    1-D ``np.unique`` does the work; sorted keys put the copies of a vertex next to each other in
    model order. Vertices no triangle uses are kept (key with uv −1) so that every model vertex
    survives the export.
    """
    if face_uv is None:
        return np.arange(n_vertices), None, faces
    stride = np.int64(n_uv + 1)
    corner_keys = faces.astype(np.int64).ravel() * stride + (face_uv.astype(np.int64).ravel() + 1)
    used = np.zeros(n_vertices, dtype=bool)
    used[faces.ravel()] = True
    unused_keys = np.flatnonzero(~used).astype(np.int64) * stride
    keys, inverse = np.unique(np.concatenate([corner_keys, unused_keys]), return_inverse=True)
    new_faces = inverse[: corner_keys.size].reshape(faces.shape)
    return keys // stride, keys % stride - 1, new_faces


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """The sRGB transfer function inverted (IEC 61966-2-1)."""
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


class _BufferBuilder:
    """Collects arrays into one GLB binary chunk: one buffer view per accessor, 4-byte aligned."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.views: list[gl.BufferView] = []
        self.accessors: list[gl.Accessor] = []

    def add(self, data: np.ndarray, kind: str, target: int, bounds: bool = False) -> int:
        """Append ``data`` (float32 rows or uint32 scalars) and return its accessor index."""
        raw = np.ascontiguousarray(data).tobytes()
        self.views.append(gl.BufferView(buffer=0, byteOffset=self.size, byteLength=len(raw), target=target))
        pad = -len(raw) % 4  # every component is 4 bytes, but keep the invariant explicit
        self.chunks += [raw, b"\0" * pad]
        self.size += len(raw) + pad
        component = _UINT if data.dtype == np.uint32 else _FLOAT
        acc = gl.Accessor(bufferView=len(self.views) - 1, componentType=component, count=int(data.shape[0]),
                          type=kind)
        if bounds:
            # From the float32 values as stored: the validator compares them exactly.
            acc.min = data.min(axis=0).astype(np.float64).tolist()
            acc.max = data.max(axis=0).astype(np.float64).tolist()
        self.accessors.append(acc)
        return len(self.accessors) - 1

    def blob(self) -> bytes:
        return b"".join(self.chunks)


def glb_bytes(a: MeshArrays, scale: float = 1.0, targets: list[MorphTarget] | None = None, name: str = "face",
              copyright: str = "") -> bytes:
    """Build the GLB file for ``a`` (a checked ``export.MeshArrays``) and return its bytes."""
    targets = targets or []
    n = a.vertices.shape[0]
    source, uv_index, faces = split_seams(a.faces, a.face_uv, n, 0 if a.uv is None else a.uv.shape[0])

    # Base pose = instance − Σ wᵢ·Δᵢ, so that glTF's default (base + Σ wᵢ·Δᵢ with mesh.weights) is
    # exactly the exported face while every slider still moves from the right place.
    base = a.vertices.copy()
    for t in targets:
        if t.weight != 0.0:
            base -= t.weight * np.asarray(t.delta, dtype=np.float64)

    buf = _BufferBuilder()
    attrs = gl.Attributes(POSITION=buf.add(_f32(base[source] * scale), "VEC3", _ARRAY_BUFFER, bounds=True))
    # Normals of the face as exported (the default pose), computed before the split so seams stay smooth.
    attrs.NORMAL = buf.add(_f32(vertex_normals(a.vertices, a.faces)[source]), "VEC3", _ARRAY_BUFFER)
    if uv_index is not None and a.uv is not None:
        uv = np.zeros((len(source), 2))
        has = uv_index >= 0
        uv[has] = a.uv[uv_index[has]]
        uv[:, 1] = 1.0 - uv[:, 1]  # OBJ puts v=0 at the bottom of the image, glTF at the top
        attrs.TEXCOORD_0 = buf.add(_f32(uv), "VEC2", _ARRAY_BUFFER)
    if a.colors is not None:
        attrs.COLOR_0 = buf.add(_f32(srgb_to_linear(a.colors)[source]), "VEC3", _ARRAY_BUFFER)

    target_attrs = []
    for t in targets:
        delta = _f32(np.asarray(t.delta, dtype=np.float64)[source] * scale)
        # POSITION targets need min/max (glTF spec 3.7.2.2; the validator insists).
        target_attrs.append(gl.Attributes(POSITION=buf.add(delta, "VEC3", _ARRAY_BUFFER, bounds=True)))

    # One primitive per material (they share the vertex accessors), or one for the whole face.
    if a.face_material is not None:
        groups = [(name_, np.flatnonzero(a.face_material == k)) for k, name_ in enumerate(a.materials)]
        groups = [(m, sel) for m, sel in groups if sel.size]
    else:
        groups = [("skin", np.arange(len(faces)))]
    primitives: list[gl.Primitive] = []
    materials: list[gl.Material] = []
    for mat_name, sel in groups:
        indices = buf.add(faces[sel].astype(np.uint32).reshape(-1), "SCALAR", _ELEMENT_ARRAY_BUFFER)
        primitives.append(gl.Primitive(attributes=attrs, indices=indices, material=len(materials),
                                       mode=gl.TRIANGLES, targets=list(target_attrs)))
        # glTF's default material is fully metallic (looks black in most viewers): ask for a
        # dielectric, fairly rough surface; COLOR_0 multiplies the white base colour.
        materials.append(gl.Material(name=mat_name, pbrMetallicRoughness=gl.PbrMetallicRoughness(
            baseColorFactor=[1.0, 1.0, 1.0, 1.0], metallicFactor=0.0, roughnessFactor=0.7)))

    mesh = gl.Mesh(name=name, primitives=primitives)
    if targets:
        mesh.weights = [t.weight for t in targets]
        # Not in the core spec, but the convention Blender and three.js read for slider names.
        mesh.extras = {"targetNames": [t.name for t in targets]}

    blob = buf.blob()
    gltf = gl.GLTF2(
        asset=gl.Asset(version="2.0", generator="Face Studio", copyright=copyright or None),
        scene=0, scenes=[gl.Scene(nodes=[0])], nodes=[gl.Node(name=name, mesh=0)], meshes=[mesh],
        materials=materials, accessors=buf.accessors, bufferViews=buf.views,
        buffers=[gl.Buffer(byteLength=len(blob))])
    gltf.set_binary_blob(blob)
    return b"".join(gltf.save_to_bytes())


def _f32(x: np.ndarray) -> np.ndarray:
    """float32 for the file, refusing non-finite values (they are invalid JSON bounds and glTF data)."""
    out = np.ascontiguousarray(x, dtype=np.float32)
    if not np.all(np.isfinite(out)):
        raise StudioError("the mesh has values too large for a glTF file (float32 overflow)")
    return out
