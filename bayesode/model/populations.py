"""Mechanistic parameters that vary by series around a population value.

:class:`PopulationPrior` samples the per-series values inside a model;
``per_series_params`` rebuilds them from a fit. The field is solved per series
with its own values: ``strip_params`` takes the named leaves out of the field
before its priors are drawn, ``with_params`` puts one series' values back.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from ..errors import ConfigError
from .priors import _mechanistic_name, field_sites

LINKS = ("log", "identity")


class PopulationPrior(eqx.Module):
    """A mechanistic parameter that varies by series around a population value.

    For series ``s``: ``g(theta_s) ~ Normal(g(pop), pop_sd)`` with ``pop ~ center``,
    ``pop_sd ~ spread`` and link ``g`` (``log`` or ``identity``).

    Non-centred by default: ``g(theta_s) = g(pop) + pop_sd * z_s`` with
    ``z_s ~ Normal(0, 1)`` sampled instead of ``theta_s``, which avoids the
    funnel between ``pop_sd`` and the series values when the data say little
    about each series. When every series has enough data to pin its own value
    (e.g. a dense concentration profile per subject), the non-centred
    posterior becomes a narrow curved ridge and NUTS needs tiny steps; use
    ``centered=True`` there (sample ``theta_s`` directly).

    Parameters
    ----------
    center : numpyro distribution, shape ()
        Prior on the population value in natural units (the population median
        for ``link="log"``), e.g. ``dist.LogNormal(0, 1)``. Site ``<name>_pop``.
    spread : numpyro distribution, shape (), positive
        Prior on the between-series standard deviation on the link scale (for
        ``log``: roughly the coefficient of variation), e.g. ``dist.HalfNormal(0.5)``.
        Site ``<name>_pop_sd``.
    link : {"log", "identity"}
        Default ``"log"`` (positive parameters such as rates).
    centered : bool
        Sample the series values themselves (site ``<name>`` (series,)) instead
        of the offsets ``<name>_z``. Default False.

    Examples
    --------
    >>> import numpyro.distributions as dist
    >>> PopulationPrior(dist.LogNormal(0.0, 1.0), dist.HalfNormal(0.5)).link
    'log'
    """

    center: dist.Distribution
    spread: dist.Distribution
    link: str = eqx.field(static=True, default="log")
    centered: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        for argname in ("center", "spread"):
            d = getattr(self, argname)
            if not isinstance(d, dist.Distribution):
                raise ConfigError(f"`PopulationPrior({argname}=...)` must be a numpyro distribution; got {d!r}.")
            if tuple(d.batch_shape + d.event_shape) != ():
                raise ConfigError(
                    f"`PopulationPrior({argname}=...)` must be a scalar distribution; got shape "
                    f"{tuple(d.batch_shape + d.event_shape)}."
                )
        if self.link not in LINKS:
            raise ConfigError(f"`PopulationPrior(link=...)` must be one of {LINKS}; got {self.link!r}.")
        if not isinstance(self.centered, bool):
            raise ConfigError(f"`PopulationPrior(centered=...)` must be True or False; got {self.centered!r}.")

    def sample(self, name: str, num_series: int):
        """Inside a model: sites ``<name>_pop``, ``<name>_pop_sd`` and ``<name>_z`` (deterministic
        ``<name>``), or ``<name>`` itself when centred; returns the (series,) values."""
        pop = numpyro.sample(f"{name}_pop", self.center)
        sd = numpyro.sample(f"{name}_pop_sd", self.spread)
        with numpyro.plate("series", num_series, dim=-1):
            if self.centered:
                d = dist.LogNormal(jnp.log(pop), sd) if self.link == "log" else dist.Normal(pop, sd)
                return numpyro.sample(name, d)
            z = numpyro.sample(f"{name}_z", dist.Normal(0.0, 1.0))
        return numpyro.deterministic(name, self.combine(pop, sd, z))

    def combine(self, pop, sd, z):
        """Series values from the population value, spread and standard-normal offsets (broadcasting)."""
        if self.link == "log":
            return jnp.exp(jnp.log(pop) + sd * z)
        return pop + sd * z


def check_series_params(field, series_params, param_priors) -> dict:
    """Validate ``series_params`` (before tracing); tuples become :class:`PopulationPrior`."""
    out = {}
    scalars = {n: shape for n, shape, mech in field_sites(field) if mech}
    for name, prior in dict(series_params or {}).items():
        if name not in scalars:
            raise ConfigError(
                f"`series_params` names {name!r}, which is not a mechanistic parameter of the field; "
                f"its parameters are {sorted(scalars)}."
            )
        if scalars[name] != ():
            raise ConfigError(
                f"`series_params['{name}']`: only scalar parameters can vary by series; it has shape {scalars[name]}."
            )
        if name in (param_priors or {}):
            raise ConfigError(
                f"{name!r} is in both `param_priors` and `series_params`; a per-series parameter takes its prior "
                "from `series_params` only, so remove it from `param_priors`."
            )
        if isinstance(prior, tuple) and len(prior) == 2:
            center = prior[0]
            positive = isinstance(center, dist.Distribution) and center.support is dist.constraints.positive
            prior = PopulationPrior(center, prior[1], link="log" if positive else "identity")
        if not isinstance(prior, PopulationPrior):
            raise ConfigError(
                f"`series_params['{name}']` must be PopulationPrior(center, spread) or a (center, spread) tuple of "
                f"numpyro distributions; got {prior!r}."
            )
        out[name] = prior
    return out


def strip_params(field, names):
    """``field`` with the named mechanistic leaves made non-random placeholders (Python 0.0)."""
    return jax.tree_util.tree_map_with_path(lambda p, x: 0.0 if _mechanistic_name(p) in names else x, field)


def with_params(field, values: dict):
    """``field`` with the named mechanistic leaves set to ``values[name]``."""
    return jax.tree_util.tree_map_with_path(lambda p, x: values.get(_mechanistic_name(p), x), field)


def per_series_params(posterior) -> dict:
    """Per-series draws of every ``series_params`` parameter: name -> (chain, draw, series) array.

    Rebuilt from the population sites (``<p>_pop``, ``<p>_pop_sd``, ``<p>_z``)
    of a fitted :class:`bayesode.Posterior` (taken as they are when centred).
    """
    out = {}
    for name, prior in posterior.model.spec.series_params.items():
        s = posterior.samples
        if prior.centered:
            out[name] = np.asarray(s[name])
            continue
        out[name] = np.asarray(
            prior.combine(s[f"{name}_pop"][..., None], s[f"{name}_pop_sd"][..., None], s[f"{name}_z"])
        )
    return out
