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

__all__ = ["field_draws", "plot_phase", "plot_prior_predictive", "plot_trajectories", "plot_vector_field",
           "prior_predictive", "series_predictions"]

from .jump_filter import plot_jump_forecast

__all__ += ["plot_jump_forecast"]
