"""Inference: compiled programs, NUTS, SVI, the SVI-then-NUTS workflows, checkpoints, devices.

Modules, one job each: ``programs`` (compiled NUTS programs and their cache), ``preflight``
(checks before a fit), ``chains`` (how chains map onto devices), ``stuck`` (chains stuck in a
poor mode), ``checkpoint``, ``console`` (progress, Ctrl-C), ``nuts`` (``run_nuts``), ``svi``
(``run_svi``), ``workflows`` (``run_svi_nuts``, ``run_neural_linear``), ``distributed``,
``runtime``; the full-weight posterior: ``ensemble`` (NUTS members, stacking),
``laplace_mixture`` (Laplace approximations at MAP members).
"""

from .distributed import run_nuts_distributed
from .ensemble import Ensemble, pool_members, run_ensemble
from .event_forecast import forecast_events, held_out_log_likelihood
from .event_posterior import intensity_bands, solve_draws, to_inference_data
from .jump_filter import filter_online, fit_jump_filter, fit_njode_point, njode_loss
from .laplace_mixture import run_laplace_mixture
from .map_fits import map_points
from .nuts import run_nuts
from .point_process import (
    DELAYED_EVENT_SOLVER,
    EVENT_SOLVER,
    LAPLACE_DECAYS,
    EventFit,
    fit_events,
    make_event_process,
)
from .preflight import prior_failure_rate, retry_nonfinite_starts
from .programs import get_sampler
from .runtime import enable_compilation_cache, use_cpu_cores
from .stacking import PARETO_K_MAX, pareto_k_threshold, pointwise_lfo, pointwise_loo, stacking_weights
from .svi import run_svi
from .workflows import run_neural_linear, run_svi_nuts

__all__ = [
    "DELAYED_EVENT_SOLVER", "enable_compilation_cache", "Ensemble", "EVENT_SOLVER", "EventFit", "filter_online", "fit_events",
    "fit_jump_filter", "fit_njode_point", "forecast_events", "get_sampler", "held_out_log_likelihood",
    "intensity_bands", "LAPLACE_DECAYS", "make_event_process", "map_points", "njode_loss", "PARETO_K_MAX", "pareto_k_threshold", "pointwise_lfo",
    "pointwise_loo", "pool_members", "prior_failure_rate", "retry_nonfinite_starts", "run_ensemble",
    "run_laplace_mixture", "run_neural_linear", "run_nuts", "run_nuts_distributed", "run_svi", "run_svi_nuts", "solve_draws",
    "stacking_weights", "to_inference_data", "use_cpu_cores",
]
