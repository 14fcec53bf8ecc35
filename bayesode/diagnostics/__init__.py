"""Diagnostics: simulation-based calibration, stability (fixed points) and Lyapunov analysis."""

from .calibration import SBCResult, chi2_uniformity, ecdf_bands, sbc
from .stability import (
    KIND_NAMES,
    FixedPoints,
    LyapunovResult,
    fixed_points,
    lyapunov_exponent,
    plot_stability,
    posterior_stability,
)
from .time_rescaling import TimeRescalingResult, posterior_time_rescaling, time_rescaling_test

__all__ = ["KIND_NAMES", "FixedPoints", "LyapunovResult", "SBCResult", "chi2_uniformity", "ecdf_bands",
           "fixed_points", "lyapunov_exponent", "plot_stability", "posterior_stability", "sbc"]
__all__ += ["TimeRescalingResult", "posterior_time_rescaling", "time_rescaling_test"]
