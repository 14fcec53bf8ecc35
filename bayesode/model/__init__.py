"""Priors, likelihoods and observation, populations of series, and model assembly (`make_model`, presets)."""

from . import presets
from .assembly import check_model, make_model, shard_series
from .jump_filter import (
    make_jump_filter_model,
    net_from_draw,
    net_sites,
    one_step_forecasts,
    sample_net,
    samples_from_net,
)
from .likelihoods import (
    AbstractLikelihood,
    BinomialNoise,
    LogNormalNoise,
    NegativeBinomialNoise,
    NormalNoise,
    PoissonNoise,
    StudentTNoise,
    observe,
)
from .observation import AbstractObservation, Incidence, Observation, PerColumn, increments
from .plain import PlainModelSpec, numpyro_model, record_solve
from .point_process import event_arrays, point_process_model
from .populations import PopulationPrior, per_series_params
from .priors import HierarchicalNormal, Normal, sample_field
from .spec import ModelSpec

__all__ = [
    "AbstractLikelihood", "AbstractObservation", "BinomialNoise", "check_model", "event_arrays", "HierarchicalNormal",
    "Incidence", "increments", "LogNormalNoise", "make_jump_filter_model", "make_model", "ModelSpec",
    "NegativeBinomialNoise", "net_from_draw", "net_sites", "Normal", "NormalNoise", "numpyro_model", "Observation",
    "observe", "one_step_forecasts", "per_series_params", "PerColumn", "PlainModelSpec", "point_process_model",
    "PoissonNoise", "PopulationPrior", "presets", "record_solve", "sample_field", "sample_net", "samples_from_net", "shard_series", "StudentTNoise",
]
