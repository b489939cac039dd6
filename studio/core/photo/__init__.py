"""Fitting a linear morphable model to one photo (Blanz & Vetter 1999), on a CPU.

landmarks.py   MediaPipe Face Mesh (offline, 478 points) + full-range face detector; photo checks
embedding.py   MediaPipe's points tied to each model's surface (render, detect, back-project); stored
camera.py      perspective camera and head pose
raster.py      numpy z-buffer rasteriser: triangle ids + barycentrics, torch interpolation
shading.py     Lambertian albedo × 2nd-order spherical-harmonics light; rendering a model
fit.py         landmarks → pose → shape/expression MAP → analysis by synthesis (torch autograd)
texture.py     the fitted mesh textured from the photo (OBJ + MTL + PNG, or GLB)
synthetic.py   photos rendered from random faces with ground truth (tests, ``studio bench photo``)
"""
