"""``studio fit photo IMAGE --model NAME -o params.json``: a 3-D face from one photo."""

from __future__ import annotations

import json
import sys

from studio.core.errors import FitFailed


def add_command(fsub) -> None:
    p = fsub.add_parser("photo", help="fit a model to a portrait photo (landmarks, then analysis by synthesis)",
                        description="Detect the face's landmarks (MediaPipe, offline), fit camera, pose, shape and "
                                    "expression to them, then refine shape, expression, pose, light and albedo by "
                                    "comparing a rendering of the model with the photo. Writes the parameters "
                                    "JSON (shape/expression groups; pose, camera, light and fit figures as extra "
                                    "keys), optionally a mesh textured from the photo and an overlay PNG.")
    p.add_argument("image", help="photo (PNG, JPEG, …) showing one face")
    p.add_argument("--model", required=True, help="linear model (name in the store or .npz path)")
    p.add_argument("-o", "--out", required=True, help="parameters JSON to write")
    p.add_argument("--mesh", help="textured mesh: FACE.obj (+ .mtl + .png) or FACE.glb (vertex colours)")
    p.add_argument("--overlay", help="PNG of the fitted face over the photo with the landmarks")
    p.add_argument("--face", type=int, help="which face when the photo shows several (1 = largest)")
    p.add_argument("--detector", choices=("auto", "mediapipe", "dlib", "both"), default="auto",
                   help="landmark source: Face Mesh (478 points), dlib (the 68 of 300-W), or both, the 68 averaged "
                        "(auto: both when dlib-bin and face-recognition-models are installed)")
    p.add_argument("--landmarks-only", action="store_true", help="stop after the landmark fit (fast)")
    p.add_argument("--iterations", type=int, default=150, help="analysis-by-synthesis iterations")
    p.add_argument("--focal", type=float, help="focal length in pixels (default 1.4 × the longer side)")
    p.add_argument("--detail", metavar="DIR", help="also recover fine detail (wrinkles) by shape from shading into "
                   "DIR: 16-bit displacement PNGs, a normal map, face.glb with normalTexture, face.obj with a bump "
                   "map, face_dense.ply (studio/jobs/detail.py)")
    p.add_argument("--detail-size", type=int, default=512, help="texels per side of the detail maps (256-2048)")
    p.add_argument("--json", action="store_true", help="last line: one JSON object with the figures")
    p.add_argument("--force", action="store_true", help="replace existing output files")
    p.set_defaults(func=cmd_fit_photo)


def cmd_fit_photo(a) -> int:
    from studio.cli.commands import _run
    from studio.core.errors import StudioError
    from studio.core.photo.fit import PhotoFitOptions
    from studio.core.registry import open_model
    from studio.jobs.fit_photo import check_outputs, fit_photo_job, write_outputs

    if a.iterations < 10:
        raise StudioError("--iterations must be at least 10")
    if a.focal is not None and not a.focal > 0:
        raise StudioError("--focal must be a positive number of pixels")
    if a.face is not None and a.face < 1:
        raise StudioError("--face counts from 1 (the largest face)")
    check_outputs([a.out, a.mesh, a.overlay], a.force)
    if a.detail is not None:
        from studio.jobs.detail import check_folder

        if a.landmarks_only:
            raise StudioError("--detail needs the full fit; leave out --landmarks-only")
        if not 256 <= a.detail_size <= 2048:
            raise StudioError("--detail-size must be between 256 and 2048")
        check_folder(a.detail, a.force)
    model = open_model(a.model)
    options = PhotoFitOptions(focal=a.focal, landmarks_only=a.landmarks_only, iterations=a.iterations)
    fit = _run("fitting", fit_photo_job, model, a.image, a.face, options, detector=a.detector)
    written = write_outputs(model, fit, a.out, a.mesh, a.overlay, a.force)
    if a.detail is not None:
        written += _detail(model, fit, a)
    s = fit.summary()
    cam = fit.result.camera.as_json()
    yaw, pitch, roll = cam["yaw_pitch_roll_deg"]
    print(f"fitted {model.name} to {a.image}: {s['landmarks_fitted']} landmarks, rms {s['landmark_rms_px']:.2f} px; "
          f"pose yaw {yaw:.1f}° pitch {pitch:.1f}° roll {roll:.1f}°; {s['timings_s']['total_s']:.1f} s")
    if "landmark68_mean_error_iod" in s:
        print(f"68 landmarks: mean {100 * s['landmark68_mean_error_iod']:.1f}% / max "
              f"{100 * s['landmark68_max_error_iod']:.1f}% of the inter-ocular distance ({s['interocular_px']:.0f} px)")
    for p in written:
        print(f"wrote {p}")
    v = fit.verdict
    for note in v.warnings:
        print(f"note: {note}")
    if a.json:
        s["written"] = [str(p) for p in written]
        sys.stdout.write(json.dumps(s) + "\n")
    if not v.ok:  # outputs are written (to look at); the status says they are not to be trusted
        print(f"studio: {v.summary()}", file=sys.stderr)
        return FitFailed.exit_status
    return 0


def _detail(model, fit, a) -> list:
    from studio.cli.commands import _run
    from studio.core.detail.sfs import SfsOptions
    from studio.core.photo.texture import photo_texture
    from studio.jobs.detail import detail_job, write_detail

    detail = _run("detail", detail_job, model, fit, SfsOptions(size=a.detail_size))
    colors = photo_texture(model, fit.vertices, fit.result.camera, fit.image, uv_texture=False).vertex_colors
    print(f"detail: {detail.raster.size}² map, {detail.timings['detail_s']:.1f} s, "
          f"photo at {detail.pixels_per_mm:.2f} pixels per mm on the face")
    note = detail.resolution_note()
    if note:
        print(f"detail: warning: {note}", file=sys.stderr)
    return write_detail(a.detail, model, fit.vertices, detail, colors, a.force, fit=fit)
