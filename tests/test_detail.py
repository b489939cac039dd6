"""Fine detail (studio/core/detail, studio/jobs/detail.py): displacement recovery by shape from
shading, skin compression under a blendshape, the glTF tangent convention of the normal map, the
16-bit map files and the detailed GLB.

Most tests use a small curved patch with planar UVs built here (a linear model with one shape
component and two blendshapes): u grows with x, v with y, so every direction is known by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studio.core.detail import io as detail_io
from studio.core.detail.animate import ExpressionDetail
from studio.core.detail.displacement import densify, detailed_normals, texel_frames
from studio.core.detail.gltf import gltf_tangents
from studio.core.detail.normalmap import decode, normal_map_image
from studio.core.detail.strain import principal_stretches, texel_compression, triangle_compression
from studio.core.detail.uv_raster import model_raster

SIDE = 40.0  # mm


def patch_model(n: int = 41, blendshape=None, dome: float = 0.004):
    """A 40 × 40 mm gently domed patch facing +z, UV = (x, y)/40 + 0.5, region "face"."""
    from studio.core.facemodel import ModelMeta, ParamGroup
    from studio.core.pca import LinearGroup, PCAModel

    xs = np.linspace(-SIDE / 2, SIDE / 2, n)
    X, Y = np.meshgrid(xs, xs)
    v = np.c_[X.ravel(), Y.ravel(), -dome * (X.ravel() ** 2 + Y.ravel() ** 2)]
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    faces = np.concatenate([np.c_[a, b, d], np.c_[a, d, c]])  # counter-clockwise seen from +z
    uv = v[:, :2] / SIDE + 0.5
    shape = np.zeros((1, len(v), 3))
    shape[0, :, 2] = 0.1
    expr = np.zeros((2, len(v), 3)) if blendshape is None else blendshape(v)
    groups = [LinearGroup(ParamGroup("shape", ("PC1",)), shape),
              LinearGroup(ParamGroup("expression", ("squeeze", "other"), "box"), expr)]
    meta = ModelMeta(unit="mm", regions={"face": np.arange(len(v), dtype=np.int32)}, landmarks={},
                     attribution="synthetic test patch")
    return PCAModel("patch", v, faces, groups, None, uv, faces.copy(), np.zeros(len(faces), np.int32), ("skin",), meta)


def grooves(raster, amplitude=0.25, period=0.125):
    """Horizontal grooves (along u) of a known depth, faded towards the patch's border."""
    S = raster.size
    rows, cols = np.mgrid[0:S, 0:S]
    u, v = (cols + 0.5) / S, 1 - (rows + 0.5) / S
    window = np.exp(-(((u - 0.5) / 0.25) ** 2 + ((v - 0.5) / 0.25) ** 2))
    return np.where(raster.mask, -amplitude * window * 0.5 * (1 + np.cos(2 * np.pi * v / period)), 0.0)


def frontal_camera(size=256):
    from studio.core.photo.camera import Camera

    return Camera(size, size, 2.0 * size, np.zeros(3), np.array([0.0, 0.0, -2.0 * size * SIDE / (0.8 * size)]))


# -- shape from shading --------------------------------------------------------------------------

def test_displacement_is_recovered_from_a_rendered_patch():
    """A patch with known grooves, rendered as geometry (subdivided and displaced) under a key light
    from above: the map recovered from that one image correlates with the truth."""
    from studio.core.detail.sfs import SfsOptions, recover_displacement
    from studio.core.detail.uv_raster import detail_triangles
    from studio.core.photo import shading

    model = patch_model()
    raster = model_raster(model, 128)
    truth = grooves(raster)
    cam = frontal_camera()
    v = np.asarray(model.mean, float)
    albedo = np.tile([0.75, 0.6, 0.5], (len(v), 1))
    light = shading.ambient_light(0.3, 0.9, (0.2, 0.8, 1.0))
    V, F, _, extra = densify(v, model.faces, model.uv, model.face_uv, detail_triangles(model), truth, 2, {"a": albedo})
    img, _ = shading.render_image(V, F, extra["a"], light, cam)
    photo = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    rec = recover_displacement(model, v, cam, photo, albedo, light,
                               SfsOptions(size=128, iterations=60, highpass_mm=6.0))
    inner = rec.visible & (np.abs(truth) > 0) & (rec.weight > 0.5)
    r = np.corrcoef(rec.displacement[inner], truth[inner])[0, 1]
    assert r > 0.65, r
    assert np.all(rec.displacement[~raster.mask] == 0)  # nothing outside the region
    # the photo's resolution on the patch: focal 512 px at 100 mm
    assert rec.pixels_per_mm == pytest.approx(5.12, rel=0.05)


def test_a_map_that_came_out_non_finite_is_a_failure_not_a_result(monkeypatch):
    """A NaN map (it happened: one NaN weight spread over the whole optimisation) must not be
    written or shown as detail."""
    from studio.core.detail import sfs
    from studio.core.errors import FitFailed
    from studio.core.photo import shading

    model = patch_model()
    v = np.asarray(model.mean, float)
    light = shading.ambient_light(0.3, 0.9, (0.2, 0.8, 1.0))
    photo = np.full((frontal_camera().height, frontal_camera().width, 3), 128, np.uint8)
    monkeypatch.setattr(sfs, "_optimise", lambda *a, **k: np.full(len(a[2].rows), np.nan))
    with pytest.raises(FitFailed, match="non-finite"):
        sfs.recover_displacement(model, v, frontal_camera(), photo, np.full((len(v), 3), 0.6), light,
                                 sfs.SfsOptions(size=64, iterations=20))


# -- strain --------------------------------------------------------------------------------------

def test_compression_of_a_hand_checked_blendshape():
    """Squeezing the patch to 80 % of its height while stretching it to 125 % of its width keeps
    every triangle's area (area strain 0) but compresses the skin by 20 % one way."""
    squeeze = lambda v: np.stack([np.c_[0.25 * v[:, 0], -0.2 * v[:, 1], 0 * v[:, 2]], np.zeros_like(v)])  # noqa: E731
    model = patch_model(11, squeeze, dome=0.0)
    neutral = np.asarray(model.mean, float)
    expressed = model.vertices({"expression": np.array([1.0, 0.0])})
    lo, hi = principal_stretches(neutral, expressed, model.faces, model.uv, model.face_uv)
    np.testing.assert_allclose(lo, 0.8, atol=1e-5)
    np.testing.assert_allclose(hi, 1.25, atol=1e-5)
    f = np.asarray(model.faces)
    area = [np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)
            for v in (neutral, expressed)]
    np.testing.assert_allclose(area[1] / area[0], 1.0, rtol=1e-5)  # no area strain at all
    c = triangle_compression(neutral, expressed, model.faces, model.uv, model.face_uv)
    np.testing.assert_allclose(c, 0.2, atol=1e-5)
    half = model.vertices({"expression": np.array([0.5, 0.0])})  # 90 % height: 10 % compression
    np.testing.assert_allclose(np.median(triangle_compression(neutral, half, model.faces, model.uv, model.face_uv)),
                               0.1, atol=0.01)
    stretched = neutral * np.array([1.0, 1.2, 1.0])  # stretched skin does not wrinkle
    assert np.all(triangle_compression(neutral, stretched, model.faces, model.uv, model.face_uv) < 1e-6)
    raster = model_raster(model, 32)
    grid = texel_compression(raster, c)
    np.testing.assert_allclose(grid[raster.mask], 0.2, atol=1e-5)
    assert np.all(grid[~raster.mask] == 0)


def test_expression_detail_follows_compression():
    d0 = np.array([[0.5, -0.4], [0.0, 0.3]])
    c0 = np.array([[0.2, 0.2], [0.0, 0.0]])
    ed = ExpressionDetail.split(d0, c0)
    np.testing.assert_allclose(ed.at(c0), d0)  # the photo's expression gives back the photo's map
    np.testing.assert_allclose(ed.static[1], d0[1])  # uncompressed skin: all detail is the person's
    relaxed = ed.at(np.zeros((2, 2)))
    assert np.all(np.abs(relaxed[0]) < 0.03 * np.abs(d0[0]))  # the wrinkle fades when the skin relaxes
    deeper = ed.at(c0 * 1.5)
    assert np.all(np.abs(deeper[0]) > np.abs(d0[0]))  # and deepens when it folds further


@pytest.mark.usefixtures("one_torch_thread")
def test_ict_brow_raise_compresses_the_forehead(ict_model):
    """ICT's browInnerUp_L: the forehead above the brows shortens; the chin does not."""
    from studio.core.detail.strain import blendshape_compression

    raster = model_raster(ict_model, 128)
    c = blendshape_compression(ict_model, raster)
    lm = np.asarray(ict_model.mean, float)[np.asarray(ict_model.meta.landmarks["ibug68"])]
    p = raster.blend(np.asarray(ict_model.mean, float), ict_model.faces)
    m = raster.mask
    forehead = (p[:, 1] > lm[19, 1] + 1.0) & (np.abs(p[:, 0] - lm[21, 0]) < 2.0)  # cm
    chin = p[:, 1] < lm[57, 1] - 1.0
    brow = c["browInnerUp_L"][m]
    assert brow[forehead].max() > 0.05
    assert brow[forehead].mean() > 5 * brow[chin].mean()


# -- normal map: glTF's tangent convention ----------------------------------------------------

@pytest.mark.parametrize("mirrored", [False, True])
def test_normal_map_bump_is_lit_from_the_expected_side(mirrored):
    """A bump in the middle of a flat, +z-facing patch. Decoded the way a glTF viewer does (TANGENT
    from gltf_tangents, B = (N × T)·w, +Y up the image), the map's normals on the bump's +x flank
    lean towards +x and on its +y flank towards +y, so a light from +x lights the +x flank; also
    with the UVs mirrored (u running against x: w = −1)."""
    from studio.core.export import mesh_arrays
    from studio.core.facemodel import Mesh

    model = patch_model(41)
    v = np.asarray(model.mean, float) * np.array([1, 1, 0])  # flat: the bump's tilt alone
    uv = np.asarray(model.uv, float).copy()
    if mirrored:
        uv[:, 0] = 1 - uv[:, 0]
    model.uv = uv
    faces = np.asarray(model.faces)
    raster = model_raster(model, 128)
    S = raster.size
    rows, cols = np.mgrid[0:S, 0:S]
    x = ((cols + 0.5) / S - 0.5) * SIDE * (-1 if mirrored else 1)
    y = (0.5 - (rows + 0.5) / S) * SIDE
    bump = 1.0 * np.exp(-(x ** 2 + y ** 2) / (2 * 3.0 ** 2))  # 1 mm high, σ 3 mm
    img = normal_map_image(raster, v, faces, uv, faces, bump)
    # a viewer's frame at each texel: TANGENT interpolated from the glTF vertices
    tangents = gltf_tangents(mesh_arrays(Mesh(v, faces, None, uv, faces)))
    assert np.allclose(np.abs(tangents[:, 3]), 1) and np.all(tangents[:, 3] == (-1 if mirrored else 1))
    T = np.tile(tangents[0, :3], (S * S, 1))  # a flat patch with planar UVs: one frame everywhere
    N = np.tile([0.0, 0.0, 1.0], (S * S, 1))
    B = np.cross(N, T) * tangents[0, 3]
    n = decode(img.reshape(-1, 3), T, B, N).reshape(S, S, 3)
    east = (np.abs(x - 3) < 0.5) & (np.abs(y) < 0.5)
    north = (np.abs(y - 3) < 0.5) & (np.abs(x) < 0.5)
    west = (np.abs(x + 3) < 0.5) & (np.abs(y) < 0.5)
    assert n[east][:, 0].mean() > 0.15 and n[north][:, 1].mean() > 0.15
    light = np.array([1.0, 0.0, 0.3]) / np.linalg.norm([1.0, 0.0, 0.3])
    assert (n[east] @ light).mean() > (n[west] @ light).mean() + 0.2
    # and it is the geometry's own normal: the displaced surface's, computed independently
    frames = texel_frames(raster, v, faces, uv, faces)
    with torch.no_grad():
        geo = detailed_normals(torch.as_tensor(bump), frames).numpy()
    got = n[raster.mask]
    assert np.degrees(np.arccos(np.clip((got * geo).sum(1), -1, 1))).max() < 2.0


def test_no_detail_shades_as_the_smooth_surface_not_its_facets():
    """A zero map leaves the renderer's smooth (interpolated) normals: the detailed normals and the
    exported normal map must not carry the coarse triangles' facets (they did: 2.5° on ICT's face,
    which the shape from shading then spent its map on cancelling, and viewers drew as facets)."""
    model = patch_model(n=7, dome=0.02)  # 6 × 6 quads on a dome: facets tilt by several degrees
    v, faces = np.asarray(model.mean, float), np.asarray(model.faces)
    raster = model_raster(model, 64)
    frames = texel_frames(raster, v, faces, model.uv, faces)
    corners = v[faces[raster.tri[raster.mask]]]  # the covering triangle of each texel
    flat = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    flat /= np.linalg.norm(flat, axis=1, keepdims=True)
    assert np.degrees(np.arccos(np.clip((flat * frames.normal).sum(1), -1, 1))).mean() > 2.0  # facets are there
    with torch.no_grad():
        n = detailed_normals(torch.zeros(64, 64, dtype=torch.float64), frames).numpy()
    assert np.degrees(np.arccos(np.clip((n * frames.normal).sum(1), -1, 1))).max() < 0.01
    img = normal_map_image(raster, v, faces, model.uv, faces, np.zeros((64, 64)))
    assert np.abs(img[raster.mask].astype(int) - [128, 128, 255]).max() <= 1


def test_the_masked_blur_is_scipys_and_differentiable():
    """One blur for the maps (blur.py): the numpy callers get scipy.ndimage's normalised Gaussian
    (mirrored border, also when the kernel is wider than the grid), and the shape from shading
    blurs its own prediction through it under autograd."""
    from scipy.ndimage import gaussian_filter

    from studio.core.detail.blur import GaussianBlur, masked_blur_grid

    rng = np.random.default_rng(1)
    for size, sigma in ((64, 3.2), (20, 7.0)):
        x, w = rng.normal(size=(size, size)), (rng.random((size, size)) > 0.3).astype(float)
        expected = gaussian_filter(x * w, sigma) / gaussian_filter(w, sigma)
        assert np.abs(masked_blur_grid(x, w, sigma) - expected).max() < 1e-12
    g = torch.zeros(32, 32, dtype=torch.float64, requires_grad=True)
    GaussianBlur(2.0, (32, 32))(g)[16, 16].backward()
    grad = g.grad.numpy()
    assert grad.sum() == pytest.approx(1.0) and grad[16, 16] == grad.max()
    assert grad[16, 18] == pytest.approx(grad[18, 16])


def test_the_masked_blur_of_a_square_is_never_negative():
    """The recovery takes the square root of a masked blur of squared residuals (a neighbourhood's
    RMS). The transform's round-off made it about -1e-12 far from the data: one NaN texel, and the
    optimiser returned a map that was NaN everywhere (a rendered photo with the true coarse face)."""
    from studio.core.detail.blur import masked_blur_grid

    rng = np.random.default_rng(0)
    squares = np.zeros((128, 128))
    squares[10:20, 10:20] = rng.uniform(0, 1, (10, 10)) ** 2
    weight = np.zeros((128, 128))
    weight[:, :100] = 1.0
    out = masked_blur_grid(squares, weight, 3.0)
    assert out.min() >= 0.0 and np.isfinite(np.sqrt(out)).all()
    assert out.max() <= squares.max()


def test_the_bench_registers_each_texel_where_it_projects_not_at_the_pixel_centre():
    """``studio bench detail`` compares the recovered map with the truth at the point of the true
    face that each texel's projection shows. With the fit equal to the truth, that is the texel's
    own UV. At the pixel's centre it was up to half a pixel off (0.2 mm on the bench's renders),
    which cost as much normal error as the creases' own: the true map scored 1.4° against itself."""
    from studio.bench.detail import registration

    model = patch_model()
    raster = model_raster(model, 128)
    v = np.asarray(model.mean, float)
    cam = frontal_camera(96)  # 2.4 px per mm: pixels wider than the texels (0.31 mm)
    uv = registration(model, raster, v, cam, v, cam)
    own = raster.blend(np.asarray(model.uv, float), model.face_uv)
    hit = np.isfinite(uv[:, 0])
    assert hit.mean() > 0.95
    assert np.abs(uv[hit] - own[hit]).max() < 1e-4  # 4 µm (a pixel: 0.4 mm)


def test_where_the_coarse_normal_turns_fast_the_photo_is_trusted_less():
    """A coarse fit misplaced by a millimetre tilts the normal by κ · 1 mm where the surface curves
    (κ its curvature): on a nose's side that changes the shading more than a crease does, on the
    forehead hardly at all. The dome z = −c·r² turns its normal by 2c per mm at its top. It also
    moves the fitted albedo's edges."""
    from studio.core.detail.sfs import _registration_weight, step_per_texel

    S, texel = 128, SIDE / 128
    for c, expected_weight in ((0.004, 0.99), (0.08, 0.1)):
        model = patch_model(dome=c)
        v, faces = np.asarray(model.mean, float), np.asarray(model.faces)
        frames = texel_frames(model_raster(model, S), v, faces, model.uv, faces)
        top = np.hypot(frames.rows - S / 2, frames.cols - S / 2) < 4
        turn = step_per_texel(frames.normal, frames, S)[top]
        assert np.median(turn) == pytest.approx(2 * c * texel, rel=0.1)
        flat_albedo = np.zeros(len(frames.rows))
        w = _registration_weight(frames, S, flat_albedo, 1.0 / texel, 0.05)[top]  # 1 mm misplacement
        hand = 0.05 ** 2 / (0.05 ** 2 + (2 * c * 1.0) ** 2)  # σ² / (σ² + (κ · 1 mm)²)
        assert np.median(w) == pytest.approx(hand, rel=0.1)
        assert np.median(w) == pytest.approx(expected_weight, abs=0.05)
    # the same misplacement moves the fitted albedo's edges (a brow, the lips' border): a brightness
    # step of 0.5 (log) across a column changes the target by 0.25 a texel there, nothing elsewhere
    edge = np.where(frames.cols >= S // 2, 0.5, 0.0)
    w = _registration_weight(frames, S, edge, 1.0 / texel, 0.05)
    at = top & ((frames.cols == S // 2 - 1) | (frames.cols == S // 2))  # the texels either side of the edge
    assert w[at].max() < 0.02 and np.median(w[top & ~at]) == pytest.approx(0.09, abs=0.03)


def test_a_coarse_fit_error_patch_gives_no_data_but_a_crease_does():
    """What the coarse fit left wrong over a patch (a misplaced brow, a nose side) is large over
    the whole patch; a crease darkens a thin line. The first must lose its data weight, the second
    keep it, though both residuals are far above the photo's noise."""
    from studio.core.detail.sfs import _quiet

    model = patch_model()
    v, faces = np.asarray(model.mean, float), np.asarray(model.faces)
    raster = model_raster(model, 64)
    frames = texel_frames(raster, v, faces, model.uv, faces)
    r, c = frames.rows, frames.cols
    g = np.random.default_rng(0).normal(0, 0.01, len(r))  # the photo's noise
    crease = (r == 20) & (c > 10) & (c < 54)
    patch = (np.abs(r - 44) < 6) & (np.abs(c - 32) < 6)
    g[crease] -= 0.06
    g[patch] += 0.15
    w = _quiet(g, np.ones(len(g)), frames, 64, 3.2, 3.0)  # σ 2 mm at 0.625 mm a texel
    assert w[crease].mean() > 0.7 and w[patch].max() < 0.2 and np.median(w) > 0.95


def test_hair_over_the_skin_gives_no_data():
    """The photo fit's albedo takes the colour of a fringe over the forehead (the astronaut's), so
    the strands passed the colour and jump tests and came out as relief. Albedo much darker or of
    another hue than the face's typical skin gives no data; skin with its usual variation (a few
    percent in brightness, redder cheeks) keeps it."""
    from studio.core.detail.sfs import SfsOptions, _skin

    rng = np.random.default_rng(3)
    skin = np.log(np.array([0.78, 0.58, 0.48]))
    n = 400
    la = skin + rng.normal(0, 0.04, (n, 1)) + rng.normal(0, 0.02, (n, 3))  # brightness and hue variation
    la[:50] += np.log([1.1, 0.95, 0.95])  # redder cheeks
    hair = slice(300, 400)
    la[hair] = np.log(np.array([0.35, 0.25, 0.12])) + rng.normal(0, 0.1, (100, 3))  # a brown fringe
    w = _skin(la, np.ones(n), SfsOptions())
    assert w[:300].min() > 0.8
    assert w[hair].max() < 0.1
    assert np.all(_skin(la, np.ones(n), SfsOptions(skin_brightness=0)) == 1)  # off


def test_a_photo_too_coarse_for_creases_is_said_so():
    """A face a few pixels per centimetre cannot show a 2 mm crease: the user is told (CLI stderr,
    the window's status bar) and detail.json records the resolution."""
    import json

    from studio.jobs.detail import FaceDetail, _description

    model = patch_model()
    raster = model_raster(model, 64)
    d = np.zeros((64, 64))
    coarse = FaceDetail(d, ExpressionDetail.split(d, d), d, raster, raster.mask, {}, 0.4)
    note = coarse.resolution_note()
    assert note is not None and "0.40 pixels per mm" in note and "5 mm" in note
    assert FaceDetail(d, ExpressionDetail.split(d, d), d, raster, raster.mask, {}, 2.0).resolution_note() is None
    assert FaceDetail(d, ExpressionDetail.split(d, d), d, raster, raster.mask).resolution_note() is None  # unknown
    assert json.loads(json.dumps(_description(model, coarse, 1.0)))["photo_pixels_per_mm"] == 0.4


# -- files ---------------------------------------------------------------------------------------

def test_displacement_png_is_16_bit_and_round_trips(tmp_path):
    import imageio.v3 as iio

    d = np.linspace(-0.08, 0.05, 64 * 64).reshape(64, 64)  # cm
    data = detail_io.displacement_png(d, 10.0)
    (tmp_path / "d.png").write_bytes(data)
    img = iio.imread(tmp_path / "d.png")
    assert img.dtype == np.uint16 and img.shape == (64, 64)
    np.testing.assert_allclose(detail_io.read_displacement_png(tmp_path / "d.png", 10.0), d, atol=1e-4)
    from studio.core.errors import StudioError

    (tmp_path / "rgb.png").write_bytes(detail_io.rgb_png(np.zeros((8, 8, 3), np.uint8)))
    with pytest.raises(StudioError):
        detail_io.read_displacement_png(tmp_path / "rgb.png", 10.0)


def test_detailed_glb_has_a_normal_texture_and_validates(tmp_path):
    import pygltflib
    from gltf_check import assert_valid

    from studio.jobs.detail import glb_with_detail

    model = patch_model(21)
    raster = model_raster(model, 64)
    png = detail_io.rgb_png(normal_map_image(raster, model.mean, model.faces, model.uv, model.face_uv,
                                             grooves(raster)))
    path = tmp_path / "face.glb"
    path.write_bytes(glb_with_detail(model, np.asarray(model.mean, float), None, png))
    doc = pygltflib.GLTF2().load(str(path))
    assert doc.materials[0].normalTexture is not None
    assert doc.meshes[0].primitives[0].attributes.TANGENT is not None
    assert doc.images[0].mimeType == "image/png"
    assert_valid(path)


def test_cli_detail_refuses_landmarks_only(tmp_path, capsys):
    from studio.cli.main import main

    rc = main(["fit", "photo", str(tmp_path / "x.png"), "--model", "none", "-o", str(tmp_path / "p.json"),
               "--detail", str(tmp_path / "d"), "--landmarks-only"])
    err = capsys.readouterr().err
    assert rc == 2 and "--detail" in err and len(err.strip().splitlines()) == 1
