"""Priors, likelihoods and observation, populations of series, and model assembly (`make_model`, presets)."""

from . import presets
from .assembly import check_model, make_model, shard_series
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
from .populations import PopulationPrior, per_series_params
from .priors import HierarchicalNormal, Normal, sample_field
from .spec import ModelSpec

__all__ = ["AbstractLikelihood", "AbstractObservation", "BinomialNoise", "HierarchicalNormal", "Incidence", "LogNormalNoise", "ModelSpec", "NegativeBinomialNoise",
           "Normal", "NormalNoise", "Observation", "PerColumn", "PoissonNoise", "PopulationPrior", "StudentTNoise", "check_model", "increments",
           "make_model", "observe", "per_series_params", "presets", "sample_field", "shard_series"]

from .jump_filter import make_jump_filter_model, net_from_draw, net_sites, one_step_forecasts, sample_net

__all__ += ["make_jump_filter_model", "net_from_draw", "net_sites", "one_step_forecasts", "sample_net"]
