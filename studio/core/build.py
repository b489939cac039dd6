"""Building a linear morphable model from registered scans (Blanz & Vetter 1999).

"Registered" means every scan has the same vertices in the same order (vertex i is the same
anatomical point on every face), so a scan is one point in R^{3n} and PCA of the scan matrix
gives the model: mean + Σ α_i σ_i PC_i with α ~ N(0, 1).

Steps: ``read_registered_meshes`` (folder → (s, n, 3) array), optionally
``generalized_procrustes`` (remove pose and size so PCA models shape only), then
``build_pca_model`` (mean + thin SVD), and ``write_spectrum_png`` to help choose how many
components to keep.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from studio.core.atomic import atomic_path
from studio.core.errors import StudioError
from studio.core.facemodel import UNIT_TO_MM, Affects, ModelMeta, ParamGroup
from studio.core.geometry.transforms import similarity_from_covariance
from studio.core.objio import read_obj, read_obj_vertices
from studio.core.pca import LinearGroup, PCAModel
from studio.core.progress import ProgressFn, report

MESH_SUFFIXES = (".obj", ".ply", ".off", ".stl")

# Components whose σ is below this fraction of the largest are treated as zero variance: the
# model stores float32 (≈7 significant digits), so they are rounding noise, not shape.
_DEGENERATE = 1e-6


# -- reading ------------------------------------------------------------------------------------

def read_registered_meshes(folder, progress: ProgressFn | None = None):
    """Read every .obj/.ply/.off/.stl in ``folder`` (sorted by file name).

    Returns ``(vertices (s, n, 3) float64, faces (m, 3), colors (s, n, 3) or None,
    (uv, face_uv) or None, names)``. Topology and UVs come from the first file; every other
    file must have the same vertex count (vertex order is assumed to correspond).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise StudioError(f"{folder} is not a folder")
    paths = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in MESH_SUFFIXES),
                   key=lambda p: p.name)
    if len(paths) < 2:
        raise StudioError(f"{folder} holds {len(paths)} mesh file(s) (.obj/.ply/.off/.stl); "
                          "a model needs at least 2 registered scans")

    first, faces, uv = _read_first(paths[0])
    n = len(first[0])
    vertices = np.empty((len(paths), n, 3), dtype=np.float64)
    colors = np.empty((len(paths), n, 3), dtype=np.float64) if first[1] is not None else None
    for i, path in enumerate(paths):
        report(progress, i / len(paths), f"reading {path.name}")
        v, c = first if i == 0 else _read_vertices(path)
        if len(v) != n:
            raise StudioError(f"{path.name} has {len(v)} vertices but {paths[0].name} has {n}; "
                              "scans must be registered to the same topology")
        if not np.all(np.isfinite(v)):
            raise StudioError(f"{path.name} has NaN or infinite vertex coordinates")
        # Colours must be all-or-nothing: a colour model from some of the scans would be biased.
        if (c is None) != (colors is None):
            have, lack = (paths[0], path) if c is None else (path, paths[0])
            raise StudioError(f"{have.name} has vertex colours but {lack.name} has none; "
                              "give colours for every scan or for none")
        vertices[i] = v
        if colors is not None:
            colors[i] = c
    report(progress, 1.0, f"read {len(paths)} scans")
    return vertices, faces, colors, uv, [p.stem for p in paths]


def _read_first(path: Path):
    """The first file also supplies faces and UVs (OBJ through our reader, to keep seams joined)."""
    if path.suffix.lower() == ".obj":
        d = read_obj(path)
        uv = (d["uv"], d["face_uv"]) if d["face_uv"] is not None else None
        return (d["vertices"], d["colors"]), d["faces"], uv
    mesh = _trimesh_load(path)
    faces = np.asarray(getattr(mesh, "faces", np.zeros((0, 3))), dtype=np.int64).reshape(-1, 3)
    return _trimesh_vertices(mesh, path), faces, None


def _read_vertices(path: Path):
    if path.suffix.lower() == ".obj":
        return read_obj_vertices(path, with_colors=True)
    return _trimesh_vertices(_trimesh_load(path), path)


def _trimesh_load(path: Path):
    import trimesh  # imported here: only needed for non-OBJ scans

    try:
        # process=False: no vertex merging or reordering, so index i stays vertex i.
        mesh = trimesh.load(str(path), process=False)
    except Exception as e:  # trimesh raises many types for damaged or foreign files
        kind = path.suffix.lstrip(".").upper()
        raise StudioError(f"cannot read {path.name}: not a valid {kind} mesh "
                          f"({type(e).__name__}: {e})") from None
    if isinstance(mesh, trimesh.Scene):
        geoms = list(mesh.geometry.values())
        if not geoms:
            raise StudioError(f"cannot read {path.name}: no mesh found in it")
        if len(geoms) > 1:
            raise StudioError(f"{path.name} holds {len(geoms)} meshes; a scan must be one mesh")
        mesh = geoms[0]
    if not hasattr(mesh, "vertices"):
        raise StudioError(f"cannot read {path.name}: not a mesh")
    return mesh


def _trimesh_vertices(mesh, path: Path):
    v = np.asarray(mesh.vertices, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
        raise StudioError(f"{path.name} has no vertices")
    c = None
    visual = getattr(mesh, "visual", None)
    if visual is not None and getattr(visual, "kind", None) == "vertex":
        c = np.asarray(visual.vertex_colors)[:, :3] / 255.0
    elif getattr(mesh, "colors", None) is not None and len(mesh.colors) == len(v):  # point clouds
        c = np.asarray(mesh.colors)[:, :3] / 255.0
    return v, c


# -- alignment ----------------------------------------------------------------------------------

def _centred_stack(X: np.ndarray):
    """Centred scans laid side by side as one (n, 3s) matrix, and each scan's mean square radius.

    Translation never changes the best rotation or scale, so the scans are centred once. The
    side-by-side layout turns both per-iteration reductions over all scans (cross-covariances
    with the mean, and the mean of the aligned scans) into single matrix products, so GPA never
    materialises the aligned scans until the end (the ICT-sized data is ~100 MB per copy).
    """
    b, n, _ = X.shape
    Xc = X - X.mean(axis=1, keepdims=True)
    var = np.einsum("bni,bni->b", Xc, Xc) / n
    return np.ascontiguousarray(Xc.transpose(1, 0, 2)).reshape(n, 3 * b), var


def _fit(stack: np.ndarray, var: np.ndarray, target: np.ndarray, scale: bool):
    """Umeyama for every scan at once: the similarity (s, R, and target centroid) fitting each
    centred scan onto target (the covariances from one product; the closed form is the shared
    kernel in core/geometry/transforms.py)."""
    n = stack.shape[0]
    mu = target.mean(axis=0)
    cov = ((target - mu).T @ stack / n).reshape(3, -1, 3).transpose(1, 0, 2)  # (b, 3, 3)
    s, r = similarity_from_covariance(cov, var, scale)
    return s, r, mu


def _aligned_mean(stack, s, r, mu):
    """Mean of the aligned scans, Σ_i s_i Xc_i R_iᵀ / b + μ, as one (n, 3b) × (3b, 3) product."""
    m = (s[:, None, None] * r.transpose(0, 2, 1)).reshape(-1, 3)
    return stack @ m / len(s) + mu


def generalized_procrustes(X, scale: bool = True, iters: int = 10, tol: float = 1e-10) -> np.ndarray:
    """Similarity-align all scans to their (evolving) mean; returns the aligned (s, n, 3) scans.

    The mean is re-anchored to the first scan after every update, so the result stays in the
    first scan's frame: same units, orientation and position as the data (not unit size at the
    origin, as textbook GPA would leave it). That also stops the mean from shrinking, which
    repeated scale fitting otherwise does.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 3 or X.shape[2] != 3 or len(X) < 1:
        raise StudioError(f"scans must be an (s, n, 3) array, got {list(X.shape)}")
    b, n, _ = X.shape
    stack, var = _centred_stack(X)
    mean = X[0]
    for _ in range(max(1, iters)):
        new = _aligned_mean(stack, *_fit(stack, var, mean, scale))
        one, one_var = _centred_stack(new[None])  # anchor: fit the new mean onto scan 0
        new = _aligned_mean(one, *_fit(one, one_var, X[0], scale))
        change = np.sqrt(np.mean((new - mean) ** 2))
        mean = new
        if change <= tol * (np.sqrt(np.mean((mean - mean.mean(0)) ** 2)) + 1e-300):
            break
    # Only now build the aligned scans, fitted to the final anchored mean.
    s, r, mu = _fit(stack, var, mean, scale)
    Xc = stack.reshape(n, b, 3).transpose(1, 0, 2)
    return s[:, None, None] * (Xc @ r.transpose(0, 2, 1)) + mu


# -- PCA ----------------------------------------------------------------------------------------

def _pca(data: np.ndarray, what: str):
    """Mean, σ and unit principal directions (rows) of (s, n, 3) data via a thin SVD.

    The s × 3n matrix is wide (tens of scans, tens of thousands of coordinates), so its thin
    SVD costs O(s²·3n) and never forms a 3n × 3n covariance. It is computed as the SVD of the
    transpose (Dᵀ = P S Wᵀ, so D = W S Pᵀ): same factors, but LAPACK handles the tall layout
    about twice as fast here (≈4 s instead of ≈8 s for 158 ICT-sized scans on 2 cores).
    """
    s = data.shape[0]
    mean = data.mean(axis=0)
    centred = (data - mean).reshape(s, -1)
    p, sing, _ = np.linalg.svd(centred.T, full_matrices=False)
    vt = p.T  # rows: unit principal directions in R^{3n}
    sigma = sing / np.sqrt(s - 1)
    # Rank after centring is at most s - 1; tiny trailing values are round-off, not variance.
    keep = sigma > _DEGENERATE * sigma[0] if sigma[0] > 0 else np.zeros(sigma.shape, bool)
    keep[s - 1:] = False
    sigma, vt = sigma[keep], vt[keep]
    if sigma.size == 0:
        raise StudioError(f"all scans have the same {what}; there is no variation to model")
    # An SVD's sign per component is arbitrary; fix it so rebuilding gives the same model.
    big = np.abs(vt).argmax(axis=1)
    vt *= np.sign(vt[np.arange(len(vt)), big])[:, None]
    return mean, sigma, vt, centred


def _choose_k(sigma: np.ndarray, components, variance, what: str) -> int:
    avail = len(sigma)
    if components is not None:
        k = int(components)
        if k < 1 or k > avail:
            raise StudioError(f"{what}: {k} components asked for, the scans support 1..{avail}")
        return k
    if variance is not None:
        v = float(variance)
        if not 0 < v <= 1:
            raise StudioError(f"variance must be in (0, 1], got {variance}")
        cum = np.cumsum(sigma ** 2) / np.sum(sigma ** 2)
        # Small slack so variance=1.0 is reached despite round-off in the cumulative sum.
        return int(min(np.searchsorted(cum, v - 1e-12) + 1, avail))
    return avail


def _report(sigma, vt, centred, k, n) -> dict:
    lam = sigma ** 2
    ratio = lam / lam.sum()
    resid = centred - (centred @ vt[:k].T) @ vt[:k]
    return {
        "eigenvalues": lam,
        "sigma": sigma,
        "explained_variance_ratio": ratio,
        "cumulative": np.cumsum(ratio),
        "kept": k,
        # Root mean squared per-vertex distance between each scan and its k-component fit.
        "reconstruction_rms": np.sqrt((resid ** 2).sum(axis=1) / n),
    }


def build_pca_model(name: str, vertices, faces, colors=None, uv=None, face_uv=None,
                    components: int | None = None, variance: float | None = None,
                    align: bool = False, unit: str = "mm", attribution: str = "",
                    progress: ProgressFn | None = None):
    """Build a ``PCAModel`` from registered scans; returns ``(model, report)``.

    ``components`` keeps exactly K components; ``variance`` keeps the fewest reaching that
    fraction of the variance; neither keeps all non-degenerate ones (at most s − 1).
    Coefficients are in σ units: basis_i = σ_i · PC_i, so the prior is N(0, 1).
    """
    X = np.asarray(vertices, dtype=np.float64)
    if X.ndim != 3 or X.shape[2] != 3:
        raise StudioError(f"scans must be an (s, n, 3) array, got {list(X.shape)}")
    s, n, _ = X.shape
    if s < 2:
        raise StudioError(f"a model needs at least 2 scans, got {s}")
    if not np.all(np.isfinite(X)):
        raise StudioError("scan vertices contain NaN or infinite values")
    if components is not None and variance is not None:
        raise StudioError("give either a number of components or a variance fraction, not both")
    if unit not in UNIT_TO_MM:
        raise StudioError(f"unit must be one of {', '.join(UNIT_TO_MM)}, got '{unit}'")
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if faces.size and (faces.min() < 0 or faces.max() >= n):
        raise StudioError(f"faces refer to vertices outside 0..{n - 1}")
    C = None
    if colors is not None:
        C = np.asarray(colors, dtype=np.float64)
        if C.shape != X.shape:
            raise StudioError(f"colours must be {list(X.shape)} like the vertices, got {list(C.shape)}")
        if not np.all(np.isfinite(C)):
            raise StudioError("scan colours contain NaN or infinite values")

    if align:
        report(progress, 0.0, "aligning scans (generalized Procrustes)")
        X = generalized_procrustes(X)
    report(progress, 0.2, "shape PCA")
    mean, sigma, vt, centred = _pca(X, "shape")
    k = _choose_k(sigma, components, variance, "shape")
    rep = _report(sigma, vt, centred, k, n)
    rep.update({"scans": s, "vertices": n, "aligned": bool(align), "variance_target": variance,
                "components_requested": components, "color": None})
    linear = [_group("shape", "position", sigma[:k], vt[:k], n)]

    color_mean = None
    if C is not None:
        report(progress, 0.6, "colour PCA")
        color_mean, csig, cvt, ccentred = _pca(C, "colour")
        # The shape's rule applied to colour; a count is capped at what the colours support.
        ck = _choose_k(csig, None if components is None else min(components, len(csig)), variance, "colour")
        rep["color"] = _report(csig, cvt, ccentred, ck, n)
        linear.append(_group("color", "color", csig[:ck], cvt[:ck], n))

    report(progress, 0.9, "assembling model")
    meta = ModelMeta(unit=unit, attribution=attribution, source=f"built from {s} registered scans"
                     + (" (Procrustes-aligned)" if align else ""))
    uvs = None if uv is None or face_uv is None else np.asarray(uv, dtype=np.float32)
    fuv = None if uvs is None else np.asarray(face_uv, dtype=np.int32)
    model = PCAModel(name, mean, faces, linear, color_mean=color_mean, uv=uvs, face_uv=fuv, meta=meta)
    report(progress, 1.0, f"kept {k} of {len(sigma)} components")
    return model, rep


def _group(name: str, affects: Affects, sigma: np.ndarray, vt: np.ndarray, n: int) -> LinearGroup:
    basis = (sigma[:, None] * vt).reshape(len(sigma), n, 3)
    names = tuple(f"PC{i + 1}" for i in range(len(sigma)))
    return LinearGroup(ParamGroup(name, names, "normal", affects=affects), basis)


# -- spectrum plot ------------------------------------------------------------------------------

def write_spectrum_png(report: dict, path, force: bool = False) -> Path:
    """Eigenvalue spectrum (log scale) and cumulative variance curve with the cut-off marked."""
    # Figure + Agg canvas instead of pyplot: no global figure state and no GUI backend, so
    # this is safe from worker threads and importing studio.core stays light.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    lam = np.asarray(report["eigenvalues"], dtype=float)
    cum = np.asarray(report["cumulative"], dtype=float)
    k = int(report["kept"])
    idx = np.arange(1, len(lam) + 1)

    fig = Figure(figsize=(9, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.bar(idx, lam, color=np.where(idx <= k, "tab:blue", "lightgray"), width=0.85)
    ax1.set_yscale("log")
    ax1.set_xlabel("component")
    ax1.set_ylabel("eigenvalue (σ²)")
    ax1.set_title("eigenvalue spectrum")

    ax2.plot(idx, cum * 100, marker="o", markersize=3)
    ax2.axvline(k, color="tab:red", linestyle="--", label=f"kept {k}: {cum[k - 1] * 100:.1f}%")
    if report.get("variance_target") is not None:
        ax2.axhline(float(report["variance_target"]) * 100, color="gray", linestyle=":")
    ax2.set_ylim(0, 101)
    ax2.set_xlabel("components")
    ax2.set_ylabel("variance explained (%)")
    ax2.set_title("cumulative variance")
    ax2.legend(loc="lower right")
    fig.tight_layout()

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    with atomic_path(path, force) as tmp:
        tmp.write_bytes(buf.getvalue())
    return Path(path)
