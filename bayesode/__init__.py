"""bayesode: Bayesian neural ordinary differential equations with diffrax, NumPyro and ArviZ."""

from . import datasets, models  # noqa: E402  (imports the layers above)
from ._cache import enable_compilation_cache, use_cpu_cores
from ._calibration import SBCResult, chi2_uniformity, ecdf_bands, sbc
from ._data import Data, ModelData, make_data
from ._distributed import run_nuts_distributed
from ._errors import BayesODEError, ConfigError, DataError, FieldError, InitializationError
from ._fields import HybridField, MechanisticField, MLPField, lotka_volterra_field, lotka_volterra_rhs
from ._infer import prior_failure_rate, run_neural_linear, run_nuts, run_svi, run_svi_nuts
from ._jumps import EventSolution, Jumps, StateEvent, doses_from_events, solve_with_events, solve_with_jumps
from ._model import ModelSpec, PopulationPrior, make_model, per_series_params, shard_series
from ._observe import (
    LogNormalNoise,
    NegativeBinomialNoise,
    NormalNoise,
    PoissonNoise,
    StudentTNoise,
    observe,
)
from ._plots import (
    field_draws,
    plot_phase,
    plot_prior_predictive,
    plot_trajectories,
    plot_vector_field,
    prior_predictive,
    series_predictions,
)
from ._priors import HierarchicalNormal, Normal, sample_field
from ._results import Posterior
from ._solve import ForwardSensitivity, Solution, SolverConfig, solve, solve_series
from ._stability import (
    KIND_NAMES,
    FixedPoints,
    LyapunovResult,
    fixed_points,
    lyapunov_exponent,
    plot_stability,
    posterior_stability,
)
from ._structured import AntisymmetricField, HamiltonianField, LipschitzField, StableField

__version__ = "0.1.0"

__all__ = [
    "EventSolution",
    "Jumps",
    "PopulationPrior",
    "SBCResult",
    "StateEvent",
    "chi2_uniformity",
    "doses_from_events",
    "ecdf_bands",
    "field_draws",
    "per_series_params",
    "plot_phase",
    "plot_prior_predictive",
    "plot_vector_field",
    "prior_predictive",
    "sbc",
    "series_predictions",
    "solve_with_events",
    "solve_with_jumps",
    "AntisymmetricField",
    "FixedPoints",
    "HamiltonianField",
    "KIND_NAMES",
    "LipschitzField",
    "LyapunovResult",
    "StableField",
    "fixed_points",
    "lyapunov_exponent",
    "plot_stability",
    "posterior_stability",
    "BayesODEError",
    "ConfigError",
    "Data",
    "DataError",
    "FieldError",
    "ForwardSensitivity",
    "HierarchicalNormal",
    "HybridField",
    "InitializationError",
    "LogNormalNoise",
    "MLPField",
    "MechanisticField",
    "ModelData",
    "ModelSpec",
    "NegativeBinomialNoise",
    "Normal",
    "NormalNoise",
    "PoissonNoise",
    "Solution",
    "SolverConfig",
    "StudentTNoise",
    "lotka_volterra_field",
    "lotka_volterra_rhs",
    "enable_compilation_cache",
    "datasets",
    "make_data",
    "models",
    "make_model",
    "observe",
    "plot_trajectories",
    "Posterior",
    "prior_failure_rate",
    "run_neural_linear",
    "run_nuts",
    "run_nuts_distributed",
    "run_svi",
    "run_svi_nuts",
    "sample_field",
    "shard_series",
    "solve",
    "solve_series",
    "use_cpu_cores",
]
