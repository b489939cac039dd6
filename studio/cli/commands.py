"""CLI commands for models and faces: models import/build/list/info/remove, sample, export, interpolate."""

from __future__ import annotations

import json
from pathlib import Path

from studio.core import params as params_io
from studio.core import store
from studio.core.errors import StudioError
from studio.core.modelfile import read_header
from studio.core.registry import open_model


def add_commands(sub) -> None:
    models = sub.add_parser("models", help="import, build, list and inspect models",
                            description="Manage the model store ($STUDIO_HOME, default the per-user data folder).")
    msub = models.add_subparsers(dest="models_command", metavar="SUBCOMMAND", required=True)

    p = msub.add_parser("import", help="import ICT-FaceKit, Basel Face Model or FLAME files",
                        description="Import a published model: an ICT-FaceKit FaceXModel folder, its repository "
                                    "zip or a tar archive; a BFM 2017/2019 .h5 or BFM 2009 .mat; a FLAME .pkl.")
    p.add_argument("src", help="file or folder to import")
    p.add_argument("--name", help="name in the store (default from the file name, e.g. 'ict')")
    p.add_argument("--format", default="auto", choices=["auto", "ict", "bfm", "flame"])
    p.add_argument("--force", action="store_true", help="replace a model of the same name")
    p.set_defaults(func=cmd_import)

    p = msub.add_parser("build", help="build a PCA model from registered scans",
                        description="Build a linear morphable model (Blanz & Vetter) from a folder of meshes that "
                                    "share one vertex order. Writes spectrum.png beside the model.")
    p.add_argument("dir", help="folder of .obj/.ply/.off/.stl meshes with the same vertex order")
    p.add_argument("--name", required=True)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--components", type=int, help="keep K components")
    g.add_argument("--variance", type=float, help="keep the fewest components explaining this fraction (e.g. 0.98)")
    p.add_argument("--align", action="store_true", help="Procrustes-align the scans first (similarity)")
    p.add_argument("--unit", default="mm", choices=["m", "cm", "mm"], help="length unit of the scans")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_build)

    p = msub.add_parser("list", help="list the models in the store")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = msub.add_parser("info", help="show a model's groups, regions, landmarks and attribution")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = msub.add_parser("remove", help="delete a model (and its saved identities) from the store")
    p.add_argument("name")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=cmd_remove)

    p = sub.add_parser("sample", help="draw random faces from a model's prior",
                       description="Write COUNT random faces (shape and colour drawn from the prior, neutral "
                                   "expression) with each face's parameters JSON beside it.")
    p.add_argument("--model", required=True)
    p.add_argument("--seed", type=int)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--scale", type=float, default=1.0, help="multiply the prior's σ (0 gives the mean face)")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--format", default="obj", choices=["obj", "ply", "stl", "glb"])
    p.add_argument("--morph-targets", type=int, metavar="K", help="GLB only: first K shape components "
                   "and all expressions as morph targets")
    p.add_argument("--force", action="store_true", help="replace existing files")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("export", help="write one face as a mesh (format from the extension)",
                       description="Formats: .obj (with UVs), .ply (vertex colours), .stl, .glb (optionally "
                                   "with morph targets), .json (parameters).")
    p.add_argument("--model", required=True)
    p.add_argument("--params", help="parameters JSON (default: the mean face)")
    p.add_argument("-o", "--out", required=True)
    p.add_argument("--morph-targets", type=int, metavar="K")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("interpolate", help="faces between two parameter files (and a GIF)")
    p.add_argument("--model", required=True)
    p.add_argument("a", help="parameters JSON of face A (t = 0)")
    p.add_argument("b", help="parameters JSON of face B (t = 1)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("-o", "--out", required=True, help="output folder for the frames")
    p.add_argument("--format", default="obj", choices=["obj", "ply", "stl", "glb"])
    p.add_argument("--gif", help="also write an animation (.gif or .mp4)")
    p.add_argument("--size", type=int, default=256, help="animation frame size in pixels")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_interpolate)


def _run(desc, job, *args, **kwargs):
    from studio.cli.progressbar import progress_bar

    with progress_bar(desc) as cb:
        return job(*args, progress=cb, **kwargs)


def cmd_import(a) -> int:
    from studio.jobs.models import import_job

    path = _run("importing", import_job, a.src, a.name, a.format, a.force)
    print(f"imported {path.parent.name}: {path}")
    return 0


def cmd_build(a) -> int:
    from studio.jobs.models import build_job

    if a.components is not None and a.components < 1:
        raise StudioError("--components must be at least 1")
    if a.variance is not None and not 0 < a.variance <= 1:
        raise StudioError("--variance must be in (0, 1]")
    path, rep = _run("building", build_job, a.dir, a.name, a.components, a.variance, a.align, a.unit, a.force)
    k, cum = int(rep["kept"]), rep["cumulative"]
    print(f"built {a.name}: {k} components explaining {100 * cum[k - 1]:.1f}% of the variance "
          f"({path}; spectrum: {path.parent / 'spectrum.png'})")
    return 0


def cmd_list(a) -> int:
    rows = []
    for name in store.names():
        try:
            h = read_header(store.model_file(name))
            rows.append({"name": name, "kind": "pca", "unit": h["unit"],
                         "vertices": h["arrays"]["mean"]["shape"][0],
                         "groups": {g["name"]: len(g["names"]) for g in h["groups"]}})
        except StudioError as e:
            rows.append({"name": name, "error": str(e)})
    if a.json:
        print(json.dumps(rows))
    elif not rows:
        print(f"no models in {store.models_dir()}; import one with 'studio models import SRC'")
    for r in [] if a.json else rows:
        if "error" in r:
            print(f"{r['name']:<20} DAMAGED: {r['error']}")
        else:
            groups = ", ".join(f"{k} {v}" for k, v in r["groups"].items())
            print(f"{r['name']:<20} {r['kind']:<6} {r['vertices']:>7} vertices  {groups}  [{r['unit']}]")
    return 0


def cmd_info(a) -> int:
    m = open_model(a.name)
    lin = m.as_linear()  # a neural model's vertex and triangle counts depend on its parameters
    info = {
        "name": m.name, "kind": m.kind, "unit": m.meta.unit, "vertices": lin.n_vertices if lin else None,
        "triangles": int(lin.faces.shape[0]) if lin else None, "uv": lin is not None and lin.uv is not None,
        "colors": m.has_colors,
        "groups": [{"name": g.name, "size": g.size, "prior": g.prior, "affects": g.affects,
                    "first": list(g.names[:5])} for g in m.groups],
        "regions": {k: int(len(v)) for k, v in m.meta.regions.items()},
        "landmarks": {k: int(len(v)) for k, v in m.meta.landmarks.items()},
        "materials": list(lin.materials) if lin else [], "source": m.meta.source,
        "attribution": m.meta.attribution, "path": str(store.resolve(a.name)),
    }
    if a.json:
        print(json.dumps(info))
        return 0
    size = (f"{info['vertices']} vertices, {info['triangles']} triangles" if lin is not None
            else "marching-cubes meshes (vertex count varies)")
    print(f"{info['name']} ({info['kind']}, {info['unit']}): {size}, UVs {'yes' if info['uv'] else 'no'}, "
          f"vertex colours {'yes' if info['colors'] else 'no'}")
    for g in info["groups"]:
        print(f"  group {g['name']:<11} {g['size']:>4} parameters, {g['prior']} prior, "
              f"affects {g['affects']} ({', '.join(g['first'])}{', …' if g['size'] > 5 else ''})")
    if info["regions"]:
        print("  regions: " + ", ".join(f"{k} ({v})" for k, v in info["regions"].items()))
    if info["landmarks"]:
        print("  landmarks: " + ", ".join(f"{k} ({v})" for k, v in info["landmarks"].items()))
    print(f"  file: {info['path']}")
    if info["attribution"]:
        print("  attribution: " + info["attribution"].splitlines()[0])
    return 0


def cmd_remove(a) -> int:
    store.resolve(a.name)
    if not a.yes:
        import sys

        if not sys.stdin.isatty():
            raise StudioError("refusing to delete without confirmation; pass --yes")
        if input(f"delete model '{a.name}' and its saved identities? [y/N] ").strip().lower() != "y":
            print("kept")
            return 1
    store.remove(a.name)
    print(f"removed {a.name}")
    return 0


def cmd_sample(a) -> int:
    from studio.jobs.faces import sample_job

    model = open_model(a.model)
    paths = _run("sampling", sample_job, model, a.out, a.count, a.seed, a.scale, a.format, a.force, a.morph_targets)
    print(f"wrote {len(paths)} face(s) to {a.out}")
    return 0


def _load_params(model, path):
    return model.zeros() if path is None else params_io.load(path, model)


def cmd_export(a) -> int:
    from studio.jobs.faces import export_face

    model = open_model(a.model)
    path = export_face(model, _load_params(model, a.params), Path(a.out), a.force, a.morph_targets)
    print(f"wrote {path}")
    return 0


def cmd_interpolate(a) -> int:
    from studio.jobs.faces import interpolate_job

    model = open_model(a.model)
    pa, pb = params_io.load(a.a, model), params_io.load(a.b, model)
    paths = _run("interpolating", interpolate_job, model, pa, pb, a.out, a.steps, a.format, a.gif, a.force, a.size)
    print(f"wrote {len(paths)} file(s) to {a.out}" + (f" and {a.gif}" if a.gif else ""))
    return 0
