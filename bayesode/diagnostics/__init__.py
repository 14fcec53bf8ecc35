"""Diagnostics: simulation-based calibration, stability (fixed points) and Lyapunov analysis."""

from .calibration import sbc
from .stability import (
    KIND_NAMES,
    FixedPoints,
    LyapunovResult,
    fixed_points,
    lyapunov_exponent,
    plot_stability,
    posterior_stability,
)
from .uniformity import SBCResult, chi2_uniformity, ecdf_bands

__all__ = ["KIND_NAMES", "FixedPoints", "LyapunovResult", "SBCResult", "chi2_uniformity", "ecdf_bands",
           "fixed_points", "lyapunov_exponent", "plot_stability", "posterior_stability", "sbc"]
