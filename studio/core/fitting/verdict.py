"""Whether a scan fit can be trusted, judged from its own evidence.

A fit always produces numbers; what matters is whether they describe the scanned face. The
verdict weighs what the fit itself can see:

* **face found** — did the detector find a face on the scan (or were landmarks given)? Without
  one the pose rests on shape alone, which is trusted only when the fit explains the scan well;
* **landmark agreement** — the scan's detected landmarks, placed by the fitted pose, against the
  fitted face's own (as a fraction of the eye distance): a pose tens of degrees off shows here
  even when the surface residual looks fine;
* **residuals against the scan's noise** — median distance over the face area and the share of
  face-area points the fit explains;
* **plausibility** — the shape vector under its N(0, I) prior (χ² tail), any single component
  beyond 5σ, opposed blendshapes both on.

Thresholds are set so that fits of real scans the project knows pass with a margin and a sphere,
a random cloud or a small object fail (tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from studio.core.facemodel import FaceModel

MAX_LANDMARK_ERROR = 0.10  # median, × inter-ocular distance
MAX_MEDIAN_MM = 1.5  # median scan → fit distance over the face area
MIN_EXPLAINED = 0.05  # share of the scan's points in the face area and explained by the fit (a head
# scan with shoulders shows its face in a quarter of its points: real scans reach 0.25)
MIN_EXPLAINED_POINTS = 100
MAX_COMPONENT_SIGMA = 5.0
CHI2_TAIL = 1e-6  # shape vectors less likely than this under the prior get a warning …
IMPLAUSIBLE_FACTOR = 2.0  # … and fail beyond this × the expected length √k (a neural head's codes have
# heavier tails than N(0, I): a real head with hair fitted right reached 14.7 over 64)
SHAPE_ONLY_MEDIAN_MM = 0.6  # without a detected face, the surface must fit this well


@dataclass
class Verdict:
    ok: bool
    reasons: list[str] = field(default_factory=list)  # why it failed (empty when ok)
    warnings: list[str] = field(default_factory=list)  # what the user should know either way
    evidence: dict = field(default_factory=dict)

    def summary(self) -> str:
        if self.ok:
            return "fit looks right" + (f" ({'; '.join(self.warnings)})" if self.warnings else "")
        return "fit failed: " + "; ".join(self.reasons)

    def as_json(self) -> dict:
        return {"ok": self.ok, "summary": self.summary(), "reasons": self.reasons, "warnings": self.warnings,
                "evidence": self.evidence}


def judge(model: FaceModel, result, metrics: dict, scan_notes: list | None = None) -> Verdict:
    v = Verdict(True)
    ev = v.evidence
    rig = result.rigid
    method = rig.method if rig is not None else "unknown"
    ev["alignment"] = method
    v.warnings += list(scan_notes or []) + (list(rig.notes) if rig is not None else [])
    med = metrics.get("scan_to_fit_median_mm", float("nan"))
    explained = metrics.get("explained_fraction", 0.0)
    ev.update({"median_mm": med, "explained_fraction": explained,
               "noise_mm": metrics.get("scan_to_fit_inlier_rms_mm")})
    n_explained = explained * metrics.get("evaluated_points", 0)
    if not np.isfinite(med) or explained < MIN_EXPLAINED or n_explained < MIN_EXPLAINED_POINTS:
        v.reasons.append(f"only {100 * explained:.0f}% of the scan's points lie on the fitted face")
    elif med > MAX_MEDIAN_MM:
        v.reasons.append(f"the fitted face is {med:.1f} mm (median) from the scan")
    if rig is not None and rig.scan_landmarks is not None and result.model_landmarks is not None:
        err = rig.landmark_error_to(result.model_landmarks, result.to_model)
        ev["landmark_error_iod"] = err
        if err is not None and err > MAX_LANDMARK_ERROR:
            v.reasons.append(f"the face detected on the scan lies {100 * err:.0f}% of the eye distance from the fitted "
                             "face's landmarks (the pose is likely wrong; try --landmarks)")
    elif method == "shape only" and np.isfinite(med) and med > SHAPE_ONLY_MEDIAN_MM:
        v.reasons.append(f"no face was found on the scan and the shape alone fits it only to {med:.1f} mm "
                         "(is this a face scan?)")
    plausibility(model, result.params, v)
    v.ok = not v.reasons
    return v


def plausibility(model: FaceModel, params: dict, v: Verdict) -> None:
    """Add to ``v`` what the coefficients say on their own: far from the prior, a component beyond
    5σ, opposed blendshapes both on (shared by the scan and the photo verdicts)."""
    from scipy.stats import chi2

    for g in model.groups:
        a = np.asarray(params.get(g.name, np.zeros(g.size)), float)
        if g.prior == "normal" and g.size:
            z = a / np.asarray(g.sigma, float) if np.ndim(g.sigma) else a / float(g.sigma)
            m2 = float(z @ z)
            tail = float(chi2.sf(m2, g.size))
            v.evidence[f"{g.name}_mahalanobis"] = float(np.sqrt(m2))
            text = (f"the {g.name} is far from the model's prior (Mahalanobis {np.sqrt(m2):.1f} over {g.size} "
                    f"components, about {np.sqrt(g.size):.0f} expected)")
            if m2 > IMPLAUSIBLE_FACTOR**2 * g.size:
                v.reasons.append(text)
            elif tail < CHI2_TAIL:
                v.warnings.append(text)
            if np.abs(z).max() > MAX_COMPONENT_SIGMA:
                i = int(np.argmax(np.abs(z)))
                v.reasons.append(f"{g.name} {g.names[i]} is at {z[i]:+.1f}σ")
        elif g.prior == "box" and g.size and g.affects == "position":
            from studio.core.expressions import opposed_both_on

            both = opposed_both_on(g.names, a)
            v.evidence[f"{g.name}_max"] = float(a.max()) if a.size else 0.0
            if both:
                v.reasons.append("opposed blendshapes both on: " + ", ".join(f"{x}+{y}" for x, y in both))
