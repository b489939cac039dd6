"""Face Studio: morph, fit and export 3D morphable face and head models."""

__version__ = "0.1.0"
