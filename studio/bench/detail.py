"""``studio bench detail``: fine detail recovered from rendered photos with known displacement.

Each photo is an ICT face (prior identity, two random blendshapes up to 0.3, the six wrinkle
drivers browInnerUp, eyeSquint, mouthSmile L/R at 0.5-1) whose face is subdivided twice and
displaced by a known map (core/detail/synthetic.py: forehead lines, crow's feet, nasolabial folds
deepening with their blendshape, faint static relief), lit by a sky and a key light from above
the side with the key's cast shadows and ambient occlusion (``shadows=False``: a soft wrapped key
and no shadows, the conditions before 2026-12-01), ±15° yaw, the face half the photo's width,
and then put through the product: ``studio fit photo``'s job with its detector, then the detail
job. Figures, over the face region the photo shows:

- displacement correlation and RMS error, recovered against true. *Registered through the
  photo*: each texel of the fitted face is compared with the true surface point that the same
  pixel shows (the coarse fit's own misplacement, which ``studio bench photo`` measures, is left
  out); *in UV*: texel against the same texel (charges that misplacement too).
- normal-angle error (degrees, camera frame) of the fitted surface against the true detailed
  surface, coarse and detailed, over the face and over the wrinkles (true |d| > 0.1 mm); beside
  them the ceiling: the true map itself registered onto the fitted face. Most of the coarse
  error is the coarse fit's own shape and pose, which no detail map removes; so also the
  detail's own normal error, against that true map on the fitted face (the coarse error cancels).
- expression transfer: the drivers re-drawn (0-1), the fitted face animated by the same change,
  the displacement predicted by the strain model against the truth there (and, as the baseline,
  the recovered map left static).
- the expression model alone: the *true* map at the photo's expression, split by the true
  compression and animated, against the truth at the other expression (and left static); and
  the change alone (animated − photo's map against the true change), which a static map cannot
  predict at all.
- the same recovery given the *true* coarse face, camera, light and albedo instead of the photo
  fit's (its correlation and transfer): what the shape from shading itself reaches on the photo.
  The rest of the gap to the product's figure is the coarse fit's.
- seconds per photo: fit + detail, detector included (not the true-inputs recovery).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np

DRIVERS = ("browInnerUp_L", "browInnerUp_R", "eyeSquint_L", "eyeSquint_R", "mouthSmile_L", "mouthSmile_R")


@dataclass
class Case:
    photo: object  # synthetic.SyntheticPhoto (rendered with the detail)
    truth: object  # synthetic detail (TrueDetail)
    params1: dict  # the face animated to another expression (true)


def detail_light(rng, shadows: bool = False) -> np.ndarray:
    """Ambient plus a key light from above and to one side (a portrait's usual lighting): a soft
    "wrapped" key, or with ``shadows`` a distant one with its exact clamped cosine (the light whose
    cast shadows and occlusion ``shading.occluded_shading`` renders)."""
    from studio.core.photo import shading
    from studio.core.photo.camera import euler_to_matrix

    d = euler_to_matrix(rng.uniform(-45, 45), -rng.uniform(15, 45)) @ np.array([0, 0, 1.0])
    ambient, key = rng.uniform(0.25, 0.4), rng.uniform(0.8, 1.1)
    light = shading.directional_light(ambient, key, d) if shadows else shading.ambient_light(ambient, key, d)
    return light * (1 + rng.normal(0, 0.03, 3))


def make_case(model, raster, seed: int, size: int, shadows: bool = False) -> Case:
    from studio.core.detail.displacement import densify
    from studio.core.detail.synthetic import wrinkle_detail
    from studio.core.detail.uv_raster import detail_triangles
    from studio.core.photo import shading, synthetic

    rng = np.random.default_rng(seed)
    truth = wrinkle_detail(model, raster, rng)
    idx = [truth.names.index(n) for n in DRIVERS]
    params = synthetic.random_params(model, rng, 2, 0.3)
    params["expression"][idx] = rng.uniform(0.5, 1.0, len(idx))
    d = truth.at(params["expression"])
    keep = detail_triangles(model)
    hide = shading.regions_named(model, shading.OVERLAY_WORDS)

    def geometry(v, albedo):
        V, F, dense, extra = densify(v, model.faces, model.uv, model.face_uv, keep, d, 2, {"albedo": albedo})
        coarse = F[~dense]
        return V, np.concatenate([coarse[~hide[coarse].any(1)], F[dense]]), extra["albedo"]

    # shadows: the photo's too (cast by the key, ambient occlusion), which no SH light explains
    photo = synthetic.render_photo(model, rng, size=size, yaw_range=15.0, face_fraction=(0.45, 0.55), params=params,
                                   geometry=geometry, light=detail_light(rng, shadows), shadows=shadows)
    params1 = {k: np.array(v, float) for k, v in params.items()}
    params1["expression"][idx] = rng.uniform(0.0, 1.0, len(idx))
    return Case(photo, truth, params1)


def registration(model, raster, fit_vertices, fit_camera, true_vertices, true_camera):
    """For each covered texel of the fitted face: the true UV at the point of the true face that
    the texel's projection shows (NaN where the pixel shows no true face). The z-buffer says which
    true triangle the pixel shows; the point is then found in that triangle at the projection's
    exact sub-pixel position (at the pixel's centre instead, the truth was off by up to half a
    pixel, about 0.2 mm: as much normal error as a 0.9 mm crease's own)."""
    from studio.core.detail.uv_raster import detail_triangles
    from studio.core.geometry.raster import perspective_correct, rasterize, screen_barycentrics

    p = raster.blend(fit_vertices, model.faces)
    xy, _ = fit_camera.project(p)
    keep = detail_triangles(model)
    faces = np.asarray(model.faces, np.int64)
    txy, tdepth = true_camera.project(true_vertices)
    idx = np.flatnonzero(keep)
    frags = rasterize(txy, tdepth, faces[idx], true_camera.height, true_camera.width)
    px = np.floor(xy).astype(int)
    ok = (px[:, 0] >= 0) & (px[:, 0] < true_camera.width) & (px[:, 1] >= 0) & (px[:, 1] < true_camera.height)
    tri = np.full(len(p), -1)
    tri[ok] = frags.tri[px[ok, 1], px[ok, 0]]
    uv = np.full((len(p), 2), np.nan)
    hit = tri >= 0
    face_ids = idx[tri[hit]]
    shown = faces[face_ids]
    lam = screen_barycentrics(xy[hit, 0], xy[hit, 1], txy[shown, 0], txy[shown, 1])
    lam, _ = perspective_correct(lam, tdepth[shown])
    corners = np.asarray(model.face_uv, np.int64)[face_ids]
    uv[hit] = (np.asarray(model.uv, float)[corners] * lam[..., None]).sum(1)
    return uv


def _true_normals(model, raster, vertices, camera, d):
    """(S, S, 3) camera-frame normals of the true detailed surface per texel."""
    import torch

    from studio.core.detail.displacement import detailed_normals, texel_frames

    fr = texel_frames(raster, vertices, model.faces, model.uv, model.face_uv)
    with torch.no_grad():
        n = detailed_normals(torch.as_tensor(d), fr).numpy() @ camera.R.T
    out = np.zeros((raster.size, raster.size, 3))
    out[fr.rows, fr.cols] = n
    return out


def _angle(a, b):
    return np.degrees(np.arccos(np.clip((a * b).sum(1), -1, 1)))


def _corr(x, y):
    return float(np.corrcoef(x, y)[0, 1]) if len(x) > 2 and x.std() > 0 and y.std() > 0 else float("nan")


def evaluate(model, case: Case, fit, detail) -> dict:
    """The figures of one photo (see the module docstring)."""
    import torch

    from studio.core.detail.displacement import detailed_normals, sample_map, texel_frames
    from studio.core.facemodel import UNIT_TO_MM

    mm = UNIT_TO_MM[model.meta.unit]
    raster = detail.raster
    S = raster.size
    truth0 = case.truth.at(case.photo.params["expression"])
    uv = registration(model, raster, fit.vertices, fit.result.camera, case.photo.vertices, case.photo.camera)
    fr = texel_frames(raster, fit.vertices, model.faces, model.uv, model.face_uv)
    seen = detail.visible[fr.rows, fr.cols] & np.isfinite(uv[:, 0])
    rec = detail.displacement[fr.rows, fr.cols]
    reg_true = sample_map(truth0, np.nan_to_num(uv))
    uv_true = truth0[fr.rows, fr.cols]
    out = {"texels": int(seen.sum()),
           "corr_registered": _corr(rec[seen], reg_true[seen]), "corr_uv": _corr(rec[seen], uv_true[seen]),
           "rms_mm_registered": float(np.sqrt(np.mean((rec[seen] - reg_true[seen]) ** 2)) * mm),
           "rms_mm_uv": float(np.sqrt(np.mean((rec[seen] - uv_true[seen]) ** 2)) * mm),
           "true_rms_mm": float(np.sqrt(np.mean(reg_true[seen] ** 2)) * mm)}
    # normals, camera frame: the true detailed surface at the registered texel against the fit's
    tn = _true_normals(model, raster, case.photo.vertices, case.photo.camera, truth0)
    col = np.clip(np.nan_to_num(uv[:, 0]) * S, 0, S - 1).astype(int)
    row = np.clip((1 - np.nan_to_num(uv[:, 1])) * S, 0, S - 1).astype(int)
    n_true = tn[row, col]
    seen &= np.linalg.norm(n_true, axis=1) > 0.5
    R = fit.result.camera.R
    with torch.no_grad():
        n_det = detailed_normals(torch.as_tensor(detail.displacement), fr).numpy() @ R.T
    n_coarse = fr.normal @ R.T
    # the ceiling: the true map itself, registered onto the fitted face (no detail map can do better
    # there; the rest of the error is the coarse fit's own shape and pose)
    perfect = np.zeros((S, S))
    perfect[fr.rows, fr.cols] = reg_true
    with torch.no_grad():
        n_perfect = detailed_normals(torch.as_tensor(perfect), fr).numpy() @ R.T
    wr = seen & (np.abs(reg_true) * mm > 0.1)
    for name, sel in (("face", seen), ("wrinkles", wr)):
        c, dd = _angle(n_coarse[sel], n_true[sel]).mean(), _angle(n_det[sel], n_true[sel]).mean()
        out[f"normal_deg_coarse_{name}"], out[f"normal_deg_detailed_{name}"] = float(c), float(dd)
        out[f"normal_deg_true_map_{name}"] = float(_angle(n_perfect[sel], n_true[sel]).mean())
        # the detail's own error: against the true map on the same fitted face, so the coarse fit's
        # error cancels (a zero map scores the true detail's own normal variation)
        out[f"detail_normal_deg_zero_map_{name}"] = float(_angle(n_coarse[sel], n_perfect[sel]).mean())
        out[f"detail_normal_deg_{name}"] = float(_angle(n_det[sel], n_perfect[sel]).mean())
    # transfer: the fitted face animated by the true expression change
    p1 = {k: np.array(v, float) for k, v in fit.result.params.items()}
    change = case.params1["expression"] - case.photo.params["expression"]
    g = next(x for x in model.groups if x.name == "expression")
    p1["expression"] = np.clip(p1["expression"] + change, g.lower, g.upper)
    pred1 = detail.at(model, p1)[fr.rows, fr.cols]
    true1 = sample_map(case.truth.at(case.params1["expression"]), np.nan_to_num(uv))
    out["transfer_corr"] = _corr(pred1[seen], true1[seen])
    out["transfer_corr_static_baseline"] = _corr(rec[seen], true1[seen])
    out["transfer_change_corr"] = _corr(pred1[seen] - rec[seen], true1[seen] - reg_true[seen])
    out["transfer_rms_mm"] = float(np.sqrt(np.mean((pred1[seen] - true1[seen]) ** 2)) * mm)
    out.update(_model_transfer(model, case, raster, truth0))
    return out


def _model_transfer(model, case: Case, raster, truth0) -> dict:
    """The expression model alone: the *true* map at the photo's expression split by the true
    compression and animated to the other expression, against the truth there (in UV)."""
    from studio.core.detail.animate import ExpressionDetail
    from studio.core.detail.strain import compression_map

    ed = ExpressionDetail.split(truth0, compression_map(model, raster, case.photo.params))
    pred = ed.at(compression_map(model, raster, case.params1))
    true1 = case.truth.at(case.params1["expression"])
    m = raster.mask
    return {"model_transfer_corr": _corr(pred[m], true1[m]), "model_transfer_corr_static": _corr(truth0[m], true1[m]),
            "model_change_corr": _corr(pred[m] - truth0[m], true1[m] - truth0[m])}


def true_inputs(model, case: Case, fit, options) -> dict:
    """The recovery from the same photo with the true coarse face, camera, light and albedo in place
    of the photo fit's (see the module docstring)."""
    from dataclasses import replace

    from studio.jobs.detail import detail_job

    if fit.image_scale != 1:  # the true camera is the full photo's
        return {"true_inputs_corr": float("nan"), "true_inputs_transfer_corr": float("nan")}
    p = case.photo
    res = replace(fit.result, params=p.params, camera=p.camera, light=p.light, albedo=p.albedo)
    given = replace(fit, result=res, vertices=p.vertices)
    r = evaluate(model, case, given, detail_job(model, given, options))
    return {"true_inputs_corr": r["corr_registered"], "true_inputs_transfer_corr": r["transfer_corr"]}


def run_one(model, raster, seed, size, options, i, count, shadows: bool = False) -> dict:
    from studio.core.errors import StudioError
    from studio.jobs.detail import detail_job
    from studio.jobs.fit_photo import fit_photo_job

    case = make_case(model, raster, seed, size, shadows)
    t0 = time.perf_counter()
    try:
        fit = fit_photo_job(model, case.photo.image)
    except StudioError as e:
        print(f"photo {i + 1}/{count}: {e}", flush=True)
        return {"detected": False, "error": str(e)}
    t_fit = time.perf_counter() - t0
    detail = detail_job(model, fit, options)
    row = {"detected": True, "s": time.perf_counter() - t0, "fit_s": t_fit, **evaluate(model, case, fit, detail),
           **true_inputs(model, case, fit, options)}
    print(f"photo {i + 1}/{count}: displacement corr {row['corr_registered']:.2f} (registered) / {row['corr_uv']:.2f} "
          f"(UV); normals {row['normal_deg_coarse_face']:.1f}° → {row['normal_deg_detailed_face']:.1f}° (face), "
          f"{row['normal_deg_coarse_wrinkles']:.1f}° → {row['normal_deg_detailed_wrinkles']:.1f}° (wrinkles); "
          f"transfer corr {row['transfer_corr']:.2f} (static {row['transfer_corr_static_baseline']:.2f}); "
          f"with the true coarse inputs corr {row['true_inputs_corr']:.2f}; "
          f"{row['s']:.1f} s", flush=True)
    return row


def main(model_name=None, count: int = 8, seed: int = 2000, size: int = 768, map_size: int = 512,
         iterations: int = 60, as_json: bool = False, shadows: bool = True) -> int:
    from studio.core import store
    from studio.core.detail.sfs import SfsOptions
    from studio.core.detail.uv_raster import model_raster
    from studio.core.errors import StudioError
    from studio.core.registry import open_model

    if count < 1:
        raise StudioError("--count must be at least 1")
    if size < 256 or map_size < 64 or iterations < 20:
        raise StudioError("--size must be at least 256, --map-size at least 64, --iterations at least 20")
    name = model_name or "ict"
    if model_name is None and not store.exists("ict"):
        raise StudioError("no model 'ict' in the store: import ICT-FaceKit first or pass --model NAME")
    model = open_model(name)
    if "ibug68" not in model.meta.landmarks or not any(g.name == "expression" for g in model.groups):
        raise StudioError(f"the detail bench needs ICT-style blendshapes and iBUG-68 landmarks; '{name}' lacks them")
    raster = model_raster(model, map_size)
    options = SfsOptions(size=map_size, iterations=iterations)
    rows = [run_one(model, raster, seed + i, size, options, i, count, shadows) for i in range(count)]
    ok = [r for r in rows if r.get("detected")]
    if not ok:
        raise StudioError("the detector found no face in any rendered photo; nothing to measure")
    result = {**_summary(model, rows, ok, count, size, map_size, iterations), "shadows": shadows}
    if as_json:
        print(json.dumps(result))
    return 0


def _change(reduction: float) -> str:
    """A relative reduction as words: "12 % lower", "9 % higher"."""
    return f"{100 * abs(reduction):.0f} % {'lower' if reduction >= 0 else 'higher'}"


def _summary(model, rows, ok, count, size, map_size, iterations) -> dict:
    mean = lambda k: float(np.nanmean([r[k] for r in ok]))  # noqa: E731
    keys = ["corr_registered", "corr_uv", "rms_mm_registered", "rms_mm_uv", "true_rms_mm", "normal_deg_coarse_face",
            "normal_deg_detailed_face", "normal_deg_coarse_wrinkles", "normal_deg_detailed_wrinkles",
            "normal_deg_true_map_face", "normal_deg_true_map_wrinkles", "detail_normal_deg_zero_map_face",
            "detail_normal_deg_face", "detail_normal_deg_zero_map_wrinkles", "detail_normal_deg_wrinkles",
            "transfer_corr", "transfer_corr_static_baseline", "transfer_rms_mm", "model_transfer_corr",
            "model_transfer_corr_static", "transfer_change_corr", "model_change_corr", "true_inputs_corr",
            "true_inputs_transfer_corr"]
    res = {"bench": "detail", "model": model.name, "photos": count, "detected": len(ok), "size_px": size,
           "map_size": map_size, "iterations": iterations, **{k: mean(k) for k in keys},
           "seconds_per_photo_median": float(np.median([r["s"] for r in ok])),
           "fit_seconds_median": float(np.median([r["fit_s"] for r in ok])), "per_photo": rows}
    for name in ("face", "wrinkles"):
        coarse, detailed = res[f"normal_deg_coarse_{name}"], res[f"normal_deg_detailed_{name}"]
        res[f"normal_error_reduction_{name}"] = 1 - detailed / coarse
        res[f"normal_error_reduction_true_map_{name}"] = 1 - res[f"normal_deg_true_map_{name}"] / coarse
        res[f"detail_normal_error_reduction_{name}"] = 1 - res[f"detail_normal_deg_{name}"] / res[
            f"detail_normal_deg_zero_map_{name}"]
    print(f"model {model.name}: {len(ok)} of {count} rendered {size}x{size} photos fitted (detector in the loop), "
          f"{map_size}² map, {iterations} iterations")
    print(f"displacement correlation: {res['corr_registered']:.2f} registered through the photo, {res['corr_uv']:.2f} "
          f"texel to texel in UV; RMS {res['rms_mm_registered']:.3f} / {res['rms_mm_uv']:.3f} mm "
          f"(true detail RMS {res['true_rms_mm']:.3f} mm)")
    print(f"  with the true coarse face, camera, light and albedo instead of the fit's: {res['true_inputs_corr']:.2f} "
          f"(the shape from shading's own limit on these photos; the rest of the gap is the coarse fit's)")
    for name in ("face", "wrinkles"):
        print(f"normal error over the {name}: coarse {res[f'normal_deg_coarse_{name}']:.2f}°, detailed "
              f"{res[f'normal_deg_detailed_{name}']:.2f}° ({_change(res[f'normal_error_reduction_{name}'])}); "
              f"the true map on the fitted face, the most a map can do: {res[f'normal_deg_true_map_{name}']:.2f}° "
              f"({_change(res[f'normal_error_reduction_true_map_{name}'])})")
        print(f"  the detail alone over the {name} (against the true map on the fitted face): zero map "
              f"{res[f'detail_normal_deg_zero_map_{name}']:.2f}°, recovered {res[f'detail_normal_deg_{name}']:.2f}° "
              f"({_change(res[f'detail_normal_error_reduction_{name}'])})")
    print(f"expression transfer correlation: {res['transfer_corr']:.2f} (recovered map left static: "
          f"{res['transfer_corr_static_baseline']:.2f}; with the true coarse inputs: "
          f"{res['true_inputs_transfer_corr']:.2f}); RMS {res['transfer_rms_mm']:.3f} mm; the change "
          f"(animated − recovered against true change): {res['transfer_change_corr']:.2f}")
    print(f"the expression model alone (true map at the photo's expression, animated): correlation "
          f"{res['model_transfer_corr']:.2f} (left static: {res['model_transfer_corr_static']:.2f}); the change: "
          f"{res['model_change_corr']:.2f}")
    print(f"seconds per photo (median, fit + detail, detector included): {res['seconds_per_photo_median']:.1f}")
    return res
