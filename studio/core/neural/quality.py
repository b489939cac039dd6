"""How well a trained neural head reproduces its source model's faces (for the checkpoint's metrics.json).

* training identities: the learned code's canonical mesh vs the source mesh, and posed meshes (the
  canonical mesh's vertices moved by the deformation field) vs the posed source meshes;
* held-out identities (seeds never trained on): the identity code fitted to 4k surface points with
  normals of the source mesh (SDF = 0, ∇f ∥ n, Gaussian latent prior from the training codes), then
  the same comparison.

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


def fit_identity(ck: NeuralCheckpoint, points: np.ndarray, normals: np.ndarray, steps: int = 200,
                 lr: float = 0.02, prior_weight: float = 1e-3) -> torch.Tensor:
    """MAP identity code for surface points (model units) with normals: Σ|f| + (1 − cos) + prior."""
    model = ck.model
    mean = torch.as_tensor(ck.stats["id_mean"], dtype=torch.float32)
    prec = torch.as_tensor(np.linalg.pinv(ck.stats["id_cov"] + 1e-6 * np.eye(len(mean))), dtype=torch.float32)
    z = mean.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    x_all = torch.as_tensor(points, dtype=torch.float32)[None]
    n_all = torch.as_tensor(normals, dtype=torch.float32)[None]
    for i in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr * (0.1 ** (i / steps))
        x = x_all.clone().requires_grad_(True)
        f = model.sdf(x, model.planes(z[None]))
        (grad,) = torch.autograd.grad(f.sum(), x, create_graph=True)
        d = z - mean
        loss = f.abs().mean() + 0.1 * (1 - torch.nn.functional.cosine_similarity(grad, n_all, dim=-1)).mean() \
            + prior_weight * (d @ prec @ d)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return z.detach()


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
        if eg is None:
            continue
        erng = np.random.default_rng(seed + 7_000_003)  # the same draws as data.build_training_data
        for j in range(min(n_expr, cfg.n_expr_per_id)):
            w = nd.random_expression(eg.size, cfg.expr_active, erng)
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
        nrm = nd.interpolate(nd.vertex_normals(ref, ref_f), ref_f, fi, bary)
        z = fit_identity(ck, pts, nrm / np.linalg.norm(nrm, axis=1, keepdims=True), steps=fit_steps)
        v, f = canonical_mesh(ck, z, res)
        out["heldout"].append({"seed": seed, **compare(ck, v, f, ref, ref_f)})
    for key in ("train", "train_posed", "heldout"):
        rows = out[key]
        if rows:
            out[f"{key}_mean"] = {m: round(float(np.nanmean([r[m] for r in rows])), 4)
                                  for m in ("chamfer_l1", "accuracy", "completeness", "normal_consistency",
                                            "fscore", "recall")}
    return out
