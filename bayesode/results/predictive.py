"""Predictive draws: one compiled path for the prior, the posterior and predictions at new times.

Every draw runs the model once under ``trace(seed(substitute(model, params), key))``,
the same per-draw step as NumPyro's ``Predictive``, and keeps what the plots, the
ArviZ export and SBC need from that one solve: the trajectory, the pointwise
log-likelihood of the data, a fresh noisy draw at the data, the solver status,
and (with ``predict_ts``) the trajectory and noisy draws at new times.
``Predictive`` returns site values only, so the log-likelihood (``site["fn"].log_prob``)
and the fresh draw of the *observed* ``obs`` site would cost a second solve there.

- :func:`model_draws`: the runner (prior when ``params`` is None, else posterior);
- :func:`prior_predictive`: prior draws at chosen times, per series;
- :func:`series_predictions`: posterior predictive per series, each from its own start;
- :func:`field_draws`: the vector field of posterior draws at given states.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers

from ..caching import ProgramCache
from ..checks import as_key, positive_int
from ..datasets import Data, as_data
from ..errors import ConfigError
from ..model import check_model, sample_field
from ..model.priors import SITE_OBS, SITE_Y0

MAX_PANELS = 6
# The compiled draw programs, per (model, data shapes, prediction shape, prior or posterior).
DRAW_PROGRAMS = ProgramCache()


def _draws_fn(model, shapes, predict_shape, with_params: bool):
    """Compiled ``(params, keys, md, predict_ts) -> dict of (draws, ...)`` arrays, kept in ``DRAW_PROGRAMS``."""

    def build():
        def one(params, key, md, predict_ts):
            m = handlers.substitute(model, data=params) if with_params else model
            tr = handlers.trace(handlers.seed(m, key)).get_trace(md, predict_ts=predict_ts)
            site = tr[SITE_OBS]
            out = {
                "trajectory": tr["trajectory"]["value"],
                "log_lik": site["fn"].log_prob(site["value"]),
                "obs": site["fn"].sample(jax.random.fold_in(key, 1)),
                "status": tr["solver_status"]["value"],
            }
            if not with_params:
                out["latents"] = {n: s["value"] for n, s in tr.items() if s["type"] == "sample" and not s["is_observed"]}
            if predict_ts is not None:
                out["trajectory_predict"] = tr["trajectory_predict"]["value"]
                out["obs_predict"] = tr["obs_predict"]["value"]
                out["predict_status"] = tr["predict_status"]["value"]
            return out

        # vmap over all draws, as Predictive(parallel=True) does: a lax.map in batches compiled the body
        # twice (full batches and the remainder) and ran 2x slower (benchmarks/predictive.py)
        return jax.jit(jax.vmap(one, in_axes=(0, 0, None, None)))

    return DRAW_PROGRAMS.get(model, "draws", (shapes, predict_shape, with_params), build)


def model_draws(model, md, keys, params=None, *, predict_ts=None) -> dict:
    """Run ``model`` once per draw and keep what every predictive consumer needs.

    Parameters
    ----------
    model : a model from ``make_model`` (a NumPyro model function).
    md : ModelData
        The data (``Data.model_data()``); its shapes key the compiled program.
    keys : (draws, 2) uint32 raw keys, one per draw.
    params : dict of site -> (draws, ...) arrays, optional
        Latent values to substitute (posterior draws). None draws them from the prior.
    predict_ts : (series, time') array, optional
        Extra times (relative to ``Data.t_ref``) to predict at.

    Returns
    -------
    dict of NumPy arrays, draws first: ``trajectory`` (draws, series, time, state),
    ``log_lik`` and ``obs`` (draws, series, time, observed), ``status`` (draws, series);
    with ``predict_ts``: ``trajectory_predict``, ``obs_predict``, ``predict_status``;
    without ``params``: ``latents`` (site -> (draws, ...)), the prior draws.
    """
    fn = _draws_fn(model, md.shapes(), None if predict_ts is None else tuple(predict_ts.shape), params is not None)
    out = jax.device_get(fn(params if params is not None else {}, keys, md, predict_ts))
    return jax.tree_util.tree_map(np.asarray, out)


# ------------------------------------------------------------------ argument helpers shared with the plots
def series_indices(series, data) -> list[int]:
    """Series given by index or name (or a list of them) as indices; None = the first ``MAX_PANELS``."""
    if series is None:
        return list(range(min(data.num_series, MAX_PANELS)))
    series = [series] if np.ndim(series) == 0 else list(series)
    out = []
    for s in series:
        if isinstance(s, str):
            if s not in data.series_names:
                raise ConfigError(
                    f"`series` names {s!r}, which is not a series; the series are {list(data.series_names)}."
                )
            s = data.series_names.index(s)
        if not 0 <= int(s) < data.num_series:
            raise ConfigError(f"`series` index {s} is out of range; the data have {data.num_series} series.")
        out.append(int(s))
    return out


def model_state_names(spec, data) -> list[str]:
    """Names of the model's states: the data's columns, or ``x0, x1, ...`` behind an ``observation_fn``."""
    return spec.trajectory_names(data)


def flat_draws(a):
    """(chain, draw, ...) -> (chain * draw, ...)."""
    return a.reshape((-1,) + a.shape[2:])


def _one_series(post, s: int):
    """The posterior restricted to series ``s`` (its data and its ``y0``)."""
    d = post.data
    sub = Data(
        ts=d.ts[s : s + 1],
        ys=d.ys[s : s + 1],
        lengths=d.lengths[s : s + 1],
        t0=d.t0[s : s + 1],
        state_names=d.state_names,
        series_names=(d.series_names[s],),
        time_name=d.time_name,
    )
    samples = dict(post.samples)
    if d.num_series > 1 and SITE_Y0 in samples:  # one series is itself (a numpyro_model's y0 has no series axis)
        samples[SITE_Y0] = np.asarray(post.samples[SITE_Y0])[:, :, s : s + 1]
    return type(post)(samples, {}, sub, post.model, post.settings)


# ------------------------------------------------------------------ posterior predictive per series
def series_predictions(post, series=None, *, key, ts=None, until=None, num_points: int = 200) -> list:
    """Posterior predictive draws per series, each from its own start.

    ``Posterior.predict`` takes one time grid for all series, starting no earlier
    than the latest ``t0``. Here a series that starts earlier gets its own grid
    (from its ``t0``; or the part of ``ts`` after it), predicted from that series'
    ``y0`` alone. Fields then see time relative to that series' start, which
    matters only for time-dependent fields.

    Parameters
    ----------
    post : Posterior
    series : int, str or list, optional
        Series (index or name); default all, at most 6.
    key : PRNG key or int seed (required, keyword-only)
        Seed of the noisy draws; the same key gives the same draws.
    ts : (time,) array, optional
        Times (raw units, or dates for data with dates). Default ``num_points`` times
        from each series' ``t0`` to ``until`` (default the last observation).
    until : float or date, optional
        End of the default grid (a number in the data's time units, or a date such as
        ``"2021-06-01"`` for data with dates).

    Returns
    -------
    list of dicts, one per series, with ``series`` (index), ``ts`` (time,),
    ``obs`` (draws, time, observed), ``trajectory`` (draws, time, state),
    ``failed`` (draws,), ``obs_dim`` ("state" or "observable") and ``names``
    (the observed columns).
    """
    post.require_model()
    as_key(key)
    d = post.data
    series = series_indices(series, d)
    t_last = float(np.max(d.ts))
    until = t_last if until is None else float(d.as_times(until, "until"))
    if ts is not None:
        ts = d.as_times(ts, "ts")
        if ts.ndim != 1 or ts.size == 0:
            raise ConfigError(f"`ts` must be a non-empty 1-D array of times; got shape {ts.shape}.")
    elif until <= float(np.min(d.t0)):
        raise ConfigError(f"`until`={until} is not after the data start {float(np.min(d.t0))}.")

    def unpack(pred, i, s, grid):
        obs_dim = "state" if "state" in pred["obs"].dims else "observable"
        return {
            "series": s,
            "ts": grid,
            "obs": flat_draws(pred["obs"].values[:, :, i]),
            "trajectory": flat_draws(pred["trajectory"].values[:, :, i]),
            "failed": flat_draws(pred["failed"].values[:, :, i]),
            "obs_dim": obs_dim,
            "names": [str(v) for v in pred[obs_dim].values],
        }

    if (ts is not None and ts[0] >= float(np.max(d.t0))) or np.all(d.t0 == d.t0[0]):
        grid = ts if ts is not None else np.linspace(float(d.t0[0]), until, num_points)
        pred = post.predict(grid, key=key)
        return [unpack(pred, s, s, grid) for s in series]
    if getattr(post.model.spec, "all_series", False):  # fn models every series at once: no one-series posterior
        raise ConfigError(
            "the series start at different times and this numpyro_model(all_series=True) model predicts all series "
            f"on one grid: give `ts` from the latest start ({float(np.max(d.t0))}) on, or use Posterior.predict."
        )
    out = []
    for s, t0 in zip(series, d.t0[series]):
        if ts is not None:
            grid = ts[ts >= t0]
            if grid.size == 0:
                raise ConfigError(f"`ts` ends at {ts[-1]}, before series {d.series_names[s]!r} starts at {t0}.")
        else:
            if until <= t0:
                raise ConfigError(f"`until`={until} is not after series {d.series_names[s]!r} starts at {t0}.")
            grid = np.linspace(float(t0), until, num_points)
        out.append(unpack(_one_series(post, s).predict(grid, key=key), 0, s, grid))
    return out


# ------------------------------------------------------------------ vector field of posterior draws
def _field_site_names(spec):
    def build():
        return sample_field(spec.field, spec.weight_prior, spec.param_priors)

    tr = handlers.trace(handlers.seed(build, 0)).get_trace()  # names only: the seed draws nothing kept
    return [k for k, v in tr.items() if v["type"] == "sample"]


def field_draws(post, points, *, t=None, num_draws: int | None = None):
    """The vector field of posterior draws evaluated at given states.

    Each draw's field is rebuilt by ``sample_field`` under
    ``numpyro.handlers.substitute`` with that draw's parameters; the draws
    are evaluated together with ``jax.vmap``. Nothing random is drawn.

    Parameters
    ----------
    post : Posterior
    points : (points, state) array
        States at which to evaluate ``dy/dt``.
    t : float, optional
        Time (raw units) passed to the field; default the data's earliest ``t0``
        (irrelevant for autonomous fields).
    num_draws : int, optional
        Use this many draws, spread evenly over all draws (default all).

    Returns
    -------
    (draws, points, state) NumPy array of ``dy/dt``.
    """
    post.require_model()
    spec = post.model.spec
    d = post.data
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != spec.state_dim:
        raise ConfigError(f"`points` must have shape (points, state) = (n, {spec.state_dim}); got {points.shape}.")
    sites = _field_site_names(spec)
    missing = [k for k in sites if k not in post.samples]
    if missing:
        raise ConfigError(
            f"`post.samples` lacks the field site(s) {missing}; the posterior must come from `post.model`."
        )
    total = post.num_chains * post.num_draws
    n = total if num_draws is None else min(int(num_draws), total)
    idx = np.unique(np.linspace(0, total - 1, n).round().astype(int))
    params = {k: jnp.asarray(flat_draws(np.asarray(post.samples[k]))[idx]) for k in sites}
    dtype = jnp.zeros(()).dtype
    t_rel = jnp.asarray((d.t_ref if t is None else float(t)) - d.t_ref, dtype=dtype)

    def one(p, pts):
        # every site is substituted, so the seed draws nothing
        field = handlers.seed(
            handlers.substitute(lambda: sample_field(spec.field, spec.weight_prior, spec.param_priors), data=p), 0
        )()
        return jax.vmap(lambda y: field(t_rel, y, spec.args))(pts)

    out = jax.jit(jax.vmap(one, in_axes=(0, None)))(params, jnp.asarray(points, dtype=dtype))
    return np.asarray(out, dtype=np.float64)


# ------------------------------------------------------------------ prior predictive
def prior_predictive(model, data, *, key, num_draws: int = 100, ts=None, num_points: int = 100) -> dict:
    """Draws from the prior predictive, vectorised over draws.

    Parameters
    ----------
    model : from :func:`make_model` or :mod:`bayesode.models`
    data : Data
        The data the model will be fitted to (the default ``y0`` prior is centred on it).
    key : PRNG key or int seed (required, keyword-only)
    num_draws : int
        Prior draws (default 100).
    ts : (time,) array, optional
        Times (raw units), no earlier than the latest series start. Default
        ``num_points`` times from each series' ``t0`` to its last observation.

    Returns
    -------
    dict with ``ts`` (series, time), ``trajectory`` (draws, series, time, state),
    ``obs`` (draws, series, time, observed), ``failed`` (draws, series) and
    ``latents`` (site -> (draws, ...)), the prior draws of every latent site.
    """
    check_model(model)
    data = as_data(data)
    model.spec.check_data(data)
    num_draws = positive_int("num_draws", num_draws)
    keys = jax.random.split(as_key(key), num_draws)
    if ts is None:
        ends = np.array([data.series(i)[0][-1] for i in range(data.num_series)])
        ts = np.stack([np.linspace(a, b, num_points) for a, b in zip(data.t0, np.maximum(ends, data.t0 + 1e-9))])
    else:
        ts = np.asarray(ts, dtype=np.float64)
        if ts.ndim != 1 or ts.size == 0 or ts[0] < float(np.max(data.t0)):
            raise ConfigError(
                f"`ts` must be a 1-D array of times starting no earlier than the latest series start "
                f"{float(np.max(data.t0))}; got shape {ts.shape}" + (f" starting at {ts[0]}." if ts.size else ".")
            )
        ts = np.broadcast_to(ts, (data.num_series, ts.size))
    md = data.model_data()
    out = model_draws(model, md, keys, predict_ts=jnp.asarray(ts - data.t_ref, dtype=md.ts.dtype))
    return {
        "ts": ts,
        "trajectory": out["trajectory_predict"],
        "obs": out["obs_predict"],
        "failed": out["predict_status"] != 0,
        "latents": out["latents"],
    }
