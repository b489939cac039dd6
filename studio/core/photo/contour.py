"""Jaw-line (contour) landmarks that follow the face's outline as it turns ("landmark marching").

An annotator, and a face detector, put iBUG points 0-16 on the *visible outline* of the lower
face. On a frontal face that is the model's jaw-line vertices; on a turned face the far-side
outline is the occluding contour of the cheek, which lies on other vertices, further towards the
face's middle. Tying the points to fixed vertices pulled the far-side jaw 30-40 px inside the
outline and bent the identity to explain it.

As in 3DDFA (Zhu et al. 2016) and eos, each contour landmark gets a line of candidate vertices:
from its jaw vertex inwards across the cheek, along the jaw line's inward normal (in the model's
frontal x-y plane). For the current shape and pose, the candidate that projects furthest out,
along the image direction of the outward normal, is on the outline: it replaces the fixed vertex.
Only on the side turned away from the camera (by more than ``TURN`` degrees) does the outline leave
the jaw vertices; there the selection runs. Elsewhere, as in eos, the jaw vertex stays: on a
near-frontal real face the cheek's outline and the annotated jaw line differ by a few percent
of the eye distance either way, and marching there made the 68-point error worse (takeo: jaw
7.1 → 7.6 %).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

JAW = tuple(range(17))  # iBUG 68 points on the face's outline
REACH = 0.45  # how far inwards candidates run, in face widths (a 45° turn moves the outline ~0.3)
TURN = 10.0  # degrees: below this turn of the jaw line away from the camera, the jaw vertex is the outline
TUBE = 0.04  # half-width of a candidate line, in face widths (a few vertices across)


@dataclass
class Contour:
    rows: np.ndarray  # (C,) rows of the correspondences that are contour landmarks
    anchors: np.ndarray  # (C,) the jaw vertex of each (its place on a frontal face)
    outward: np.ndarray  # (C, 3) outward normal of the jaw line at the anchor, model frame
    candidates: list[np.ndarray]  # C arrays of vertex ids, anchor included

    def all_vertices(self) -> np.ndarray:
        return np.unique(np.concatenate(self.candidates)) if self.candidates else np.zeros(0, np.int64)


def build(mean: np.ndarray, jaw_vertices: np.ndarray, region: np.ndarray, rows: np.ndarray,
          centre: np.ndarray) -> Contour:
    """Candidate lines for the jaw points. ``jaw_vertices``: the model's 17 iBUG jaw vertices;
    ``region``: vertices a contour point may move to (the face); ``centre``: a point inside the face
    (the nose tip) that says which way is inwards."""
    mean = np.asarray(mean, float)
    jaw = mean[np.asarray(jaw_vertices, np.int64)]
    region = np.asarray(region, np.int64)
    width = float(np.ptp(mean[region, 0])) or 1.0
    q = mean[region]
    outward, candidates = [], []
    for j in range(len(jaw)):
        tangent = jaw[min(j + 1, len(jaw) - 1), :2] - jaw[max(j - 1, 0), :2]
        n = np.array([tangent[1], -tangent[0]])
        n /= max(np.linalg.norm(n), 1e-12)
        if np.dot(jaw[j, :2] - centre[:2], n) < 0:
            n = -n
        d = q[:, :2] - jaw[j, :2]
        s = d @ n
        perp = np.abs(d @ np.array([-n[1], n[0]]))
        # in front of the anchor's depth minus a face width: the cheek, not the back of the head
        near = (s <= 0.0) & (s >= -REACH * width) & (perp <= TUBE * width) & (q[:, 2] > jaw[j, 2] - 0.5 * width)
        c = np.unique(np.concatenate([[int(jaw_vertices[j])], region[near]]))
        outward.append(np.array([n[0], n[1], 0.0]))
        candidates.append(c)
    return Contour(np.asarray(rows, np.int64), np.asarray(jaw_vertices, np.int64), np.array(outward), candidates)


def select(contour: Contour, vertices: np.ndarray, R: np.ndarray, t: np.ndarray, focal: float) -> np.ndarray:
    """For each contour landmark, the candidate vertex on the outline for this shape and pose.

    ``vertices``: (n, 3) the current face (model frame, full topology); camera ``X_c = R·X + t``
    looking down −z. Returns (C,) vertex ids."""
    out = contour.anchors.copy()
    away = (contour.outward @ np.asarray(R, float).T)[:, 2] < -np.sin(np.radians(TURN))  # +z: towards the camera
    for i in np.flatnonzero(away):
        c, n = contour.candidates[i], contour.outward[i]
        a = vertices[contour.anchors[i]]
        pa = _project(np.stack([a, a + 0.01 * np.ptp(vertices[c], 0).max() * n + 1e-9 * n]), R, t, focal)
        m = pa[1] - pa[0]
        m /= max(np.linalg.norm(m), 1e-12)
        p = _project(vertices[c], R, t, focal)
        out[i] = c[int(np.argmax((p - pa[0]) @ m))]
    return out


def _project(x: np.ndarray, R: np.ndarray, t: np.ndarray, focal: float) -> np.ndarray:
    """Pixel-free projection (focal-scaled, y up): only directions and order matter here."""
    pc = x @ R.T + t
    d = np.maximum(-pc[:, 2], 1e-9)
    return focal * pc[:, :2] / d[:, None]
