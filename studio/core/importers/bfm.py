"""Importers for the Basel Face Model: BFM 2017/2019 (statismo ``.h5``) and BFM 2009 (``.mat``).

Both publish an orthonormal PCA basis U plus a per-component spread. Face Studio stores every basis
vector already multiplied by its standard deviation, so coefficients are in σ units (see pca.py):

    B_j = U[:, j] · σ_j     with σ_j = sqrt(pcaVariance_j) (statismo) or shapeEV_j (BFM 2009).

Vertex i of a flat (3N,) vector is entries 3i..3i+2 (x, y, z interleaved) in both layouts.
The BFM licence forbids redistribution, so these only ever read a file the user downloaded.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from studio.core import jsonio
from studio.core.errors import StudioError
from studio.core.facemodel import Affects, ModelMeta, ParamGroup
from studio.core.pca import LinearGroup, PCAModel
from studio.core.progress import ProgressFn, report

_LICENCE = ("The Basel Face Model is distributed by the University of Basel under a restrictive licence "
            "(registration, research use, no redistribution of the model): Face Studio does not ship it; "
            "you must have downloaded it yourself and must follow the terms you accepted.")
ATTRIBUTION_2017 = ("Basel Face Model 2017/2019. Cite: T. Gerig, A. Morel-Forster, C. Blumer, B. Egger, "
                    "M. Lüthi, S. Schönborn, T. Vetter, \"Morphable Face Models - An Open Framework\", "
                    "IEEE Int. Conf. on Automatic Face & Gesture Recognition (FG), 2018. " + _LICENCE)
ATTRIBUTION_2009 = ("Basel Face Model 2009. Cite: P. Paysan, R. Knothe, B. Amberg, S. Romdhani, T. Vetter, "
                    "\"A 3D Face Model for Pose and Illumination Invariant Face Recognition\", IEEE Int. Conf. "
                    "on Advanced Video and Signal Based Surveillance (AVSS), 2009. " + _LICENCE)

# Colours are documented as [0, 1]; allow a little slack for PCA round-off in the published mean.
_COLOR_SLACK = 0.05
# Relative slack when checking that basis columns are unit length (float32 data, long columns).
_NORM_TOLERANCE = 1e-2
# A BFM landmark is a point on the mean surface; one farther than this from every vertex does not
# belong to this mesh (e.g. a cropped model) and the whole set is skipped rather than mis-snapped.
_LANDMARK_TOLERANCE_MM = 5.0


# --------------------------------------------------------------------------------------------
# BFM 2017 / 2019 (statismo HDF5)
# --------------------------------------------------------------------------------------------

def load_bfm_h5(path: str | Path, name: str, progress: ProgressFn | None = None) -> PCAModel:
    """Read a BFM 2017 or 2019 statismo ``.h5`` file (shape, optional expression and colour)."""
    import h5py  # imported here so the rest of the studio does not need h5py to start

    path = Path(path)
    _require_file(path)
    report(progress, 0.0, "opening Basel Face Model")
    try:
        f = h5py.File(path, "r")
    except Exception as e:  # h5py raises OSError for non-HDF5 and truncated files
        raise StudioError(f"{path} is not a readable HDF5 file ({_why(e)})") from None
    with f:
        report(progress, 0.05, "reading shape model")
        mean, basis = _statismo_pca(f, "shape", path)
        n = mean.shape[0]
        faces = _statismo_cells(f, path, n)
        linear = [_group("shape", basis)]

        if _has(f, "expression", path):
            report(progress, 0.5, "reading expression model")
            # BFM 2017 stores an expression mean too: an offset on top of the shape mean (≈ 0).
            expr_mean, expr_basis = _statismo_pca(f, "expression", path, n)
            mean = mean + expr_mean
            linear.append(_group("expression", expr_basis))

        color_mean = None
        if _has(f, "color", path):
            report(progress, 0.7, "reading colour model")
            color_mean, color_basis = _statismo_pca(f, "color", path, n)
            lo, hi = float(color_mean.min()), float(color_mean.max())
            if lo < -_COLOR_SLACK or hi > 1 + _COLOR_SLACK:
                raise StudioError(f"{path}: colour mean spans {lo:.3g}..{hi:.3g}; BFM colours must be in 0..1")
            color_mean = np.clip(color_mean, 0.0, 1.0)
            linear.append(_group("color", color_basis, affects="color"))

        report(progress, 0.9, "reading landmarks")
        landmarks = _statismo_landmarks(f, mean)

    meta = ModelMeta(unit="mm", landmarks=landmarks, attribution=ATTRIBUTION_2017,
                     source=f"Basel Face Model (statismo HDF5) {path}")
    model = PCAModel(name, mean, faces, linear, color_mean=color_mean, meta=meta)
    report(progress, 1.0, "done")
    return model


def _statismo_pca(f, group: str, path: Path, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return (mean (N, 3), basis (k, N, 3) scaled by σ) of one statismo model group."""
    mean = _vector(_h5(f, f"{group}/model/mean", path), f"{group}/model/mean", path)
    u = _finite(_h5(f, f"{group}/model/pcaBasis", path), f"{group}/model/pcaBasis", path)
    var = _vector(_h5(f, f"{group}/model/pcaVariance", path), f"{group}/model/pcaVariance", path)
    if mean.size == 0 or mean.size % 3:
        raise StudioError(f"{path}: {group}/model/mean has {mean.size} values, not 3 per vertex")
    if n is not None and mean.size != 3 * n:
        raise StudioError(f"{path}: {group} has {mean.size // 3} vertices, the shape model has {n}")
    if u.ndim != 2 or u.shape[0] != mean.size:
        raise StudioError(f"{path}: {group}/model/pcaBasis is {list(u.shape)}, expected [{mean.size}, k] "
                          "to match the mean")
    if var.size != u.shape[1] or var.size == 0:
        raise StudioError(f"{path}: {group}/model/pcaVariance has {var.size} values for "
                          f"{u.shape[1]} basis vectors")
    # Eigenvalues of a covariance are ≥ 0; tiny negatives are solver round-off, larger ones a broken file.
    if var.min() < -1e-6 * max(float(var.max()), 1e-12):
        raise StudioError(f"{path}: {group}/model/pcaVariance contains negative variances")
    sigma = np.sqrt(np.clip(var, 0.0, None))
    # statismo ≥ 0.9 (the BFM 2017/2019 files) stores orthonormal U; statismo 0.8 stored U·σ. Tell
    # them apart by the column lengths rather than trusting a version tag that older files lack.
    norms = np.sqrt(np.einsum("ij,ij->j", u, u, dtype=np.float64))
    if np.allclose(norms, 1.0, rtol=_NORM_TOLERANCE, atol=0):
        scale = sigma
    elif np.allclose(norms, sigma, rtol=_NORM_TOLERANCE, atol=1e-12):
        scale = np.ones_like(sigma)
    else:
        raise StudioError(f"{path}: {group}/model/pcaBasis columns are neither unit length nor scaled by "
                          "sqrt(pcaVariance); not a statismo PCA basis")
    basis = (u.astype(np.float32, copy=False) * scale.astype(np.float32)).T.reshape(var.size, -1, 3)
    # noiseVariance (the isotropic noise of probabilistic PCA) does not change mean or basis: unused.
    return mean.reshape(-1, 3), basis


def _statismo_cells(f, path: Path, n: int) -> np.ndarray:
    """Triangles from ``shape/representer/cells`` (3, M), 0-based."""
    points_key = "shape/representer/points"
    if _has(f, points_key, path):
        points = _h5(f, points_key, path)
        # Unused (the mean is the reference shape); only a size check that the file is consistent.
        if points.shape not in ((3, n), (n, 3)):
            raise StudioError(f"{path}: {points_key} is {list(points.shape)}, expected [3, {n}]")
    cells = _h5(f, "shape/representer/cells", path)
    if cells.ndim != 2 or cells.shape[0] != 3:
        raise StudioError(f"{path}: shape/representer/cells is {list(cells.shape)}, expected [3, M]")
    return _faces(cells.T, n, "shape/representer/cells", path)


def _statismo_landmarks(f, mean: np.ndarray) -> dict[str, np.ndarray]:
    """Optional: snap the named landmark points in ``metadata/landmarks`` to mean-shape vertices.

    ModelMeta keeps landmark *sets* (name → vertex ids), so the set is stored as ``"bfm"`` in file
    order. Anything unexpected here is ignored: landmarks are a convenience, never a reason to fail.
    """
    try:
        points = None
        if "metadata/landmarks/json" in f:
            points = _parse_landmark_json(_text(f["metadata/landmarks/json"][()]))
        if not points and "metadata/landmarks/text" in f:
            points = _parse_landmark_text(_text(f["metadata/landmarks/text"][()]))
        if not points:
            return {}
        from scipy.spatial import cKDTree

        dist, idx = cKDTree(mean).query(np.array([p for _, p in points], float))
        if not np.all(dist <= _LANDMARK_TOLERANCE_MM):
            return {}
        return {"bfm": idx.astype(np.int32)}
    except Exception:  # noqa: BLE001 — optional metadata, see docstring
        return {}


def _parse_landmark_json(text: str) -> list[tuple[str, list[float]]]:
    # Scalismo's landmark JSON: [{"id": "center.nose.tip", "coordinates": [x, y, z], ...}, ...]
    out = []
    for item in jsonio.loads(text, "the landmarks in metadata/landmarks/json"):
        coords = [float(c) for c in item["coordinates"]]
        if len(coords) == 3:
            out.append((str(item["id"]), coords))
    return out


def _parse_landmark_text(text: str) -> list[tuple[str, list[float]]]:
    # One landmark per line: a name then x y z, separated by commas and/or whitespace.
    out = []
    for line in text.splitlines():
        fields = [s for s in re.split(r"[,\s]+", line.strip()) if s]
        if len(fields) == 4:
            out.append((fields[0], [float(v) for v in fields[1:]]))
    return out


def _text(value) -> str:
    # h5py returns a string dataset as bytes, numpy bytes or an array of them, depending on its type.
    if isinstance(value, np.ndarray):
        return "\n".join(_text(v) for v in value.reshape(-1))
    return value.decode("utf-8") if isinstance(value, (bytes, np.bytes_)) else str(value)


def _h5(f, key: str, path: Path) -> np.ndarray:
    """Read a whole dataset, turning any HDF5 failure (missing, truncated, wrong kind) into one line."""
    import h5py

    if not _has(f, key, path):
        raise StudioError(f"{path} has no '{key}' dataset (is this a BFM 2017/2019 .h5 file?)")
    try:
        obj = f[key]
        if not isinstance(obj, h5py.Dataset):
            raise StudioError(f"{path}: '{key}' is not a dataset")
        return np.asarray(obj[()])
    except StudioError:
        raise
    except Exception as e:
        raise StudioError(f"{path}: cannot read '{key}' ({_why(e)})") from None


def _has(f, key: str, path: Path) -> bool:
    try:
        return key in f
    except Exception as e:  # a damaged file can fail while walking its groups
        raise StudioError(f"{path}: cannot read '{key}' ({_why(e)})") from None


# --------------------------------------------------------------------------------------------
# BFM 2009 (01_MorphableModel.mat)
# --------------------------------------------------------------------------------------------

_MAT_NAMES = ("shapeMU", "shapePC", "shapeEV", "texMU", "texPC", "texEV", "tl")


def load_bfm2009_mat(path: str | Path, name: str, progress: ProgressFn | None = None) -> PCAModel:
    """Read BFM 2009 ``01_MorphableModel.mat`` (MATLAB v5, or v7.3 which is HDF5)."""
    path = Path(path)
    _require_file(path)
    report(progress, 0.0, "reading BFM 2009 .mat file")
    v = _read_mat(path)
    report(progress, 0.6, "building the model")

    if "shapeMU" not in v or "shapePC" not in v or "shapeEV" not in v or "tl" not in v:
        missing = [k for k in ("shapeMU", "shapePC", "shapeEV", "tl") if k not in v]
        raise StudioError(f"{path} has no {', '.join(missing)} (is this BFM 2009 01_MorphableModel.mat?)")
    # The 2009 model is in micrometres; shapeEV are standard deviations (not variances), also in µm.
    mean, basis = _mat_pca(v, "shape", path, scale=1e-3)
    n = mean.shape[0]
    # tl is MATLAB's 1-based triangle list, (M, 3).
    tl = _finite(np.asarray(v["tl"]), "tl", path)
    if tl.ndim != 2 or tl.shape[1] != 3:
        raise StudioError(f"{path}: tl is {list(tl.shape)}, expected [M, 3]")
    if tl.size and tl.min() < 1:
        raise StudioError(f"{path}: tl contains index {tl.min():g}; BFM 2009 triangles are 1-based")
    faces = _faces(tl - 1, n, "tl", path)
    linear = [_group("shape", basis)]

    color_mean = None
    present = [k for k in ("texMU", "texPC", "texEV") if k in v]
    if present and len(present) < 3:
        raise StudioError(f"{path} has {', '.join(present)} but not all of texMU, texPC, texEV")
    if present:
        # Colours are 0..255 (and so are texEV); Face Studio colours are 0..1.
        color_mean, color_basis = _mat_pca(v, "tex", path, scale=1 / 255, n=n)
        lo, hi = float(color_mean.min()), float(color_mean.max())
        if lo < -_COLOR_SLACK or hi > 1 + _COLOR_SLACK:
            raise StudioError(f"{path}: texMU spans {lo * 255:.3g}..{hi * 255:.3g}; expected 0..255")
        color_mean = np.clip(color_mean, 0.0, 1.0)
        linear.append(_group("color", color_basis, affects="color"))

    meta = ModelMeta(unit="mm", attribution=ATTRIBUTION_2009, source=f"Basel Face Model 2009 (.mat) {path}")
    model = PCAModel(name, mean, faces, linear, color_mean=color_mean, meta=meta)
    report(progress, 1.0, "done")
    return model


def _mat_pca(v: dict, prefix: str, path: Path, scale: float, n: int | None = None):
    mu_key, pc_key, ev_key = f"{prefix}MU", f"{prefix}PC", f"{prefix}EV"
    mu = _vector(v[mu_key], mu_key, path)
    pc = _finite(np.asarray(v[pc_key]), pc_key, path)
    ev = _vector(v[ev_key], ev_key, path)
    if mu.size == 0 or mu.size % 3:
        raise StudioError(f"{path}: {mu_key} has {mu.size} values, not 3 per vertex")
    if n is not None and mu.size != 3 * n:
        raise StudioError(f"{path}: {mu_key} has {mu.size // 3} vertices, shapeMU has {n}")
    if pc.ndim != 2 or pc.shape[0] != mu.size:
        raise StudioError(f"{path}: {pc_key} is {list(pc.shape)}, expected [{mu.size}, k] to match {mu_key}")
    if ev.size != pc.shape[1] or ev.size == 0:
        raise StudioError(f"{path}: {ev_key} has {ev.size} values for {pc.shape[1]} basis vectors")
    if ev.min() < 0:
        raise StudioError(f"{path}: {ev_key} contains negative standard deviations")
    basis = (pc.astype(np.float32, copy=False) * (ev * scale).astype(np.float32)).T.reshape(ev.size, -1, 3)
    return (mu * scale).reshape(-1, 3), basis


def _read_mat(path: Path) -> dict[str, np.ndarray]:
    """The BFM variables of a .mat file, in MATLAB's (rows, columns) orientation."""
    import h5py

    try:
        is_v73 = h5py.is_hdf5(str(path))  # v7.3 files are HDF5 behind a 512-byte MATLAB header
    except Exception:
        is_v73 = False
    try:
        if is_v73:
            out = {}
            with h5py.File(path, "r") as f:
                for key in _MAT_NAMES:
                    if key in f and isinstance(f[key], h5py.Dataset):
                        # HDF5 keeps MATLAB's column-major data, so every array appears transposed.
                        out[key] = np.asarray(f[key][()]).T
            return out
        from scipy.io import loadmat

        return {k: np.asarray(a) for k, a in loadmat(str(path), variable_names=_MAT_NAMES).items()
                if not k.startswith("__")}
    except Exception as e:  # scipy/h5py raise many types for foreign or damaged files
        raise StudioError(f"{path} is not a readable MATLAB file ({_why(e)})") from None


# --------------------------------------------------------------------------------------------
# shared checks
# --------------------------------------------------------------------------------------------

def _group(name: str, basis: np.ndarray, affects: Affects = "position") -> LinearGroup:
    # PCA coefficients are in σ units after scaling the basis, hence prior N(0, 1) for every group.
    names = tuple(f"PC{i + 1}" for i in range(basis.shape[0]))
    return LinearGroup(ParamGroup(name, names, "normal", np.ones(len(names)), affects=affects), basis)


def _vector(a, what: str, path: Path) -> np.ndarray:
    """A 1-D float vector; MATLAB and statismo sometimes store (n, 1) or (1, n)."""
    a = _finite(np.asarray(a), what, path)
    if a.ndim == 2 and 1 in a.shape:
        a = a.reshape(-1)
    if a.ndim != 1:
        raise StudioError(f"{path}: {what} is {list(a.shape)}, expected a vector")
    return a.astype(np.float64, copy=False)


def _finite(a: np.ndarray, what: str, path: Path) -> np.ndarray:
    if a.dtype.kind not in "biuf":
        raise StudioError(f"{path}: {what} is not numeric (dtype {a.dtype})")
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise StudioError(f"{path}: {what} contains NaN or infinite values")
    return a


def _faces(tri: np.ndarray, n: int, what: str, path: Path) -> np.ndarray:
    tri = _finite(np.asarray(tri), what, path)
    if tri.dtype.kind == "f" and not np.all(tri == np.round(tri)):
        raise StudioError(f"{path}: {what} contains non-integer vertex indices")
    if tri.size and (tri.min() < 0 or tri.max() >= n):
        raise StudioError(f"{path}: {what} refers to vertices outside 0..{n - 1}")
    return tri.astype(np.int64)


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise StudioError(f"{path} does not exist or is not a file")


def _why(e: Exception) -> str:
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
