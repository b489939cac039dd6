"""The face's outline against the photo's edges (photo/outline.py): the silhouette cue of the photo fit."""

from __future__ import annotations

import numpy as np


def _outline_of(model, vertices, camera):
    """Outline vertices of ``vertices`` seen by ``camera`` (all faces drawn), with their 2-D normals."""
    from studio.core.geometry import vertex_normals
    from studio.core.geometry.raster import rasterize, visible_vertices
    from studio.core.photo import embedding, outline, shading

    faces = shading.drawable_faces(model)
    vc = camera.to_camera(vertices)
    xy, depth = camera.project(vertices)
    frags = rasterize(xy, depth, faces, camera.height, camera.width)
    vis = visible_vertices(xy, depth, frags, tolerance=0.05)
    n = vertex_normals(vc, faces)
    view = -vc / np.linalg.norm(vc, axis=1, keepdims=True)
    allowed = np.zeros(len(vertices), bool)
    allowed[embedding.landmark_region(model)] = True
    rim = outline.outline_vertices(xy, n, view, vis, frags.mask, allowed)
    return rim, xy[rim], outline.normal_2d(xy[rim], n[rim])


def test_the_true_face_outline_lies_on_the_rendered_photos_edges(ict_model):
    from studio.core.photo import outline, synthetic

    photo = synthetic.render_photo(ict_model, np.random.default_rng(4), size=512)
    rim, xy, n2 = _outline_of(ict_model, photo.vertices, photo.camera)
    assert len(rim) > 100  # cheeks, temples and chin
    field = outline.edge_field(photo.image, 1.5)
    target, ok = field.match(xy, n2, reach_px=8.0)
    assert ok.mean() > 0.7
    assert np.median(np.linalg.norm(target[ok] - xy[ok], axis=1)) < 1.5
    # over a box around the face (what the fit computes) the matches are the same
    lo, hi = xy.min(0) - 40, xy.max(0) + 40
    boxed = outline.edge_field(photo.image, 1.5, (int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1])))
    assert boxed.distance.size < field.distance.size
    target_b, ok_b = boxed.match(xy, n2, reach_px=8.0)
    same = ok & ok_b
    assert same.sum() > 0.95 * ok.sum()
    assert np.allclose(target_b[same], target[same])


def test_a_too_narrow_face_is_pulled_outwards(ict_model):
    """Shrink the true face by 4 % about its centre: the accepted matches lie outside its outline."""
    from studio.core.photo import outline, synthetic

    photo = synthetic.render_photo(ict_model, np.random.default_rng(5), size=512)
    v = photo.vertices
    centre = v.mean(0)
    rim, xy, n2 = _outline_of(ict_model, centre + 0.96 * (v - centre), photo.camera)
    field = outline.edge_field(photo.image, 1.5)
    target, ok = field.match(xy, n2, reach_px=12.0)
    assert ok.mean() > 0.5
    outward = np.sum((target[ok] - xy[ok]) * n2[ok], axis=1)
    assert np.median(outward) > 1.0  # px, along the outline's outward normal
