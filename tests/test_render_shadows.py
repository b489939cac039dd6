"""Shadows in the photo-like renders (core/photo/shading.py): the bench's and the calibration's
renders show what real photos show and the SH model leaves out — the key light's soft shadow under
the chin and ambient occlusion in the nostrils and eye sockets — so the fitter is measured on that
mismatch instead of on renders its own light model explains exactly."""

from __future__ import annotations

import numpy as np
import trimesh

from studio.core.photo import shading


def _grid(n, half, y):
    t = np.linspace(-half, half, n)
    x, z = np.meshgrid(t, t)
    v = np.stack([x.ravel(), np.full(x.size, y), z.ravel()], 1)
    i = np.arange(n * n).reshape(n, n)
    a, b, c, d = i[:-1, :-1].ravel(), i[:-1, 1:].ravel(), i[1:, :-1].ravel(), i[1:, 1:].ravel()
    f = np.concatenate([np.stack([a, c, b], 1), np.stack([b, c, d], 1)])
    return v, f


def _floor_and_plate():
    fv, ff = _grid(41, 1.0, 0.0)
    pv, pf = _grid(7, 0.3, 0.3)
    return np.concatenate([fv, pv]), np.concatenate([ff, pf + len(fv)]), len(fv)


def test_a_plate_shadows_the_floor_under_it_and_nothing_else():
    v, f, n_floor = _floor_and_plate()
    vis = shading.light_visibility(v, f, np.array([[0.0, 1.0, 0.0]]), np.tile([0.0, 1.0, 0.0], (len(v), 1)))[:, 0]
    floor = v[:n_floor]
    under = (np.abs(floor[:, 0]) < 0.2) & (np.abs(floor[:, 2]) < 0.2)
    away = np.maximum(np.abs(floor[:, 0]), np.abs(floor[:, 2])) > 0.5
    assert vis[:n_floor][under].max() == 0.0  # in the plate's shadow
    assert vis[:n_floor][away].min() == 1.0  # in the open
    assert vis[n_floor:].min() == 1.0  # the plate's top sees the light: no self-shadowing speckle


def test_an_unoccluded_convex_surface_gets_the_lights_exact_irradiance():
    s = trimesh.creation.icosphere(subdivisions=3)
    v, f = np.asarray(s.vertices), np.asarray(s.faces)
    n = np.asarray(s.vertex_normals)
    d = np.array([0.3, 0.5, 1.0]) / np.linalg.norm([0.3, 0.5, 1.0])
    light = shading.directional_light(0.4, 0.7, d)
    exact = 0.4 + 0.7 * np.clip(n @ d, 0, None)
    np.testing.assert_allclose(shading.occluded_shading(v, f, n, light), np.tile(exact[:, None], 3), atol=0.02)
    # and its 9 SH coefficients, what the fitter models, hold that light up to the clamped cosine's
    # bands ≥ 4 (largest at the terminator, 0.094 × the key there)
    sh = shading.sh_basis(n) @ light
    assert np.abs(sh[:, 0] - exact).max() < 0.1 * 0.7
    assert np.abs(sh[:, 0] - exact).mean() < 0.04 * 0.7  # 0.031 × the key on average over the sphere


def test_the_floor_under_a_plate_gets_less_light_than_the_sh_model_says():
    v, f, n_floor = _floor_and_plate()
    n = np.tile([0.0, 1.0, 0.0], (len(v), 1))
    light = shading.directional_light(0.5, 0.6, (0.0, 1.0, 0.2))
    lit = shading.occluded_shading(v, f, n, light)
    plain = shading.sh_basis(n) @ light
    floor = v[:n_floor]
    centre = np.argmin(np.linalg.norm(floor[:, [0, 2]], axis=1))
    corner = np.argmax(np.linalg.norm(floor[:, [0, 2]], axis=1))
    assert lit[centre, 0] < 0.6 * plain[centre, 0]  # under the plate: most of the sky is hidden
    assert lit[corner, 0] > 0.9 * plain[corner, 0]  # far from it: nearly all of it is seen


def test_a_light_with_no_direction_darkens_only_by_occlusion():
    """A uniform (ambient-only) light has no key to cast shadows; its direction was 0/0, which sent
    NaN pixel positions into the shadow maps (a fitted SH light can be like that)."""
    v, f, n_floor = _floor_and_plate()
    n = np.tile([0.0, 1.0, 0.0], (len(v), 1))
    light = shading.directional_light(0.5, 0.0, (0.0, 1.0, 0.0))
    lit = shading.occluded_shading(v, f, n, light)
    assert np.isfinite(lit).all()
    floor = v[:n_floor]
    corner = np.argmax(np.linalg.norm(floor[:, [0, 2]], axis=1))
    centre = np.argmin(np.linalg.norm(floor[:, [0, 2]], axis=1))
    assert lit[corner, 0] > 0.45 and lit[centre, 0] < 0.6 * 0.5
