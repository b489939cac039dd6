"""``studio bench extract``: narrow-band vs dense marching cubes on the neural head, and the preview rate.

For each resolution (default 128³ and 256³) the same identity code is extracted densely (every grid
point asked) and narrow-band (coarse-to-fine, ``studio.core.neural.extract``); printed are the times,
the speed-up, the SDF queries of each and how far the two meshes are apart in voxels (Chamfer-L1
and the largest vertex distance, ``studio.core.metrics``). The same is done on an analytic SDF
(an exact distance field of a capsule head with ears), where the narrow band's Lipschitz argument
holds exactly, so the two rows separate "the method is right" from "the learned field is Lipschitz
enough". The preview rate is latent change → mesh per second at the preview resolution, new
tri-planes included (a new identity code each time), and the expression-only rate (planes and
canonical mesh cached, only the deformation runs).
"""

from __future__ import annotations

import json
import time

import numpy as np
import torch

from studio.core.errors import StudioError
from studio.core.threads import set_threads


def capsule_head(x: torch.Tensor) -> torch.Tensor:
    """Exact-enough SDF of a head-like solid in [-1, 1]³: skull ∪ jaw capsule ∪ neck capsule ∪ ears ∪ nose.

    A union (min) of exact SDFs is a 1-Lipschitz lower bound with the right zero set, which is
    all the narrow band needs.
    """
    def sphere(c, r):
        return torch.linalg.norm(x - x.new_tensor(c), dim=-1) - r

    def capsule(a, b, r):
        a, b = x.new_tensor(a), x.new_tensor(b)
        pa, ba = x - a, b - a
        t = ((pa * ba).sum(-1) / (ba * ba).sum()).clamp(0.0, 1.0)
        return torch.linalg.norm(pa - t[:, None] * ba, dim=-1) - r

    parts = [sphere((0.0, 0.15, -0.05), 0.5), capsule((0.0, -0.05, 0.1), (0.0, -0.3, 0.2), 0.28),
             capsule((0.0, -0.35, -0.1), (0.0, -0.9, -0.1), 0.22), sphere((0.5, 0.05, -0.05), 0.09),
             sphere((-0.5, 0.05, -0.05), 0.09), capsule((0.0, 0.05, 0.45), (0.0, -0.08, 0.55), 0.05)]
    out = parts[0]
    for p in parts[1:]:
        out = torch.minimum(out, p)
    return out


def _open(name):
    from studio.core import store
    from studio.core.neural.facemodel import NeuralFaceModel, untrained_checkpoint
    from studio.core.registry import open_model

    if name is None and "neural" in store.builtin():
        name = "neural"
    if name is None:
        return NeuralFaceModel(untrained_checkpoint(), name="untrained"), "untrained network (default config)"
    model = open_model(name)
    if model.kind != "neural":
        raise StudioError(f"model '{name}' is not a neural model (bench extract measures the neural head)")
    return model, f"{model.name} ({model.meta.source})"


def _compare(sdf_fn, n: int, device, margin) -> dict:
    from studio.core.metrics import nearest, surface_metrics
    from studio.core.neural.extract import extract

    kw = {} if margin is None else {"margin": margin}
    dense = extract(sdf_fn, n, narrow_band=False, device=device)
    band = extract(sdf_fn, n, narrow_band=True, device=device, **kw)
    if len(dense.vertices) == 0 or len(band.vertices) == 0:
        raise StudioError(f"no surface extracted at {n}³ (dense {len(dense.faces)}, narrow band "
                          f"{len(band.faces)} triangles)")
    m = surface_metrics(band.vertices, dense.vertices)
    worst = max(float(nearest(band.vertices, dense.vertices)[0].max()),
                float(nearest(dense.vertices, band.vertices)[0].max()))
    return {"resolution": n, "dense_s": dense.seconds, "narrow_s": band.seconds,
            "speedup": dense.seconds / band.seconds, "dense_queries": dense.queries,
            "narrow_queries": band.queries, "query_ratio": dense.queries / band.queries,
            "chamfer_voxels": m.chamfer_l1 / band.voxel, "max_voxels": worst / band.voxel,
            "dense_triangles": int(len(dense.faces)), "narrow_triangles": int(len(band.faces)),
            "identical": bool(len(dense.faces) == len(band.faces)
                              and np.array_equal(np.sort(dense.vertices, 0), np.sort(band.vertices, 0)))}


def _rate(fn, count: int) -> float:
    times = []
    for i in range(count):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(model=None, resolutions=(128, 256), preview_resolution=None, changes: int = 20, margin=None,
         analytic: bool = True, seed: int = 0, threads=None, as_json: bool = False) -> int:
    """``studio bench extract``: measure, print the table, and with ``as_json`` one JSON line last."""
    if changes < 2:
        raise StudioError("--changes must be at least 2")
    if any(n < 16 or n > 512 for n in resolutions):
        raise StudioError("--resolutions must lie between 16 and 512")
    if threads is not None and threads < 1:
        raise StudioError("--threads must be at least 1")
    set_threads(threads)  # default: the policy's count (threads.fit_threads)
    model, described = _open(model)
    if preview_resolution is not None:
        if not 16 <= preview_resolution <= 256:
            raise StudioError("--preview-resolution must lie between 16 and 256")
        model.preview_resolution = preview_resolution
    rng = np.random.default_rng(seed)
    z_id, _ = model.latents(model.sample(rng))
    sdf_fn = model.sdf_fn(z_id)
    print(f"model {described}; device {model.device}, {torch.get_num_threads()} torch threads")

    rows = []
    for n in resolutions:
        r = {"sdf": "neural", **_compare(sdf_fn, n, model.device, margin)}
        rows.append(r)
        if analytic:
            rows.append({"sdf": "analytic", **_compare(capsule_head, n, "cpu", margin)})
    print(f"{'sdf':<9}{'grid':>6}{'dense s':>10}{'band s':>9}{'speed-up':>10}{'dense queries':>15}"
          f"{'band queries':>14}{'Chamfer vox':>13}{'max vox':>9}")
    for r in rows:
        print(f"{r['sdf']:<9}{r['resolution']:>5}³{r['dense_s']:>10.2f}{r['narrow_s']:>9.3f}{r['speedup']:>9.1f}x"
              f"{r['dense_queries']:>15,}{r['narrow_queries']:>14,}{r['chamfer_voxels']:>13.4f}{r['max_voxels']:>9.3f}")

    # Preview: a new identity code per change (planes + narrow band + marching cubes + to mm).
    codes = [model.sample(rng) for _ in range(changes + 1)]
    model.preview_mesh(codes[-1])  # warm-up
    preview_s = _rate(lambda i: model.preview_mesh(codes[i]), changes)
    base = dict(codes[0])
    expr = [dict(base, expression=rng.standard_normal(len(base["expression"]))) for _ in range(changes + 1)]
    model.preview_mesh(expr[-1])
    expr_s = _rate(lambda i: model.preview_mesh(expr[i]), changes)
    triangles = len(model.preview_mesh(codes[0]).faces)
    preview = {"resolution": model.preview_resolution, "identity_change_s": preview_s,
               "identity_changes_per_s": 1.0 / preview_s, "expression_change_s": expr_s,
               "expression_changes_per_s": 1.0 / expr_s, "triangles": triangles}
    print(f"preview {model.preview_resolution}³: identity change → mesh {preview_s * 1e3:.1f} ms "
          f"({1 / preview_s:.1f}/s, new tri-planes included), expression change → mesh {expr_s * 1e3:.1f} ms "
          f"({1 / expr_s:.1f}/s), {triangles:,} triangles (median of {changes})")

    top = max((r for r in rows if r["sdf"] == "neural"), key=lambda r: r["resolution"])
    accept = {"resolution": top["resolution"], "speedup_at_least_10": top["speedup"] >= 10.0,
              "within_half_voxel": top["max_voxels"] <= 0.5, "preview_at_least_10_per_s": 1.0 / preview_s >= 10.0}
    print(f"acceptance at {top['resolution']}³: speed-up {top['speedup']:.1f}x "
          f"({'≥' if accept['speedup_at_least_10'] else '<'} 10x), "
          f"largest vertex distance {top['max_voxels']:.3f} voxel "
          f"({'≤' if accept['within_half_voxel'] else '>'} 0.5), preview {1 / preview_s:.1f}/s "
          f"({'≥' if accept['preview_at_least_10_per_s'] else '<'} 10/s)")
    if as_json:
        print(json.dumps({"bench": "extract", "model": described, "device": str(model.device),
                          "threads": torch.get_num_threads(), "rows": rows, "preview": preview,
                          "acceptance": accept}))
    return 0
