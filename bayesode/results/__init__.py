"""The fit result: `Posterior` (InferenceData export, prediction at new times, save/load)."""

from .posterior import Posterior

__all__ = ["Posterior"]

from .jump_filter import Forecast, JumpFilterFit, mixture_quantiles

__all__ += ["Forecast", "JumpFilterFit", "mixture_quantiles"]
