"""The one copy of each numeric kernel: bounded least squares (core/solvers.py), the Umeyama closed form
and the robust scale (core/geometry)."""

from __future__ import annotations

import numpy as np
import pytest

from studio.core.solvers import bounded_least_squares, bounded_quadratic


def test_reaches_the_optimum_with_many_unknowns_on_their_bounds():
    """scipy's BVLS as the reference; blendshape-like unknowns at 0 and free pose-like ones."""
    from scipy.optimize import lsq_linear

    rng = np.random.default_rng(3)
    for _ in range(5):
        M, b = rng.normal(size=(200, 40)), 3 * rng.normal(size=200)
        lo, hi = -rng.uniform(0, 0.3, 40), rng.uniform(0, 0.3, 40)
        lo[:15] = 0.0
        x = bounded_least_squares(M, b, lo, hi)
        ref = lsq_linear(M, b, (lo, hi), method="bvls").x
        assert np.all(x >= lo) and np.all(x <= hi)
        assert ((M @ x - b) ** 2).sum() <= ((M @ ref - b) ** 2).sum() * (1 + 1e-9)


def test_exact_where_clipping_after_a_few_passes_was_not():
    """The scan fitter's old copy pinned every violator at once and clipped after 12 passes: with
    columns of very different scale and most unknowns pushed against their bounds it stopped short."""
    from scipy.optimize import lsq_linear

    rng = np.random.default_rng(0)
    n = 120
    M = rng.normal(size=(300, n)) * np.logspace(-2, 2, n)[None]  # pose vs coefficient columns
    b = 50 * rng.normal(size=300)
    lo, hi = np.zeros(n), np.full(n, 0.01)
    lo[-6:], hi[-6:] = -np.inf, np.inf  # free pose increments
    x = bounded_least_squares(M, b, lo, hi)
    finite = (np.where(np.isinf(lo), -1e6, lo), np.where(np.isinf(hi), 1e6, hi))
    ref = lsq_linear(M, b, finite, method="bvls", tol=1e-12).x
    cost = lambda v: ((M @ v - b) ** 2).sum()  # noqa: E731
    assert cost(x) <= cost(ref) * (1 + 1e-9)
    assert np.sum((x == lo) | (x == hi)) > n // 2  # most on a bound


def test_at_the_bounds_and_shapes_checked():
    h = np.eye(3)
    g = np.array([5.0, -5.0, 0.5])
    x = bounded_quadratic(h, g, np.zeros(3), np.ones(3))
    np.testing.assert_allclose(x, [1.0, 0.0, 0.5])
    np.testing.assert_allclose(bounded_quadratic(h, g, np.full(3, 2.0), np.full(3, 3.0)), [3.0, 2.0, 2.0])
    with pytest.raises(ValueError):
        bounded_quadratic(h, g[:2], np.zeros(3), np.ones(3))
    with pytest.raises(ValueError):
        bounded_quadratic(h, g, np.ones(3), np.zeros(3))


def test_the_one_umeyama_closed_form_serves_one_pair_and_a_batch():
    """Model building aligned its scans with its own batched copy of the fitters' Umeyama."""
    from scipy.spatial.transform import Rotation

    from studio.core.fitting.align import umeyama
    from studio.core.geometry.transforms import similarity_from_covariance

    rng = np.random.default_rng(1)
    src = rng.normal(size=(50, 3))
    r_true = Rotation.from_rotvec([0.3, -0.2, 0.5]).as_matrix()
    dst = 1.7 * src @ r_true.T + [1.0, 2.0, 3.0]
    sim = umeyama(src, dst)
    np.testing.assert_allclose(sim.R, r_true, atol=1e-12)
    assert sim.s == pytest.approx(1.7)
    a, b = src - src.mean(0), dst - dst.mean(0)
    cov = np.stack([b.T @ a / len(a)] * 4)
    s, r = similarity_from_covariance(cov, np.full(4, (a * a).sum() / len(a)))
    np.testing.assert_allclose(r, np.broadcast_to(r_true, (4, 3, 3)), atol=1e-12)
    np.testing.assert_allclose(s, 1.7)
    mirrored = dst * [-1, 1, 1]  # the best proper rotation, never a reflection
    assert np.linalg.det(umeyama(src, mirrored).R) == pytest.approx(1.0)


def test_robust_scale_ignores_outliers():
    from studio.core.geometry.robust import robust_scale

    r = np.random.default_rng(0).normal(0, 2.0, 5000)
    r[:500] = 1e6  # 10 % gross outliers
    assert 1.9 < robust_scale(r) < 2.5


def test_exact_closest_points_beat_the_local_projection_where_it_is_wrong():
    """Published fit errors searched only the triangles around the nearest vertex; a point above the
    middle of a long thin triangle has its nearest vertex far from the triangle's closest point."""
    from studio.core.geometry.surface import boundary_vertices, closest_points, incident_triangles, project_to_surface

    v = np.array([[0, 0, 0], [10, 0, 0], [5, 0.2, 0], [5, 5, 0], [0, 5, 0]], float)
    f = np.array([[0, 1, 2], [2, 1, 3], [0, 2, 4], [4, 2, 3]])
    p = np.array([[2.5, -1.0, 1.0]])  # over the first triangle's long edge
    d, tri, q = closest_points(p, v, f)
    assert d[0] == pytest.approx(np.sqrt(2.0)) and tri[0] == 0
    near = np.argmin(np.linalg.norm(v - p, axis=1))
    _, _, q_local = project_to_surface(p, v, f, incident_triangles(f, len(v)), np.array([near]))
    assert np.linalg.norm(q_local - p) >= d[0] - 1e-12
    np.testing.assert_array_equal(boundary_vertices(f, len(v)), [True, True, False, True, True])
    with pytest.raises(ValueError):
        closest_points(p, v, f[:0])


def test_bounded_least_squares_lands_exactly_on_lower_and_upper_bounds():
    """Solutions with unknowns on both bounds, one-sided and free ones: the same x as scipy's BVLS, the
    active unknowns exactly on their bound, and the KKT signs there (the gradient points out of the box)."""
    from scipy.optimize import lsq_linear

    rng = np.random.default_rng(7)
    # Orthonormal columns decouple the unknowns: the optimum is the unconstrained one clipped, exactly.
    q, _ = np.linalg.qr(rng.normal(size=(60, 8)))
    x_free = np.array([-2.0, 3.0, 0.2, -0.1, 5.0, -5.0, 0.7, -0.4])
    lo = np.array([-1.0, -1.0, -1.0, -1.0, -np.inf, -1.0, 0.0, -np.inf])
    hi = np.array([1.0, 1.0, 1.0, 1.0, 1.0, np.inf, 0.5, np.inf])
    x = bounded_least_squares(q, q @ x_free, lo, hi)
    assert x[0] == lo[0] and x[5] == lo[5]  # exactly on the lower bound (−inf above: one-sided)
    assert x[1] == hi[1] and x[4] == hi[4] and x[6] == hi[6]  # exactly on the upper bound
    np.testing.assert_allclose(x[[2, 3, 7]], x_free[[2, 3, 7]], atol=1e-12)
    ref = lsq_linear(q, q @ x_free, (np.where(np.isinf(lo), -1e9, lo), np.where(np.isinf(hi), 1e9, hi)),
                     method="bvls", tol=1e-14).x
    np.testing.assert_allclose(x, ref, atol=1e-10)
    # Coupled columns: the active set is found, not clipped into; scipy's BVLS as the reference.
    for seed in range(4):
        rng = np.random.default_rng(seed)
        m = rng.normal(size=(80, 12)) * rng.uniform(0.2, 5.0, 12)
        b = 4 * rng.normal(size=80)
        lo, hi = -rng.uniform(0.02, 0.2, 12), rng.uniform(0.02, 0.2, 12)
        lo[:3], hi[-3:] = -np.inf, np.inf  # one-sided unknowns
        x = bounded_least_squares(m, b, lo, hi)
        finite = (np.where(np.isinf(lo), -1e9, lo), np.where(np.isinf(hi), 1e9, hi))
        ref = lsq_linear(m, b, finite, method="bvls", tol=1e-14).x
        np.testing.assert_allclose(x, ref, atol=1e-8)
        # On a bound to the last bit or two: the solver works on Jacobi-scaled unknowns, and (lo / d) · d
        # can round one ulp inside the box (the final clip only catches a step outside it).
        at_lo = np.abs(x - lo) <= 2 * np.spacing(np.abs(lo))
        at_hi = np.abs(x - hi) <= 2 * np.spacing(np.abs(hi))
        np.testing.assert_array_equal(at_lo, np.abs(ref - lo) <= 1e-9)  # the same active set as BVLS
        np.testing.assert_array_equal(at_hi, np.abs(ref - hi) <= 1e-9)
        assert at_lo.any() and at_hi.any()  # the case this test is about
        assert np.all(x >= lo) and np.all(x <= hi)
        grad = m.T @ (m @ x - b)  # of ½|Mx − b|²; descent is −grad
        free = ~(at_lo | at_hi)
        scale = np.abs(m.T @ b).max()
        assert np.all(np.abs(grad[free]) <= 1e-9 * scale)
        assert np.all(grad[at_lo] >= -1e-9 * scale) and np.all(grad[at_hi] <= 1e-9 * scale)


def test_closest_points_are_libigls_and_the_exact_minimum_over_every_triangle():
    """core/geometry/surface.closest_points against igl.point_mesh_squared_distance on a random mesh,
    and both against brute force over all triangles (Ericson's closest point on each)."""
    import igl
    import trimesh

    from studio.core.geometry.surface import closest_on_triangles, closest_points

    rng = np.random.default_rng(5)
    sphere = trimesh.creation.icosphere(subdivisions=2)
    v = np.asarray(sphere.vertices) * rng.uniform(0.6, 1.4, (len(sphere.vertices), 1))  # a lumpy, random mesh
    f = np.asarray(sphere.faces, np.int64)
    f = f[rng.random(len(f)) > 0.15]  # with holes: open borders, edges and corners to land on
    p = rng.normal(size=(400, 3)) * rng.uniform(0.2, 2.5, (400, 1))  # inside, near and far
    d, tri, q = closest_points(p, v, f)
    sq, tri_igl, q_igl = igl.point_mesh_squared_distance(p, v, f)
    np.testing.assert_allclose(d, np.sqrt(sq), rtol=0, atol=1e-12)
    np.testing.assert_allclose(q, q_igl, atol=1e-12)
    np.testing.assert_array_equal(tri, tri_igl)
    a, b, c = (v[f[:, k]][None] for k in range(3))
    bary = closest_on_triangles(p[:, None], a, b, c)  # (points, triangles, 3)
    every = np.einsum("ptk,ptki->pti", bary, np.stack([a, b, c], axis=2).repeat(len(p), 0))
    brute = np.linalg.norm(every - p[:, None], axis=2)
    np.testing.assert_allclose(d, brute.min(axis=1), atol=1e-9)
    # the returned point lies on the returned triangle, at the returned distance
    own = closest_on_triangles(p, v[f[tri, 0]], v[f[tri, 1]], v[f[tri, 2]])
    on_tri = np.einsum("pk,pki->pi", own, v[f[tri]])
    np.testing.assert_allclose(on_tri, q, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(q - p, axis=1), d, atol=1e-12)
