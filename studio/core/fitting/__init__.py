"""Fitting a face model to a 3-D scan.

``scan_io`` reads the scan (mesh, point cloud, depth map) into points in a known unit,
``align`` finds the similarity transform scan → model (landmarks or a global search + ICP),
``linear_scan`` fits a linear (PCA) model's coefficients (non-rigid MAP, coarse to fine),
``neural_scan`` the neural head's latent codes (MAP, eq. 4.23), both as named steps (correspond →
weight → solve → schedule) under a short ``fit``, their tunables in ``FitOptions`` / ``NeuralFitOptions``,
and both return ``result.FitResult``;
``report`` measures the result in mm and draws the error heatmap, ``synthetic`` makes scans with
known answers for the tests and the bench. ``fit_scan`` dispatches on the model's kind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from studio.core.errors import StudioError
from studio.core.facemodel import FaceModel

if TYPE_CHECKING:
    from studio.core.fitting.scan_io import Scan
    from studio.core.neural.facemodel import NeuralFaceModel


def fit_scan(model: FaceModel, scan: Scan, **kwargs: Any) -> Any:
    """Fit ``model`` (any FaceModel) to ``scan`` (a ``scan_io.Scan``); see ``linear_scan.fit``."""
    kind = model.kind
    linear = model.as_linear()
    if linear is not None:
        from threadpoolctl import threadpool_limits

        from studio.core.fitting.linear_scan import fit as fit_linear

        # The fit's matrices are small (a few thousand rows × ≤ 160 columns): BLAS threads cost
        # more in start-up and contention than they save (measured 2-3× slower on 2 busy cores).
        with threadpool_limits(limits=1, user_api="blas"):
            return fit_linear(linear, scan, **kwargs)
    if kind == "neural":
        from studio.core import threads
        from studio.core.fitting.neural_scan import fit as fit_neural

        # The networks are small: extra torch threads gain little and spin against anything else
        # running (the window's UI thread, another process); see ``threads.fit_threads``.
        with threads.limited():
            return fit_neural(cast("NeuralFaceModel", model), scan, **kwargs)
    raise StudioError(f"cannot fit a model of kind '{kind}' to a scan")


def fit_options(model: FaceModel, free_scale: bool = False) -> Any:
    """The default fitting options for ``model``'s kind (``free_scale``: the scan's scale is unknown)."""
    if model.kind == "neural":
        from studio.core.fitting.neural_scan import NeuralFitOptions

        return NeuralFitOptions(free_scale=free_scale)
    from studio.core.fitting.linear_scan import FitOptions

    return FitOptions(free_scale=free_scale)


def initial_alignment(model: FaceModel, scan: Scan, region: str = "face", options: Any = None,
                      progress: Any = None) -> Any:
    """Only the rigid stage of the fit: scan coordinates → model coordinates (a ``Similarity``)."""
    kind = model.kind
    linear = model.as_linear()
    if linear is not None:
        from studio.core.fitting.linear_scan import initial_alignment as linear_alignment

        return linear_alignment(linear, scan, region, None, options, progress)
    if kind == "neural":
        from studio.core.fitting.neural_scan import fit

        return fit(cast("NeuralFaceModel", model), scan, region, None, options, progress, _align_only=True)
    raise StudioError(f"cannot fit a model of kind '{kind}' to a scan")
