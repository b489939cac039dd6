"""Fitting a face model to a 3-D scan.

``scan_io`` reads the scan (mesh, point cloud, depth map) into points in a known unit,
``align`` finds the similarity transform scan → model (landmarks or a global search + ICP),
``linear_scan`` fits a linear (PCA) model's coefficients (non-rigid MAP, coarse to fine),
``neural_scan`` the neural head's latent codes (MAP, eq. 4.23),
``report`` measures the result in mm and draws the error heatmap, ``synthetic`` makes scans with
known answers for the tests and the bench. ``fit_scan`` dispatches on the model's kind.
"""

from __future__ import annotations

from studio.core.errors import StudioError


def fit_scan(model, scan, **kwargs):
    """Fit ``model`` (any FaceModel) to ``scan`` (a ``scan_io.Scan``); see ``linear_scan.fit``."""
    kind = getattr(model, "kind", "")
    if kind == "pca":
        from threadpoolctl import threadpool_limits

        from studio.core.fitting.linear_scan import fit

        # The fit's matrices are small (a few thousand rows × ≤ 160 columns): BLAS threads cost
        # more in start-up and contention than they save (measured 2-3× slower on 2 busy cores).
        with threadpool_limits(limits=1, user_api="blas"):
            return fit(model, scan, **kwargs)
    if kind == "neural":
        from studio.core import threads
        from studio.core.fitting.neural_scan import fit

        # The networks are small: extra torch threads gain little and spin against anything else
        # running (the window's UI thread, another process); see ``threads.fit_threads``.
        with threads.limited():
            return fit(model, scan, **kwargs)
    raise StudioError(f"cannot fit a model of kind '{kind}' to a scan")


def fit_options(model, free_scale: bool = False):
    """The default fitting options for ``model``'s kind (``free_scale``: the scan's scale is unknown)."""
    if getattr(model, "kind", "") == "neural":
        from studio.core.fitting.neural_scan import NeuralFitOptions

        return NeuralFitOptions(free_scale=free_scale)
    from studio.core.fitting.linear_scan import FitOptions

    return FitOptions(free_scale=free_scale)


def initial_alignment(model, scan, region: str = "face", options=None, progress=None):
    """Only the rigid stage of the fit: scan coordinates → model coordinates (a ``Similarity``)."""
    kind = getattr(model, "kind", "")
    if kind == "pca":
        from studio.core.fitting.linear_scan import initial_alignment as linear

        return linear(model, scan, region, None, options, progress)
    if kind == "neural":
        from studio.core.fitting.neural_scan import fit

        return fit(model, scan, region, None, options, progress, _align_only=True)
    raise StudioError(f"cannot fit a model of kind '{kind}' to a scan")
