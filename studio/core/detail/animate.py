"""Detail that moves with the expression: d(β) = d_person + g ⊙ c(β).

c(β) is the skin's compression under the expression β (strain.py), computed from the model, and g
a per-texel gain: how deep this person's skin folds per unit of compression. From one photo at
expression β₀ the recovered map d₀ is split texel by texel: where the skin was compressed in the
photo, the detail is taken to be expression detail, g = d₀·c₀ / (c₀² + ε²); the rest stays with the
person, d_person = d₀ − g·c₀ = d₀·ε² / (c₀² + ε²). Then changing the expression scales each wrinkle
with the compression under it: it deepens as the skin folds further and fades as it relaxes.

Why this model: it needs nothing learned (DECA learns its expression detail from thousands of
photos), compression is computed from the blendshapes themselves, and wrinkle depth in skin
mechanics grows with compressive strain. Its limits, said plainly: one photo cannot separate a
permanent line from an expression wrinkle in the same place (both go to g where the skin is
compressed), and a wrinkle the photo does not show (neutral face, c₀ ≈ 0) is never invented.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS_COMPRESSION = 0.03  # below ~3 % compression a wrinkle is not told apart from a static line


@dataclass
class ExpressionDetail:
    static: np.ndarray  # (S, S) person part, model units
    gain: np.ndarray  # (S, S) model units per unit compression
    eps: float = EPS_COMPRESSION

    @classmethod
    def split(cls, d0: np.ndarray, c0: np.ndarray, eps: float = EPS_COMPRESSION) -> "ExpressionDetail":
        d0, c0 = np.asarray(d0, float), np.asarray(c0, float)
        den = c0 * c0 + eps * eps
        return cls(d0 * eps * eps / den, d0 * c0 / den, eps)

    def at(self, compression: np.ndarray) -> np.ndarray:
        """The displacement map at an expression with this compression map."""
        return self.static + self.gain * np.asarray(compression, float)
