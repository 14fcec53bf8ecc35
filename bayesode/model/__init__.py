"""Priors, likelihoods and observation, populations of series, and model assembly (`make_model`, presets)."""

from . import presets
from .assembly import ModelSpec, PopulationPrior, check_model, make_model, per_series_params, shard_series
from .likelihoods import (
    AbstractLikelihood,
    LogNormalNoise,
    NegativeBinomialNoise,
    NormalNoise,
    PoissonNoise,
    StudentTNoise,
    observe,
)
from .point_process import event_arrays, point_process_model
from .priors import HierarchicalNormal, Normal, sample_field

__all__ = ["AbstractLikelihood", "HierarchicalNormal", "LogNormalNoise", "ModelSpec", "NegativeBinomialNoise",
           "Normal", "NormalNoise", "PoissonNoise", "PopulationPrior", "StudentTNoise", "check_model", "make_model",
           "observe", "per_series_params", "presets", "sample_field", "shard_series"]
__all__ += ["event_arrays", "point_process_model"]
