"""The ``train neural`` job: training data from a linear model (cached), then the multi-stage loop."""

from __future__ import annotations

import json
from pathlib import Path

from studio.core import atomic, store
from studio.core.errors import StudioError
from studio.core.neural import data as ndata
from studio.core.neural import train as ntrain
from studio.core.neural.checkpoint import FILE_NAME, load_checkpoint, save_checkpoint
from studio.core.neural.config import NeuralConfig
from studio.core.neural.quality import quality_report
from studio.core.progress import ProgressFn, report, scaled
from studio.core.threads import available_cores, set_threads


def neural_train_job(out_dir, model_name: str = "ict", config: NeuralConfig | str | Path | None = None,
                     resume: bool = False, max_minutes: float | None = None, cache_dir=None,
                     device: str | None = None, threads: int | None = None, metrics: bool = True,
                     progress: ProgressFn | None = None, init=None) -> ntrain.Trainer:
    """Train the neural head on ``model_name``'s identities/expressions into ``out_dir``.

    ``init``: a checkpoint (folder or file) a new run starts from (network and training codes).
    ``threads``: torch (and BLAS) CPU threads (default: every core available to the process).
    """
    from studio.core.registry import open_model

    if max_minutes is not None and not max_minutes > 0:
        raise StudioError("--max-minutes must be positive")
    if isinstance(config, NeuralConfig):
        cfg = config
    elif config is not None:
        cfg = NeuralConfig.from_json_file(config)
    elif resume and (Path(out_dir) / "config.json").is_file():
        cfg = NeuralConfig.from_json_file(Path(out_dir) / "config.json")
    else:
        cfg = NeuralConfig()
    cfg.validate()
    # Training's batches are large enough to use every core (measured 0.27 s per identity step with 2
    # threads on 2 idle cores); on a busy machine ``threads=1`` is faster (no spin-waiting).
    set_threads(int(threads) if threads else available_cores())
    init_ck = load_checkpoint(init) if init is not None else None
    model = open_model(model_name)
    if model.as_linear() is None:
        raise StudioError(f"model {model_name} is not a linear model; training data comes from a linear model")
    model_path = str(store.resolve(model_name))
    data = ndata.load_or_build(model, model_path, cfg, cache_dir, scaled(progress, 0.0, 0.05))
    report(progress, 0.05, "training")
    meta = ntrain.default_meta(cfg, model, data)
    trainer = ntrain.train(data, cfg, out_dir, resume=resume, max_minutes=max_minutes, device=device, meta=meta,
                           progress=scaled(progress, 0.05, 0.9 if metrics else 1.0), init=init_ck)
    out = Path(out_dir)
    if trainer.group is not None and not trainer.group.writer:
        return trainer  # under torchrun, rank 0 writes the checkpoint and measures it
    atomic.write_text(out / "ATTRIBUTION.md", attribution_text(meta), force=True)
    if metrics:
        report(progress, 0.9, "measuring reconstruction quality")
        ck = load_checkpoint(out)
        ck.model.to("cpu")
        q = quality_report(ck, model)
        q["training"] = {"steps": trainer.total_steps, "seconds": round(trainer.elapsed, 1),
                         "final_losses": trainer.history[-1] if trainer.history else {}}
        atomic.write_text(out / "metrics.json", json.dumps(q, indent=2), force=True)
        # the checkpoint carries its metrics too
        ck.meta["metrics"] = {k: v for k, v in q.items() if k.endswith("_mean")}
        save_checkpoint(out / FILE_NAME, ck, force=True)
    report(progress, 1.0, "done")
    return trainer


def attribution_text(meta: dict) -> str:
    recipe = json.dumps(meta.get("recipe", {}), indent=2)
    quoted = "\n".join(f"> {line}".rstrip() for line in str(meta.get("attribution", "")).splitlines())
    return (f"# Neural head model: attribution and training data\n\n"
            f"Trained by Face Studio (`studio train neural`) on faces drawn from the linear model "
            f"`{meta.get('source_model', '?')}`. Its attribution, which travels with this model:\n\n"
            f"{quoted}\n\n"
            f"No scan or mesh of the source model is stored here: only network weights, learned latent "
            f"codes and their statistics.\n\n## Training data recipe\n\n```json\n{recipe}\n```\n\n"
            f"Units: {meta.get('units', '')}.\n")
