"""What a scan fit returns, whichever model family was fitted (``linear_scan``, ``neural_scan``).

One dataclass for both: the report, the verdict, the job's outputs and the window read the same
fields, and a neural fit differs only in carrying its own triangles (``faces``): its mesh's topology
depends on the parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from studio.core.facemodel import UNIT_TO_MM, Params
from studio.core.fitting.align import Similarity
from studio.core.fitting.rigid import FaceArea, RigidResult


@dataclass
class FitResult:
    model_name: str
    params: Params
    to_model: Similarity  # scan coordinates (scan unit) → model coordinates
    region: str
    scan_unit: str
    model_unit: str
    vertices: np.ndarray  # fitted vertices, model coordinates (all of the model's vertices)
    region_vertices: np.ndarray  # the vertex indices that were fitted
    iterations: int
    seconds: float
    residual_mm: list[float] = field(default_factory=list)  # robust residual per iteration
    # The fitted mesh's triangles when its topology depends on the parameters (a neural model's
    # marching-cubes mesh); None for a fixed-topology model (the model's own triangles).
    faces: np.ndarray | None = None
    free_scale: bool = False  # the scan's scale was estimated (its unit's scale was not trusted)
    rigid: RigidResult | None = None  # how the pose was found (method, detected landmarks, notes)
    verdict: object | None = None  # the fit's own judgement (``verdict.judge``), set by the job
    face_area: FaceArea | None = None  # where the scan's face area is, model frame
    model_landmarks: np.ndarray | None = None  # (468, 3) the fitted face's landmarks (model frame)

    def scan_to_mm(self) -> float:
        """Millimetres per scan coordinate: the unit's, or — with a free scale — the estimated one
        (the scan's nominal unit then says nothing about its size)."""
        if self.free_scale:
            return float(self.to_model.s) * UNIT_TO_MM[self.model_unit]
        return UNIT_TO_MM[self.scan_unit]

    def vertices_in_scan(self) -> np.ndarray:
        """The fitted face placed on the scan (scan coordinates and unit)."""
        return self.to_model.inverse().apply(self.vertices)

    def pose_json(self) -> dict:
        """How to place the model on the scan: x_scan = s·R·x_model + t (scan unit)."""
        d = self.to_model.inverse().as_dict()
        d.update({"maps": "model -> scan", "scan_unit": self.scan_unit, "model_unit": self.model_unit})
        return d
