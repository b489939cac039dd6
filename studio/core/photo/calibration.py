"""The detector calibrated on renders of the model: where Face Mesh really puts each point on this
model's faces, and how far it scatters.

A single frontal render of the mean face (embedding._mean_face_embedding) ties each of Face Mesh's
points to the surface where the detector saw it *there*: a brow-less, hair-less, lit-from-the-front
average face. On photo-like faces (skin tones, brows, hair, lips, irises, turned up to ±30°, lit from
the side, other identities and expressions: synthetic.render_photo) the detector puts its points
elsewhere, consistently: a median of 2.7 mm from the single-render tie on ICT, with brows, nose
bridge and eye corners off the most. Fitted to points that are off in the same way on every photo,
the shape bends to follow the offsets; on rendered photos this made fits worse than the mean face.

So every point is tied where the detector puts it on average. Each calibration render is drawn
from the model with its ground truth, the detector runs on it, and every detected point is
back-projected onto the true mesh through the rasteriser's triangle and barycentric buffers; that
surface point, carried to the mean face (same triangle, same barycentrics), is one vote. The tie is
the per-coordinate median of the votes, snapped to the surface; the votes' RMS distance from it is
the point's scatter, which sets its weight in the fit (fit.py: 1/scatter², relative).

Measured with the bench's renders (`studio bench photo`, detector in the loop): 0.95× the mean
face's error with the single-render ties, 0.82× calibrated (with the blendshape prior at 0.08); on
the annotated portrait (takeo) the fitted 68 points went from 4.3 % to 4.2 % of the eye-corner
distance. Renders lit as photos are (shadows: VERSION 3) took it to 0.78× and takeo to 4.05 %. It
costs about 100 s once per model (stored with the embedding), most of it the renders' shadow maps.
"""

from __future__ import annotations

import numpy as np

from studio.core.pca import PCAModel
from studio.core.progress import report

RENDERS = 48  # calibration photos (votes per point): the median tie's own error ~0.5 mm against 4.4 mm scatter
SIZE = 640
MIN_VOTES = 0.6  # a point needs a vote from this share of the renders (seen, on the face region)
SEED = 9_000_000  # the calibration's faces (bench photo draws its own seeds)


def calibrate(model: PCAModel, first, progress=None):
    """A calibrated Embedding from ``first`` (the single mean-face render's): ties moved to the
    detector's median position on photo-like renders, with per-point scatter. ``first`` is
    returned unchanged when too few renders yield a face (a model the detector barely knows)."""
    from studio.core.photo import embedding, shading, synthetic
    from studio.core.photo.landmarks import detect_faces

    faces = shading.drawable_faces(model)
    allowed = embedding.landmark_mask(model)
    mean = np.asarray(model.mean, float)
    votes = []
    for k in range(RENDERS):
        report(progress, k / RENDERS, f"calibrating the detector on renders of the model ({k + 1}/{RENDERS})")
        rng = np.random.default_rng(SEED + k)
        photo = synthetic.render_photo(model, rng, size=SIZE, face_fraction=(0.35, 0.5), max_weight=0.5,
                                       brows=first, keep_fragments=True)
        found = detect_faces(photo.image)
        if not found or photo.fragments is None:
            continue
        tie = embedding.back_project(found[0], photo.fragments, faces, allowed)
        q = tie.points(mean)
        q[~tie.valid] = np.nan
        votes.append(q)
    if len(votes) < RENDERS // 2:
        return first
    return _median_ties(mean, faces[allowed[faces].all(1)], first, np.array(votes))


def _median_ties(mean: np.ndarray, faces: np.ndarray, first, votes: np.ndarray):
    """The votes (K, P, 3) on the mean face (``mean``; ties may land on ``faces``) → an Embedding
    tied at their median, with scatter."""
    from studio.core.geometry.surface import closest_on_triangles, closest_points
    from studio.core.photo.embedding import Embedding

    seen = np.isfinite(votes[..., 0])
    enough = seen.sum(0) >= MIN_VOTES * len(votes)
    with np.errstate(invalid="ignore"):  # unseen votes are NaN and drop out of median and mean
        centre = np.nanmedian(votes[:, enough], axis=0)
    _, tri, q = closest_points(centre, mean, faces)
    corners = mean[faces[tri]]
    bary = closest_on_triangles(q, corners[:, 0], corners[:, 1], corners[:, 2])
    tri_vertices, weights = first.tri_vertices.copy(), first.bary.copy()
    tri_vertices[enough], weights[enough] = faces[tri], bary
    spread = np.full(len(first.valid), np.nan)
    spread[enough] = np.sqrt(np.nanmean(((votes[:, enough] - q[None]) ** 2).sum(2), axis=0))
    return Embedding(tri_vertices, weights, first.valid & enough, spread)
