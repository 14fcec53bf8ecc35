"""Observation operators: what is measured, as any function of a series' trajectory, and one family per column.

``make_model(..., observation=...)`` takes an :class:`AbstractObservation`:

- :class:`Observation` ``(fn, families)``: ``fn(ts, ys, y0, field)`` maps one series'
  solution at its observation times to the observed columns, with the parameters at hand
  (``field.params[...]``) and the initial state for differences;
- :class:`Incidence` ``(state, scale)``: new counts between consecutive observation times
  from a cumulative (or, with a negative scale, a depleting) compartment, summed over
  ``state`` when several are named.

``families`` is one likelihood for every column or one per column; several become a
:class:`PerColumn` likelihood whose ``obs`` site keeps one log-likelihood per observed
point (so LOO works) and whose noise sites are named ``col<k>_<site>`` (``col1_sigma``).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.distributions import constraints

from ..errors import ConfigError, DataError, FieldError
from .likelihoods import AbstractLikelihood, NormalNoise, PoissonNoise


def increments(ys, y0):
    """Differences between consecutive rows of ``ys`` (time, ...), the first taken from ``y0`` (...).

    The count of new events in each interval ``(t_{i-1}, t_i]`` from a cumulative state,
    with ``t_{-1}`` the series start ``t0`` where the state is ``y0``.

    >>> import jax.numpy as jnp
    >>> increments(jnp.array([1.0, 3.0, 6.0]), jnp.array(0.0)).tolist()
    [1.0, 2.0, 3.0]
    """
    previous = jnp.concatenate([jnp.asarray(y0, ys.dtype)[None], ys[:-1]], axis=0)
    return ys - previous


class ColumnsDistribution(dist.Distribution):
    """Independent columns, each with its own distribution of batch shape (..., 1).

    ``log_prob`` keeps one value per entry (series, time, column) and ``sample`` returns
    floats of ``dtype`` (count families' integers converted), so one ``obs`` site holds
    every column.
    """

    arg_constraints: dict = {}
    support = constraints.real

    def __init__(self, parts: Sequence[dist.Distribution], dtype):
        self.parts = tuple(parts)
        self.dtype = dtype
        batch = jnp.broadcast_shapes(*(p.batch_shape for p in self.parts))
        super().__init__(batch_shape=batch[:-1] + (len(self.parts),), event_shape=())

    def sample(self, key, sample_shape=()):
        keys = jax.random.split(key, len(self.parts))
        shape = tuple(sample_shape) + self.batch_shape[:-1] + (1,)
        draws = [jnp.broadcast_to(p.sample(k, sample_shape).astype(self.dtype), shape) for p, k in zip(self.parts, keys)]
        return jnp.concatenate(draws, axis=-1)

    def log_prob(self, value):
        return jnp.concatenate([p.log_prob(value[..., k : k + 1]) for k, p in enumerate(self.parts)], axis=-1)


class PerColumn(AbstractLikelihood):
    """One likelihood family per observed column, e.g. ``PerColumn((PoissonNoise(), LogNormalNoise()))``.

    Column ``k``'s noise sites are scoped ``col<k>_`` (``col1_sigma`` has shape (1,)); its
    data are checked by its own family. ``positive`` / ``counts`` hold when they hold for
    every family.
    """

    families: tuple

    def __init__(self, families: Sequence[AbstractLikelihood]):
        families = tuple(families) if isinstance(families, (list, tuple)) else None
        if not families or not all(isinstance(f, AbstractLikelihood) for f in families):
            raise ConfigError(
                "`families` must be a likelihood or a non-empty sequence of them (one per observed column), "
                f"such as (PoissonNoise(), LogNormalNoise()); got {families!r}."
            )
        self.families = families
        self.positive = all(f.positive for f in families)
        self.counts = all(f.counts for f in families)

    def check_data(self, ys: np.ndarray, argname: str = "ys") -> None:
        if ys.shape[-1] != len(self.families):
            raise DataError(
                f"{len(self.families)} likelihood families (one per column) but `{argname}` has "
                f"{ys.shape[-1]} observed columns."
            )
        for k, family in enumerate(self.families):
            family.check_data(ys[..., k : k + 1], f"{argname}[..., {k}]")

    def sample_noise(self, scale):
        return tuple(
            handlers.scope(family.sample_noise, prefix=f"col{k}", divider="_")(scale[k : k + 1])
            for k, family in enumerate(self.families)
        )

    def distribution(self, pred, noise):
        parts = [family.distribution(pred[..., k : k + 1], n) for k, (family, n) in enumerate(zip(self.families, noise))]
        return ColumnsDistribution(parts, jnp.result_type(pred))


def _as_likelihood(families) -> AbstractLikelihood:
    if families is None:
        return NormalNoise()
    if isinstance(families, AbstractLikelihood):
        return families
    return PerColumn(families)


class AbstractObservation(eqx.Module):
    """What is measured: ``obs(ts, ys, y0, field) -> (time, observed)`` for one series, and its ``likelihood``.

    ``ts`` (time,) are the observation times (relative to ``Data.t_ref``), ``ys`` (time, state)
    the solution there, ``y0`` (state,) the state at the series start and ``field`` the
    sampled vector field (its mechanistic parameters in ``field.params``, per series when
    they vary by series).
    """

    likelihood: eqx.AbstractVar[AbstractLikelihood]

    @abc.abstractmethod
    def __call__(self, ts, ys, y0, field):
        """(time, observed) predictions of the observations of one series."""

    def num_observed(self, state_dim: int, field) -> int:
        """Observed columns, from the output shape; raises ``FieldError`` on a bad function."""
        dtype = jnp.result_type(float)
        try:
            out = jax.eval_shape(
                lambda ts, ys, y0: self(ts, ys, y0, field),
                jax.ShapeDtypeStruct((3,), dtype),
                jax.ShapeDtypeStruct((3, state_dim), dtype),
                jax.ShapeDtypeStruct((state_dim,), dtype),
            )
        except Exception as e:
            raise FieldError(
                f"calling the observation with ts (3,), ys (3, {state_dim}), y0 ({state_dim},) failed: {e}"
            ) from e
        if not hasattr(out, "shape") or len(out.shape) != 2 or out.shape[0] != 3:
            raise FieldError(
                f"the observation must return (time, observed) for ys (time, state); got "
                f"{getattr(out, 'shape', type(out).__name__)} for ys of shape (3, {state_dim})."
            )
        return int(out.shape[1])


class Observation(AbstractObservation):
    """Observe any function of a series' solution: ``fn(ts, ys, y0, field) -> (time, observed)``.

    Parameters
    ----------
    fn : callable
        ``ts`` (time,), ``ys`` (time, state), ``y0`` (state,), ``field`` -> (time, observed).
        Sums over compartments, scalings by a parameter (``field.params["rho"]``) and
        differences between times (:func:`increments`) all fit here.
    families : likelihood or sequence of likelihoods, optional
        One family for every column, or one per column (:class:`PerColumn`).
        Default ``NormalNoise()``.

    Examples
    --------
    Reported cases (Poisson, a share ``rho`` of new infections) next to a log-normal
    prevalence reading of compartment 1:

    >>> import jax.numpy as jnp
    >>> import bayesode as bo
    >>> def measured(ts, ys, y0, field):
    ...     cases = field.params["rho"] * increments(-ys[:, 0], -y0[0])
    ...     return jnp.stack([cases, ys[:, 1]], axis=-1)
    >>> obs = Observation(measured, families=(bo.PoissonNoise(), bo.LogNormalNoise()))
    >>> type(obs.likelihood).__name__
    'PerColumn'
    """

    fn: Callable = eqx.field(static=True)
    likelihood: AbstractLikelihood

    def __init__(self, fn: Callable, families=None):
        if not callable(fn):
            raise ConfigError(f"`Observation(fn=...)` must be a function (ts, ys, y0, field) -> (time, observed); got {fn!r}.")
        self.fn = fn
        self.likelihood = _as_likelihood(families)

    def __call__(self, ts, ys, y0, field):
        return self.fn(ts, ys, y0, field)


class Incidence(AbstractObservation):
    """New counts per observation interval from a cumulative compartment: ``scale * (C(t_i) - C(t_{i-1}))``.

    ``C`` is the state ``state`` (an index), or the sum of the states named (a tuple), and
    ``C(t_{-1})`` its value at the series start ``t0``: give ``make_data(..., t0=...)`` before
    the first observation (the start of the first reporting interval), or the first count is 0. A depleting compartment counts with a
    negative ``scale`` (new infections from susceptibles: ``Incidence(0, scale=-1.0)``);
    ``scale`` also turns fractions into counts (``-763.0`` for a population of 763).

    Parameters
    ----------
    state : int or tuple of int
    scale : float, default 1.0
    family : likelihood, default ``PoissonNoise()``
        E.g. ``NegativeBinomialNoise()`` for over-dispersed counts.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> inc = Incidence(0, scale=-1.0)
    >>> inc(None, jnp.array([[9.0], [6.0], [5.0]]), jnp.array([10.0]), None).tolist()
    [[1.0], [3.0], [1.0]]
    """

    states: tuple = eqx.field(static=True)
    scale: float = eqx.field(static=True)
    likelihood: AbstractLikelihood

    def __init__(self, state, scale: float = 1.0, family: AbstractLikelihood | None = None):
        states = (state,) if isinstance(state, (int, np.integer)) else state
        if not isinstance(states, tuple) or not states or not all(isinstance(s, (int, np.integer)) for s in states):
            raise ConfigError(f"`Incidence(state=...)` must be a state index or a tuple of them; got {state!r}.")
        if not (isinstance(scale, (int, float)) and np.isfinite(scale) and scale != 0):
            raise ConfigError(f"`Incidence(scale=...)` must be a finite non-zero number; got {scale!r}.")
        if family is not None and not isinstance(family, AbstractLikelihood):
            raise ConfigError(f"`Incidence(family=...)` must be a bayesode likelihood; got {family!r}.")
        self.states = tuple(int(s) for s in states)
        self.scale = float(scale)
        self.likelihood = PoissonNoise() if family is None else family

    def __call__(self, ts, ys, y0, field):
        idx = jnp.asarray(self.states)
        total = jnp.sum(ys[:, idx], axis=-1)
        return (self.scale * increments(total, jnp.sum(y0[idx])))[:, None]

    def num_observed(self, state_dim: int, field) -> int:
        bad = [s for s in self.states if not 0 <= s < state_dim]
        if bad:
            raise ConfigError(f"`Incidence(state=...)` names state(s) {bad}; the field has {state_dim} states.")
        return 1
