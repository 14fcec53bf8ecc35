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
from .priors import HierarchicalNormal, Normal, sample_field

__all__ = ["AbstractLikelihood", "HierarchicalNormal", "LogNormalNoise", "ModelSpec", "NegativeBinomialNoise",
           "Normal", "NormalNoise", "PoissonNoise", "PopulationPrior", "StudentTNoise", "check_model", "make_model",
           "observe", "per_series_params", "presets", "sample_field", "shard_series"]

from .jump_filter import (
    make_jump_filter_model,
    net_from_draw,
    net_sites,
    one_step_forecasts,
    sample_net,
    samples_from_net,
)

__all__ += ["make_jump_filter_model", "net_from_draw", "net_sites", "one_step_forecasts", "sample_net", "samples_from_net"]
