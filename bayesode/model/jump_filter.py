"""The Bayesian neural jump ODE filter as a NumPyro model.

Priors on every weight of the vector field, the jump network and the readout
(:class:`bayesode.solving.NeuralJumpODE`); each observation is scored by the
forecast made just before it:

``x_i[m_i] ~ Normal(mean(h(t_i-)), sd(h(t_i-)))``, coordinates with ``m_i`` False left out,

where ``h(t_i-)`` has seen every observation before ``t_i`` but not ``x_i``. The
log density is the sum of these one-step-ahead terms (a prequential
likelihood), recorded per observation (site ``obs``, shape (series, obs)) for LOO.

**How this relates to the paper's loss.** Herrera et al. train by minimising
``mean_i (|x_i - Y(t_i)| + |Y(t_i) - Y(t_i-)|)^2`` over the observed
coordinates, whose minimiser has ``Y(t_i-) = E[X(t_i) | observations before t_i]``
(the L2 projection) and ``Y(t_i) = x_i``. With a fixed spread, minus our log
likelihood is ``sum_i |m_i * (x_i - Y(t_i-))|^2 / (2 sd^2)`` plus a constant:
the same L2 one-step-ahead regression, whose minimiser is the same conditional
expectation. The second term has no place in a likelihood; what it asks for,
``Y(t_i) = x_i``, the default net does by construction
(``NeuralJumpODE(anchored=True)``: the jump moves the hidden state by the least
amount that puts the forecast on each observed coordinate). The
learned spread ``sd(h)`` makes the likelihood a proper forecast distribution
whose width can grow with the time since the last observation, so posterior
predictive bands can be calibrated; the posterior over weights adds the
uncertainty of the fit itself.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from ..caching import shared_by_structure
from ..solving import SolverConfig, filter_config, filter_observations
from .priors import SITE_OBS, Normal

NET_PREFIX = "njode"
SITE_FAILURES = "solver_failures"


def net_sites(net) -> list[tuple[str, tuple[int, ...]]]:
    """``[(site name, shape)]`` of every weight of ``net`` that gets a prior, in tree order."""
    params, _ = eqx.partition(net, eqx.is_inexact_array)
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    return [(NET_PREFIX + jax.tree_util.keystr(path), tuple(leaf.shape)) for path, leaf in flat]


def sample_net(net, weight_prior=None):
    """Inside a NumPyro model: ``net`` with every weight replaced by a draw from ``weight_prior``."""
    weight_prior = Normal(1.0) if weight_prior is None else weight_prior
    params, static = eqx.partition(net, eqx.is_inexact_array)
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    new = [
        jnp.asarray(weight_prior.sample(NET_PREFIX + jax.tree_util.keystr(path), tuple(leaf.shape)), leaf.dtype)
        for path, leaf in flat
    ]
    return eqx.combine(jax.tree_util.tree_unflatten(treedef, new), static)


def net_from_draw(net, draw: dict):
    """``net`` with its weights set from one draw (a dict of site -> array, as a posterior holds)."""
    params, static = eqx.partition(net, eqx.is_inexact_array)
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    new = [jnp.asarray(draw[NET_PREFIX + jax.tree_util.keystr(p)], leaf.dtype) for p, leaf in flat]
    return eqx.combine(jax.tree_util.tree_unflatten(treedef, new), static)


def samples_from_net(net) -> dict:
    """``net``'s weights as a posterior of one draw: site -> (1, 1, ...) array (e.g. for a point fit)."""
    params, _ = eqx.partition(net, eqx.is_inexact_array)
    return {name: jnp.asarray(leaf)[None, None] for (name, _), leaf in zip(net_sites(net), jax.tree.leaves(params))}


def one_step_forecasts(net, ts, ys, mask, config: SolverConfig | None = None):
    """Forecast mean and spread just before each observation, for (series, obs) arrays.

    Returns ``(mean, sd, status, filtered)``: mean and sd (series, obs, D),
    status (series, obs), and the per-series :class:`bayesode.solving.Filtered`.
    """
    filtered = jax.vmap(lambda t, y, m: filter_observations(net, t, y, m, config=config))(ts, ys, mask)
    mean = jax.vmap(jax.vmap(net.readout))(filtered.h_before)
    sd = jax.vmap(jax.vmap(net.forecast_sd))(filtered.h_before)
    return mean, sd, filtered.status, filtered


def make_jump_filter_model(net, *, weight_prior=None, config: SolverConfig | None = None):
    """A NumPyro model ``model(ts, ys, mask, latents_only=False)`` of irregular, partly observed series.

    Parameters
    ----------
    net : NeuralJumpODE
        The architecture (its weights are only a template: every one gets a prior).
    weight_prior : bayesode.Normal or bayesode.HierarchicalNormal
        Prior on every weight (default ``Normal(1.0)``: the networks see
        standardised inputs, see ``NeuralJumpODE(y_loc=, y_scale=, t_scale=)``).
    config : SolverConfig
        Default :func:`bayesode.solving.filter_config`.

    The returned model takes ``ts`` (series, obs), ``ys`` (series, obs, D) with any
    finite value where ``mask`` (series, obs, D) is False. Sites: ``njode.<keypath>``
    per weight, ``obs`` (series, obs) observed, and the factor ``solver_failures``
    (-inf when a segment's solve failed where it mattered). ``latents_only=True`` stops after the weights'
    sites (no solve): what an autoguide or a sampler sets itself up on.

    Examples
    --------
    >>> import jax.numpy as jnp, jax.random as jr
    >>> from numpyro import handlers
    >>> from bayesode.solving import NeuralJumpODE
    >>> model = make_jump_filter_model(NeuralJumpODE(1, hidden_dim=4, width=8, key=jr.key(0)))
    >>> ts, ys, mask = jnp.array([[0.0, 0.5]]), jnp.ones((1, 2, 1)), jnp.ones((1, 2, 1), bool)
    >>> tr = handlers.trace(handlers.seed(model, 0)).get_trace(ts, ys, mask)
    >>> tr["obs"]["fn"].batch_shape
    (1, 2)
    """
    config = filter_config() if config is None else config
    weight_prior = Normal(1.0) if weight_prior is None else weight_prior  # built here: its check runs untraced
    # The prior replaces every weight, so only their shapes matter: nets of one structure and settings share
    # the function, and so the inference wing's compiled programs (a refit traces nothing).
    return shared_by_structure("jump_filter_model", net, jax.tree_util.tree_map(eqx.is_inexact_array, net),
                               (weight_prior, config), lambda: _make_model(net, weight_prior, config))  # fmt: skip


def _make_model(net, weight_prior, config: SolverConfig):
    def model(ts, ys, mask, latents_only=False):
        sampled = sample_net(net, weight_prior)
        if latents_only:  # the weights' sites alone: what a guide's or a sampler's set-up needs, without a solve
            return
        mean, sd, status, _ = one_step_forecasts(sampled, ts, ys, mask, config)
        # A failed segment of a real observation makes the draw impossible (a rejected proposal).
        failed = jnp.any((status != 0) & jnp.any(mask, -1))
        numpyro.factor(SITE_FAILURES, jnp.where(failed, -jnp.inf, 0.0))
        safe_ys = jnp.where(mask, ys, mean)
        numpyro.sample(SITE_OBS, dist.Normal(mean, sd).mask(mask).to_event(1), obs=safe_ys)

    return model

