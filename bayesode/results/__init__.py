"""The fit result: `Posterior` (InferenceData export, prediction at new times, save/load) and predictive draws."""

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

__all__ = ["MAX_PANELS", "Posterior", "field_draws", "flat_draws", "model_draws", "model_state_names",
           "prior_predictive", "series_indices", "series_predictions"]

from .jump_filter import Forecast, JumpFilterFit, mixture_quantiles

__all__ += ["Forecast", "JumpFilterFit", "mixture_quantiles"]
