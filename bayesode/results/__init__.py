"""The fit result: `Posterior` (InferenceData export, prediction at new times, save/load) and predictive draws."""

from .jump_filter import Forecast, JumpFilterFit, mixture_quantiles
from .posterior import Posterior
from .predictive import (
    MAX_PANELS,
    field_draws,
    flat_draws,
    model_draws,
    model_state_names,
    prior_predictive,
    series_indices,
    series_predictions,
)

__all__ = [
    "field_draws", "flat_draws", "Forecast", "JumpFilterFit", "MAX_PANELS", "mixture_quantiles", "model_draws",
    "model_state_names", "Posterior", "prior_predictive", "series_indices", "series_predictions",
]
