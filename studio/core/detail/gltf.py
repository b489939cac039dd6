"""A normal map in a GLB: TANGENT per vertex, the PNG as an embedded image, ``normalTexture`` on the
materials that carry detail.

The GLB is built by the ordinary exporter (export_gltf.py) and then extended here, so the exporter
stays one function for every mesh. Tangents follow normalmap.py, which encodes the map in the
very frame a viewer rebuilds from them (glTF §3.9.3: B = (N × T)·w, +Y up the image).
"""

from __future__ import annotations

import numpy as np
import pygltflib as gl

from studio.core.detail.normalmap import orthonormal_tangents, uv_tangents
from studio.core.errors import StudioError
from studio.core.geometry import vertex_normals

_FLOAT, _ARRAY_BUFFER = 5126, 34962
_LINEAR, _LINEAR_MIPMAP_LINEAR, _CLAMP = 9729, 9987, 33071


def gltf_tangents(arrays) -> np.ndarray:
    """(glTF vertices, 4) tangents in the vertex order ``export_gltf.glb_bytes`` writes for ``arrays``."""
    from studio.core.export_gltf import split_seams

    if arrays.uv is None or arrays.face_uv is None:
        raise StudioError("the mesh has no UV layout; a normal map needs one")
    n = arrays.vertices.shape[0]
    source, uv_index, _ = split_seams(arrays.faces, arrays.face_uv, n, arrays.uv.shape[0])
    assert uv_index is not None  # split_seams gives one whenever face_uv is given
    T, B = uv_tangents(arrays.vertices, arrays.faces, arrays.uv, arrays.face_uv)
    has = uv_index >= 0
    t, b = np.zeros((len(source), 3)), np.zeros((len(source), 3))
    t[has], b[has] = T[uv_index[has]], B[uv_index[has]]
    return orthonormal_tangents(t, b, vertex_normals(arrays.vertices, arrays.faces)[source])


def add_normal_map(glb: bytes, png: bytes, tangents: np.ndarray, materials: list[str], scale: float = 1.0) -> bytes:
    """``glb`` with ``tangents`` on every primitive and the normal map ``png`` on the named materials."""
    doc = gl.GLTF2.load_from_bytes(glb)
    blob = bytearray(doc.binary_blob() or b"")

    def view(data: bytes, target=None) -> int:
        blob.extend(b"\0" * (-len(blob) % 4))
        doc.bufferViews.append(gl.BufferView(buffer=0, byteOffset=len(blob), byteLength=len(data), target=target))
        blob.extend(data)
        return len(doc.bufferViews) - 1

    tan = np.ascontiguousarray(tangents, np.float32)
    doc.accessors.append(gl.Accessor(bufferView=view(tan.tobytes(), _ARRAY_BUFFER), componentType=_FLOAT,
                                     count=int(len(tan)), type="VEC4"))
    acc = len(doc.accessors) - 1
    doc.images.append(gl.Image(bufferView=view(png), mimeType="image/png", name="detail normal map"))
    # clamped: the face's UV tile is [0, 1]²; repeating would wrap the chin's texels onto the brow
    doc.samplers.append(gl.Sampler(magFilter=_LINEAR, minFilter=_LINEAR_MIPMAP_LINEAR, wrapS=_CLAMP, wrapT=_CLAMP))
    doc.textures.append(gl.Texture(sampler=len(doc.samplers) - 1, source=len(doc.images) - 1))
    tex = len(doc.textures) - 1
    for mesh in doc.meshes:
        for prim in mesh.primitives:
            prim.attributes.TANGENT = acc
    for mat in doc.materials:
        if mat.name in materials:
            mat.normalTexture = gl.NormalMaterialTexture(index=tex, scale=float(scale))
    blob.extend(b"\0" * (-len(blob) % 4))
    doc.buffers[0].byteLength = len(blob)
    doc.set_binary_blob(bytes(blob))
    return b"".join(doc.save_to_bytes())
