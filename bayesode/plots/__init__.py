"""Plots: trajectories with bands, phase portraits, vector fields, prior predictive checks."""

from .core import (
    field_draws,
    plot_phase,
    plot_prior_predictive,
    plot_trajectories,
    plot_vector_field,
    prior_predictive,
    series_predictions,
)
from .intensity import plot_intensity, plot_time_rescaling

__all__ = ["field_draws", "plot_phase", "plot_prior_predictive", "plot_trajectories", "plot_vector_field",
           "prior_predictive", "series_predictions"]
__all__ += ["plot_intensity", "plot_time_rescaling"]
