"""Plots: trajectories with bands, phase portraits, vector fields, prior predictive checks, stability."""

from .core import (
    field_draws,
    plot_phase,
    plot_prior_predictive,
    plot_trajectories,
    plot_vector_field,
    prior_predictive,
    series_predictions,
)
from .stability import plot_stability

__all__ = ["field_draws", "plot_phase", "plot_prior_predictive", "plot_stability", "plot_trajectories", "plot_vector_field",
           "prior_predictive", "series_predictions"]
