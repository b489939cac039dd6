"""``studio bench …``: the arguments of every benchmark; the measurements live in studio/bench/.

Each ``_<name>(bsub)`` adds one ``studio bench NAME`` parser and calls ``studio.bench.<name>.main``
with its arguments (imported only when that bench runs). A new bench is one such function and one
entry in ``BENCHES``. Every bench prints its figures, and with --json one JSON object last.
"""

from __future__ import annotations


def add_commands(sub) -> None:
    bench = sub.add_parser("bench", help="measure speed (prints figures; --json for one JSON line)")
    bsub = bench.add_subparsers(dest="bench_command", metavar="BENCH", required=True)
    for add in BENCHES:
        add(bsub)


def _pca(bsub) -> None:
    p = bsub.add_parser("pca", help="full evaluation vs incremental slider update of a linear model")
    p.add_argument("--model", help="model to measure (default: 'ict' if imported, else a synthetic "
                   "model of ICT's size)")
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--json", action="store_true")

    def run(a) -> int:
        from studio.bench import pca

        return pca.main(a.model, a.repeats, as_json=a.json)

    p.set_defaults(func=run)


def _gui(bsub) -> None:
    p = bsub.add_parser("gui", help="parameter change → viewport vertices latency in the real window "
                        "(needs a display: run under xvfb-run)")
    p.add_argument("--model", help="model to open (default: 'ict' if imported, else a synthetic model of "
                   "ICT's size)")
    p.add_argument("--changes", type=int, default=200, help="slider changes to time")
    p.add_argument("--json", action="store_true")

    def run(a) -> int:
        from studio.bench import gui

        return gui.main(a.model, a.changes, as_json=a.json)

    p.set_defaults(func=run)


def _fit(bsub) -> None:
    p = bsub.add_parser("fit", help="scan fitting: time and face-region RMS error against ground truth",
                        description="Fit synthetic single-view scans (50k points, 0.5 mm noise, 20%% outliers, "
                                    "random similarity transform) made from faces the model never saw.")
    p.add_argument("--model", help="model (default: 'ict' if imported, else a synthetic test model)")
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--points", type=int, default=50_000)
    p.add_argument("--noise", type=float, default=0.5, help="noise σ in mm")
    p.add_argument("--outliers", type=float, default=0.2, help="fraction of outlier points")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--neural", default="neural",
                   help="neural model fitted to the same scans (default: the shipped 'neural'); 'none' skips it")
    p.add_argument("--busy", action="store_true",
                   help="run a CPU load (a separate process keeping one core busy) beside the fits")
    p.add_argument("--no-shapes", dest="shapes", action="store_false",
                   help="skip the full heads, expressive face masks and non-metric scales (bench_fit_shapes)")
    p.add_argument("--json", action="store_true")

    def run(a) -> int:
        from studio.bench import fit

        return fit.main(a.model, a.trials, a.points, a.noise, a.outliers, a.seed, a.neural, a.busy, a.shapes,
                        as_json=a.json)

    p.set_defaults(func=run)


def _extract(bsub) -> None:
    p = bsub.add_parser("extract", help="narrow-band vs dense mesh extraction of the neural model, and the "
                        "slider preview rate")
    p.add_argument("--model", help="neural model (name or .safetensors path; default: the shipped 'neural' "
                   "model, else an untrained network of the default size)")
    p.add_argument("--resolutions", type=int, nargs="+", default=[128, 256], metavar="N",
                   help="grid points per axis to compare (default 128 256)")
    p.add_argument("--preview-resolution", type=int, help="default: the model's preview resolution")
    p.add_argument("--changes", type=int, default=20, help="latent changes to time for the preview rate")
    p.add_argument("--margin", type=float, help="narrow-band Lipschitz safety margin (default: extract's)")
    p.add_argument("--no-analytic", action="store_true", help="skip the analytic-SDF rows")
    p.add_argument("--seed", type=int, default=0, help="which random identity code to extract")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: the cores available less one, at most "
                   "4: 1 on a 2-core machine)")
    p.add_argument("--json", action="store_true")

    def run(a) -> int:
        from studio.bench import extract

        return extract.main(a.model, a.resolutions, a.preview_resolution, a.changes, a.margin, not a.no_analytic,
                            a.seed, a.threads, as_json=a.json)

    p.set_defaults(func=run)


def _photo(bsub) -> None:
    p = bsub.add_parser("photo", help="photo fitting on rendered photos: shape error (mm) and time per photo")
    p.add_argument("--model", help="model (default 'ict')")
    p.add_argument("--count", type=int, default=10, help="photos to render and fit")
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument("--iterations", type=int, default=150)
    p.add_argument("--expressions", type=int, default=4, help="blendshapes active in each rendered face")
    p.add_argument("--size", type=int, default=800, help="rendered photo size in pixels")
    p.add_argument("--oracle", action="store_true", help="also fit with the true landmark positions + 1 px noise, "
                   "and with the detector but the render's true albedo (diagnostics: no user has either)")
    p.add_argument("--json", action="store_true")

    def run(a) -> int:
        from studio.bench import photo

        return photo.main(a.model, a.count, a.seed, a.iterations, a.expressions, a.size, a.oracle, as_json=a.json)

    p.set_defaults(func=run)


def _fuzz(bsub) -> None:
    p = bsub.add_parser("fuzz", help="feed N malformed inputs to every loader; count uncaught exceptions, "
                        "hangs, crashes and accepted-but-unloadable inputs")
    p.add_argument("--count", type=int, default=3000, help="cases in all, spread evenly over the loaders")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds one case may take before it is a hang")
    p.add_argument("--replay", metavar="TARGET:INDEX", help="run one case here and show how it ends")
    p.add_argument("--json", action="store_true")

    def run(a) -> int:
        from studio.bench.fuzz import campaign

        return campaign.main(a.count, a.seed, a.timeout, a.replay, as_json=a.json)

    p.set_defaults(func=run)


def _register(bsub) -> None:
    p = bsub.add_parser("register", help="registration: scans per minute on 1 and 2 Dask workers, and the "
                        "built model's held-out reconstruction RMS against the source model's",
                        description="Registers SCANS synthetic face-mask scans of unseen faces of the model (0.2 mm "
                                    "noise, holes, random pose and unit) with 2 workers, the first SPEED of them "
                                    "again with 1 worker, builds a PCA model from the registered meshes (--variance) "
                                    "and reconstructs HELD-OUT faces with it and with the source model truncated to "
                                    "the same number of components (least squares over the face region).")
    p.add_argument("--model", default="ict", help="linear model (default: ict)")
    p.add_argument("--scans", type=int, default=60)
    p.add_argument("--speed-scans", type=int, default=10, help="scans timed on 1 worker (0: skip that run)")
    p.add_argument("--held-out", type=int, default=10)
    p.add_argument("--variance", type=float, default=0.98, help="variance the built model keeps")
    p.add_argument("--out", help="keep the scans and registrations here (default: a temporary folder)")
    p.add_argument("--json", action="store_true")

    def run(a) -> int:
        from studio.bench import register

        return register.main(a.model, a.scans, a.speed_scans, a.held_out, a.variance, a.out, as_json=a.json)

    p.set_defaults(func=run)


# `studio bench --help` lists them in this order.
def _detail(bsub) -> None:
    p = bsub.add_parser("detail", help="fine detail (wrinkles) from rendered photos with known displacement: "
                        "correlation, RMS, normal error, expression transfer, time")
    p.add_argument("--model", help="model (default 'ict')")
    p.add_argument("--count", type=int, default=8, help="photos to render and recover")
    p.add_argument("--seed", type=int, default=2000)
    p.add_argument("--size", type=int, default=768, help="rendered photo size in pixels")
    p.add_argument("--map-size", type=int, default=512, help="texels per side of the detail map")
    p.add_argument("--iterations", type=int, default=60, help="shape-from-shading L-BFGS iterations")
    p.add_argument("--no-shadows", dest="shadows", action="store_false",
                   help="render without the key light's cast shadows and ambient occlusion (a soft wrapped key "
                        "light instead; the bench's conditions before 2026-12-01)")
    p.add_argument("--json", action="store_true")

    def run(a) -> int:
        from studio.bench import detail

        return detail.main(a.model, a.count, a.seed, a.size, a.map_size, a.iterations, as_json=a.json,
                           shadows=a.shadows)

    p.set_defaults(func=run)


BENCHES = (_pca, _gui, _fit, _extract, _photo, _fuzz, _register, _detail)
