"""``studio eval neural``: neural vs linear fits of held-out heads (complete and partial clouds)."""

from __future__ import annotations

import json

from studio.core.errors import StudioError


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
    from studio.cli.progressbar import progress_bar
    from studio.core.registry import open_model
    from studio.jobs.neural_eval import neural_eval_job

    if not 32 <= a.resolution <= 512:
        raise StudioError("--resolution must lie between 32 and 512")
    if a.samples < 1000:
        raise StudioError("--samples must be at least 1000")
    neural = open_model(a.model)
    if getattr(neural, "kind", "") != "neural":
        raise StudioError(f"'{a.model}' is not a neural model")
    source = a.linear or (neural.checkpoint.meta or {}).get("recipe", {}).get("source_model") or "ict"
    linear = open_model(source)
    if getattr(linear, "kind", "") != "pca":
        raise StudioError(f"'{source}' is not a linear model")
    r = {"eval": "neural"}
    if not a.ablation_only:
        with progress_bar("eval neural") as cb:
            r = neural_eval_job(neural, linear, a.count, a.points, a.steps, a.resolution, a.samples, a.lam,
                                progress=cb)
        print_summary(r, a)
    if a.ablation:
        r["ablation"] = run_ablation(a, neural, linear)
    if a.json:
        print(json.dumps(r))
    return 0


def run_ablation(a, neural, linear) -> dict:
    from studio.cli.progressbar import progress_bar
    from studio.core.registry import open_model
    from studio.jobs.neural_eval import neural_ablation_job

    arms = {a.model: neural}
    for name in a.ablation:
        m = open_model(name)
        if getattr(m, "kind", "") != "neural":
            raise StudioError(f"--ablation {name}: not a neural model")
        arms[name] = m
    with progress_bar("ablation") as cb:
        res = neural_ablation_job(arms, linear, a.ablation_count, a.points, a.samples, progress=cb)
    print(f"ablation: held-out identities {res['seeds']}, studio scan fit, head region, mean over identities")
    print(f"{'setting':<40}" + "".join(f"{n[:18] + ' F@1mm':>26}{'CD-L1 mm':>10}" for n in arms))
    for key in res["settings"] + ["all settings"]:
        cells = "".join(f"{res['summary'][n][key]['head_fscore']:>26.3f}{res['summary'][n][key]['head_chamfer_l1']:>10.3f}"
                        for n in arms)
        print(f"{key:<40}{cells}")
    return res


def print_summary(r: dict, a) -> None:
    from studio.jobs.neural_eval import REGIONS

    print(f"held-out identities {r['seeds'][0]}…{r['seeds'][-1]} ({len(r['seeds'])}), {a.points} points per "
          f"cloud, fitted meshes at {a.resolution}³; mean over identities")
    print(f"{'cloud':<9}{'model':<8}" + "".join(f"{reg + ' ' + k:>16}" for reg in REGIONS
                                               for k in ("CD-L1 mm", "NC", "F@1mm")))
    for kind in ("complete", "partial"):
        for model in ("neural", "linear"):
            cells = []
            for reg in REGIONS:
                s = r["summary"][f"{kind}/{model}/{reg}"]
                cells += [f"{s['chamfer_l1']:>16.3f}", f"{s['normal_consistency']:>16.3f}", f"{s['fscore']:>16.3f}"]
            print(f"{kind:<9}{model:<8}" + "".join(cells))
