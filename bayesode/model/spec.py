"""The model specification (:class:`ModelSpec`) and the checks of a model's parts before tracing."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro.distributions as dist

from ..datasets.data import Data
from ..errors import ConfigError, DataError, FieldError
from ..fields.basic import field_state_dim
from ..solving.diffeq import SolverConfig
from ..solving.events import StateEvent
from ..solving.jumps import Jumps
from .likelihoods import AbstractLikelihood
from .observation import AbstractObservation


@dataclass(frozen=True, eq=False)
class ModelSpec:
    """Everything that defines a Bayesian ODE model (see :func:`make_model`)."""

    field: eqx.Module
    weight_prior: eqx.Module
    param_priors: Mapping
    y0_prior: dist.Distribution | None
    likelihood: AbstractLikelihood
    solver: SolverConfig
    observation_fn: Callable | AbstractObservation | None  # make_model's observation_fn= or observation=
    args: object = None
    recipe: dict | None = dc_field(default=None)
    y0: jax.Array | None = None
    jumps: Jumps | None = None
    events: StateEvent | None = None
    series_params: Mapping = dc_field(default_factory=dict)
    series_devices: tuple | None = None
    # The precision fits of this model run in unless told otherwise ("float32" or "float64").
    precision: str = "float32"

    @property
    def state_dim(self) -> int:
        return field_state_dim(self.field)

    def trajectory_names(self, data: Data) -> list[str]:
        """Names of the trajectory's states: the data's columns, or ``x0, x1, ...`` behind an observation."""
        return list(data.state_names) if self.observation_fn is None else [f"x{i}" for i in range(self.state_dim)]

    def check_data(self, data: Data) -> None:
        """Python-level checks of data against the model, before tracing."""
        expected = self.num_observed
        if data.num_observed != expected:
            what = "field.state_dim"
            if self.observation_fn is not None:
                new = isinstance(self.observation_fn, AbstractObservation)
                what = "observation outputs" if new else "observation_fn outputs"
            raise DataError(
                f"data have {data.num_observed} observed column(s) {list(data.state_names)}, but the model's "
                f"{what} = {expected}; pass `ys` with shape (time, {expected})."
            )
        self.likelihood.check_data(data.ys)
        if self.jumps is not None:
            self.jumps.check(self.state_dim, data.num_series)
        if self.y0 is not None and self.y0.ndim == 2 and self.y0.shape[0] != data.num_series:
            raise DataError(
                f"`y0` has {self.y0.shape[0]} rows (one per series) but the data have {data.num_series} series."
            )
        if self.y0_prior is None and self.y0 is None and self.observation_fn is None:
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
        if isinstance(self.observation_fn, AbstractObservation):
            return self.observation_fn.num_observed(self.state_dim, self.field)
        out = jax.eval_shape(self.observation_fn, jax.ShapeDtypeStruct((self.state_dim,), jnp.result_type(float)))
        return int(out.shape[0])


def check_observation_fn(observation_fn, state_dim):
    if not callable(observation_fn):
        raise ConfigError(f"`observation_fn` must be a function y (state,) -> (observed,); got {observation_fn!r}.")
    try:
        out = jax.eval_shape(observation_fn, jax.ShapeDtypeStruct((state_dim,), jnp.result_type(float)))
    except Exception as e:
        raise FieldError(f"calling `observation_fn(y)` with y of shape ({state_dim},) failed: {e}") from e
    if not hasattr(out, "shape") or len(out.shape) != 1:
        raise FieldError(
            f"`observation_fn(y)` must return a 1-D array (observed,); got "
            f"{getattr(out, 'shape', type(out).__name__)} for y of shape ({state_dim},)."
        )


def check_field_output(field, state_dim, args):
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


def first_observed(ys, mask):
    """(series, observed) first observed value of each column; 1.0 where a column is never observed."""
    idx = jnp.argmax(mask, axis=1)  # (series, observed)
    first = jnp.take_along_axis(ys, idx[:, None, :], axis=1)[:, 0, :]
    return jnp.where(jnp.any(mask, axis=1), first, 1.0)


def column_scale(ys, mask):
    """(observed,) std of observed values per column, falling back to |mean| then 1."""
    m = mask.astype(ys.dtype)
    n = jnp.maximum(jnp.sum(m, axis=(0, 1)), 1.0)
    mean = jnp.sum(ys * m, axis=(0, 1)) / n
    std = jnp.sqrt(jnp.sum(((ys - mean[None, None, :]) * m) ** 2, axis=(0, 1)) / n)
    return jnp.where(std > 0, std, jnp.where(jnp.abs(mean) > 0, jnp.abs(mean), 1.0))
