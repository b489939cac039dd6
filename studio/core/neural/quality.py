"""How well a trained neural head reproduces its source model's faces (for the checkpoint's metrics.json).

* training identities: the learned code's canonical mesh vs the source mesh, and posed meshes (the
  canonical mesh's vertices moved by the deformation field) vs the posed source meshes;
* held-out identities (seeds never trained on): the identity code fitted to 4k surface points of
  the source mesh by eq. 4.23 (``fitting.fit_identity``, as ``studio eval neural`` does), then the
  same comparison.

Meshes come from plain dense marching cubes (this module must not depend on the live extractor it is
used to judge). Figures are in mm through ``studio.core.metrics`` (Chamfer-L1, normal consistency,
F-score@1mm). The reference is the source model's outer skin (config.regions); the neural surface is
closed where the source is open (neck, eyes, mouth), so "completeness" (reference → neural) is the
fairer single figure; both directions are reported.
"""

from __future__ import annotations

import numpy as np
import torch

from studio.core.metrics import sample_surface, surface_metrics
from studio.core.neural import data as nd
from studio.core.neural.checkpoint import NeuralCheckpoint
from studio.core.neural.fitting import fit_identity


@torch.no_grad()
def canonical_mesh(ck: NeuralCheckpoint, z_id: torch.Tensor, res: int = 128, chunk: int = 1 << 16):
    from skimage.measure import marching_cubes

    model = ck.model
    planes = model.planes(z_id.reshape(1, -1))
    g = torch.linspace(-1, 1, res)
    pts = torch.stack(torch.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    vals = torch.cat([model.sdf(pts[i:i + chunk][None], planes)[0] for i in range(0, len(pts), chunk)])
    vol = vals.reshape(res, res, res).numpy()
    if vol.min() > 0 or vol.max() < 0:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    v, f, _, _ = marching_cubes(vol, 0.0, spacing=(2.0 / (res - 1),) * 3)
    return v - 1.0, f[:, ::-1].copy()  # outward-facing triangles


def compare(ck: NeuralCheckpoint, v_model, f, ref_mm, ref_f, n: int = 50000) -> dict:
    if len(f) == 0:
        return {"chamfer_l1": float("nan"), "completeness": float("nan"), "fscore": 0.0}
    pp, pn = sample_surface(ck.to_mm(v_model), f, n, seed=1)
    rp, rn = sample_surface(ref_mm, ref_f, n, seed=2)
    m = surface_metrics(pp, rp, pn, rn, threshold=1.0)
    return {k: round(float(v), 4) for k, v in m.as_dict().items()}


def quality_report(ck: NeuralCheckpoint, source, n_train: int | None = None, n_heldout: int | None = None,
                   n_expr: int = 1, res: int | None = None, fit_steps: int | None = None) -> dict:
    """metrics.json content: per-identity figures and their means (mm); sizes default to the config's."""
    cfg = ck.config
    n_train = cfg.eval_n if n_train is None else n_train
    n_heldout = cfg.eval_n if n_heldout is None else n_heldout
    res = cfg.eval_res if res is None else res
    fit_steps = cfg.eval_fit_steps if fit_steps is None else fit_steps
    torch.set_grad_enabled(True)
    out: dict = {"resolution": res, "threshold_mm": 1.0, "train": [], "train_posed": [], "heldout": []}
    codes = torch.as_tensor(ck.stats["train_id_codes"])
    ex_codes = torch.as_tensor(ck.stats["train_ex_codes"])
    eg = nd._expr_group(source)
    for i in range(min(n_train, len(codes))):
        seed = cfg.train_seed0 + i
        v, f = canonical_mesh(ck, codes[i], res)
        ref, ref_f = nd.identity_mesh_mm(source, seed, cfg.regions)
        out["train"].append({"seed": seed, **compare(ck, v, f, ref, ref_f)})
        if eg is None or i >= cfg.expr_ids:  # only the first expr_ids identities have expression codes
            continue
        for j, w in enumerate(nd.expression_draws(seed, eg.size, cfg.expr_active, min(n_expr, cfg.n_expr_per_id),
                                                        cfg.expr_active_max)):
            with torch.no_grad():
                dv = ck.model.deform(torch.as_tensor(v[None], dtype=torch.float32),
                                     ex_codes[i * cfg.n_expr_per_id + j][None], codes[i][None])[0].numpy()
            ref_p, _ = nd.identity_mesh_mm(source, seed, cfg.regions, w)
            out["train_posed"].append({"seed": seed, "expression": j, **compare(ck, v + dv, f, ref_p, ref_f)})
    for k in range(n_heldout):
        seed = cfg.heldout_seed0 + k
        ref, ref_f = nd.identity_mesh_mm(source, seed, cfg.regions)
        rng = np.random.default_rng(seed)
        fi, bary = nd.sample_barycentric(ref, ref_f, 4000, rng)
        pts = ck.from_mm(nd.interpolate(ref, ref_f, fi, bary))
        fit = fit_identity(ck.model, pts, ck.stats["id_mean"], ck.stats["id_cov"], steps=fit_steps)
        v, f = canonical_mesh(ck, torch.as_tensor(fit.z_id, dtype=torch.float32), res)
        out["heldout"].append({"seed": seed, **compare(ck, v, f, ref, ref_f)})
    for key in ("train", "train_posed", "heldout"):
        rows = out[key]
        if rows:
            out[f"{key}_mean"] = {m: round(float(np.nanmean([r[m] for r in rows])), 4)
                                  for m in ("chamfer_l1", "accuracy", "completeness", "normal_consistency",
                                            "fscore", "recall")}
    return out
