"""Registration: a scan brought into the model's topology and frame, beyond the model's span.

``surface`` holds the scan as a target in the model frame (exact closest points), ``nonrigid``
the optimal-step non-rigid ICP that refines the scan fit's face with per-vertex displacements,
``synthetic`` scans with a known registered answer (a bump no model component makes).
"""
