"""Diagnostics: simulation-based calibration, stability (fixed points) and Lyapunov analysis."""

from .calibration import sbc
from .fixed_points import KIND_NAMES, KIND_NONE, FixedPoints, fixed_points
from .full_weight import fit_full_weight
from .function_space import (
    SITUATIONS,
    ensemble_report,
    field_on_points,
    function_space_draws,
    function_space_report,
    mode_groups,
)
from .lyapunov import LyapunovResult, lyapunov_exponent
from .stability import posterior_stability
from .time_rescaling import TimeRescalingResult, posterior_time_rescaling, time_rescaling_test
from .uniformity import SBCResult, chi2_uniformity, ecdf_bands

__all__ = [
    "chi2_uniformity", "ecdf_bands", "ensemble_report", "field_on_points", "fit_full_weight", "fixed_points",
    "FixedPoints", "function_space_draws", "function_space_report", "KIND_NAMES", "KIND_NONE", "lyapunov_exponent",
    "LyapunovResult", "mode_groups", "posterior_stability", "posterior_time_rescaling", "sbc", "SBCResult",
    "SITUATIONS", "time_rescaling_test", "TimeRescalingResult",
]
