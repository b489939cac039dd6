"""The multi-stage training loop of the neural head model (auto-decoder, DeepSDF/NPHM style).

Stages (``NeuralConfig``):
  1. ``identity``: tri-plane generator + SDF decoder + one code per training identity, on the neutral
     SDF samples (losses of thesis Table 4.1);
  2. ``render`` (the thesis's 2-D stage, ``render_steps > 0``): volume-rendered normal maps from
     several yaws, L1 to the training heads' maps and a discriminator against them (R1 penalty),
     with the 3-D identity losses kept on (``render2d.py``);
  3. ``expression``: the forward deformation field + one code per (identity, expression), identity
     codes frozen (correspondence, deformation penalty and latent losses, §4.3.3). The zero expression
     code is trained to mean "no deformation" (the neutral pose), so z_ex = 0 is the neutral slider.
     It comes last: it conditions on the identity codes, which the first two stages still move.

``render_steps``, ``stage_time_fractions`` & co. keep their JSON order (identity, expression, render);
``CONFIG_ORDER`` maps a stage to its entry.

On CUDA the losses run under fp16 autocast with a gradient scaler (the softplus stays fp32: β = 100
needs its precision), and the identity batch is sized to the device (``sized_batch``); every logged row
carries ``sec_per_step`` and the checkpoint's meta ``steps_per_s``.

Each stage has a step budget; with ``max_minutes`` the wall time is split by
``stage_time_fractions`` and a stage also ends when its share is spent. Learning rates decay
exponentially to ``lr_decay`` × their start over a stage.

The run folder holds ``train_state.pt`` (resumable: model, codes, optimisers, stage, step, elapsed time,
loss history; written atomically every ``checkpoint_minutes`` and loaded with ``weights_only=True``),
``neural_head.safetensors`` (the exported model, same cadence), ``loss.csv``, ``loss.png``,
``config.json`` and at the end ``metrics.json``.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import os
import time
from pathlib import Path
from typing import cast

import numpy as np
import torch

from studio.core import atomic, jsonio
from studio.core.errors import StudioError
from studio.core.facemodel import FaceModel
from studio.core.neural import distributed
from studio.core.neural import losses as L
from studio.core.neural.checkpoint import FILE_NAME, NeuralCheckpoint, latent_stats, save_checkpoint
from studio.core.neural.config import NeuralConfig
from studio.core.neural.data import DATA_FIELDS, TrainingData, recipe
from studio.core.neural.model import NeuralHead
from studio.core.progress import ProgressFn, report

STAGES = ("identity", "render", "expression")  # the order they run in
# --init into another recipe: these fields may differ. FREE: more or fewer identities of the same
# seeds (codes kept or predicted); RESAMPLED: the same heads sampled otherwise (eyeballs joined to the
# solid, detail-weighted or denser samples; codes kept); EXPRESSION: other poses (codes restarted).
FREE_FIELDS = ("n_train", "n_expr_ids", "n_norm_ids")
RESAMPLED_FIELDS = ("eye_regions", "detail_share", "n_surface", "n_near", "near_sigmas", "n_uniform")
EXPRESSION_FIELDS = ("n_expr_per_id", "expr_active", "expr_active_max", "n_corr")
CONFIG_ORDER = ("identity", "expression", "render")  # the order of the config's per-stage tuples
LEGACY_STAGES = ("identity", "expression", "render")  # stage indices of states saved before "stage_name"
STATE_FILE = "train_state.pt"
GAN_KEYS = ("gan_g", "gan_d", "r1", "d_real", "d_fake")


def pick_device(device: str | None = None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Trainer:
    def __init__(self, cfg: NeuralConfig, data: TrainingData, out_dir: Path, device: torch.device,
                 meta: dict | None = None):
        self.cfg, self.data, self.out, self.device = cfg, data, Path(out_dir), device
        self.meta = dict(meta or {})
        self.group = distributed.from_environment(device)  # None in one process
        if self.group is not None and cfg.render_steps > 0:
            raise StudioError("the 2-D stage runs in one process: set render_steps to 0 for multi-process training")
        torch.manual_seed(cfg.seed)
        self.gen = torch.Generator(device="cpu").manual_seed(cfg.seed + 1)
        self.model = NeuralHead(cfg).to(device)
        n_ex = data.corr_src.shape[1]
        self.n_ex = n_ex
        self.n_ex_ids = data.corr_src.shape[0]  # identities with expressions: the first ones
        self.id_codes = torch.nn.Parameter(torch.randn(data.n_ids, cfg.id_dim, generator=self.gen).mul_(0.01)
                                           .to(device))
        self.ex_codes = torch.nn.Parameter(torch.randn(self.n_ex_ids * max(n_ex, 1), cfg.ex_dim,
                                                       generator=self.gen).mul_(0.01).to(device))
        t = lambda a: torch.as_tensor(a, dtype=torch.float32, device=device)  # noqa: E731
        self.t = {k: t(getattr(data, k)) for k in ("surface", "normals", "near", "near_sdf", "uniform",
                                                    "uniform_sdf", "corr_src", "corr_dst")}
        self.opt_id = torch.optim.Adam([{"params": self.model.generator.parameters(), "lr": cfg.lr_model},
                                        {"params": self.model.decoder.parameters(), "lr": cfg.lr_model},
                                        {"params": [self.id_codes], "lr": cfg.lr_latent}])
        self.opt_ex = torch.optim.Adam([{"params": self.model.deformer.parameters(), "lr": cfg.lr_model},
                                        {"params": [self.ex_codes], "lr": cfg.lr_latent}])
        if self.group is not None:
            self.group.broadcast(list(self.model.parameters()) + [self.id_codes, self.ex_codes])
        self.render = None
        self.frozen_codes: torch.Tensor | None = None  # see warm_start
        if cfg.render_steps > 0:
            from studio.core.neural.render2d import RenderBranch
            self.render = RenderBranch(cfg, self.model, device)
        self.batch_ids = cfg.batch_ids  # identities per step (``sized_batch`` may raise it on a GPU)
        self.scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" else None
        self.stage = 0
        self.step = 0          # within the stage
        self.total_steps = 0
        self.elapsed = 0.0     # training seconds so far (all stages, across resumes)
        self.stage_elapsed = 0.0
        self.history: list[dict] = []

    # -- sampling -------------------------------------------------------------------------------
    def _pick(self, arr: torch.Tensor, idx: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        j = torch.randint(0, arr.shape[1], (len(idx), count), generator=self.gen).to(self.device)
        return j, idx[:, None].to(self.device)

    # -- one identity step -------------------------------------------------------------------------
    def identity_losses(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        js, ii = self._pick(self.t["surface"], idx, cfg.pts_surface)
        jn, _ = self._pick(self.t["near"], idx, cfg.pts_near)
        ju, _ = self._pick(self.t["uniform"], idx, cfg.pts_uniform)
        if self.group is not None:  # the whole batch was drawn (same random stream); this process's share
            mine = self.group.rows(len(idx))
            idx, js, jn, ju, ii = idx[mine], js[mine], jn[mine], ju[mine], ii[mine]
        z = self.id_codes[idx.to(self.device)]
        planes = self.model.planes(z)
        xs, ns = self.t["surface"][ii, js], self.t["normals"][ii, js]
        xn, dn = self.t["near"][ii, jn], self.t["near_sdf"][ii, jn]
        xu, du = self.t["uniform"][ii, ju], self.t["uniform_sdf"][ii, ju]
        x = torch.cat([xs, xn, xu], dim=1).requires_grad_(True)
        f = self.model.sdf(x, planes)
        g = L.gradient(f, x)
        a, b = cfg.pts_surface, cfg.pts_surface + cfg.pts_near
        return {
            "surface": L.surface_sdf(f[:, :a]),
            "normal": L.surface_normal(g[:, :a], ns),
            "eikonal": L.eikonal(g[:, a:]),
            "nonsurface": L.non_surface(f[:, b:], cfg.nonsurface_alpha),
            "near": L.sdf_supervision(f[:, a:b], dn),
            "uniform": L.sdf_supervision(f[:, b:], du),
            "tv": L.tv(planes),
            "plane_l2": L.plane_l2(planes),
            "latent": L.latent_l2(z),
        }

    def identity_weights(self) -> dict[str, float]:
        c = self.cfg
        return {"surface": c.w_surface, "normal": c.w_normal, "eikonal": c.w_eikonal,
                "nonsurface": c.w_nonsurface, "near": c.w_near, "uniform": c.w_uniform, "tv": c.w_tv,
                "plane_l2": c.w_plane_l2, "latent": c.w_latent}

    # -- one expression step -----------------------------------------------------------------------
    def expression_losses(self, pair: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        k = torch.randint(0, self.t["corr_src"].shape[2], (len(pair), cfg.ex_pts), generator=self.gen)
        # Free points: ball samples at least 0.1 (≈ 2 cm) from the surface should not move.
        ju = torch.randint(0, self.t["uniform"].shape[1], (len(pair), cfg.ex_pts_free), generator=self.gen)
        if self.group is not None:  # drawn for the whole batch (same random stream); this process's share
            mine = self.group.rows(len(pair))
            pair, k, ju = pair[mine], k[mine], ju[mine]
        ids = pair // self.n_ex
        exs = pair % self.n_ex
        z_id = self.id_codes[ids.to(self.device)].detach()
        z_ex = self.ex_codes[pair.to(self.device)]
        ii, ee = ids[:, None].to(self.device), exs[:, None].to(self.device)
        k, ju = k.to(self.device), ju.to(self.device)
        src, dst = self.t["corr_src"][ii, ee, k], self.t["corr_dst"][ii, ee, k]
        xu, du = self.t["uniform"][ii, ju], self.t["uniform_sdf"][ii, ju]
        far = (du.abs() > 0.1).float()
        n_corr = src.shape[1]
        x = torch.cat([src, xu], dim=1)
        delta = self.model.deform(x, z_ex, z_id)
        # The zero code is the neutral pose: Δ(x; 0, z_id) = 0 on the same points.
        delta0 = self.model.deform(src[:, : cfg.ex_pts_free], torch.zeros_like(z_ex), z_id)
        free = (delta[:, n_corr:].norm(dim=-1) * far).sum() / far.sum().clamp_min(1.0)
        return {
            "corr": L.correspondence(src, delta[:, :n_corr], dst),
            "deform": free + L.deformation_penalty(delta0),
            "ex_latent": L.latent_l2(z_ex),
        }

    def expression_weights(self) -> dict[str, float]:
        c = self.cfg
        return {"corr": c.w_corr, "deform": c.w_deform, "ex_latent": c.w_ex_latent}

    # -- schedule -------------------------------------------------------------------------------
    def stage_budget(self, max_minutes: float | None) -> tuple[int, float]:
        c = self.cfg
        k = CONFIG_ORDER.index(STAGES[self.stage])
        steps = (c.id_steps, c.ex_steps if self.n_ex else 0, c.render_steps if self.render else 0)[k]
        secs = math.inf
        if max_minutes is not None:
            secs = max_minutes * 60.0 * c.stage_time_fractions[k]
        return steps, secs

    def set_lr(self, frac: float) -> None:
        f = self.cfg.lr_decay ** min(max(frac, 0.0), 1.0)
        opt = self.opt_ex if STAGES[self.stage] == "expression" else self.opt_id  # the 2-D stage steps opt_id too
        for group in opt.param_groups:
            base = group.setdefault("base_lr", group["lr"])
            group["lr"] = base * f

    def run(self, max_minutes: float | None = None, progress: ProgressFn | None = None,
            log_every: int = 25) -> None:
        """Train until every stage's budget is spent (or max_minutes); checkpoints as it goes."""
        last_ckpt = time.monotonic()
        acc: dict[str, float] = {}
        n_acc = 0
        total_budget = max_minutes * 60.0 if max_minutes is not None else None
        while self.stage < len(STAGES):
            if total_budget is not None and self.elapsed >= total_budget:
                break
            steps, secs = self.stage_budget(max_minutes)
            if self.step >= steps or self.stage_elapsed >= secs:
                if n_acc:  # log the stage's last steps before its terms mix with the next stage's
                    row = {"stage": STAGES[self.stage], "step": self.step, "total_steps": self.total_steps,
                           "elapsed_s": round(self.elapsed, 2)}
                    row.update({k: v / n_acc for k, v in acc.items()})
                    self.history.append(row)
                    acc, n_acc = {}, 0
                self.stage += 1
                self.step, self.stage_elapsed = 0, 0.0
                continue
            t0 = time.monotonic()
            frac = max(self.step / max(steps, 1), self.stage_elapsed / secs if secs < math.inf else 0.0)
            self.set_lr(frac)
            terms, total = self.train_step()
            dt = time.monotonic() - t0
            self.elapsed += dt
            self.stage_elapsed += dt
            self.step += 1
            self.total_steps += 1
            for k, v in terms.items():
                acc[k] = acc.get(k, 0.0) + v
            acc["total"] = acc.get("total", 0.0) + total
            acc["sec_per_step"] = acc.get("sec_per_step", 0.0) + dt  # averaged per row like the terms
            n_acc += 1
            if n_acc >= log_every or self.step >= steps:
                row = {"stage": STAGES[self.stage], "step": self.step, "total_steps": self.total_steps,
                       "elapsed_s": round(self.elapsed, 2)}
                row.update({k: v / n_acc for k, v in acc.items()})
                self.history.append(row)
                acc, n_acc = {}, 0
                self.write_log()
            overall = self.progress_fraction(max_minutes)
            report(progress, overall, f"{STAGES[self.stage]} {self.step}/{steps} loss {total:.4f}")
            if time.monotonic() - last_ckpt > self.cfg.checkpoint_minutes * 60:
                self.save()
                last_ckpt = time.monotonic()
        if n_acc:  # the steps since the last logged row
            row = {"stage": STAGES[min(self.stage, len(STAGES) - 1)], "step": self.step,
                   "total_steps": self.total_steps, "elapsed_s": round(self.elapsed, 2)}
            row.update({k: v / n_acc for k, v in acc.items()})
            self.history.append(row)
        self.save()
        self.write_log(plot=True)

    def progress_fraction(self, max_minutes) -> float:
        c = self.cfg
        by_name = {"identity": c.id_steps, "expression": c.ex_steps if self.n_ex else 0,
                   "render": c.render_steps if self.render else 0}
        budgets = [by_name[s] for s in STAGES]
        done = sum(budgets[: self.stage]) + self.step
        frac = done / max(sum(budgets), 1)
        if max_minutes:
            frac = max(frac, self.elapsed / (max_minutes * 60.0))
        return min(frac, 1.0)

    def train_step(self) -> tuple[dict[str, float], float]:
        self.model.train()
        stage = STAGES[self.stage]
        extra: dict[str, float] = {}
        opts = [self.opt_ex] if stage == "expression" else [self.opt_id]
        with self.autocast():
            if stage == "expression":
                pair = torch.randint(0, self.n_ex_ids * self.n_ex, (self.cfg.ex_batch,), generator=self.gen)
                terms = self.expression_losses(pair)
                weights = self.expression_weights()
            else:
                idx = torch.randperm(self.data.n_ids, generator=self.gen)[: self.batch_ids]
                terms = self.identity_losses(idx)
                weights = self.identity_weights()
                if stage == "render" and self.render is not None:  # the stage runs only with a render branch
                    terms, weights, extra = self.render_terms(idx, terms, weights)
                    opts.append(self.render.opt)
            total = cast(torch.Tensor, sum(weights[k] * v for k, v in terms.items()))
        self.backward_step(total, opts)
        out = {k: float(v.detach()) for k, v in terms.items()}
        out.update(extra)
        total_value = float(total.detach())
        if self.group is not None:  # log the global batch's loss: the mean of the shares' losses
            out, total_value = self.group.mean_values(out, total_value)
        return out, total_value

    def render_terms(self, idx: torch.Tensor, terms: dict, weights: dict):
        """The 2-D stage's terms: the 3-D identity losses (× ``w_render_3d``) plus the rendered normal
        maps' L1 and adversarial terms of ``render_batch`` of the identities (the discriminator is
        stepped inside)."""
        c = self.cfg
        assert self.render is not None  # train_step asks for render terms only with a render branch
        n = c.render_batch or max(1, self.batch_ids // 2)
        ridx = idx[:n] if n <= len(idx) else torch.randperm(self.data.n_ids, generator=self.gen)[:n]
        g_terms, d_terms = self.render.losses(ridx, self.id_codes, self.t, self.gen)
        weights = {k: c.w_render_3d * w for k, w in weights.items()}
        weights.update(render_l1=c.w_render_normal, gan_g=c.w_gan)
        return {**terms, **g_terms}, weights, d_terms

    def autocast(self):
        if self.scaler is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=torch.float16)

    def backward_step(self, total: torch.Tensor, opts) -> None:
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        if self.scaler is None:
            total.backward()
            self._average_gradients(opts)
            for opt in opts:
                opt.step()
            return
        self.scaler.scale(total).backward()  # fp16 gradients would underflow unscaled
        self._average_gradients(opts)
        for opt in opts:
            self.scaler.step(opt)
        self.scaler.update()

    def _average_gradients(self, opts) -> None:
        if self.group is not None:
            self.group.average_gradients([p for opt in opts for g in opt.param_groups for p in g["params"]])

    # -- persistence --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = {"model": self.model.state_dict(), "id_codes": self.id_codes.detach().cpu(),
                 "ex_codes": self.ex_codes.detach().cpu(), "opt_id": self.opt_id.state_dict(),
                 "opt_ex": self.opt_ex.state_dict(), "stage": self.stage,
                 "stage_name": STAGES[min(self.stage, len(STAGES) - 1)],
                 "stage_done": self.stage >= len(STAGES), "step": self.step,
                 "total_steps": self.total_steps, "elapsed": self.elapsed, "stage_elapsed": self.stage_elapsed,
                 "history_json": json.dumps(self.history), "config_json": json.dumps(self.cfg.to_dict()),
                 "rng": self.gen.get_state()}
        if self.render is not None:
            state["render"] = self.render.state_dict()
        if self.frozen_codes is not None:
            state["frozen_codes"] = self.frozen_codes
        return state

    def load_state_dict(self, s: dict) -> None:
        self.model.load_state_dict(s["model"])
        with torch.no_grad():
            self.id_codes.copy_(s["id_codes"].to(self.device))
            self.ex_codes.copy_(s["ex_codes"].to(self.device))
        self.opt_id.load_state_dict(s["opt_id"])
        self.opt_ex.load_state_dict(s["opt_ex"])
        self.stage, self.step, self.total_steps = int(s["stage"]), int(s["step"]), int(s["total_steps"])
        self.stage = restored_stage(s)
        self.elapsed, self.stage_elapsed = float(s["elapsed"]), float(s["stage_elapsed"])
        self.history = jsonio.loads(s["history_json"], "the training history")
        self.gen.set_state(s["rng"])
        if self.render is not None and "render" in s:
            self.render.load_state_dict(s["render"])
        if "frozen_codes" in s:
            self.frozen_codes = s["frozen_codes"].float().cpu()

    def warm_start(self, ck: NeuralCheckpoint) -> None:
        """Start from a trained checkpoint's network and auto-decoder codes (fresh optimiser state and
        schedule): continues training a model whose resumable state is gone, e.g. the shipped one.

        The checkpoint must have the same architecture and recipe. This run may have more training
        identities (a larger ``n_train``, same first seeds, the checkpoint's normalisation and
        expression identities via ``n_norm_ids`` / ``n_expr_ids``): the checkpoint's identities keep
        their codes and each added identity starts at the code its shape coefficients predict — a ridge
        regression code ≈ W·α + b fitted on the checkpoint's (α, code) pairs (on ICT it explains about
        80 % of held-out codes' variance), much closer than the mean code."""
        if ck.config.architecture() != self.cfg.architecture():
            raise StudioError("the --init checkpoint has other network sizes than this config")
        strict = [k for k in DATA_FIELDS if k not in FREE_FIELDS + RESAMPLED_FIELDS + EXPRESSION_FIELDS]
        if any(getattr(ck.config, k) != getattr(self.cfg, k) for k in strict):
            raise StudioError("the --init checkpoint was trained on other heads (its recipe differs from this config)")
        id_codes, ex_codes = ck.stats.get("train_id_codes"), ck.stats.get("train_ex_codes")
        n0 = ck.config.n_train
        if id_codes is None or tuple(id_codes.shape) != (n0, self.cfg.id_dim):
            raise StudioError("the --init checkpoint does not carry training codes for these identities")
        # Other expressions (more blendshapes, another count): the deformation network is kept, but
        # the old expression codes described other poses, so they restart at zero.
        new_poses = any(getattr(ck.config, k) != getattr(self.cfg, k) for k in EXPRESSION_FIELDS) \
            or ck.config.expr_ids != self.cfg.expr_ids
        if ex_codes is None or tuple(ex_codes.shape) != tuple(self.ex_codes.shape):
            if not new_poses:
                raise StudioError("the --init checkpoint does not carry expression codes for these poses")
        if new_poses:
            ex_codes = np.zeros(tuple(self.ex_codes.shape), np.float32)
        if not np.allclose(ck.center, self.data.center, atol=1e-3) or abs(ck.scale - self.data.scale) > 1e-3:
            raise StudioError("the --init checkpoint's normalisation differs from the training data's "
                              f"(set n_norm_ids to its {ck.config.norm_ids} identities)")
        codes = np.asarray(id_codes, np.float64)
        if self.data.n_ids < n0:
            # A continuation on the first identities only (cheaper data): the others' codes are kept
            # as they are and exported with the trained ones, so the latent statistics (the fitting
            # prior) still describe all the checkpoint's identities.
            self.frozen_codes = torch.as_tensor(codes[self.data.n_ids:], dtype=torch.float32)
            codes = codes[: self.data.n_ids]
        if self.data.n_ids > n0:
            codes = np.vstack([codes, predicted_codes(self.data.coeffs[:n0], codes, self.data.coeffs[n0:])])
        self.model.load_state_dict(ck.model.state_dict())
        with torch.no_grad():
            self.id_codes.copy_(torch.as_tensor(codes, dtype=torch.float32))
            self.ex_codes.copy_(torch.as_tensor(ex_codes, dtype=torch.float32))
        prev = ck.meta or {}
        self.meta["initialised_from"] = {
            "total_steps": int(prev.get("total_steps", 0)),
            "training_seconds": float(prev.get("training_seconds", 0.0)),
            "initialised_from": prev.get("initialised_from"), "n_train": n0,
            "changed": [k for k in DATA_FIELDS if getattr(ck.config, k) != getattr(self.cfg, k)],
            "expression_codes_restarted": bool(new_poses)}

    def checkpoint(self) -> NeuralCheckpoint:
        stats = {"center": np.asarray(self.data.center, np.float64), "scale": float(self.data.scale)}
        codes = self.id_codes.detach().cpu()
        cfg = self.cfg
        if self.frozen_codes is not None:
            codes = torch.cat([codes, self.frozen_codes])
            cfg = dataclasses.replace(cfg, n_train=len(codes))  # the identities the codes stand for
        stats.update(latent_stats(codes.numpy(), "id"))
        stats.update(latent_stats(self.ex_codes.detach().cpu().numpy(), "ex"))
        stats["train_id_codes"] = codes.numpy().astype(np.float32)
        stats["train_ex_codes"] = self.ex_codes.detach().cpu().numpy().astype(np.float32)
        meta = dict(self.meta)
        meta.update({"stage_reached": STAGES[min(self.stage, len(STAGES) - 1)], "total_steps": self.total_steps,
                     "training_seconds": round(self.elapsed, 1), "device": str(self.device),
                     "steps_per_s": round(self.total_steps / self.elapsed, 3) if self.elapsed > 0 else 0.0,
                     "batch_ids_used": self.batch_ids, "mixed_precision": self.scaler is not None,
                     "stage_steps": stage_steps(self.history),
                     "train_ex_codes_layout": "row i * n_expr_per_id + j = identity i, expression j",
                     "final_losses": self.history[-1] if self.history else {}})
        return NeuralCheckpoint(self.model, cfg, stats, meta)

    def save(self) -> None:
        if self.group is not None and not self.group.writer:
            return  # every process holds the same state; rank 0 writes it
        buf = io.BytesIO()
        torch.save(self.state_dict(), buf)
        atomic.write_bytes(self.out / STATE_FILE, buf.getvalue(), force=True)
        save_checkpoint(self.out / FILE_NAME, self.checkpoint(), force=True)

    def write_log(self, plot: bool = False) -> None:
        if not self.history or (self.group is not None and not self.group.writer):
            return
        keys = ["stage", "step", "total_steps", "elapsed_s", "total"]
        for row in self.history:
            keys += [k for k in row if k not in keys]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        w.writerows(self.history)
        atomic.write_text(self.out / "loss.csv", buf.getvalue(), force=True)
        if plot:
            plot_losses(self.history, self.out / "loss.png")


def predicted_codes(coeffs: np.ndarray, codes: np.ndarray, new_coeffs: np.ndarray, ridge: float = 10.0) -> np.ndarray:
    """Codes for identities with shape coefficients ``new_coeffs`` by ridge regression code ≈ W·α + b on
    known (coeffs, codes) pairs. ``ridge`` 10 (σ units) was the best of 0.1–30 on held-out ICT codes."""
    x = np.c_[np.asarray(coeffs, np.float64), np.ones(len(coeffs))]
    reg = ridge * np.eye(x.shape[1])
    reg[-1, -1] = 0.0  # the offset is not shrunk
    w = np.linalg.solve(x.T @ x + reg, x.T @ np.asarray(codes, np.float64))
    return np.c_[np.asarray(new_coeffs, np.float64), np.ones(len(new_coeffs))] @ w


def restored_stage(s: dict) -> int:
    """The stage index of a saved state in this module's ``STAGES`` order (states written before the
    2-D stage moved ahead of the expression stage saved only an index in ``LEGACY_STAGES`` order)."""
    if s.get("stage_done") or int(s["stage"]) >= len(STAGES):
        return len(STAGES)
    name = s.get("stage_name") or LEGACY_STAGES[int(s["stage"])]
    return STAGES.index(name)


def stage_steps(history: list[dict]) -> dict[str, int]:
    """Steps each stage ran, from the logged rows (a row's ``step`` counts within its stage)."""
    out: dict[str, int] = {}
    for row in history:
        out[row["stage"]] = max(out.get(row["stage"], 0), int(row["step"]))
    return out


def sized_batch(base: int, peak_bytes: int, free_bytes: int, n_ids: int, share: float = 0.6,
                cap: int = 512) -> int:
    """Identities per step on a device with ``free_bytes``, when ``base`` of them peaked at
    ``peak_bytes``: as many as ``share`` of the free memory holds (memory grows about linearly
    with the batch), never fewer than ``base`` nor more than the identities or ``cap``."""
    if peak_bytes <= 0:
        return base
    fit = int(base * (share * free_bytes) // peak_bytes)
    return int(max(base, min(fit, cap, n_ids)))


def probe_batch(trainer: "Trainer") -> int:
    """``sized_batch`` from one measured identity step (CUDA only; the CPU keeps the config's)."""
    if trainer.device.type != "cuda":
        return trainer.batch_ids
    torch.cuda.reset_peak_memory_stats(trainer.device)
    base_mem = torch.cuda.memory_allocated(trainer.device)
    idx = torch.arange(min(trainer.batch_ids, trainer.data.n_ids))
    with trainer.autocast():
        terms = trainer.identity_losses(idx)
        total = cast(torch.Tensor, sum(trainer.identity_weights()[k] * v for k, v in terms.items()))
    total.backward()
    trainer.opt_id.zero_grad(set_to_none=True)
    peak = torch.cuda.max_memory_allocated(trainer.device) - base_mem
    free, _ = torch.cuda.mem_get_info(trainer.device)
    return sized_batch(trainer.batch_ids, peak, free, trainer.data.n_ids)


def plot_losses(history: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = [s for s in STAGES if any(r["stage"] == s for r in history)]
    fig, axes = plt.subplots(1, len(stages), figsize=(6 * len(stages), 4), squeeze=False)
    for ax, stage in zip(axes[0], stages):
        rows = [r for r in history if r["stage"] == stage]
        xs = [r["total_steps"] for r in rows]
        gan = ax.twinx() if any(k in rows[-1] for k in GAN_KEYS) else None
        for k in rows[-1]:
            if k in ("stage", "step", "total_steps", "elapsed_s", "sec_per_step"):
                continue
            if gan is not None and k in GAN_KEYS:  # logits can be negative: a linear axis of their own
                gan.plot(xs, [r.get(k, float("nan")) for r in rows], label=k, ls="--", lw=1.0)
                continue
            ys = [max(r.get(k, float("nan")), 1e-8) for r in rows]
            ax.plot(xs, ys, label=k, lw=2.0 if k == "total" else 1.0)
        ax.set_yscale("log")
        ax.set_title(f"{stage} stage")
        ax.set_xlabel("step")
        ax.legend(fontsize=7, ncol=2, loc="upper left")
        if gan is not None:
            gan.set_ylabel("discriminator / generator terms, R1 (linear)")
            gan.legend(fontsize=7, loc="upper right")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic.write_bytes(path, buf.getvalue(), force=True)


def train(data: TrainingData, cfg: NeuralConfig, out_dir, resume: bool = False, max_minutes: float | None = None,
          device: str | None = None, meta: dict | None = None, progress: ProgressFn | None = None,
          log_every: int = 25, init: NeuralCheckpoint | None = None) -> Trainer:
    """Train (or continue training) into ``out_dir``; returns the trainer (model, codes, history).
    ``init``: a new run starts from this checkpoint's network and codes (see ``Trainer.warm_start``)."""
    out = Path(out_dir)
    state_path = out / STATE_FILE
    if resume and init is not None:
        raise StudioError("--resume continues a run's own state; --init starts a new run (give one of them)")
    if resume:
        if not state_path.is_file():
            raise StudioError(f"nothing to resume in {out} (no {STATE_FILE})")
    elif state_path.exists() or (out / FILE_NAME).exists():
        raise StudioError(f"{out} already holds a training run; pass --resume to continue it or choose "
                          "another --out")
    out.mkdir(parents=True, exist_ok=True)
    dev = pick_device(device)
    if dev.type == "cuda" and "LOCAL_RANK" in os.environ:  # torchrun: one GPU per process
        dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    trainer = Trainer(cfg, data, out, dev, meta)
    if resume:
        try:
            state = torch.load(state_path, map_location=dev, weights_only=True)
        except Exception:
            raise StudioError(f"{state_path} is not a readable training state") from None
        # newer keys take defaults
        saved_cfg = NeuralConfig.from_dict(jsonio.loads(state["config_json"], f"{state_path}: the config"))
        if saved_cfg != cfg:
            raise StudioError(f"the config differs from the one {out} was trained with; resume with the same "
                              "--config")
        trainer.load_state_dict(state)
    else:
        if init is not None:
            trainer.warm_start(init)
        if trainer.group is None or trainer.group.writer:
            atomic.write_text(out / "config.json", json.dumps(cfg.to_dict(), indent=2), force=True)
    trainer.batch_ids = probe_batch(trainer)  # a GPU gets a batch sized to its memory
    trainer.run(max_minutes, progress, log_every)
    return trainer


def default_meta(cfg: NeuralConfig, model: FaceModel, data: TrainingData) -> dict:
    return {"attribution": model.meta.attribution, "source_model": model.name,
            "source_unit": model.meta.unit, "recipe": recipe(cfg, model.name),
            "units": "x_mm = x_model * scale + center (center in mm, scale in mm per model unit)",
            "torch": torch.__version__}
