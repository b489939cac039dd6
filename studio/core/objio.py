"""A small, fast Wavefront OBJ reader that keeps the file's vertex order.

Why not trimesh: its OBJ loader splits vertices at UV seams (one vertex per position/UV pair),
so two registered scans with the same topology can come back with different vertex orders
and counts. A morphable model needs the ``v`` lines exactly as written, one row each.

Speed matters because a model import reads every scan (the ICT-FaceKit has 153 OBJs of
~27k vertices): the ``v`` lines are parsed by one ``np.fromstring`` call over their joined
text instead of a Python loop per line. Only ``read_obj`` (used once, for the topology)
walks the face lines in Python.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from studio.core.errors import StudioError


def read_obj_vertices(path, with_colors: bool = False):
    """The ``v`` positions of an OBJ as an (n, 3) float64 array, in file order.

    With ``with_colors`` returns ``(vertices, colors)``: colours come from the non-standard but
    common ``v x y z r g b`` form, as (n, 3) floats in [0, 1], or None when the file has none.
    """
    path = Path(path)
    table = _table(_read(path), b"v", path)
    return _split_vertex_table(table, path, with_colors)


def read_obj(path) -> dict:
    """Vertices plus topology: triangles, UVs, per-triangle material.

    Returns a dict with ``vertices`` (n, 3), ``colors`` (n, 3) or None, ``faces`` (m, 3) int
    (polygons fan-triangulated), ``uv`` (t, 2) or None, ``face_uv`` (m, 3) or None,
    ``face_material`` (m,) or None and ``materials`` (tuple of ``usemtl`` names).
    """
    path = Path(path)
    data = _read(path)
    vertices, colors = _split_vertex_table(_table(data, b"v", path), path, True)
    uv_table = _table(data, b"vt", path, required=False)
    faces, face_uv, face_mat, materials = _faces(data, path)
    n = len(vertices)
    if faces.size and (faces.min() < 0 or faces.max() >= n):
        raise StudioError(f"{path.name}: a face refers to a vertex outside 1..{n}")
    uv = None
    if face_uv is not None:
        if uv_table is None or uv_table.shape[1] < 2:
            raise StudioError(f"{path.name}: faces use texture coordinates but there are no 'vt' lines")
        uv = uv_table[:, :2]
        if face_uv.size and (face_uv.min() < 0 or face_uv.max() >= len(uv)):
            raise StudioError(f"{path.name}: a face refers to a texture coordinate outside 1..{len(uv)}")
    return {"vertices": vertices, "colors": colors, "faces": faces, "uv": uv, "face_uv": face_uv,
            "face_material": face_mat, "materials": materials}


# -- internals ---------------------------------------------------------------------------------

def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise StudioError(f"cannot read {path}: {e.strerror or e}") from None


def _table(data: bytes, tag: bytes, path: Path, required: bool = True) -> np.ndarray | None:
    """All ``<tag> a b c …`` lines as a float64 (rows, columns) table."""
    table = _table_fast(data, tag)
    if table is None:
        table = _table_filtered(data, tag)
    if table is None:
        table = _table_slow(data, tag, path)
    if table is None and required:
        raise StudioError(f"{path.name} has no vertices ('{tag.decode()}' lines); is it an OBJ file?")
    return table


def _table_fast(data: bytes, tag: bytes) -> np.ndarray | None:
    """The common case: the tag's lines form one contiguous block, separated by single spaces.

    Then the block is sliced out whole, the tags blanked, and parsed by one C call. Anything
    unusual (interleaved lines, tabs, comments, ragged rows) returns None for the slow path.
    """
    key = tag + b" "
    start = 0 if data.startswith(key) else data.find(b"\n" + key) + 1
    if start == 0 and not data.startswith(key):
        return None
    last = data.rfind(b"\n" + key)
    last = start if last < start else last + 1
    end = data.find(b"\n", last)
    block = data[start:len(data) if end < 0 else end]
    rows = block.count(b"\n" + key) + 1
    if block.count(b"\n") + 1 != rows:  # something else sits between the tag lines
        return None
    try:
        values = np.fromstring(block.replace(key, b" " * len(key)), sep=" ")
    except ValueError:  # non-numeric text (numpy >= 2.3 raises; older ones warn and stop early)
        return None
    cols, rem = divmod(values.size, rows)
    first = block[: block.find(b"\n")] if rows > 1 else block
    # Equal totals could hide ragged rows; the first row's width must agree too.
    if rem or cols == 0 or len(first.split()) - 1 != cols:
        return None
    return values.reshape(rows, cols)


def _table_filtered(data: bytes, tag: bytes) -> np.ndarray | None:
    """Tag lines interleaved with others (objects/groups each with their own ``v`` block).

    Keeps the lines that start with the tag, joins them and parses once: still one C call,
    the Python work is only the line filter.
    """
    key = tag + b" "
    lines = [line[len(key):] for line in data.splitlines() if line.startswith(key)]
    if not lines:
        return None
    try:
        values = np.fromstring(b" ".join(lines), sep=" ")
    except ValueError:
        return None
    cols, rem = divmod(values.size, len(lines))
    if rem or cols == 0 or len(lines[0].split()) != cols or len(lines[-1].split()) != cols:
        return None
    return values.reshape(len(lines), cols)


def _table_slow(data: bytes, tag: bytes, path: Path) -> np.ndarray | None:
    """Line by line: tolerates tabs, trailing comments and rows of different widths."""
    rows = []
    for i, line in enumerate(data.splitlines(), 1):
        parts = line.split(b"#", 1)[0].split()
        if not parts or parts[0] != tag:
            continue
        try:
            rows.append([float(x) for x in parts[1:]])
        except ValueError:
            raise StudioError(f"{path.name}, line {i}: '{tag.decode()}' line is not numbers") from None
    if not rows:
        return None
    # Mixed widths (e.g. some vertices with colours, some without): keep the columns all have.
    width = min(len(r) for r in rows)
    return np.array([r[:width] for r in rows], dtype=np.float64)


def _split_vertex_table(table: np.ndarray | None, path: Path, with_colors: bool):
    if table is None:  # _table(required=True) has already refused a file without vertices
        raise StudioError(f"{path.name} has no vertices")
    cols = table.shape[1]
    if cols < 3:
        raise StudioError(f"{path.name}: vertex lines need x y z, found {cols} number(s)")
    vertices = np.ascontiguousarray(table[:, :3])
    if not with_colors:
        return vertices
    # "v x y z r g b" (6) is the de-facto colour extension; 7 columns is x y z w r g b.
    colors = None
    if cols in (6, 7):
        colors = np.array(table[:, cols - 3:cols])
        if colors.size and colors.max() > 1.0:  # some exporters write 0..255
            colors /= 255.0
        colors = np.clip(colors, 0.0, 1.0)
    return vertices, colors


def _faces(data: bytes, path: Path):
    """Parse ``f`` and ``usemtl`` lines; one Python pass, counting ``v``/``vt`` as it goes.

    The running counts are needed because a negative index means "relative to the vertices
    defined so far", not to the whole file.
    """
    tri_v: list[int] = []
    tri_t: list[int] = []
    tri_m: list[int] = []
    has_uv = no_uv = False
    materials: dict[str, int] = {}
    current = -1
    nv = nt = 0
    for lineno, line in enumerate(data.splitlines(), 1):
        head = line[:2]
        if head == b"v " or head == b"v\t":
            nv += 1
            continue
        if head == b"vt":
            nt += 1
            continue
        if head == b"f " or head == b"f\t":
            corners = line.split(b"#", 1)[0].split()[1:]
            if len(corners) < 3:
                raise StudioError(f"{path.name}, line {lineno}: a face needs at least 3 corners")
            cv, ct = [], []
            try:
                for c in corners:
                    parts = c.split(b"/")
                    i = int(parts[0])
                    cv.append(i - 1 if i > 0 else nv + i)
                    if len(parts) > 1 and parts[1]:
                        j = int(parts[1])
                        ct.append(j - 1 if j > 0 else nt + j)
            except ValueError:
                raise StudioError(f"{path.name}, line {lineno}: face corner is not a number") from None
            if ct and len(ct) != len(cv):
                raise StudioError(f"{path.name}, line {lineno}: only some face corners have texture coordinates")
            # Fan triangulation (0, k, k+1): exact for the convex quads/polygons of face scans.
            for k in range(1, len(cv) - 1):
                tri_v += (cv[0], cv[k], cv[k + 1])
                if ct:
                    tri_t += (ct[0], ct[k], ct[k + 1])
                tri_m.append(current)
            if ct:
                has_uv = True
            else:
                no_uv = True
            continue
        if line.startswith(b"usemtl"):
            name = line[6:].strip().decode("utf-8", "replace") or "default"
            current = materials.setdefault(name, len(materials))
    faces = np.array(tri_v, dtype=np.int64).reshape(-1, 3)
    # One (m, 3) UV table cannot describe a layout that covers only some faces: drop it then.
    face_uv = np.array(tri_t, dtype=np.int64).reshape(-1, 3) if has_uv and not no_uv else None
    face_mat = None
    names = tuple(materials)
    if materials:
        face_mat = np.array(tri_m, dtype=np.int32)
        if (face_mat < 0).any():  # faces before the first usemtl
            names = names + ("default",) if "default" not in materials else names
            face_mat[face_mat < 0] = names.index("default")
    return faces, face_uv, face_mat, names
