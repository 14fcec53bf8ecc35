"""Vector fields: equinox modules called as ``f(t, y, args) -> dy/dt``.

Every inexact array leaf of a field is a random quantity once the field is
handed to a model (see :mod:`bayesode.model.priors`); configuration that fixes
shapes lives in static fields.  Mechanistic parameters live in a ``params``
dict so that their sample sites get readable names (``alpha``, ``beta``...).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ..errors import ConfigError

_ACTIVATIONS: dict[str, Callable] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "softplus": jax.nn.softplus,
    "gelu": jax.nn.gelu,
    "swish": jax.nn.swish,
    "elu": jax.nn.elu,
}


def _positive_tuple(name: str, value, state_dim: int) -> tuple[float, ...]:
    values = (float(value),) * state_dim if np.ndim(value) == 0 else tuple(float(v) for v in value)
    if len(values) != state_dim:
        raise ConfigError(f"`{name}` has {len(values)} entries; expected state_dim={state_dim} (one per state).")
    if not all(v > 0 and jnp.isfinite(v) for v in values):
        raise ConfigError(f"`{name}` must be positive and finite; got {values}.")
    return values


FORMS = ("additive", "multiplicative", "per-capita")


class MLPField(eqx.Module):
    """Neural vector field ``dy/dt = NN(y)`` with optional data scaling.

    Forms:

    - ``"additive"``: ``dy/dt = y_scale * mlp(y / y_scale) / t_scale``.
    - ``"multiplicative"`` (Kolmogorov form): ``dy/dt = y * mlp(log(y / y_scale)) / t_scale``.
      Positive states stay positive, so this is a form for populations and
      concentrations.
    - ``"per-capita"``: ``dy/dt = y * mlp(y / y_scale) / t_scale``: each state's
      per-capita rate is a function of the (scaled) states, as in generalised
      Lotka-Volterra models. Positive states stay positive, and Lotka-Volterra
      is the case where the network is linear (a tanh network near its
      linear regime, i.e. small weights), so a small weight prior means
      "close to Lotka-Volterra".

    Parameters
    ----------
    state_dim : int
        Number of states ``D``.
    width, depth : int
        Hidden width and number of hidden layers (``depth=0`` is linear).
    activation : str
        One of ``tanh, relu, softplus, gelu, swish, elu``.
    key : PRNGKey
        Initial weights (only used for shapes and as an SVI start; the prior
        replaces them inside a model).
    y_scale, t_scale : float or sequence
        Typical size of each state and of the time span. Set from data so the
        network sees O(1) inputs; leaving them at 1 on data of size 100 makes
        the weight prior meaningless.
    time_dependent : bool
        Feed ``t / t_scale`` to the network as an extra input.
    fixed_layers : int
        Leading layers held at their current weights (no prior, not sampled):
        ``fixed_layers=depth`` with weights from a point fit is the
        "neural-linear" model (Bayesian last layer; Snoek et al. 2015). See
        :func:`bayesode.models.freeze_hidden`.

    Examples
    --------
    >>> import jax.numpy as jnp, jax.random as jr
    >>> f = MLPField(2, width=8, depth=1, key=jr.key(0))
    >>> f(0.0, jnp.ones(2), None).shape
    (2,)
    """

    layers: tuple[eqx.nn.Linear, ...]
    state_dim: int = eqx.field(static=True)
    activation: str = eqx.field(static=True)
    form: str = eqx.field(static=True)
    y_scale: tuple[float, ...] = eqx.field(static=True)
    t_scale: float = eqx.field(static=True)
    time_dependent: bool = eqx.field(static=True)
    fixed_layers: int = eqx.field(static=True)

    def __init__(
        self,
        state_dim: int,
        width: int = 16,
        depth: int = 2,
        activation: str = "tanh",
        *,
        key,
        form: str = "additive",
        y_scale=1.0,
        t_scale: float = 1.0,
        time_dependent: bool = False,
        fixed_layers: int = 0,
    ):
        if not isinstance(state_dim, int) or state_dim < 1:
            raise ConfigError(f"`state_dim` must be a positive int; got {state_dim!r}.")
        if not isinstance(width, int) or width < 1:
            raise ConfigError(f"`width` must be a positive int; got {width!r}.")
        if not isinstance(depth, int) or depth < 0:
            raise ConfigError(f"`depth` must be a non-negative int; got {depth!r}.")
        if activation not in _ACTIVATIONS:
            raise ConfigError(f"`activation`={activation!r} is unknown; choose one of {sorted(_ACTIVATIONS)}.")
        if form not in FORMS:
            raise ConfigError(f"`form`={form!r} is unknown; choose one of {FORMS}.")
        if not (float(t_scale) > 0):
            raise ConfigError(f"`t_scale` must be positive; got {t_scale!r}.")
        if not isinstance(fixed_layers, int) or not 0 <= fixed_layers <= depth:
            raise ConfigError(
                f"`fixed_layers` must be an int from 0 to depth={depth} (the output layer stays random); "
                f"got {fixed_layers!r}."
            )
        in_size = state_dim + int(time_dependent)
        sizes = [in_size] + [width] * depth + [state_dim]
        keys = jr.split(key, len(sizes) - 1)
        self.layers = tuple(eqx.nn.Linear(a, b, key=k) for a, b, k in zip(sizes[:-1], sizes[1:], keys))
        self.state_dim = state_dim
        self.activation = activation
        self.form = form
        self.y_scale = _positive_tuple("y_scale", y_scale, state_dim)
        self.t_scale = float(t_scale)
        self.time_dependent = time_dependent
        self.fixed_layers = fixed_layers

    def network(self, x):
        """The bare MLP, ``(D [+1],) -> (D,)``."""
        act = _ACTIVATIONS[self.activation]
        for layer in self.layers[:-1]:
            x = act(layer(x))
        return self.layers[-1](x)

    def __call__(self, t, y, args):
        y_scale = jnp.asarray(self.y_scale, dtype=y.dtype)
        if self.form == "multiplicative":
            x = jnp.log(jnp.maximum(y, jnp.finfo(y.dtype).tiny) / y_scale)
        else:
            x = y / y_scale
        if self.time_dependent:
            x = jnp.concatenate([x, jnp.reshape(jnp.asarray(t, y.dtype) / self.t_scale, (1,))])
        out = self.network(x)
        if self.form == "additive":
            return y_scale * out / self.t_scale
        return y * out / self.t_scale


class MechanisticField(eqx.Module):
    """A known law ``dy/dt = fn(t, y, params, args)`` with named parameters.

    Parameters
    ----------
    fn : callable
        ``fn(t, y, params, args) -> dy/dt`` where ``params`` is a dict of
        scalars or arrays keyed by the names in ``params``.
    params : mapping of str to float or array
        Parameter names and initial (not prior) values. Each becomes a sample
        site of the same name inside a model.
    state_dim : int
        Number of states.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> decay = MechanisticField(lambda t, y, p, a: -p["k"] * y, {"k": 0.5}, state_dim=1)
    >>> decay(0.0, jnp.ones(1), None)
    Array([-0.5], dtype=float32)
    """

    fn: Callable = eqx.field(static=True)
    params: dict
    state_dim: int = eqx.field(static=True)

    def __init__(self, fn: Callable, params: Mapping, state_dim: int):
        if not callable(fn):
            raise ConfigError(f"`fn` must be callable fn(t, y, params, args); got {type(fn).__name__}.")
        if not isinstance(state_dim, int) or state_dim < 1:
            raise ConfigError(f"`state_dim` must be a positive int; got {state_dim!r}.")
        for name in params:
            if not isinstance(name, str) or not name.isidentifier():
                raise ConfigError(f"parameter name {name!r} in `params` must be a Python identifier.")
        self.fn = fn
        self.params = {k: jnp.asarray(v, dtype=float) for k, v in params.items()}
        self.state_dim = state_dim

    def __call__(self, t, y, args):
        return self.fn(t, y, self.params, args)


class HybridField(eqx.Module):
    """Universal differential equation: known law plus a neural correction.

    ``dy/dt = mechanistic(t, y) + correction(t, y)``. Put a tight prior on
    the correction's weights (e.g. ``Normal(0.1)``) so the law explains what
    it can and the network only what it cannot.

    Examples
    --------
    >>> import jax.numpy as jnp, jax.random as jr
    >>> law = MechanisticField(lambda t, y, p, a: -p["k"] * y, {"k": 0.5}, state_dim=1)
    >>> f = HybridField(law, MLPField(1, 4, 1, key=jr.key(0)))
    >>> f(0.0, jnp.ones(1), None).shape
    (1,)
    """

    mechanistic: MechanisticField
    correction: eqx.Module
    state_dim: int = eqx.field(static=True)

    def __init__(self, mechanistic: MechanisticField, correction: eqx.Module):
        dims = (getattr(mechanistic, "state_dim", None), getattr(correction, "state_dim", None))
        if dims[0] != dims[1]:
            raise ConfigError(f"`mechanistic` has state_dim={dims[0]} but `correction` has {dims[1]}; they must match.")
        self.mechanistic = mechanistic
        self.correction = correction
        self.state_dim = mechanistic.state_dim

    def __call__(self, t, y, args):
        return self.mechanistic(t, y, args) + self.correction(t, y, args)


def lotka_volterra_rhs(t, y, params, args):
    """Lotka-Volterra: prey ``u``, predator ``v``.

    ``du/dt = (alpha - beta v) u``, ``dv/dt = (-gamma + delta u) v``.
    """
    u, v = y[0], y[1]
    du = (params["alpha"] - params["beta"] * v) * u
    dv = (-params["gamma"] + params["delta"] * u) * v
    return jnp.stack([du, dv])


def lotka_volterra_field(alpha=1.0, beta=0.05, gamma=1.0, delta=0.05) -> MechanisticField:
    """The Lotka-Volterra law as a :class:`MechanisticField` (states: prey, predator)."""
    return MechanisticField(
        lotka_volterra_rhs, {"alpha": alpha, "beta": beta, "gamma": gamma, "delta": delta}, state_dim=2
    )


def field_state_dim(field) -> int:
    """``state_dim`` of a field, for fields that declare it."""
    dim = getattr(field, "state_dim", None)
    if dim is None:
        raise ConfigError(
            f"field {type(field).__name__} has no `state_dim` attribute; add one (a static int) "
            "so bayesode can check data against it."
        )
    return int(dim)
