"""Inference: compiled programs, NUTS, SVI, the SVI-then-NUTS workflows, checkpoints, devices."""

from .core import prior_failure_rate, run_neural_linear, run_nuts, run_svi, run_svi_nuts
from .distributed import run_nuts_distributed
from .point_process import (
    EVENT_SOLVER,
    EventFit,
    fit_events,
    forecast_events,
    held_out_log_likelihood,
    intensity_bands,
    make_event_process,
    solve_draws,
    to_inference_data,
)
from .runtime import enable_compilation_cache, use_cpu_cores

__all__ = ["enable_compilation_cache", "prior_failure_rate", "run_neural_linear", "run_nuts", "run_nuts_distributed",
           "run_svi", "run_svi_nuts", "use_cpu_cores"]
__all__ += ["EVENT_SOLVER", "EventFit", "fit_events", "forecast_events", "held_out_log_likelihood", "intensity_bands",
            "make_event_process", "solve_draws", "to_inference_data"]
