"""Diagnostics: simulation-based calibration, stability (fixed points) and Lyapunov analysis."""

from .calibration import SBCResult, chi2_uniformity, ecdf_bands, sbc
from .stability import (
    KIND_NAMES,
    KIND_NONE,
    FixedPoints,
    LyapunovResult,
    fixed_points,
    lyapunov_exponent,
    posterior_stability,
)

__all__ = ["KIND_NAMES", "KIND_NONE", "FixedPoints", "LyapunovResult", "SBCResult", "chi2_uniformity", "ecdf_bands",
           "fixed_points", "lyapunov_exponent", "posterior_stability", "sbc"]
