"""Observation models (likelihoods) and the masked observation site.

Each likelihood samples its own noise parameters (sites ``sigma``, ``nu``,
``phi``) and returns a NumPyro distribution whose batch shape equals the
prediction's. ``observe`` adds the ``obs`` site, honouring a mask of missing
values.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from ._errors import ConfigError, DataError
from ._priors import SITE_NU, SITE_OBS, SITE_SIGMA


def _tiny(x):
    return jnp.finfo(jnp.result_type(x)).tiny


def _check_prior(name, prior):
    if prior is not None and not isinstance(prior, dist.Distribution):
        raise ConfigError(f"`{name}` must be a numpyro distribution or None; got {type(prior).__name__}.")


class AbstractLikelihood(eqx.Module):
    """Interface: ``sample_noise(scale)``, ``distribution(pred, noise)``, ``check_data(ys)``."""

    positive: bool = eqx.field(static=True, default=False)
    counts: bool = eqx.field(static=True, default=False)

    def check_data(self, ys: np.ndarray, argname: str = "ys") -> None:
        finite = ys[np.isfinite(ys)]
        if self.positive and finite.size and np.any(finite <= 0):
            idx = tuple(int(i) for i in np.argwhere(np.isfinite(ys) & (ys <= 0))[0])
            where = ", ".join(f"{n} {i}" for n, i in zip(("series", "time index", "column")[-len(idx):], idx))
            raise DataError(
                f"`{argname}` has a non-positive value {float(ys[idx])} at ({where}), but {type(self).__name__} "
                "needs positive observations; use bayesode.NormalNoise(), or mark the value missing (NaN)."
            )
        if self.counts and finite.size and (np.any(finite < 0) or np.any(finite != np.round(finite))):
            raise DataError(f"`{argname}` must hold non-negative integer counts for {type(self).__name__}.")


class NormalNoise(AbstractLikelihood):
    """``obs ~ Normal(pred, sigma)``, ``sigma`` per observed column.

    Default ``sigma ~ LogNormal(log(0.1 * scale), 1)`` with ``scale`` the
    column's standard deviation in the data.
    """

    sigma_prior: dist.Distribution | None = None

    def __check_init__(self):
        _check_prior("sigma_prior", self.sigma_prior)

    def sample_noise(self, scale):
        prior = self.sigma_prior or dist.LogNormal(jnp.log(0.1 * scale), 1.0).to_event(1)
        return {"sigma": numpyro.sample(SITE_SIGMA, prior)}

    def distribution(self, pred, noise):
        return dist.Normal(pred, noise["sigma"])


class LogNormalNoise(AbstractLikelihood):
    """``obs ~ LogNormal(log(pred), sigma)``: multiplicative noise for positive data.

    Default ``sigma ~ LogNormal(-1, 1)`` per column (the Stan predator-prey case study).
    """

    sigma_prior: dist.Distribution | None = None
    positive: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        _check_prior("sigma_prior", self.sigma_prior)

    def sample_noise(self, scale):
        prior = self.sigma_prior or dist.LogNormal(-jnp.ones_like(scale), 1.0).to_event(1)
        return {"sigma": numpyro.sample(SITE_SIGMA, prior)}

    def distribution(self, pred, noise):
        return dist.LogNormal(jnp.log(jnp.maximum(pred, _tiny(pred))), noise["sigma"])


class StudentTNoise(AbstractLikelihood):
    """``obs ~ StudentT(nu, pred, sigma)``: robust to outliers.

    ``df=None`` learns ``nu ~ Gamma(2, 0.1)`` (Juárez & Steel); a number fixes it.
    """

    df: float | None = eqx.field(static=True, default=None)
    sigma_prior: dist.Distribution | None = None

    def __check_init__(self):
        _check_prior("sigma_prior", self.sigma_prior)
        if self.df is not None and not (self.df > 0):
            raise ConfigError(f"`StudentTNoise(df=...)` must be positive or None; got {self.df!r}.")

    def sample_noise(self, scale):
        prior = self.sigma_prior or dist.LogNormal(jnp.log(0.1 * scale), 1.0).to_event(1)
        nu = self.df if self.df is not None else numpyro.sample(SITE_NU, dist.Gamma(2.0, 0.1))
        return {"sigma": numpyro.sample(SITE_SIGMA, prior), "nu": nu}

    def distribution(self, pred, noise):
        return dist.StudentT(noise["nu"], pred, noise["sigma"])


class PoissonNoise(AbstractLikelihood):
    """``obs ~ Poisson(pred)`` for counts; no noise parameter."""

    positive: bool = eqx.field(static=True, default=False)
    counts: bool = eqx.field(static=True, default=True)

    def sample_noise(self, scale):
        return {}

    def distribution(self, pred, noise):
        return dist.Poisson(jnp.maximum(pred, _tiny(pred)))


class NegativeBinomialNoise(AbstractLikelihood):
    """``obs ~ NegativeBinomial2(mean=pred, concentration=phi)`` for over-dispersed counts.

    Default ``1/phi ~ Exponential(5)`` (the Stan SIR case study); site ``phi_inv``.
    """

    counts: bool = eqx.field(static=True, default=True)

    def sample_noise(self, scale):
        phi_inv = numpyro.sample("phi_inv", dist.Exponential(5.0))
        return {"phi": 1.0 / phi_inv}

    def distribution(self, pred, noise):
        return dist.NegativeBinomial2(jnp.maximum(pred, _tiny(pred)), noise["phi"])


def observe(likelihood: AbstractLikelihood, pred, noise, ys=None, mask=None, site: str = SITE_OBS):
    """Add the observation site: ``ys ~ likelihood(pred, noise)`` where ``mask`` is True.

    ``pred``, ``ys``, ``mask``: same shape. Masked-out entries add nothing to
    the log density (their ``ys`` may hold any finite placeholder).
    """
    d = likelihood.distribution(pred, noise)
    if mask is not None:
        d = d.mask(mask)
    return numpyro.sample(site, d, obs=ys)
