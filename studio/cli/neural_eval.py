"""``studio eval neural``: neural vs linear fits of held-out heads (complete and partial clouds); the
measurement is ``studio.bench.neural_eval``."""

from __future__ import annotations


def add_command(sub) -> None:
    p = sub.add_parser("neural", help="fit the neural head and the linear model to clouds of held-out identities",
                       description="On identities the neural model never saw in training (seeds from its "
                       "checkpoint), fit its identity code (eq. 4.23, latent prior) and the linear model's "
                       "shape coefficients to a complete and a single-view (+z) partial point cloud of the "
                       "linear model's head; report Chamfer-L1 (mm), normal consistency and F-score@1mm on "
                       "the face and head regions.")
    p.add_argument("--model", default="neural", help="neural model (name or .safetensors path; default: neural)")
    p.add_argument("--linear", help="linear model giving the truth (default: the checkpoint's training "
                   "source, e.g. ict)")
    p.add_argument("--count", type=int, default=5, help="held-out identities (default 5)")
    p.add_argument("--points", type=int, default=20000, help="points per cloud (default 20000)")
    p.add_argument("--steps", type=int, default=300, help="Adam steps of the latent fit (default 300)")
    p.add_argument("--resolution", type=int, default=256, help="grid of the fitted mesh (default 256)")
    p.add_argument("--lam", type=float, default=1e-4, help="weight of the latent prior (default 1e-4)")
    p.add_argument("--samples", type=int, default=300_000, help="surface samples per mesh for the metrics "
                   "(default 300000: two samplings of one surface then score F@1mm 0.995)")
    p.add_argument("--ablation", metavar="MODEL", action="append", default=[],
                   help="also fit --model and this neural model (e.g. one trained without the 2-D stage; "
                   "repeatable) to the same corrupted clouds: complete and single-view, noise 0.5/1/2/3 mm, "
                   "0 and 20 %% outliers, by the studio's scan fitter; head/face Chamfer-L1 and F@1mm per setting")
    p.add_argument("--ablation-count", type=int, default=3, help="held-out identities in the ablation (default 3)")
    p.add_argument("--ablation-only", action="store_true", help="skip the latent-fit comparison with the linear model")
    p.add_argument("--json", action="store_true", help="print one JSON line")
    p.set_defaults(func=cmd_eval_neural)


def cmd_eval_neural(a) -> int:
    from studio.bench import neural_eval
    from studio.cli.progressbar import progress_bar

    return neural_eval.main(a.model, a.linear, a.count, a.points, a.steps, a.resolution, a.lam, a.samples,
                            a.ablation, a.ablation_count, a.ablation_only, as_json=a.json, progress_bar=progress_bar)
