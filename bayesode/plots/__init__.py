"""Plots: trajectories with bands, phase portraits, vector fields, prior predictive checks (drawing only).

Each takes ``ax`` and returns the Axes it drew on (ArviZ's convention). ``field_draws``,
``prior_predictive`` and ``series_predictions`` compute; they live in :mod:`bayesode.results`
and are re-exported here so ``bayesode.plots.<name>`` keeps working.
"""

from ..results import field_draws, prior_predictive, series_predictions
from .core import plot_prior_predictive, plot_trajectories
from .intensity import plot_intensity, plot_time_rescaling
from .jump_filter import plot_jump_forecast
from .plane import plot_phase, plot_vector_field
from .stability import plot_stability

__all__ = [
    "field_draws", "plot_intensity", "plot_jump_forecast", "plot_phase", "plot_prior_predictive", "plot_stability",
    "plot_time_rescaling", "plot_trajectories", "plot_vector_field", "prior_predictive", "series_predictions",
]
