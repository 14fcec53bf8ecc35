"""Inference: compiled programs, NUTS, SVI, the SVI-then-NUTS workflows, checkpoints, devices."""

from .core import prior_failure_rate, run_neural_linear, run_nuts, run_svi, run_svi_nuts
from .distributed import run_nuts_distributed
from .ensemble import Ensemble, map_points, pool_members, run_ensemble
from .runtime import enable_compilation_cache, use_cpu_cores
from .stacking import PARETO_K_MAX, pointwise_lfo, pointwise_loo, stacking_weights

__all__ = ["enable_compilation_cache", "prior_failure_rate", "run_neural_linear", "run_nuts", "run_nuts_distributed",
           "run_svi", "run_svi_nuts", "use_cpu_cores",
           # members and stacking (full-weight posterior)
           "PARETO_K_MAX", "Ensemble", "map_points", "pointwise_lfo", "pointwise_loo", "pool_members", "run_ensemble",
           "stacking_weights"]
