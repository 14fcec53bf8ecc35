"""The fitted neural jump ODE filter: forecasts with bands, online filtering, InferenceData.

Every number comes from the posterior draws of the weights: each draw is a
filter, run over the observations, and its forecast at a time ``s`` is a Normal
(mean, sd) given the observations up to ``s``. The posterior predictive is the
mixture of these Normals over draws; its quantiles (the bands) are found by
bisection on the mixture's CDF, so no random key is needed.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, replace
from typing import NamedTuple

import arviz as az
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.stats as jst
import numpy as np

from ..datasets import IrregularData, make_irregular
from ..errors import ConfigError, DataError, FitFailedError
from ..model import net_from_draw, one_step_forecasts
from ..solving import FilterState, SolverConfig, filter_observations, hidden_at


class Forecast(NamedTuple):
    """Posterior forecast at ``ts`` (q,): ``mean`` (q, D), the posterior mean of the
    forecast; ``lower``/``upper`` (q, D), the central ``prob`` posterior predictive band;
    ``draws`` (draw, q, D), each draw's forecast mean (the spread of the fit itself)."""

    ts: np.ndarray
    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    draws: np.ndarray


def mixture_quantiles(means, sds, probs, iters: int = 50):
    """Quantiles of an equal-weight Normal mixture over the leading axis.

    ``means``, ``sds``: (draw, ...); ``probs``: sequence of levels in (0, 1).
    Returns (len(probs), ...). Bisection between the widest component bounds.
    """
    lo0 = jnp.min(means - 10 * sds, axis=0)
    hi0 = jnp.max(means + 10 * sds, axis=0)

    def one(p):
        def body(_, bounds):
            lo, hi = bounds
            mid = 0.5 * (lo + hi)
            below = jnp.mean(jst.norm.cdf((mid - means) / sds), axis=0) < p
            return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

        lo, hi = jax.lax.fori_loop(0, iters, body, (lo0, hi0))
        return 0.5 * (lo + hi)

    return jnp.stack([one(p) for p in probs])


def one_step_mixture(net, draws: dict, ts, ys, mask, config, prob: float):
    """The one-step predictive of weight ``draws`` (site -> (draw, ...)): each draw's filter forecast just
    before each observation, a Normal, pooled over the draws whose solve succeeded on every real observation.

    ``ts`` (series, obs), ``ys`` and ``mask`` (series, obs, D) with no NaN. Returns ``(mean, lower, upper,
    failed)``: the mixture's mean and central ``prob`` band, each (series, obs, D) (NaN when every draw
    failed), and ``failed`` (draw,) bool.
    """
    mean, sd, failed = one_step_per_draw(net, draws, jnp.asarray(ts), jnp.asarray(ys), jnp.asarray(mask), config)
    failed = np.asarray(failed)
    if failed.all():
        nan = np.full(np.shape(ys), np.nan)
        return nan, nan, nan, failed
    keep = ~failed
    lower, upper = mixture_quantiles(mean[keep], sd[keep], ((1 - prob) / 2, (1 + prob) / 2))
    return np.asarray(mean[keep].mean(0)), np.asarray(lower), np.asarray(upper), failed


@eqx.filter_jit  # compiled once per net structure, number of draws, data shapes and config
def one_step_per_draw(net, draws, ts, ys, mask, config):
    """Per draw: one-step mean and sd (draw, series, obs, D) and whether a real observation's solve failed."""

    def per_draw(w):
        mean, sd, status, _ = one_step_forecasts(net_from_draw(net, w), ts, ys, mask, config)
        return mean, sd, jnp.any((status != 0) & jnp.any(mask, -1))

    return jax.lax.map(per_draw, draws)


@dataclass
class JumpFilterFit:
    """A fitted Bayesian neural jump ODE.

    ``net``: the architecture (template); ``samples``: site -> (chain, draw, ...)
    weights; ``data``: the :class:`bayesode.datasets.IrregularData` it was fitted to;
    ``config``: the solver settings; ``settings``: how it was fitted (method,
    steps, seed, wall time); ``losses``: SVI losses, if any.
    """

    net: object
    samples: dict
    data: IrregularData
    config: SolverConfig
    settings: dict
    losses: np.ndarray | None = None

    @property
    def num_draws(self) -> int:
        return int(np.prod(next(iter(self.samples.values())).shape[:2]))

    def flat_draws(self, max_draws: int | None = None) -> dict:
        """Weights with the chain and draw axes merged: site -> (draw, ...) arrays.

        ``max_draws`` keeps that many evenly spaced draws (all when None or
        larger than :attr:`num_draws`).
        """
        flat = {k: jnp.asarray(v.reshape((-1,) + v.shape[2:])) for k, v in self.samples.items()}
        if max_draws is not None and max_draws < self.num_draws:
            # Evenly spaced draws: deterministic, and spread over chains.
            idx = np.linspace(0, self.num_draws - 1, max_draws).round().astype(int)
            flat = {k: v[idx] for k, v in flat.items()}
        return flat

    def series_index(self, series) -> int:
        """Index of ``series`` (a name or an index) in ``data``; DataError if there is no such series."""
        if isinstance(series, str):
            if series not in self.data.series_names:
                raise DataError(f"`series`={series!r} is not one of {list(self.data.series_names)}.")
            return self.data.series_names.index(series)
        if not (isinstance(series, (int, np.integer)) and 0 <= series < len(self.data.series_names)):
            raise DataError(f"`series` must be a name or an index below {len(self.data.series_names)}; got {series!r}.")
        return int(series)

    def forecast(self, ts, *, series=0, prob: float = 0.9, max_draws: int | None = 200) -> Forecast:
        """Forecast of ``series`` at times ``ts`` (q,) given the observations up to each time.

        Times past the last observation are forecasts; times inside the data are
        filtered estimates (at an observation time the forecast has seen it).
        ``max_draws`` caps the posterior draws used (evenly spaced).
        """
        i = self.series_index(series)
        d = self.data
        return forecast_from(self.net, self.flat_draws(max_draws), d.ts[i], np.nan_to_num(d.ys[i]), d.mask[i], ts,
                             config=self.config, prob=prob)  # fmt: skip

    def with_observations(self, ts, ys, mask=None, *, series=0) -> JumpFilterFit:
        """The same fit with new observations appended to ``series`` (weights unchanged)."""
        i = self.series_index(series)
        d = self.data
        ts, ys, mask = check_new_observations(d, i, ts, ys, mask)
        n = int(d.lengths[i])
        t_list = [d.ts[j, : d.lengths[j]] for j in range(len(d.lengths))]
        y_list = [d.ys[j, : d.lengths[j]] for j in range(len(d.lengths))]
        m_list = [d.mask[j, : d.lengths[j]] for j in range(len(d.lengths))]
        t_list[i] = np.concatenate([d.ts[i, :n], ts])
        y_list[i] = np.concatenate([d.ys[i, :n], np.where(mask, ys, np.nan)])
        m_list[i] = np.concatenate([d.mask[i, :n], mask])
        new = make_irregular(t_list, y_list, m_list, state_names=d.state_names, series_names=d.series_names)
        return replace(self, data=new)

    def one_step_bands(self, *, prob: float = 0.9, max_draws: int | None = 200):
        """The forecast made just before each observation, every series: ``(mean, lower, upper)``,
        each (series, obs, D): posterior mean and central ``prob`` predictive band. Compare with
        ``data.ys`` where ``data.mask`` is True to check the bands' coverage. Draws whose solve
        fails on a real observation are left out, with a warning saying how many."""
        if not 0 < prob < 1:
            raise ConfigError(f"`prob` must be in (0, 1); got {prob!r}.")
        d = self.data
        mean, lower, upper, failed = one_step_mixture(self.net, self.flat_draws(max_draws), d.ts, np.nan_to_num(d.ys),
                                                      d.mask, self.config, prob)  # fmt: skip
        if failed.all():
            raise FitFailedError(f"one_step_bands: the solve failed on the data for every one of the {failed.size} draws; "
                                 "there is no forecast to give.")  # fmt: skip
        if failed.any():
            warnings.warn(f"one_step_bands: {int(failed.sum())} of {failed.size} draws had a failed solve on the data "
                          "and were left out of the bands.", RuntimeWarning, stacklevel=2)  # fmt: skip
        return mean, lower, upper

    def filter_states(self, *, series=0, max_draws: int | None = 200) -> FilterState:
        """Each draw's filter state after the last observation of ``series`` (leading axis: draw)."""
        i = self.series_index(series)
        d = self.data
        draws = self.flat_draws(max_draws)
        return jax.vmap(lambda w: filter_observations(net_from_draw(self.net, w), d.ts[i], np.nan_to_num(d.ys[i]),
                                                      d.mask[i], config=self.config).final)(draws)  # fmt: skip

    def to_arviz(self, *, grid_size: int = 100, max_draws: int | None = None) -> az.InferenceData:
        """InferenceData: ``posterior`` (weights ``njode.*``); ``posterior_predictive``:
        ``forecast`` (chain, draw, series, time, state), the forecast mean on ``grid_size``
        times spanning the data, and ``obs`` (chain, draw, obs_id, state), the one-step
        forecast mean at each observation; ``log_likelihood``: ``obs`` (obs_id), one
        term per observation (all its observed coordinates), for ``az.loo``;
        ``observed_data``: ``obs`` (obs_id, state), NaN where missing. ``obs_series`` and
        ``obs_time`` coords say where each observation sits. ``max_draws`` thins
        (evenly) when the posterior is large."""
        d = self.data
        draws = self.flat_draws(max_draws)
        nd = next(iter(draws.values())).shape[0]
        chains = 1 if max_draws is not None and max_draws < self.num_draws else next(iter(self.samples.values())).shape[0]
        ts, ys, mask = jnp.asarray(d.ts), jnp.asarray(np.nan_to_num(d.ys)), jnp.asarray(d.mask)
        grid = np.linspace(d.ts.min(), d.ts.max(), grid_size)
        config = self.config

        def per_draw(w):
            net = net_from_draw(self.net, w)
            mean, sd, _, filtered = one_step_forecasts(net, ts, ys, mask, config)
            ll = jnp.sum(jnp.where(mask, jst.norm.logpdf(ys, mean, sd), 0.0), axis=-1)
            h_grid = jax.vmap(lambda f, t: hidden_at(net, f, t, grid, config=config)[0])(filtered, ts)
            return mean, ll, jax.vmap(jax.vmap(net.readout))(h_grid)

        mean, ll, fc = jax.lax.map(per_draw, draws)
        s_idx, r_idx = d.observed_rows()
        shape = lambda a: np.asarray(a).reshape((chains, nd // chains) + a.shape[1:])  # noqa: E731
        posterior = {k: shape(v) for k, v in draws.items()}
        idata = az.from_dict(
            posterior=posterior,
            posterior_predictive={"forecast": shape(fc), "obs": shape(mean[:, s_idx, r_idx])},
            log_likelihood={"obs": shape(ll[:, s_idx, r_idx])},
            observed_data={"obs": d.ys[s_idx, r_idx]},
            coords={"series": list(d.series_names), "time": grid, "state": list(d.state_names),
                    "obs_id": np.arange(s_idx.size)},  # fmt: skip
            dims={"forecast": ["series", "time", "state"], "obs": ["obs_id", "state"]},
        )
        obs_coords = {"obs_series": ("obs_id", np.asarray(d.series_names)[s_idx]),
                      "obs_time": ("obs_id", d.ts[s_idx, r_idx])}  # fmt: skip
        idata.observed_data = idata.observed_data.assign_coords(obs_coords)
        idata.posterior_predictive = idata.posterior_predictive.assign_coords(obs_coords)
        idata.log_likelihood = idata.log_likelihood.assign_coords(obs_coords)
        for group in idata.groups():
            idata[group].attrs["bayesode_settings"] = json.dumps(self.settings, default=str)
        return idata


def check_new_observations(data: IrregularData, series: int, ts, ys, mask):
    """New observations for online filtering, checked: (k,), (k, D), (k, D) bool, times after the data."""
    ts = np.atleast_1d(np.asarray(ts, float))
    ys = np.asarray(ys, float).reshape(ts.shape[0], -1)
    if ys.shape[1] != data.obs_dim:
        raise DataError(f"`ys` must be (new obs, D) with D = {data.obs_dim}; got {ys.shape}.")
    mask = ~np.isnan(ys) if mask is None else np.asarray(mask, bool).reshape(ys.shape)
    last = data.ts[series, data.lengths[series] - 1]
    if ts.ndim != 1 or not np.all(np.isfinite(ts)) or np.any(np.diff(ts) < 0) or ts[0] < last:
        raise DataError(f"`ts` must be finite, non-decreasing and not before the last observation ({last}); "
                        f"got {ts[:5]}.")  # fmt: skip
    if np.any(mask & ~np.isfinite(ys)):
        raise DataError("`ys` is NaN or infinite where `mask` says observed.")
    return ts, ys, mask


@eqx.filter_jit
def _forecast_draws(net, draws, ts, ys, mask, query_ts, config, states):
    """Per draw: forecast mean and sd at ``query_ts``; compiled once per shape (online calls reuse it)."""

    def per_draw(w, state):
        n = net_from_draw(net, w)
        filtered = filter_observations(n, ts, ys, mask, state=state, config=config)
        h, _ = hidden_at(n, filtered, ts, query_ts, state=state, config=config)
        return jax.vmap(n.readout)(h), jax.vmap(n.forecast_sd)(h)

    if states is None:
        return jax.vmap(lambda w: per_draw(w, None))(draws)
    return jax.vmap(per_draw)(draws, states)


def forecast_from(net, draws: dict, ts, ys, mask, query_ts, *, config, prob=0.9, states: FilterState | None = None):
    """Posterior :class:`Forecast` at ``query_ts`` from per-draw weights, after filtering (ts, ys, mask).

    ``states`` (leading axis draw): start each draw's filter there (online filtering).
    """
    if not 0 < prob < 1:
        raise ConfigError(f"`prob` must be in (0, 1); got {prob!r}.")
    query_ts = np.atleast_1d(np.asarray(query_ts, float))
    if query_ts.ndim != 1 or not np.all(np.isfinite(query_ts)):
        raise DataError(f"`ts` must be a 1-d array of finite times; got shape {query_ts.shape}.")
    if states is None and query_ts.min() < ts[0]:
        raise DataError(f"forecast times must not precede the first observation ({ts[0]}); got {query_ts.min()}.")

    means, sds = _forecast_draws(net, draws, jnp.asarray(ts, float), jnp.asarray(ys, float),
                                 jnp.asarray(mask, bool), jnp.asarray(query_ts, float), config, states)  # fmt: skip
    alpha = (1 - prob) / 2
    lower, upper = mixture_quantiles(means, sds, (alpha, 1 - alpha))
    return Forecast(query_ts, np.asarray(means.mean(0)), np.asarray(lower), np.asarray(upper), np.asarray(means))
