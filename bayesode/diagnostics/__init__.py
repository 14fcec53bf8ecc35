"""Diagnostics: simulation-based calibration, stability (fixed points) and Lyapunov analysis."""

from .calibration import SBCResult, chi2_uniformity, ecdf_bands, sbc
from .full_weight import fit_full_weight
from .function_space import (
    SITUATIONS,
    ensemble_report,
    field_on_points,
    function_space_draws,
    function_space_report,
    mode_groups,
)
from .stability import (
    KIND_NAMES,
    FixedPoints,
    LyapunovResult,
    fixed_points,
    lyapunov_exponent,
    plot_stability,
    posterior_stability,
)

__all__ = ["KIND_NAMES", "FixedPoints", "LyapunovResult", "SBCResult", "chi2_uniformity", "ecdf_bands",
           "fixed_points", "lyapunov_exponent", "plot_stability", "posterior_stability", "sbc",
           # function-space convergence and modes
           "SITUATIONS", "ensemble_report", "field_on_points", "fit_full_weight", "function_space_draws", "function_space_report",
           "mode_groups"]
