"""Perspective camera and head pose.

Conventions: model coordinates as the model stores them (faces look along +z, y up). The pose
maps them into camera coordinates ``X_c = R·X + t``; the camera sits at the origin looking down
−z (OpenGL style), so a frontal face has t = (0, 0, −distance). Pixels: x right, y down, the
principal point at the image centre, focal length ``f`` in pixels:

    u = cx + f·x_c / (−z_c),      v = cy − f·y_c / (−z_c)

A photo does not say its focal length; ``default_focal`` assumes a portrait lens (about a 50 mm
lens on a full-frame sensor across the longer side, f ≈ 1.4 × size). Within the usual range the
choice changes the perspective distortion of a face at portrait distance by a few percent, which
the distance absorbs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from studio.core.geometry.transforms import axis_angle_to_matrix

FOCAL_FACTOR = 1.4


def default_focal(height: int, width: int) -> float:
    return FOCAL_FACTOR * float(max(height, width))


def matrix_to_axis_angle(R: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(np.asarray(R, float)).as_rotvec()


def euler_to_matrix(yaw_deg: float, pitch_deg: float = 0.0, roll_deg: float = 0.0) -> np.ndarray:
    """Yaw about y, then pitch about x, then roll about z (degrees)."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_euler("zxy", [roll_deg, pitch_deg, yaw_deg], degrees=True).as_matrix()


def matrix_to_euler(R: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees, the inverse of ``euler_to_matrix``."""
    from scipy.spatial.transform import Rotation

    roll, pitch, yaw = Rotation.from_matrix(np.asarray(R, float)).as_euler("zxy", degrees=True)
    return float(yaw), float(pitch), float(roll)


@dataclass
class Camera:
    """Intrinsics (focal in pixels, principal point) and the head pose (axis-angle, translation)."""

    width: int
    height: int
    focal: float
    rotation: np.ndarray = field(default_factory=lambda: np.zeros(3))  # axis-angle
    translation: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, -50.0]))

    @property
    def principal(self) -> tuple[float, float]:
        return self.width / 2.0, self.height / 2.0

    @property
    def R(self) -> np.ndarray:
        return axis_angle_to_matrix(torch.as_tensor(self.rotation, dtype=torch.float64)).numpy()

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points, float) @ self.R.T + self.translation

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel positions (n, 2) and depths (n,: distance in front of the camera)."""
        pc = self.to_camera(points)
        return project_camera(pc, self.focal, *self.principal)

    def as_json(self) -> dict:
        yaw, pitch, roll = matrix_to_euler(self.R)
        return {"model": "perspective", "width": self.width, "height": self.height, "focal_px": self.focal,
                "principal_px": list(self.principal), "rotation_axis_angle": [float(x) for x in self.rotation],
                "translation": [float(x) for x in self.translation],
                "yaw_pitch_roll_deg": [yaw, pitch, roll]}


def project_camera(pc, focal: float, cx: float, cy: float):
    """Camera-space points → (pixels (n, 2), depth (n,)); works on numpy arrays and torch tensors."""
    depth = -pc[:, 2]
    if isinstance(pc, torch.Tensor):
        d = depth.clamp_min(1e-6)
        return torch.stack([cx + focal * pc[:, 0] / d, cy - focal * pc[:, 1] / d], 1), depth
    d = np.maximum(depth, 1e-6)
    return np.stack([cx + focal * pc[:, 0] / d, cy - focal * pc[:, 1] / d], 1), depth
