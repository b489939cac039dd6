"""Reading 3-D scans: meshes, point clouds and depth maps → points (+ normals, boundary flags).

Scanners deliver very different files; the fitter wants one thing: an (N, 3) array of surface
points in a known length unit, with unit normals where they can be had and a flag for points on
the border of a partial scan (correspondences there are unreliable: the surface goes on beyond
it, unseen). This module turns each input kind into that:

* meshes (OBJ, PLY with faces, STL, GLB/glTF, OFF): vertices, normals from the triangles
  (oriented by the winding), boundary = vertices on edges used by one triangle only;
* point clouds (PLY without faces, XYZ/TXT, NPY (N, 3) or (N, 6) with normals): normals are
  estimated later, where needed, by a KD-tree PCA of the neighbourhood (``estimate_normals``);
* depth maps (16-bit PNG or a 2-D NPY) with pinhole intrinsics {fx, fy, cx, cy, depth_scale or
  depth_unit}: back-projected pixels; normals from the pixel grid, oriented toward the sensor;
  boundary = pixels next to a hole or a depth jump.

The unit (m, cm or mm) is given by the user or detected from the extent: a face or head is
10-40 cm across, and the three candidates differ tenfold, so the one closest (in log scale) to
the model's size wins.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from studio.core import jsonio
from studio.core.errors import StudioError
from studio.core.facemodel import UNIT_TO_MM
from studio.core.geometry.surface import boundary_vertices

MESH_SUFFIXES = (".obj", ".stl", ".glb", ".gltf", ".off")
CLOUD_SUFFIXES = (".xyz", ".txt", ".pts", ".csv")
DEPTH_SUFFIXES = (".png",)
ALL_SUFFIXES = MESH_SUFFIXES + (".ply", ".npy") + CLOUD_SUFFIXES + DEPTH_SUFFIXES
# Guards against files that would exhaust memory or run for minutes: a 50k-point face scan is
# about 1 MB; a dense full-body scan a few hundred MB. Larger inputs should be cropped first.
MAX_SCAN_BYTES = int(os.environ.get("STUDIO_MAX_SCAN_BYTES", 1 << 30))
MAX_SCAN_POINTS = 20_000_000
MIN_SCAN_POINTS = 100
TYPICAL_HEAD_MM = 250.0


@dataclass
class Scan:
    """Surface samples of a scan, in ``unit``; arrays share the point order."""

    points: np.ndarray  # (N, 3) float64, finite
    normals: np.ndarray | None = None  # (N, 3) unit normals, or None (estimate on demand)
    boundary: np.ndarray | None = None  # (N,) bool: on the border of the scanned surface
    faces: np.ndarray | None = None  # (M, 3) triangles when the scan is a mesh
    unit: str | None = "mm"  # None while reading, until load_scan settles it
    kind: str = "points"  # "mesh", "points" or "depth"
    oriented: bool = False  # normals point out of the surface (meshes, depth maps)
    sensor: np.ndarray | None = None  # where the sensor was (depth maps: the camera centre)
    source: str = ""
    notes: list = field(default_factory=list)  # what reading changed (parts dropped, …), for the report

    def __len__(self) -> int:
        return len(self.points)


def load_scan(path: str | os.PathLike, unit: str | None = None, intrinsics: str | os.PathLike | None = None,
              expected_mm: float = TYPICAL_HEAD_MM, max_bytes: int | None = None,
              max_points: int = MAX_SCAN_POINTS) -> Scan:
    """Read any supported scan file. ``unit`` None: detected from the extent (see module doc)."""
    path = Path(path)
    if not path.is_file():
        raise StudioError(f"scan {path} does not exist" if not path.exists() else f"scan {path} is not a file")
    size = path.stat().st_size
    limit = MAX_SCAN_BYTES if max_bytes is None else max_bytes
    if size == 0:
        raise StudioError(f"scan {path.name} is empty")
    if size > limit:
        raise StudioError(f"scan {path.name} is {size / 2**20:.0f} MB, more than the {limit / 2**20:.0f} MB "
                          "limit; crop or decimate it first")
    if unit is not None and unit not in UNIT_TO_MM:
        raise StudioError(f"unknown unit '{unit}' (use m, cm or mm)")
    ext = path.suffix.lower()
    try:
        if ext in MESH_SUFFIXES or ext == ".ply":
            scan = _read_trimesh(path)
        elif ext in CLOUD_SUFFIXES:
            scan = _read_xyz(path)
        elif ext == ".npy":
            arr = _read_npy(path)
            # (N, 3) or (N, 6) rows are a point cloud; any other 2-D array is a depth image.
            is_depth = arr.ndim == 2 and arr.shape[1] not in (3, 6)
            scan = (depth_to_scan(arr, read_intrinsics(path, intrinsics), path.name) if is_depth
                    else _cloud_from_array(arr, path.name))
        elif ext in DEPTH_SUFFIXES:
            scan = depth_to_scan(_read_depth_png(path), read_intrinsics(path, intrinsics), path.name)
        else:
            raise StudioError(f"cannot read scans from '{ext or path.name}' files (supported: "
                              f"{', '.join(ALL_SUFFIXES)})")
    except StudioError:
        raise
    except MemoryError:
        raise StudioError(f"scan {path.name} is too large to load into memory") from None
    except Exception as e:  # a parser's own complaint about a damaged file
        raise StudioError(f"cannot read scan {path.name}: {e.__class__.__name__}: {e}") from None
    scan.source = str(path)
    if scan.faces is not None:
        drop_small_parts(scan)
    return finish_scan(scan, unit, expected_mm, max_points)


SMALL_PART = 0.05  # a separate part with less than this share of the largest part's area is dropped


def drop_small_parts(scan: Scan) -> Scan:
    """Drop the mesh's separate small parts: a model's own head carries eyeballs, teeth, a mouth
    socket and eye shells inside or in front of the skin, and a scanner's output carries floating
    islands. Neither is the face's outer surface, and both pull a fit (measured: a full ICT head
    fitted with the true pose came out 1.7 mm median off, blendshapes at 1.0; without them 0.0005 mm)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    f = np.asarray(scan.faces, np.int64)
    n = len(scan.points)
    if len(f) == 0:
        return scan
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]]])
    graph = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    count, label = connected_components(graph, directed=False)
    if count == 1:
        return scan
    p = np.asarray(scan.points, float)
    area = 0.5 * np.linalg.norm(np.cross(p[f[:, 1]] - p[f[:, 0]], p[f[:, 2]] - p[f[:, 0]]), axis=1)
    part_area = np.bincount(label[f[:, 0]], weights=np.nan_to_num(area), minlength=count)
    keep_part = part_area >= SMALL_PART * part_area.max()
    keep = keep_part[label]
    keep &= np.bincount(f.ravel(), minlength=n) > 0  # loose vertices on no triangle carry no surface
    if keep.all():
        return scan
    remap = np.cumsum(keep) - 1
    scan.faces = remap[f[keep[f].all(axis=1)]]
    scan.points = p[keep]
    for attr in ("normals", "boundary"):
        val = getattr(scan, attr)
        if val is not None:
            setattr(scan, attr, np.asarray(val)[keep])
    dropped = int((~keep_part).sum())
    if dropped:
        scan.notes.append(f"ignored {dropped} small separate part{'s' if dropped > 1 else ''} of the mesh "
                          f"({int((~keep).sum()):,} vertices: interior parts or stray pieces)")
    return scan


def finish_scan(scan: Scan, unit: str | None = None, expected_mm: float = TYPICAL_HEAD_MM,
                max_points: int = MAX_SCAN_POINTS) -> Scan:
    """Drop non-finite points, check the count, set the unit (given or detected)."""
    name = Path(scan.source).name or "the scan"
    pts = np.asarray(scan.points, np.float64).reshape(-1, 3)
    if len(pts) > max_points:
        raise StudioError(f"{name} has {len(pts):,} points, more than the {max_points:,} limit; "
                          "decimate it first")
    finite = np.asarray(np.isfinite(pts).all(axis=1))
    if scan.normals is not None:
        nrm = np.asarray(scan.normals, np.float64).reshape(-1, 3)
        finite &= np.isfinite(nrm).all(axis=1)
    if not finite.all():
        if scan.faces is not None:  # keep the triangles consistent: drop those touching bad vertices
            remap = np.cumsum(finite) - 1
            keep = finite[scan.faces].all(axis=1)
            scan.faces = remap[scan.faces[keep]]
        pts = pts[finite]
        for attr in ("normals", "boundary"):
            val = getattr(scan, attr)
            if val is not None:
                setattr(scan, attr, np.asarray(val)[finite])
    scan.points = pts
    if len(pts) < MIN_SCAN_POINTS:
        what = "no usable points" if len(pts) == 0 else f"only {len(pts)} usable points"
        raise StudioError(f"{name} has {what}; a face scan needs at least {MIN_SCAN_POINTS}")
    extent = robust_extent(pts)
    if not extent > 0:
        raise StudioError(f"{name}: all points coincide; this is not a surface scan")
    if unit is None:
        unit = detect_unit(pts, expected_mm) if scan.unit is None or scan.kind != "depth" else scan.unit
    scan.unit = unit
    return scan


def robust_extent(points: np.ndarray) -> float:
    """The largest side of the 2nd-98th percentile box (stray outliers do not count)."""
    if len(points) == 0:
        return 0.0
    lo, hi = np.percentile(points, [2, 98], axis=0)
    return float(np.max(hi - lo))


def detect_unit(points: np.ndarray, expected_mm: float = TYPICAL_HEAD_MM) -> str:
    """The unit (m, cm, mm) in which the scan's extent is closest to ``expected_mm`` (log scale)."""
    ext = robust_extent(points)
    return min(UNIT_TO_MM, key=lambda u: abs(np.log(ext * UNIT_TO_MM[u] / expected_mm)))


# -- meshes and clouds ---------------------------------------------------------------------------
def _read_trimesh(path: Path) -> Scan:
    import trimesh

    obj: Any = trimesh.load(path, process=False, force="mesh" if path.suffix.lower() != ".ply" else None)
    if isinstance(obj, trimesh.Scene):
        obj = obj.to_geometry() if hasattr(obj, "to_geometry") else obj.dump(concatenate=True)
    if isinstance(obj, trimesh.Trimesh) and len(obj.faces) > 0:
        v = np.asarray(obj.vertices, np.float64)
        f = np.asarray(obj.faces, np.int64)
        return Scan(v, mesh_normals(v, f), boundary_vertices(f, len(v)), f, unit=None, kind="mesh", oriented=True)
    verts = np.asarray(getattr(obj, "vertices", np.zeros((0, 3))), np.float64)
    return Scan(verts, _ply_normals(obj, len(verts)), unit=None, kind="points")


def _ply_normals(obj, n: int) -> np.ndarray | None:
    """Normals stored as nx, ny, nz vertex properties of a PLY point cloud (trimesh keeps them raw)."""
    raw = getattr(obj, "metadata", {}).get("_ply_raw", {})
    data = raw.get("vertex", {}).get("data") if isinstance(raw, dict) else None
    names = getattr(getattr(data, "dtype", None), "names", None) or ()
    if data is None or not all(k in names for k in ("nx", "ny", "nz")):
        return None
    nrm = np.column_stack([np.asarray(data[k], np.float64).reshape(-1) for k in ("nx", "ny", "nz")])
    return _unit_or_none(nrm) if len(nrm) == n else None


def _read_xyz(path: Path) -> Scan:
    try:
        arr = np.loadtxt(path, comments=("#", "//"), delimiter="," if path.suffix.lower() == ".csv" else None,
                         ndmin=2)
    except ValueError as e:
        raise StudioError(f"{path.name} is not a text point cloud (x y z per line): {e}") from None
    return _cloud_from_array(arr, path.name)


def _read_npy(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise StudioError(f"{path.name} is not a plain numeric .npy array ({e})") from None
    if arr.dtype.kind not in "fiu":
        raise StudioError(f"{path.name} holds {arr.dtype} values, not numbers")
    return arr


def _cloud_from_array(arr: np.ndarray, name: str) -> Scan:
    arr = np.asarray(arr, np.float64)
    if arr.ndim != 2 or arr.shape[1] < 3:
        raise StudioError(f"{name}: expected rows of x y z (and optionally nx ny nz), got shape {arr.shape}")
    normals = None
    if arr.shape[1] >= 6:
        normals = _unit_or_none(arr[:, 3:6])
    return Scan(arr[:, :3].copy(), normals, unit=None, kind="points")


def _unit_or_none(nrm: np.ndarray) -> np.ndarray | None:
    """Columns are normals only if they are (nearly all) unit vectors; otherwise colours or such."""
    length = np.linalg.norm(nrm, axis=1)
    ok = np.isfinite(length) & (np.abs(length - 1) < 0.05)
    if ok.mean() < 0.9:
        return None
    out = nrm.copy()
    good = np.isfinite(length) & (length > 1e-12)
    out[good] /= length[good, None]
    return out


def mesh_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    from studio.core.geometry import vertex_normals

    return vertex_normals(vertices, faces)


def read_landmarks(path: str | Path) -> dict:
    """3-D landmarks on the scan (scan coordinates and unit), paired with model landmarks:

        {"set": "ibug68", "points": [[x, y, z], null, ...]}    (one entry per landmark of the set)
        {"vertices": [1234, 567, ...], "points": [[x, y, z], ...]}   (explicit model vertex ids)
    """
    path = Path(path)
    doc = jsonio.read(path, f"landmarks file {path}")
    if not isinstance(doc, dict) or not isinstance(doc.get("points"), list):
        raise StudioError(f"{path.name}: expected {{\"set\" or \"vertices\", \"points\": [[x, y, z], ...]}}")
    pts = []
    for p in doc["points"]:
        if p is None:
            pts.append([np.nan] * 3)
        elif isinstance(p, (list, tuple)) and len(p) == 3 and all(isinstance(x, (int, float)) for x in p):
            pts.append([float(x) for x in p])
        else:
            raise StudioError(f"{path.name}: every landmark point must be [x, y, z] or null")
    out: dict[str, Any] = {"points": np.asarray(pts, float).reshape(-1, 3)}
    if "vertices" in doc:
        v = doc["vertices"]
        if not isinstance(v, list) or not all(isinstance(i, int) for i in v):
            raise StudioError(f"{path.name}: \"vertices\" must be a list of vertex indices")
        out["vertices"] = v
    if "set" in doc:
        out["set"] = str(doc["set"])
    return out


# -- depth maps ----------------------------------------------------------------------------------
def read_intrinsics(depth_path: Path, intrinsics: str | os.PathLike | None) -> dict:
    """The pinhole intrinsics JSON: given, or beside the depth map (NAME.json, NAME_intrinsics.json,
    intrinsics.json)."""
    if intrinsics is None:
        for cand in (depth_path.with_suffix(".json"), depth_path.with_name(depth_path.stem + "_intrinsics.json"),
                     depth_path.with_name("intrinsics.json")):
            if cand.is_file():
                intrinsics = cand
                break
        else:
            raise StudioError(f"{depth_path.name} is a depth map and needs camera intrinsics: pass --intrinsics "
                              f"K.json or put {depth_path.stem}.json beside it ({{\"fx\", \"fy\", \"cx\", \"cy\", "
                              "\"depth_scale\"})")
    p = Path(intrinsics)
    k = jsonio.read(p, f"intrinsics {p}")
    if not isinstance(k, dict):
        raise StudioError(f"intrinsics {p.name} must be a JSON object with fx, fy, cx, cy")
    out: dict[str, Any] = {}
    for key in ("fx", "fy", "cx", "cy"):
        v = k.get(key)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not np.isfinite(float(v)):
            raise StudioError(f"intrinsics {p.name}: '{key}' must be a number")
        out[key] = float(v)
    if out["fx"] <= 0 or out["fy"] <= 0:
        raise StudioError(f"intrinsics {p.name}: fx and fy must be positive")
    unit = k.get("depth_unit", k.get("unit"))
    scale = k.get("depth_scale")
    if unit is not None:
        if unit not in UNIT_TO_MM:
            raise StudioError(f"intrinsics {p.name}: depth_unit must be m, cm or mm, not {unit!r}")
        out["unit"], out["scale"] = unit, float(scale) if isinstance(scale, (int, float)) else 1.0
    elif isinstance(scale, (int, float)) and scale > 0:
        # RealSense / Open3D convention: metres per stored depth unit (0.001 = millimetre values).
        out["unit"], out["scale"] = "m", float(scale)
    else:
        raise StudioError(f"intrinsics {p.name}: give depth_scale (metres per depth unit, e.g. 0.001) or "
                          "depth_unit (m, cm or mm)")
    return out


def _read_depth_png(path: Path) -> np.ndarray:
    import imageio.v3 as iio

    img = iio.imread(path)
    if img.ndim == 3:
        raise StudioError(f"{path.name} is a colour image; a depth map is a single-channel 16-bit PNG")
    if img.dtype != np.uint16:
        raise StudioError(f"{path.name} is {img.dtype}; depth maps must be 16-bit PNGs (or .npy)")
    return img


def depth_to_scan(depth: np.ndarray, k: dict, name: str = "depth map") -> Scan:
    """Back-project valid pixels (OpenCV camera: x right, y down, z forward) into points."""
    d = np.asarray(depth, np.float64) * k["scale"]
    if d.ndim != 2 or min(d.shape) < 2:
        raise StudioError(f"{name}: a depth map must be a 2-D image, got shape {depth.shape}")
    valid = np.isfinite(d) & (d > 0)
    h, w = d.shape
    v, u = np.mgrid[0:h, 0:w]
    z = np.where(valid, d, 0.0)
    x = (u - k["cx"]) * z / k["fx"]
    y = (v - k["cy"]) * z / k["fy"]
    grid = np.stack([x, y, z], axis=-1)
    # Normals from the grid's tangents; holes and depth jumps (silhouettes) mark the boundary.
    nb = np.zeros_like(valid)
    jump = np.zeros_like(valid)
    for dv, du in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        shifted = np.zeros_like(valid)
        dz = np.zeros_like(d)
        sv = slice(max(dv, 0), h + min(dv, 0)), slice(max(du, 0), w + min(du, 0))
        tv = slice(max(-dv, 0), h + min(-dv, 0)), slice(max(-du, 0), w + min(-du, 0))
        shifted[tv] = valid[sv]
        dz[tv] = np.abs(z[sv] - z[tv])
        nb |= ~shifted
        jump |= shifted & (dz > 0.02 * np.maximum(z, 1e-12) + 4 * z / k["fx"])
    boundary = valid & (nb | jump)
    tu = np.zeros_like(grid)
    tv_ = np.zeros_like(grid)
    tu[:, 1:-1] = grid[:, 2:] - grid[:, :-2]
    tv_[1:-1] = grid[2:] - grid[:-2]
    nrm = np.cross(tu, tv_)
    length = np.linalg.norm(nrm, axis=-1)
    pts = grid[valid]
    nrm = nrm[valid]
    length = length[valid]
    good = length > 1e-20
    nrm[good] /= length[good, None]
    nrm[~good] = (0.0, 0.0, -1.0)
    flip = np.einsum("ij,ij->i", nrm, pts) > 0  # toward the camera at the origin
    nrm[flip] *= -1
    return Scan(pts, nrm, boundary[valid], unit=k["unit"], kind="depth", oriented=True, sensor=np.zeros(3))


# -- normals and borders of point clouds ---------------------------------------------------------
def local_geometry(points: np.ndarray, tree: cKDTree, query: np.ndarray, k: int = 16,
                   sensor: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normals, a border flag and an isolation flag at ``query`` points, from their k nearest
    ``points`` (a KD-tree PCA of the neighbourhood).

    The smallest principal axis of the neighbourhood is the normal. It is oriented toward the
    sensor when known, otherwise away from the cloud's centroid (right for the convex-ish front
    of a face). A point is on the border when its neighbours' centroid lies off-centre by more
    than a third of the neighbourhood radius (its neighbours are all on one side). A point is
    isolated — a stray measurement floating in space, not a surface sample — when its
    neighbourhood is three times wider than is typical for the cloud.
    """
    k = int(min(k, len(points)))
    dist, idx = tree.query(query, k=k)
    nb = points[idx]  # (q, k, 3)
    c = nb.mean(axis=1)
    d = nb - c[:, None]
    cov = np.einsum("qki,qkj->qij", d, d) / k
    _, vecs = np.linalg.eigh(cov)
    nrm = vecs[:, :, 0]
    ref = (query - sensor) if sensor is not None else (query - points.mean(axis=0))
    flip = np.einsum("ij,ij->i", nrm, ref) < 0
    if sensor is not None:
        flip = ~flip  # toward the sensor: n · (sensor − p) > 0
    nrm[flip] *= -1
    radius = np.maximum(dist[:, -1], 1e-12)
    off = np.linalg.norm((c - query) - np.einsum("ij,ij->i", c - query, nrm)[:, None] * nrm, axis=1)
    isolated = radius > 3 * np.median(radius)
    return nrm, off > radius / 3, isolated


def scan_samples(scan: Scan, pts: np.ndarray, n: int, rng: np.random.Generator):
    """The fitters' subsample of a scan: indices of ``n`` random points of ``pts`` (the scan's points,
    scaled) plus their normals, border and isolation flags and whether the normals are oriented. The
    scan's own normals and border win over the KD-tree estimates where it has them."""
    tree = cKDTree(pts)
    idx = np.sort(rng.choice(len(pts), size=min(n, len(pts)), replace=False))
    nrm, border, isolated = local_geometry(pts, tree, pts[idx], sensor=scan.sensor)
    oriented = scan.sensor is not None
    if scan.normals is not None:
        nrm, oriented = np.asarray(scan.normals, float)[idx], scan.oriented
    if scan.boundary is not None:
        border = np.asarray(scan.boundary, bool)[idx]
    return idx, nrm, border, isolated, oriented
