"""Observation-driven jumps: the neural jump ODE filter for irregular, partly observed series.

Herrera, Krach & Teichmann, "Neural Jump Ordinary Differential Equations"
(ICLR 2021); the same shape as ODE-RNN (Rubanova et al. 2019) and
GRU-ODE-Bayes (De Brouwer et al. 2019). A hidden state ``h(t)``:

- flows by a neural ODE between observation times,
  ``dh/dt = f(h, x_last, t - t_last)``, where ``x_last`` holds the latest
  observed value of each coordinate and ``t_last`` the latest observation time;
- jumps at each observation time ``t_i``, ``h <- u(h, m_i * x_i, m_i)``, where
  the mask ``m_i`` (1 = observed) says which coordinates were seen, so a
  missing coordinate's value never reaches the network;
- is read out, ``readout(h(t))``, as the forecast of the process at ``t`` given
  the observations up to ``t``.

The solve is a ``lax.scan`` over observations; each step is one
:func:`bayesode.solving.solve` from the previous observation time to the next
(zero length when two times coincide), then the jump. So the jumps sit exactly
at the observation times, never at solver steps. States are right-continuous, as
for doses: a forecast at an observation time sees that observation.
An observation whose mask is all False (padding) is a no-op: no jump, and
``x_last``, ``t_last`` stay, so series of different lengths share one shape.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..errors import ConfigError
from .diffeq import SolverConfig, solve


class NeuralJumpODE(eqx.Module):
    """The three networks of a neural jump ODE: vector field, jump (update) and readout.

    Parameters
    ----------
    obs_dim : int
        Number of observed coordinates ``D``.
    hidden_dim : int
        Size ``H`` of the hidden state (default 8).
    width, depth : int
        Hidden width and number of hidden layers of the vector-field and jump
        MLPs (tanh). The readout is linear, ``H -> 2 D``: a forecast mean and
        the raw scale of the forecast spread (see :meth:`forecast_sd`).
    key : PRNGKey
        Initial weights (a start for SVI or a point fit; priors replace them in a model).
    y_loc, y_scale : float or (D,) sequence
        Typical level and size of each coordinate: the networks see
        ``(x - y_loc) / y_scale`` and the readout is mapped back, so weight priors
        of scale 1 suit data of any units.
    t_scale : float
        Typical time between observations; the field sees ``(t - t_last) / t_scale``
        and its output is divided by ``t_scale``.
    anchored : bool
        True (default): after each jump the forecast mean of every observed
        coordinate equals its observation, by construction (:meth:`jump` moves the
        hidden state by the least amount that does this). That is what the
        conditional expectation the filter learns does at an observation without
        measurement noise, the setting of Herrera et al., whose loss asks for it
        through its second term; here it costs no weights and no loss term. False:
        the jump network alone sets the state (the paper's architecture), for
        observations that carry measurement noise the forecast should smooth over.
        Why the default: on the Herrera suite the MAP of our likelihood reaches
        better log densities and forecasts with it (``benchmarks/njode.py
        --unanchored``; docs/decisions.md, 2026-12-06 afternoon).

    Examples
    --------
    >>> import jax.numpy as jnp, jax.random as jr
    >>> net = NeuralJumpODE(2, hidden_dim=4, width=8, key=jr.key(0))
    >>> net.jump(jnp.zeros(4), jnp.ones(2), jnp.array([True, False])).shape
    (4,)
    """

    field_mlp: eqx.nn.MLP
    jump_mlp: eqx.nn.MLP
    readout_linear: eqx.nn.Linear
    obs_dim: int = eqx.field(static=True)
    hidden_dim: int = eqx.field(static=True)
    y_loc: tuple[float, ...] = eqx.field(static=True)
    y_scale: tuple[float, ...] = eqx.field(static=True)
    t_scale: float = eqx.field(static=True)
    anchored: bool = eqx.field(static=True)

    def __init__(self, obs_dim: int, hidden_dim: int = 8, width: int = 16, depth: int = 1, *, key,
                 y_loc=0.0, y_scale=1.0, t_scale: float = 1.0, anchored: bool = True):  # fmt: skip
        for name, value, low in (("obs_dim", obs_dim, 1), ("hidden_dim", hidden_dim, 1), ("width", width, 1),
                                 ("depth", depth, 0)):  # fmt: skip
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"`NeuralJumpODE({name}=...)` must be an int >= {low}; got {value!r}.")
        y_loc = (float(y_loc),) * obs_dim if np.ndim(y_loc) == 0 else tuple(float(v) for v in y_loc)
        y_scale = (float(y_scale),) * obs_dim if np.ndim(y_scale) == 0 else tuple(float(v) for v in y_scale)
        if len(y_loc) != obs_dim or len(y_scale) != obs_dim:
            raise ConfigError(f"`y_loc` and `y_scale` need obs_dim={obs_dim} entries; got {y_loc} and {y_scale}.")
        if not all(np.isfinite(v) for v in y_loc) or not all(s > 0 and np.isfinite(s) for s in y_scale):
            raise ConfigError(f"`y_loc` must be finite and `y_scale` positive; got {y_loc} and {y_scale}.")
        if not (t_scale > 0 and np.isfinite(t_scale)):
            raise ConfigError(f"`NeuralJumpODE(t_scale=...)` must be positive and finite; got {t_scale!r}.")
        if not isinstance(anchored, bool):
            raise ConfigError(f"`NeuralJumpODE(anchored=...)` must be True or False; got {anchored!r}.")
        if anchored and hidden_dim < obs_dim:
            raise ConfigError(f"`NeuralJumpODE(anchored=True)` needs hidden_dim >= obs_dim (the state must be able to "
                              f"hold every observed coordinate); got hidden_dim={hidden_dim}, obs_dim={obs_dim}. "
                              "Raise hidden_dim or pass anchored=False.")  # fmt: skip
        k_field, k_jump, k_out = jax.random.split(key, 3)
        self.field_mlp = eqx.nn.MLP(hidden_dim + obs_dim + 1, hidden_dim, width, depth, jnp.tanh, key=k_field)
        self.jump_mlp = eqx.nn.MLP(hidden_dim + 2 * obs_dim, hidden_dim, width, depth, jnp.tanh, key=k_jump)
        self.readout_linear = eqx.nn.Linear(hidden_dim, 2 * obs_dim, key=k_out)
        self.obs_dim, self.hidden_dim = obs_dim, hidden_dim
        self.y_loc, self.y_scale, self.t_scale = y_loc, y_scale, float(t_scale)
        self.anchored = anchored

    def _standardise(self, x):
        return (x - jnp.asarray(self.y_loc, x.dtype)) / jnp.asarray(self.y_scale, x.dtype)

    def vector_field(self, t, h, args):
        """``dh/dt``; ``args = (x_last (D,), t_last ())``."""
        x_last, t_last = args
        elapsed = jnp.reshape((t - t_last) / self.t_scale, (1,)).astype(h.dtype)
        return self.field_mlp(jnp.concatenate([h, self._standardise(x_last), elapsed])) / self.t_scale

    def jump(self, h, x, mask):
        """The hidden state just after observing ``x`` (D,) where ``mask`` (D,) is True."""
        seen = mask.astype(h.dtype)
        x_std = self._standardise(jnp.where(mask, x, 0.0))
        h_new = self.jump_mlp(jnp.concatenate([h, seen * x_std, seen]))
        if not self.anchored:
            return h_new
        weight, bias = self.readout_linear.weight[: self.obs_dim], self.readout_linear.bias[: self.obs_dim]
        return anchor_state(h_new, weight, bias, x_std, mask)

    def readout(self, h):
        """Forecast mean (D,) of the process from the hidden state."""
        return self._raw_readout(h)[: self.obs_dim] * jnp.asarray(self.y_scale, h.dtype) + jnp.asarray(
            self.y_loc, h.dtype
        )

    def forecast_sd(self, h):
        """Forecast spread (D,): ``softplus(raw) * y_scale``, plus a floor of 1e-3 ``y_scale``."""
        raw = self._raw_readout(h)[self.obs_dim :]
        return (jax.nn.softplus(raw) + 1e-3) * jnp.asarray(self.y_scale, h.dtype)

    def _raw_readout(self, h):
        return self.readout_linear(h)


def anchor_state(h, weight, bias, target, mask, ridge: float = 1e-6):
    """``h`` moved by the least amount (Euclidean) so that ``weight @ h + bias == target`` where ``mask``.

    ``h`` (H,), ``weight`` (D, H), ``bias``, ``target``, ``mask`` (D,). The correction is
    ``W_m^T (W_m W_m^T + ridge I)^{-1} (target - W h - bias)_m`` over the observed rows ``m``
    (the projection onto the affine set; ``ridge`` keeps the solve finite should two rows of a
    weight draw be nearly parallel). Unobserved rows are left free. A row of False returns ``h``.
    """
    rows = jnp.where(mask[:, None], weight, 0.0)
    residual = jnp.where(mask, target - (weight @ h + bias), 0.0)
    gram = rows @ rows.T + jnp.diag(jnp.where(mask, ridge, 1.0))
    return h + rows.T @ jnp.linalg.solve(gram, residual)


class FilterState(NamedTuple):
    """Where a filter stands after some observations; feed it back to continue online.

    ``h`` (hidden,): hidden state just after the latest jump; ``t_last`` (): time of
    the latest (non-padding) observation; ``x_last`` (D,): latest observed value per
    coordinate (0 for one never seen).
    """

    h: jax.Array
    t_last: jax.Array
    x_last: jax.Array


class Filtered(NamedTuple):
    """The filter's path over ``n`` observations.

    ``h_before``/``h_after`` (n, hidden): hidden state just before and just after
    each observation; ``x_last`` (n, D) and ``t_last`` (n,): the filter's memory
    after each one; ``status`` (n,): solver status of the segment ending there
    (0 = ok); ``final``: the :class:`FilterState` after the last observation.
    """

    h_before: jax.Array
    h_after: jax.Array
    x_last: jax.Array
    t_last: jax.Array
    status: jax.Array
    final: FilterState


class _OverSegment(eqx.Module):
    """The field on a segment rescaled to ``u`` in ``[0, 1]``: ``t = t_last + u (t_end - t_last)``.

    ``args = (x_last, t_last, t_end)``.
    """

    net: object

    def __call__(self, u, h, args):
        x_last, t_last, t_end = args
        length = t_end - t_last
        return length * self.net.vector_field(t_last + u * length, h, (x_last, t_last))


def _solve_segment(net, h, t_last, t, x_last, config):
    """One segment ``[t_last, t]``, integrated over ``u`` in ``[0, 1]``.

    Every segment then has the same exact end points (a zero-length one has a zero
    field). Integrated over ``[t_last, t]`` in float32, a step's end can fall an ulp
    short of ``t``, and the remaining sub-``dtmin`` step is reported as a ``dt_min``
    failure by the wrapper's controller (``force_dtmin=False``): about 1 segment in
    500 on the OU suite. With ``SolverConfig(dt0=1.0)`` (the filter's default) the
    first step tries the whole segment.
    """
    one = jnp.ones_like(t)
    return solve(_OverSegment(net), h, one[None], t0=jnp.zeros_like(t), args=(x_last, t_last, t), config=config)


def filter_config() -> SolverConfig:
    """The filter's default solver settings: Tsit5, ``rtol = atol = 1e-4``, 256 steps per segment, ``dt0 = 1``.

    A filter needs forecasts to about the data's precision, not 1e-6. Each segment
    is solved over ``u`` in ``[0, 1]``, so ``dt0 = 1`` first tries the whole segment.
    """
    return SolverConfig(rtol=1e-4, atol=1e-4, max_steps=256, dt0=1.0)


def initial_state(net, t0, dtype=jnp.float32) -> FilterState:
    """The state before any observation: ``h = 0``, ``x_last = 0``, at time ``t0``."""
    return FilterState(jnp.zeros(net.hidden_dim, dtype), jnp.asarray(t0, dtype), jnp.zeros(net.obs_dim, dtype))


def filter_observations(net, ts, ys, mask, *, state: FilterState | None = None,
                        config: SolverConfig | None = None) -> Filtered:  # fmt: skip
    """Run the hidden state through one series of observations. Never raises.

    Parameters
    ----------
    net : NeuralJumpODE, or any object with ``vector_field(t, h, args)``,
        ``jump(h, x, mask)`` and ``hidden_dim``/``obs_dim``.
    ts : (n,) non-decreasing observation times (padding repeats the last time).
    ys : (n, D) observations; entries where ``mask`` is False are ignored
        (NaN allowed there).
    mask : (n, D) bool, True where observed. A row of False is padding.
    state : FilterState, optional
        Start here (online filtering: pass ``previous.final``); default
        :func:`initial_state` at ``ts[0]``.
    config : SolverConfig
        Default :func:`filter_config`.

    Returns
    -------
    Filtered
        A failed segment (``status != 0``) carries a finite placeholder; a
        model turns it into a -inf log density.

    Examples
    --------
    >>> import jax.numpy as jnp, jax.random as jr
    >>> net = NeuralJumpODE(1, hidden_dim=4, width=8, key=jr.key(0))
    >>> out = filter_observations(net, jnp.array([0.0, 0.5]), jnp.ones((2, 1)), jnp.ones((2, 1), bool))
    >>> out.h_after.shape, out.status.tolist()
    ((2, 4), [0, 0])
    """
    config = filter_config() if config is None else config
    ts = jnp.asarray(ts)
    ys = jnp.asarray(ys, ts.dtype)
    mask = jnp.asarray(mask, bool)
    state = initial_state(net, ts[0], ts.dtype) if state is None else state

    def step(carry: FilterState, obs):
        t, y, m = obs
        # Integrate over [t_last, t]: its start is the latest observation, so padding adds nothing.
        sol = _solve_segment(net, carry.h, carry.t_last, t, carry.x_last, config)
        h_before = sol.ys[0]
        seen = jnp.any(m)
        # Padding keeps the carried state as it was (its segment is not part of the path).
        h_after = jnp.where(seen, net.jump(h_before, y, m), carry.h)
        x_last = jnp.where(m, y, carry.x_last)
        t_last = jnp.where(seen, t, carry.t_last)
        new = FilterState(h_after, t_last, x_last)
        return new, (h_before, h_after, x_last, t_last, sol.status)

    final, (h_before, h_after, x_last, t_last, status) = jax.lax.scan(step, state, (ts, ys, mask))
    return Filtered(h_before, h_after, x_last, t_last, status, final)


def hidden_at(net, filtered: Filtered, ts, query_ts, *, state: FilterState | None = None,
              config: SolverConfig | None = None):  # fmt: skip
    """Hidden states at ``query_ts`` (q,) given the observations before or at each.

    Each query time flows from the state after the latest observation at or before
    it (right-continuous), one solve per query, vectorised. Query times before the
    first observation flow from ``state`` (default :func:`initial_state` at ``ts[0]``;
    then a query must not precede ``ts[0]``).

    Returns ``(h (q, hidden), status (q,))``.
    """
    config = filter_config() if config is None else config
    ts = jnp.asarray(ts)
    query_ts = jnp.asarray(query_ts, ts.dtype)
    state = initial_state(net, ts[0], ts.dtype) if state is None else state
    # Index of the latest observation at or before each query time (-1: none yet).
    latest = jnp.searchsorted(ts, query_ts, side="right") - 1

    def one(q, k):
        before = k < 0
        kk = jnp.maximum(k, 0)
        h0 = jnp.where(before, state.h, filtered.h_after[kk])
        t0 = jnp.where(before, state.t_last, filtered.t_last[kk])
        x_last = jnp.where(before, state.x_last, filtered.x_last[kk])
        sol = _solve_segment(net, h0, t0, q, x_last, config)
        return sol.ys[0], sol.status

    return jax.vmap(one)(query_ts, latest)
