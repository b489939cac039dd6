"""What the studio knows about blendshape names (ARKit / ICT style: ``browDown_L``, ``jawOpen``).

* **regions** — the face part a blendshape moves (brows, eyes, cheeks, nose, jaw, mouth), so a
  panel can group 53 expressions instead of listing them alphabetically;
* **sides** — the left/right partner of a blendshape (``_L``/``_R``, ``Left``/``Right``), for a
  linked L/R edit;
* **opposed pairs** — blendshapes that undo each other (eyeWide/eyeSquint, jawLeft/jawRight…): a
  face never shows both, so fits price them together and Random never combines them;
* **plausible random expressions** — a few blendshapes at moderate weights, never an opposed
  pair: every blendshape at a random weight at once made a self-intersecting face.

Models whose expression space is PCA (FLAME, BFM) have no such names; every function then
degrades to "no region, no side, no pair".
"""

from __future__ import annotations

import re

import numpy as np

# (region, name prefixes), in the order a panel lists them
REGIONS = (("Brows", ("brow",)), ("Eyes", ("eye",)), ("Cheeks", ("cheek",)), ("Nose", ("nose",)),
           ("Jaw", ("jaw",)), ("Mouth", ("mouth", "lip", "tongue")))
OTHER = "Other"

# Opposing blendshapes (ARKit names, the same side unless the shape has no side).
OPPOSED = (("eyeWide", "eyeSquint"), ("eyeWide", "eyeBlink"), ("eyeLookUp", "eyeLookDown"),
           ("eyeLookIn", "eyeLookOut"), ("browDown", "browInnerUp"), ("browDown", "browOuterUp"),
           ("mouthSmile", "mouthFrown"), ("mouthPucker", "mouthStretch"), ("mouthRollUpper", "mouthShrugUpper"),
           ("mouthRollLower", "mouthShrugLower"), ("jawLeft", "jawRight"), ("mouthLeft", "mouthRight"),
           ("mouthClose", "jawOpen"), ("cheekPuff", "cheekSquint"))

_SIDE = re.compile(r"^(?P<stem>.*?)(?P<side>_L|_R|Left|Right|_left|_right)$")
_OTHER_SIDE = {"_L": "_R", "_R": "_L", "Left": "Right", "Right": "Left", "_left": "_right", "_right": "_left"}


def region_of(name: str) -> str:
    low = name.lower()
    for region, prefixes in REGIONS:
        if low.startswith(prefixes):
            return region
    return OTHER


def regions(names) -> list[tuple[str, list[int]]]:
    """[(region, indices in ``names``)], in REGIONS order; only non-empty regions. A list of names
    that are not blendshape names (PC1, EX3) gives one group, "Other", in the given order."""
    groups: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        groups.setdefault(region_of(n), []).append(i)
    order = [r for r, _ in REGIONS] + [OTHER]
    return [(r, groups[r]) for r in order if r in groups]


def partner(names, index: int) -> int | None:
    """The index of the other side's blendshape (``browDown_L`` → ``browDown_R``), or None."""
    m = _SIDE.match(names[index])
    if m is None:
        return None
    other = m["stem"] + _OTHER_SIDE[m["side"]]
    names = list(names)
    if other not in names:
        return None
    j = names.index(other)
    # jawLeft/jawRight, mouthLeft/mouthRight move one way or the other: opposites, not two sides
    pairs = opposed_pairs(names)
    return None if ((pairs == (index, j)) | (pairs == (j, index))).all(1).any() else j


def opposed_pairs(names) -> np.ndarray:
    """(P, 2) index pairs of opposed blendshapes among ``names``."""
    index = {n: i for i, n in enumerate(names)}
    out = []
    for a, b in OPPOSED:
        for side in ("", "_L", "_R"):
            if a + side in index and b + side in index:
                out.append((index[a + side], index[b + side]))
    return np.asarray(out, np.int64).reshape(-1, 2)


def plausible_random(names, lower: np.ndarray, upper: np.ndarray, rng: np.random.Generator,
                     count: tuple[int, int] = (1, 3), weight: tuple[float, float] = (0.2, 0.6)) -> np.ndarray:
    """An expression a face makes: ``count`` blendshapes (drawn, both sides together where the
    blendshape has a partner) at ``weight`` × their range, never two that oppose each other."""
    k = len(names)
    out = np.zeros(k)
    pairs = opposed_pairs(names)
    blocked = np.zeros(k, bool)
    n_on = int(rng.integers(count[0], count[1] + 1))
    for i in rng.permutation(k):
        if n_on == 0:
            break
        if blocked[i] or out[i] != 0:
            continue
        both = [i] + ([p] if (p := partner(names, i)) is not None and not blocked[p] and rng.random() < 0.7 else [])
        w = rng.uniform(*weight)
        for j in both:
            out[j] = lower[j] + w * (upper[j] - lower[j])
            blocked[pairs[pairs[:, 0] == j, 1]] = True
            blocked[pairs[pairs[:, 1] == j, 0]] = True
        n_on -= 1
    return out


def opposed_both_on(names, weights: np.ndarray, threshold: float = 0.5) -> list[tuple[str, str]]:
    """Opposed pairs that are both above ``threshold``: what no face shows."""
    return [(names[i], names[j]) for i, j in opposed_pairs(names) if min(weights[i], weights[j]) > threshold]
