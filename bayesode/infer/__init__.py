"""Inference: compiled programs, NUTS, SVI, the SVI-then-NUTS workflows, checkpoints, devices."""

from .core import prior_failure_rate, run_neural_linear, run_nuts, run_svi, run_svi_nuts
from .distributed import run_nuts_distributed
from .runtime import enable_compilation_cache, use_cpu_cores

__all__ = ["enable_compilation_cache", "prior_failure_rate", "run_neural_linear", "run_nuts", "run_nuts_distributed",
           "run_svi", "run_svi_nuts", "use_cpu_cores"]

from .jump_filter import filter_online, fit_jump_filter, fit_njode_point, njode_loss

__all__ += ["filter_online", "fit_jump_filter", "fit_njode_point", "njode_loss"]
