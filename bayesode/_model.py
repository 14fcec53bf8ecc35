"""Compose field, priors, solve and observation into a plain NumPyro model function.

``make_model(...)`` returns ``model(data, *, predict_ts=None)`` where ``data``
is a :class:`ModelData` (from ``Data.model_data()``). Sites:

- field parameters (see :mod:`bayesode._priors`);
- ``y0`` (series, state): the state at each series' ``t0``;
- noise sites of the likelihood (``sigma``, ``nu``, ``phi_inv``);
- ``obs`` (series, time, observed): the masked likelihood;
- deterministic ``trajectory`` (series, time, state);
- with ``predict_ts`` (series, time'): ``trajectory_predict`` and ``obs_predict``.

A failed solve adds ``-inf`` through the factor ``solver_failed``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field as dc_field

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from . import _failures
from ._data import Data, ModelData
from ._errors import ConfigError, DataError, FieldError
from ._fields import field_state_dim
from ._observe import AbstractLikelihood, NormalNoise, observe
from ._priors import SITE_Y0, Normal, check_param_priors, sample_field
from ._solve import STATUS_OK, SolverConfig, solve_series


@dataclass(frozen=True, eq=False)
class ModelSpec:
    """Everything that defines a Bayesian ODE model (see :func:`make_model`)."""

    field: eqx.Module
    weight_prior: eqx.Module
    param_priors: Mapping
    y0_prior: dist.Distribution | None
    likelihood: AbstractLikelihood
    solver: SolverConfig
    observation_fn: Callable | None
    args: object = None
    recipe: dict | None = dc_field(default=None)

    @property
    def state_dim(self) -> int:
        return field_state_dim(self.field)

    def check_data(self, data: Data) -> None:
        """Python-level checks of data against the model, before tracing."""
        expected = self.num_observed
        if data.num_observed != expected:
            what = "observation_fn outputs" if self.observation_fn else "field.state_dim"
            raise DataError(
                f"data have {data.num_observed} observed column(s) {list(data.state_names)}, but the model's "
                f"{what} = {expected}; pass `ys` with shape (time, {expected})."
            )
        self.likelihood.check_data(data.ys)
        if self.y0_prior is None and self.observation_fn is None:
            never = [n for k, n in enumerate(data.state_names) if not data.mask[:, :, k].any(axis=1).all()]
            if never:
                raise DataError(
                    f"state(s) {never} are never observed in some series, so the default y0 prior (centred on the "
                    "first observation) is undefined; give `y0_prior=` to make_model."
                )

    @property
    def num_observed(self) -> int:
        if self.observation_fn is None:
            return self.state_dim
        out = jax.eval_shape(self.observation_fn, jax.ShapeDtypeStruct((self.state_dim,), jnp.result_type(float)))
        return int(out.shape[0])


def _check_field_output(field, state_dim, args):
    try:
        out = jax.eval_shape(lambda y: field(0.0, y, args), jax.ShapeDtypeStruct((state_dim,), jnp.result_type(float)))
    except Exception as e:
        raise FieldError(f"calling `field(t, y, args)` with y of shape ({state_dim},) failed: {e}") from e
    if not hasattr(out, "shape") or out.shape != (state_dim,):
        raise FieldError(
            f"`field(t, y, args)` must return dy/dt with the shape of y, ({state_dim},); "
            f"got {getattr(out, 'shape', type(out).__name__)}."
        )
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise FieldError(f"`field(t, y, args)` must return floats; got dtype {out.dtype}. Use float arithmetic.")


def _first_observed(ys, mask):
    """(series, observed) first observed value of each column; 1.0 where a column is never observed."""
    idx = jnp.argmax(mask, axis=1)  # (series, observed)
    first = jnp.take_along_axis(ys, idx[:, None, :], axis=1)[:, 0, :]
    return jnp.where(jnp.any(mask, axis=1), first, 1.0)


def _column_scale(ys, mask):
    """(observed,) std of observed values per column, falling back to |mean| then 1."""
    m = mask.astype(ys.dtype)
    n = jnp.maximum(jnp.sum(m, axis=(0, 1)), 1.0)
    mean = jnp.sum(ys * m, axis=(0, 1)) / n
    std = jnp.sqrt(jnp.sum(((ys - mean[None, None, :]) * m) ** 2, axis=(0, 1)) / n)
    return jnp.where(std > 0, std, jnp.where(jnp.abs(mean) > 0, jnp.abs(mean), 1.0))


def make_model(
    field,
    *,
    weight_prior=None,
    param_priors: Mapping | None = None,
    y0_prior: dist.Distribution | None = None,
    likelihood: AbstractLikelihood | None = None,
    solver: SolverConfig | None = None,
    observation_fn: Callable | None = None,
    args=None,
    recipe: dict | None = None,
):
    """Build a plain NumPyro model function for a Bayesian ODE.

    Parameters
    ----------
    field : eqx.Module
        Vector field ``f(t, y, args)`` with a ``state_dim`` attribute. Fields see
        time relative to the earliest series start (``Data.t_ref``).
    weight_prior : Normal or HierarchicalNormal
        Prior on neural weights and biases (default ``Normal(1.0)``).
    param_priors : dict of str to numpyro distribution
        One prior per mechanistic parameter (required if the field has any).
    y0_prior : numpyro distribution with shape () or (state,), optional
        Prior on each series' initial state. Default: centred on the first
        observation of each series (``LogNormal(log y_first, 1)`` for positive
        likelihoods, ``Normal(y_first, column std)`` otherwise).
    likelihood : default ``NormalNoise()``
    solver : SolverConfig
    observation_fn : callable ``y (state,) -> (observed,)``, optional
        What is measured, if not the full state (e.g. ``lambda y: y[1:2]``).
    args : pytree passed to the field as ``args``.

    Returns
    -------
    model : callable ``model(data: ModelData, *, predict_ts=None)`` with ``model.spec``.

    Examples
    --------
    >>> import jax.random as jr
    >>> from numpyro import handlers
    >>> from bayesode import MLPField, make_data
    >>> data = make_data([0.0, 1.0, 2.0], [[1.0, 2.0], [1.1, 1.9], [1.2, 1.7]])
    >>> model = make_model(MLPField(2, 4, 1, key=jr.key(0)))
    >>> tr = handlers.trace(handlers.seed(model, 0)).get_trace(data.model_data())
    >>> tr["y0"]["value"].shape, tr["obs"]["value"].shape
    ((1, 2), (1, 3, 2))
    """
    state_dim = field_state_dim(field)
    weight_prior = Normal(1.0) if weight_prior is None else weight_prior
    if not hasattr(weight_prior, "sample"):
        raise ConfigError(f"`weight_prior` must be bayesode.Normal(...) or HierarchicalNormal(...); got {weight_prior!r}.")
    param_priors = check_param_priors(field, param_priors)
    likelihood = NormalNoise() if likelihood is None else likelihood
    if not isinstance(likelihood, AbstractLikelihood):
        raise ConfigError(f"`likelihood` must be a bayesode likelihood such as LogNormalNoise(); got {likelihood!r}.")
    solver = SolverConfig() if solver is None else solver
    if not isinstance(solver, SolverConfig):
        raise ConfigError(f"`solver` must be a bayesode.SolverConfig; got {type(solver).__name__}.")
    if y0_prior is not None:
        if not isinstance(y0_prior, dist.Distribution):
            raise ConfigError(f"`y0_prior` must be a numpyro distribution; got {type(y0_prior).__name__}.")
        shape = tuple(y0_prior.batch_shape + y0_prior.event_shape)
        if shape not in ((), (state_dim,)):
            raise ConfigError(f"`y0_prior` has shape {shape}; expected () or (state,) = ({state_dim},).")
    if observation_fn is None and y0_prior is None:
        pass
    elif observation_fn is not None and y0_prior is None:
        raise ConfigError("with `observation_fn`, the data do not pin down the initial state: give `y0_prior=`.")
    _check_field_output(field, state_dim, args)

    spec = ModelSpec(field, weight_prior, param_priors, y0_prior, likelihood, solver, observation_fn, args, recipe)

    def model(data: ModelData, *, predict_ts=None, chain_id=None, iteration=None):
        num_series = data.ts.shape[0]
        f = sample_field(spec.field, spec.weight_prior, spec.param_priors)
        if spec.y0_prior is not None:
            d = spec.y0_prior
            d = d.expand((state_dim,)) if not (d.batch_shape + d.event_shape) else d
            y0_dist = d.to_event(1) if d.event_shape == () else d
        else:
            first = _first_observed(data.ys, data.mask)
            if spec.likelihood.positive or spec.likelihood.counts:
                y0_dist = dist.LogNormal(jnp.log(jnp.maximum(first, 1e-3)), 1.0).to_event(1)
            else:
                y0_dist = dist.Normal(first, _column_scale(data.ys, data.mask)).to_event(1)
        with numpyro.plate("series", num_series, dim=-1):
            y0 = numpyro.sample(SITE_Y0, y0_dist)
        y0 = jnp.broadcast_to(y0, (num_series, state_dim)).astype(data.ts.dtype)
        noise = spec.likelihood.sample_noise(_column_scale(data.ys, data.mask))

        sol = solve_series(f, y0, data.ts, data.t0, args=spec.args, config=spec.solver)
        numpyro.factor("solver_failed", jnp.where(jnp.all(sol.status == STATUS_OK), 0.0, -jnp.inf))
        if chain_id is not None:
            _failures.report(chain_id, iteration, sol.status, (eqx.filter(f, eqx.is_inexact_array), y0))
        numpyro.deterministic("solver_status", sol.status)
        numpyro.deterministic("trajectory", sol.ys)
        pred = sol.ys if spec.observation_fn is None else jax.vmap(jax.vmap(spec.observation_fn))(sol.ys)
        observe(spec.likelihood, pred, noise, data.ys, data.mask)

        if predict_ts is not None:
            new = solve_series(f, y0, predict_ts, data.t0, args=spec.args, config=spec.solver)
            numpyro.deterministic("trajectory_predict", new.ys)
            numpyro.deterministic("predict_status", new.status)
            pred_new = new.ys if spec.observation_fn is None else jax.vmap(jax.vmap(spec.observation_fn))(new.ys)
            numpyro.sample("obs_predict", spec.likelihood.distribution(pred_new, noise))

    model.spec = spec
    return model
