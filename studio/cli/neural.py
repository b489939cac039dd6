"""``studio train neural`` (and ``studio eval neural``, registered by neural_eval)."""

from __future__ import annotations


def add_commands(sub) -> None:
    train = sub.add_parser("train", help="train a model")
    tsub = train.add_subparsers(dest="train_command", metavar="WHAT", required=True)
    p = tsub.add_parser("neural", help="train the neural tri-plane SDF head model on a linear model's faces",
                        description="Train the neural head model (identity SDF + expression deformation) on "
                        "random identities and expressions of a linear model. Writes neural_head.safetensors, "
                        "train_state.pt (for --resume), loss.csv, loss.png and config.json into --out.")
    p.add_argument("--out", required=True, help="run folder (created; must not hold a run unless --resume)")
    p.add_argument("--model", default="ict", help="linear model to draw training faces from (default: ict)")
    p.add_argument("--config", help="NeuralConfig JSON (keys as in config.json of a run; default: shipped sizes)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--init", metavar="CHECKPOINT",
                   help="start a new run from this trained checkpoint's network and codes (e.g. checkpoints/neural)")
    p.add_argument("--max-minutes", type=float, help="total training time budget (stops cleanly, saves)")
    p.add_argument("--cache", help="folder for cached training samples (default: the user cache folder)")
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: every core available; 1 is faster on a "
                   "busy machine)")
    p.add_argument("--no-metrics", dest="metrics", action="store_false",
                   help="skip measuring reconstruction quality (metrics.json) at the end")
    p.set_defaults(func=_train_neural)

    ev = sub.add_parser("eval", help="evaluate a model")
    esub = ev.add_subparsers(dest="eval_command", metavar="WHAT", required=True)
    try:
        from studio.cli import neural_eval
    except ImportError:
        neural_eval = None
    if neural_eval is not None:
        neural_eval.add_command(esub)


def _train_neural(args) -> int:
    from studio.cli.progressbar import progress_bar
    from studio.jobs.neural_train import neural_train_job

    with progress_bar("train neural") as cb:
        trainer = neural_train_job(args.out, args.model, args.config, args.resume, args.max_minutes, args.cache,
                                   args.device, args.threads, args.metrics, cb,
                                   init=args.init)
    last = trainer.history[-1] if trainer.history else {}
    print(f"trained {trainer.total_steps} steps in {trainer.elapsed / 60:.1f} min "
          f"(last logged loss {last.get('total', float('nan')):.4f}); wrote {args.out}")
    return 0
