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
    p.add_argument("--json", action="store_true", help="print one JSON line")
    p.set_defaults(func=cmd_eval_neural)


def cmd_eval_neural(a) -> int:
    from studio.cli.progressbar import progress_bar
    from studio.core.registry import open_model
    from studio.jobs.neural_eval import REGIONS, neural_eval_job

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
    with progress_bar("eval neural") as cb:
        r = neural_eval_job(neural, linear, a.count, a.points, a.steps, a.resolution, a.samples, a.lam,
                            progress=cb)
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
    if a.json:
        print(json.dumps(r))
    return 0
