"""The neural parametric head model: tri-plane SDF identity + forward expression deformation.

config.py (sizes), model.py (NeuralHead), checkpoint.py (save/load), data.py (SDF samples from a
linear model), losses.py, train.py (the multi-stage training loop), render2d.py (optional 2D branch),
quality.py (reconstruction figures for metrics.json).
"""
