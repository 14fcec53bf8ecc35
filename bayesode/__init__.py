"""bayesode: Bayesian neural ordinary differential equations with diffrax, NumPyro and ArviZ.

The package is built in wings, each importing only the ones below it:
``datasets`` < ``fields`` < ``solving`` < ``model`` < ``results`` < ``infer`` < ``diagnostics`` < ``plots`` < ``cli``.
Every public name is re-exported here, grouped as in ``docs/api.md``.

Names are imported on first use (PEP 562 module ``__getattr__``): ``import bayesode`` and the
command line's help and error paths do not pay for JAX, NumPyro and diffrax. ``bo.run_nuts``
imports the inference wing (and so JAX) the first time it is looked up.
"""

import importlib
import warnings

# ArviZ 0.23 prints a notice of its 1.x refactor once a day, on the first import of each day (a stamp in the
# user's cache). ArviZ 1.x needs Python >= 3.12 and bayesode keeps to 0.23's InferenceData API, so the notice
# is noise in our output, and it made a command-line test's clean-stderr check depend on the date.
warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing a major refactor", category=FutureWarning)

# Where each public name lives: wing (a subpackage or base module) -> names it exports.
_EXPORTS = {
    "errors": ("BayesODEError", "ConfigError", "DataError", "FieldError", "FitFailedError", "InitializationError"),
    "datasets": ("Data", "ModelData", "make_data", "make_irregular", "make_event_sequences", "load_events"),
    "fields": ("AntisymmetricField", "HamiltonianField", "HybridField", "LipschitzField", "MLPField",
               "MechanisticField", "StableField", "lotka_volterra_field", "lotka_volterra_rhs"),
    "solving": ("EventSolution", "ForwardSensitivity", "Jumps", "Solution", "SolverConfig", "StateEvent",
                "doses_from_events", "solve", "solve_series", "solve_with_events", "solve_with_jumps", "NeuralJumpODE",
                "filter_observations", "NeuralJumpProcess", "simulate_events", "solve_event_jumps"),
    "model": ("AbstractLikelihood", "HierarchicalNormal", "LogNormalNoise", "ModelSpec", "NegativeBinomialNoise",
              "Normal", "NormalNoise", "PoissonNoise", "PopulationPrior", "StudentTNoise", "make_model", "observe",
              "per_series_params", "sample_field", "shard_series",
    # your own NumPyro model in bayesode's inference
    "PlainModelSpec", "numpyro_model", "record_solve",
    # observation operators
    "AbstractObservation", "BinomialNoise", "Incidence", "Observation", "PerColumn", "increments", "AbstractObservation", "BinomialNoise", "Incidence",
              "Observation", "PerColumn", "increments", "make_jump_filter_model", "point_process_model",
              "numpyro_model", "record_solve", "PlainModelSpec"),
    "results": ("Posterior", "JumpFilterFit"),
    "infer": ("enable_compilation_cache", "prior_failure_rate", "run_neural_linear", "run_nuts",
              "run_nuts_distributed", "run_svi", "run_svi_nuts", "use_cpu_cores", "run_ensemble", "stacking_weights",
              "fit_jump_filter", "filter_online", "fit_njode_point", "fit_events", "forecast_events",
              "held_out_log_likelihood", "intensity_bands"),
    "diagnostics": ("KIND_NAMES", "FixedPoints", "LyapunovResult", "SBCResult", "chi2_uniformity", "ecdf_bands",
                    "fixed_points", "lyapunov_exponent", "posterior_stability", "sbc", "fit_full_weight",
                    "function_space_report", "time_rescaling_test", "posterior_time_rescaling"),
    "plots": ("field_draws", "plot_intensity", "plot_jump_forecast", "plot_phase", "plot_prior_predictive", "plot_stability",
              "plot_trajectories", "plot_vector_field", "prior_predictive", "series_predictions"),
}  # fmt: skip
_WING_OF = {name: wing for wing, names in _EXPORTS.items() for name in names}
_SUBMODULES = ("datasets", "models")  # public names that are modules themselves

__version__ = "0.1.0"

__all__ = [
    # data
    "Data", "ModelData", "datasets", "make_data", "make_irregular",
    # vector fields
    "AntisymmetricField", "HamiltonianField", "HybridField", "LipschitzField", "MLPField", "MechanisticField",
    "StableField", "lotka_volterra_field", "lotka_volterra_rhs",
    # solving
    "ForwardSensitivity", "Solution", "SolverConfig", "solve", "solve_series",
    # discontinuities
    "EventSolution", "Jumps", "StateEvent", "doses_from_events", "solve_with_events", "solve_with_jumps",
    # jump ODE regression: event-driven (point processes with a neural intensity)
    "NeuralJumpProcess", "fit_events", "forecast_events", "held_out_log_likelihood", "intensity_bands",
    "load_events", "make_event_sequences", "plot_intensity", "point_process_model", "posterior_time_rescaling",
    "simulate_events", "solve_event_jumps",
    # jump ODE regression: observation-driven (irregular, partly observed series)
    "JumpFilterFit", "NeuralJumpODE", "filter_observations", "filter_online", "fit_jump_filter", "fit_njode_point",
    "make_jump_filter_model", "plot_jump_forecast",
    # priors, likelihoods, models
    "AbstractLikelihood", "HierarchicalNormal", "LogNormalNoise", "ModelSpec", "NegativeBinomialNoise", "Normal",
    "NormalNoise", "PoissonNoise", "PopulationPrior", "StudentTNoise", "make_model", "models", "observe",
    "per_series_params", "sample_field", "shard_series",
    # your own NumPyro model in bayesode's inference
    "PlainModelSpec", "numpyro_model", "record_solve",
    # observation operators
    "AbstractObservation", "BinomialNoise", "Incidence", "Observation", "PerColumn", "increments",
    # inference
    "enable_compilation_cache", "prior_failure_rate", "run_neural_linear", "run_nuts", "run_nuts_distributed",
    "run_svi", "run_svi_nuts", "use_cpu_cores",
    # every weight Bayesian: members from MAP fits, stacking
    "fit_full_weight", "function_space_report", "run_ensemble", "stacking_weights",
    # results
    "Posterior",
    # diagnostics
    "KIND_NAMES", "FixedPoints", "LyapunovResult", "SBCResult", "chi2_uniformity", "ecdf_bands", "fixed_points",
    "lyapunov_exponent", "posterior_stability", "sbc", "time_rescaling_test",
    # plots
    "field_draws", "plot_phase", "plot_prior_predictive", "plot_stability", "plot_trajectories", "plot_vector_field",
    "prior_predictive", "series_predictions",
    # errors
    "BayesODEError", "ConfigError", "DataError", "FieldError", "FitFailedError", "InitializationError",
]  # fmt: skip


def __getattr__(name: str):
    """Import a public name's wing on first use and cache the name here (PEP 562)."""
    if name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    elif name in _WING_OF:
        value = getattr(importlib.import_module(f".{_WING_OF[name]}", __name__), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
