"""Observation models (likelihoods) and the masked observation site.

Each likelihood samples its own noise parameters (sites ``sigma``, ``nu``,
``phi``) and returns a NumPyro distribution whose batch shape equals the
prediction's. ``observe`` adds the ``obs`` site, honouring a mask of missing
values.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from ..errors import ConfigError, DataError
from .priors import SITE_NU, SITE_OBS, SITE_SIGMA


def _tiny(x):
    return jnp.finfo(jnp.result_type(x)).tiny


def _check_prior(name, prior):
    if prior is not None and not isinstance(prior, dist.Distribution):
        raise ConfigError(f"`{name}` must be a numpyro distribution or None; got {type(prior).__name__}.")


def _known_sigma(value):
    """A known noise scale: None, a positive number, or one positive number per observed column (a tuple)."""
    if value is None:
        return None
    arr = np.asarray(value, dtype=float) if not isinstance(value, str) else None
    if arr is None or arr.ndim > 1 or arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ConfigError(
            f"`sigma` must be a positive finite number or one per observed column (a 1-d sequence); got {value!r}."
        )
    return float(arr) if arr.ndim == 0 else tuple(float(v) for v in arr)


def _check_noise(likelihood):
    """``sigma_prior`` is a distribution or None, and not given together with a known ``sigma``."""
    _check_prior("sigma_prior", likelihood.sigma_prior)
    if likelihood.sigma is not None and likelihood.sigma_prior is not None:
        raise ConfigError(
            f"{type(likelihood).__name__}: give `sigma` (known noise) or `sigma_prior` (learned noise), not both."
        )


def _noise_scale(likelihood, default_prior, scale):
    """The ``sigma`` site drawn from the likelihood's prior, or its known value (no site) when ``sigma`` is set."""
    if likelihood.sigma is None:
        return numpyro.sample(SITE_SIGMA, likelihood.sigma_prior or default_prior)
    sigma = jnp.asarray(likelihood.sigma, dtype=jnp.result_type(scale))
    if sigma.ndim and sigma.shape != jnp.shape(scale):
        raise ConfigError(
            f"`sigma` has {sigma.shape[0]} values but the data have {jnp.shape(scale)[0]} observed columns."
        )
    return jnp.broadcast_to(sigma, jnp.shape(scale))


class AbstractLikelihood(eqx.Module):
    """Base of every observation family: write a subclass for a family bayesode lacks.

    A family implements two methods, both called inside the model function:

    - ``sample_noise(scale) -> dict``: draw its noise parameters with ``numpyro.sample``
      (or return fixed ones). ``scale`` (observed,) is each observed column's standard
      deviation in the data, for weakly informative defaults. Return ``{}`` if there are none.
    - ``distribution(pred, noise) -> numpyro Distribution``: the distribution of the
      observations given the predictions ``pred`` (series, time, observed) and the dict
      from ``sample_noise``; its batch shape must be ``pred``'s.

    ``positive=True`` marks families for positive data (a non-positive value is a data
    error, and the default ``y0`` prior is log-normal); ``counts=True`` marks families for
    non-negative integer counts. ``check_data(ys)`` runs those checks before tracing;
    override it to check more. A family serves one column or all of them: give one per
    column with ``Observation(fn, families=(...))`` or :class:`PerColumn`.

    Examples
    --------
    A Laplace family with one learned scale ``b`` per observed column:

    >>> import jax.random as jr
    >>> import numpyro
    >>> import numpyro.distributions as dist
    >>> from numpyro import handlers
    >>> import bayesode as bo
    >>> class LaplaceNoise(bo.AbstractLikelihood):
    ...     def sample_noise(self, scale):
    ...         return {"b": numpyro.sample("b", dist.HalfNormal(scale).to_event(1))}
    ...
    ...     def distribution(self, pred, noise):
    ...         return dist.Laplace(pred, noise["b"])
    >>> data = bo.make_data([0.0, 1.0, 2.0], [[1.0, 2.0], [1.1, 1.9], [1.2, 1.7]])
    >>> model = bo.make_model(bo.MLPField(2, 4, 1, key=jr.key(0)), likelihood=LaplaceNoise())
    >>> tr = handlers.trace(handlers.seed(model, 0)).get_trace(data.model_data())
    >>> tr["b"]["value"].shape, type(tr["obs"]["fn"].base_dist).__name__
    ((2,), 'Laplace')
    """

    positive: bool = eqx.field(static=True, default=False)
    counts: bool = eqx.field(static=True, default=False)

    @abc.abstractmethod
    def sample_noise(self, scale) -> dict:
        """Draw (or return) the noise parameters; ``scale`` (observed,) is the data's per-column sd."""

    @abc.abstractmethod
    def distribution(self, pred, noise) -> dist.Distribution:
        """The observations' distribution given ``pred`` (series, time, observed) and ``noise``."""

    def check_data(self, ys: np.ndarray, argname: str = "ys") -> None:
        sigma = getattr(self, "sigma", None)
        if isinstance(sigma, tuple) and len(sigma) != ys.shape[-1]:
            raise ConfigError(
                f"{type(self).__name__}(sigma=...) has {len(sigma)} values but `{argname}` has {ys.shape[-1]} "
                "observed columns; give one value per column, or a single number for all."
            )
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
    column's standard deviation in the data. ``sigma=`` a number (or one per
    column) fixes it instead: a known measurement error, no ``sigma`` site.
    """

    sigma_prior: dist.Distribution | None = None
    sigma: float | tuple | None = eqx.field(static=True, default=None, converter=_known_sigma)

    def __check_init__(self):
        _check_noise(self)

    def sample_noise(self, scale):
        default = dist.LogNormal(jnp.log(0.1 * scale), 1.0).to_event(1)
        return {"sigma": _noise_scale(self, default, scale)}

    def distribution(self, pred, noise):
        return dist.Normal(pred, noise["sigma"])


class LogNormalNoise(AbstractLikelihood):
    """``obs ~ LogNormal(log(pred), sigma)``: multiplicative noise for positive data.

    Default ``sigma ~ LogNormal(-1, 1)`` per column (the Stan predator-prey case study).
    ``sigma=`` fixes it, as for :class:`NormalNoise`.
    """

    sigma_prior: dist.Distribution | None = None
    sigma: float | tuple | None = eqx.field(static=True, default=None, converter=_known_sigma)
    positive: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        _check_noise(self)

    def sample_noise(self, scale):
        default = dist.LogNormal(-jnp.ones_like(scale), 1.0).to_event(1)
        return {"sigma": _noise_scale(self, default, scale)}

    def distribution(self, pred, noise):
        return dist.LogNormal(jnp.log(jnp.maximum(pred, _tiny(pred))), noise["sigma"])


class StudentTNoise(AbstractLikelihood):
    """``obs ~ StudentT(nu, pred, sigma)``: robust to outliers.

    ``df=None`` learns ``nu ~ Gamma(2, 0.1)`` (Juárez & Steel); a number fixes it.
    ``sigma=`` fixes the scale, as for :class:`NormalNoise`.
    """

    df: float | None = eqx.field(static=True, default=None)
    sigma_prior: dist.Distribution | None = None
    sigma: float | tuple | None = eqx.field(static=True, default=None, converter=_known_sigma)

    def __check_init__(self):
        _check_noise(self)
        if self.df is not None and not (self.df > 0):
            raise ConfigError(f"`StudentTNoise(df=...)` must be positive or None; got {self.df!r}.")

    def sample_noise(self, scale):
        default = dist.LogNormal(jnp.log(0.1 * scale), 1.0).to_event(1)
        sigma = _noise_scale(self, default, scale)
        nu = self.df if self.df is not None else numpyro.sample(SITE_NU, dist.Gamma(2.0, 0.1))
        return {"sigma": sigma, "nu": nu}

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


class BinomialNoise(AbstractLikelihood):
    """``obs ~ Binomial(total_count, probs=pred)``: positives out of ``total_count`` trials.

    ``pred`` is a probability (e.g. a prevalence ``I / N`` from ``Observation``), clipped
    to [0, 1]; ``total_count`` a positive integer, or one per time point (a tuple). No
    noise parameter.
    """

    total_count: int | tuple = eqx.field(static=True, default=1)
    counts: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        n = np.asarray(self.total_count)
        if n.ndim > 1 or n.size == 0 or not np.issubdtype(n.dtype, np.integer) or np.any(n < 1):
            raise ConfigError(
                f"`BinomialNoise(total_count=...)` must be a positive integer or a tuple of them (one per time); "
                f"got {self.total_count!r}."
            )

    def check_data(self, ys: np.ndarray, argname: str = "ys") -> None:
        super().check_data(ys, argname)
        n = np.asarray(self.total_count)
        if n.ndim and n.shape[0] != ys.shape[-2]:
            raise DataError(
                f"BinomialNoise(total_count=...) has {n.shape[0]} values but `{argname}` has {ys.shape[-2]} times."
            )
        over = np.isfinite(ys) & (ys > np.broadcast_to(n[:, None] if n.ndim else n, ys.shape))
        if np.any(over):
            raise DataError(f"`{argname}` has counts above BinomialNoise(total_count={self.total_count!r}).")

    def sample_noise(self, scale):
        return {}

    def distribution(self, pred, noise):
        n = jnp.asarray(self.total_count)
        n = n[:, None] if n.ndim else n  # one count per time: broadcast over the observed columns
        return dist.Binomial(total_count=n, probs=jnp.clip(pred, 0.0, 1.0))


def observe(likelihood: AbstractLikelihood, pred, noise, ys=None, mask=None, site: str = SITE_OBS):
    """Add the observation site: ``ys ~ likelihood(pred, noise)`` where ``mask`` is True.

    ``pred``, ``ys``, ``mask``: same shape. Masked-out entries add nothing to
    the log density (their ``ys`` may hold any finite placeholder).
    """
    d = likelihood.distribution(pred, noise)
    if mask is not None:
        d = d.mask(mask)
    return numpyro.sample(site, d, obs=ys)
