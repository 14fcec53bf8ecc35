"""bayesode: Bayesian neural ordinary differential equations with diffrax, NumPyro and ArviZ.

The package is built in wings, each importing only the ones below it:
``datasets`` < ``fields`` < ``solve`` < ``model`` < ``results`` < ``infer`` < ``diagnostics`` < ``plots`` < ``cli``.
Every public name is re-exported here, grouped as in ``docs/api.md``.
"""

from . import datasets, models
from .datasets import Data, ModelData, make_data
from .diagnostics import (
    KIND_NAMES,
    FixedPoints,
    LyapunovResult,
    SBCResult,
    chi2_uniformity,
    ecdf_bands,
    fixed_points,
    lyapunov_exponent,
    posterior_stability,
    sbc,
)
from .errors import BayesODEError, ConfigError, DataError, FieldError, InitializationError
from .fields import (
    AntisymmetricField,
    HamiltonianField,
    HybridField,
    LipschitzField,
    MechanisticField,
    MLPField,
    StableField,
    lotka_volterra_field,
    lotka_volterra_rhs,
)
from .infer import (
    enable_compilation_cache,
    prior_failure_rate,
    run_neural_linear,
    run_nuts,
    run_nuts_distributed,
    run_svi,
    run_svi_nuts,
    use_cpu_cores,
)
from .model import (
    AbstractLikelihood,
    HierarchicalNormal,
    LogNormalNoise,
    ModelSpec,
    NegativeBinomialNoise,
    Normal,
    NormalNoise,
    PoissonNoise,
    PopulationPrior,
    StudentTNoise,
    make_model,
    observe,
    per_series_params,
    sample_field,
    shard_series,
)
from .plots import (
    field_draws,
    plot_phase,
    plot_prior_predictive,
    plot_stability,
    plot_trajectories,
    plot_vector_field,
    prior_predictive,
    series_predictions,
)
from .results import Posterior
from .solving import (
    EventSolution,
    ForwardSensitivity,
    Jumps,
    Solution,
    SolverConfig,
    StateEvent,
    doses_from_events,
    solve,
    solve_series,
    solve_with_events,
    solve_with_jumps,
)

__version__ = "0.1.0"

__all__ = [
    # data
    "Data", "ModelData", "datasets", "make_data",
    # vector fields
    "AntisymmetricField", "HamiltonianField", "HybridField", "LipschitzField", "MLPField", "MechanisticField",
    "StableField", "lotka_volterra_field", "lotka_volterra_rhs",
    # solving
    "ForwardSensitivity", "Solution", "SolverConfig", "solve", "solve_series",
    # discontinuities
    "EventSolution", "Jumps", "StateEvent", "doses_from_events", "solve_with_events", "solve_with_jumps",
    # priors, likelihoods, models
    "AbstractLikelihood", "HierarchicalNormal", "LogNormalNoise", "ModelSpec", "NegativeBinomialNoise", "Normal",
    "NormalNoise", "PoissonNoise", "PopulationPrior", "StudentTNoise", "make_model", "models", "observe",
    "per_series_params", "sample_field", "shard_series",
    # inference
    "enable_compilation_cache", "prior_failure_rate", "run_neural_linear", "run_nuts", "run_nuts_distributed",
    "run_svi", "run_svi_nuts", "use_cpu_cores",
    # results
    "Posterior",
    # diagnostics
    "KIND_NAMES", "FixedPoints", "LyapunovResult", "SBCResult", "chi2_uniformity", "ecdf_bands", "fixed_points",
    "lyapunov_exponent", "posterior_stability", "sbc",
    # plots
    "field_draws", "plot_phase", "plot_prior_predictive", "plot_stability", "plot_trajectories", "plot_vector_field",
    "prior_predictive", "series_predictions",
    # errors
    "BayesODEError", "ConfigError", "DataError", "FieldError", "InitializationError",
]
