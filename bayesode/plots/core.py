"""Plots of a fit. Each function returns ``(fig, axes)`` and draws on given axes when passed.

- :func:`plot_trajectories`: posterior predictive bands over the data, with a forecast;
- :func:`plot_phase`: posterior trajectories in the state plane;
- :func:`plot_vector_field`: streamlines of the posterior-mean field over a colour map of
  its posterior spread;
- :func:`plot_prior_predictive`: what the model predicts before seeing the data.

ArviZ's own plots (``az.plot_trace``, ``az.plot_rank``, ``az.plot_ppc``,
``az.plot_loo_pit``) work on ``post.to_arviz()``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from numpyro import handlers

from ..datasets.data import Data, as_data
from ..errors import ConfigError
from ..model.priors import SITE_Y0, sample_field
from ..results.posterior import Posterior

MAX_PANELS = 6


def _bands(values, prob):
    """(3, ...) lower, median, upper equal-tailed ``prob`` quantiles over axis 0."""
    lo, hi = (1 - prob) / 2, 1 - (1 - prob) / 2
    return np.quantile(values, [lo, 0.5, hi], axis=0)


def _check_prob(prob):
    if not 0 < prob < 1:
        raise ConfigError(f"`prob` must be in (0, 1), e.g. 0.9; got {prob!r}.")


def _grid(n, axes, ncols=None, size=(5.0, 3.2)):
    if axes is not None:
        axes = np.atleast_1d(axes).ravel()
        if axes.size < n:
            raise ConfigError(f"`axes` has {axes.size} axes; this plot needs {n} (one per series).")
        return axes[0].figure, axes
    ncols = ncols or min(n, 2)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes.ravel()


def _single_ax(ax, figsize=(5.0, 4.5)):
    if ax is None:
        return plt.subplots(figsize=figsize)
    return ax.figure, ax


def _series_list(series, data):
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


def _state_index(value, names, argname):
    if isinstance(value, str):
        if value not in names:
            raise ConfigError(f"`{argname}`={value!r} is not a state; the states are {list(names)}.")
        return list(names).index(value)
    if not (isinstance(value, (int, np.integer)) and 0 <= int(value) < len(names)):
        raise ConfigError(
            f"`{argname}` must be a state index in [0, {len(names)}) or a name in {list(names)}; got {value!r}."
        )
    return int(value)


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
        time_origin=d.time_origin,
    )
    samples = dict(post.samples)
    samples[SITE_Y0] = np.asarray(post.samples[SITE_Y0])[:, :, s : s + 1]
    return Posterior(samples, {}, sub, post.model, post.settings)


def series_predictions(post, series=None, *, ts=None, until=None, num_points: int = 200, key: int = 0) -> list:
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
    ts : (time,) array, optional
        Times (raw units). Default ``num_points`` times from each series' ``t0``
        to ``until`` (default the last observation).
    key : int
        Seed of the noisy draws.

    Returns
    -------
    list of dicts, one per series, with ``series`` (index), ``ts`` (time,),
    ``obs`` (draws, time, observed), ``trajectory`` (draws, time, state),
    ``failed`` (draws,) and ``obs_dim`` ("state" or "observable").
    """
    post._require_model()
    d = post.data
    series = _series_list(series, d)
    t_last = float(np.max(d.ts))
    until = t_last if until is None else float(until)
    if ts is not None:
        ts = np.asarray(ts, dtype=np.float64)
        if ts.ndim != 1 or ts.size == 0:
            raise ConfigError(f"`ts` must be a non-empty 1-D array of times; got shape {ts.shape}.")
    elif until <= float(np.min(d.t0)):
        raise ConfigError(f"`until`={until} is not after the data start {float(np.min(d.t0))}.")

    def unpack(pred, i, s, grid):
        obs_dim = "state" if "state" in pred["obs"].dims else "observable"
        return {
            "series": s,
            "ts": grid,
            "obs": _flat(pred["obs"].values[:, :, i]),
            "trajectory": _flat(pred["trajectory"].values[:, :, i]),
            "failed": _flat(pred["failed"].values[:, :, i]),
            "obs_dim": obs_dim,
            "names": [str(v) for v in pred[obs_dim].values],
        }

    starts = d.t0[series]
    if (ts is not None and ts[0] >= float(np.max(d.t0))) or np.all(d.t0 == d.t0[0]):
        grid = ts if ts is not None else np.linspace(float(d.t0[0]), until, num_points)
        pred = post.predict(grid, key=key)
        return [unpack(pred, s, s, grid) for s in series]
    out = []
    for s, t0 in zip(series, starts):
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


def _state_names(spec, data):
    if spec.observation_fn is None:
        return list(data.state_names)
    return [f"x{i}" for i in range(spec.state_dim)]


def _plane(post, x, y, what):
    """State names and the indices of the two states spanning a plot's plane."""
    post._require_model()
    names = _state_names(post.model.spec, post.data)
    if len(names) < 2:
        raise ConfigError(f"{what} needs at least 2 states; the model has {len(names)} ({names}).")
    xi, yi = _state_index(x, names, "x"), _state_index(y, names, "y")
    if xi == yi:
        raise ConfigError(f"`x` and `y` are the same state ({names[xi]!r}); pick two different states.")
    return names, xi, yi


def _flat(a):
    """(chain, draw, ...) -> (chain * draw, ...)."""
    return a.reshape((-1,) + a.shape[2:])


def _mark_forecast(ax, ts, t_last, data):
    if ts[-1] > t_last:
        ts, t_last = data.to_dates(ts), data.to_dates(t_last)  # dates when the data had dates
        ax.axvline(t_last, color="0.4", ls="--", lw=1)
        ax.axvspan(t_last, ts[-1], color="0.5", alpha=0.06, lw=0)
        ax.text(t_last, 1.0, " forecast", transform=ax.get_xaxis_transform(), va="top", fontsize=7, color="0.3")


def plot_trajectories(
    post, *, ts=None, until=None, num_points: int = 200, prob: float = 0.9, series=None, axes=None, key: int = 0
):
    """Posterior predictive bands over the data, one panel per series, with an optional forecast.

    For each observed column a panel shows: a light equal-tailed ``prob`` band of
    new noisy observations, a darker band of the noise-free trajectory (when the
    states are observed directly), the pointwise median, and the data as points.
    With ``until`` past the last observation, the forecast region is shaded and a
    dashed line marks where the data end. Draws whose ODE solve failed are left out
    and counted in the panel title.

    Parameters
    ----------
    post : Posterior
    ts : (time,) array, optional
        Times (raw units) to predict at. Default ``num_points`` times from the
        earliest ``t0`` to ``until``.
    until : float, optional
        Last time to predict at (default: the last observation; later = forecast).
    num_points : int
        Number of default times (default 200).
    prob : float
        Band probability (default 0.9).
    series : int, str or list, optional
        Series to draw (index or name; default all, at most 6).
    axes : matplotlib Axes or array of Axes, optional
        One per series drawn; default a new figure.
    key : int
        Seed of the predictive noise draws.

    Returns
    -------
    (fig, axes)
        ``axes`` has one Axes per series. Each holds, per observed column, two
        bands (one when an ``observation_fn`` is used), one median line and one
        line of data points.

    Examples
    --------
    >>> fig, axes = plot_trajectories(post, until=1935)  # doctest: +SKIP
    """
    _check_prob(prob)
    d = post.data
    t_last = float(np.max(d.ts))
    preds = series_predictions(post, series, ts=ts, until=until, num_points=num_points, key=key)
    fig, axes = _grid(len(preds), axes)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, p in zip(axes, preds):
        s, grid, ok = p["series"], p["ts"], ~p["failed"]
        x = d.to_dates(grid)  # the x axis shows dates when the data had dates
        for k, name in enumerate(p["names"]):
            c = colors[k % len(colors)]
            if ok.any():
                lo, mid, hi = _bands(p["obs"][ok, :, k], prob)
                ax.fill_between(x, lo, hi, color=c, alpha=0.2, lw=0, label=f"{name} {prob:.0%} predictive")
                if p["obs_dim"] == "state":
                    lo, mid, hi = _bands(p["trajectory"][ok, :, k], prob)
                    ax.fill_between(x, lo, hi, color=c, alpha=0.35, lw=0, label=f"{name} {prob:.0%} trajectory")
                ax.plot(x, mid, color=c, lw=1.5, label=f"{name} median")
            t_s, y_s = d.series(s)
            m = np.isfinite(y_s[:, k])
            ax.plot(d.to_dates(t_s[m]), y_s[m, k], "o", color=c, ms=4, mec="k", mew=0.5, label=f"{name} data")
        _mark_forecast(ax, grid, t_last, d)
        title = f"series {d.series_names[s]}" if d.num_series > 1 else "posterior predictive"
        if not ok.all():
            title += f" ({int((~ok).sum())} of {ok.size} draws failed to solve)"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(d.time_name)
    axes[0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig, axes[: len(preds)]


def plot_phase(
    post,
    *,
    x=0,
    y=1,
    series=0,
    ts=None,
    until=None,
    num_points: int = 200,
    num_draws: int = 50,
    ax=None,
    key: int = 0,
):
    """Posterior trajectories in the plane of two states (a phase portrait), with the data.

    Parameters
    ----------
    post : Posterior
    x, y : int or str
        States on the horizontal and vertical axes (index or name; default 0 and 1).
    series : int or str
        Which series (default the first).
    ts, until, num_points : as in :func:`plot_trajectories`
        Times along each trajectory (``until`` past the data shows the forecast orbit).
    num_draws : int
        Number of posterior draws drawn as thin lines, spread evenly over all
        draws whose solve succeeded (default 50).
    ax : matplotlib Axes, optional

    Returns
    -------
    (fig, ax)
        ``ax`` holds ``min(num_draws, successful draws)`` trajectory lines, then
        one line of data points (joined in time order) when the states are
        observed directly; a marker shows each trajectory's start.

    Examples
    --------
    >>> fig, ax = plot_phase(post, x="hare", y="lynx")  # doctest: +SKIP
    """
    names, xi, yi = _plane(post, x, y, "a phase portrait")
    d = post.data
    spec = post.model.spec
    if not (isinstance(num_draws, (int, np.integer)) and num_draws > 0):
        raise ConfigError(f"`num_draws` must be a positive int; got {num_draws!r}.")
    (s,) = _series_list(series, d)
    (p,) = series_predictions(post, [s], ts=ts, until=until, num_points=num_points, key=key)
    traj = p["trajectory"]  # (n, time, state)
    ok = np.flatnonzero(~p["failed"])
    fig, ax = _single_ax(ax)
    chosen = ok[np.unique(np.linspace(0, ok.size - 1, min(num_draws, ok.size)).round().astype(int))] if ok.size else ok
    for j, i in enumerate(chosen):
        label = f"{chosen.size} posterior trajectories" if j == 0 else None
        ax.plot(traj[i, :, xi], traj[i, :, yi], color="C0", alpha=0.25, lw=0.8, label=label)
    if chosen.size:
        ax.scatter(traj[chosen, 0, xi], traj[chosen, 0, yi], color="C0", s=6, alpha=0.5, zorder=3)
    if spec.observation_fn is None:
        t_s, y_s = d.series(s)
        m = np.isfinite(y_s[:, xi]) & np.isfinite(y_s[:, yi])
        ax.plot(y_s[m, xi], y_s[m, yi], "o-", color="k", ms=4, lw=0.8, mfc="C1", label="data")
    ax.set_xlabel(names[xi])
    ax.set_ylabel(names[yi])
    title = "phase portrait" + (f", series {d.series_names[s]}" if d.num_series > 1 else "")
    if ok.size < traj.shape[0]:
        title += f" ({traj.shape[0] - ok.size} draws failed to solve)"
    ax.set_title(title, fontsize=9)
    if spec.observation_fn is None:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig, ax


def _field_site_names(spec):
    def build():
        return sample_field(spec.field, spec.weight_prior, spec.param_priors)

    tr = handlers.trace(handlers.seed(build, 0)).get_trace()
    return [k for k, v in tr.items() if v["type"] == "sample"]


def field_draws(post, points, *, t=None, num_draws: int | None = None):
    """The vector field of posterior draws evaluated at given states.

    Each draw's field is rebuilt by ``sample_field`` under
    ``numpyro.handlers.substitute`` with that draw's parameters; the draws
    are evaluated together with ``jax.vmap``.

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
    post._require_model()
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
    params = {k: jnp.asarray(_flat(np.asarray(post.samples[k]))[idx]) for k in sites}
    dtype = jnp.zeros(()).dtype
    t_rel = jnp.asarray((d.t_ref if t is None else float(t)) - d.t_ref, dtype=dtype)

    def one(p, pts):
        field = handlers.seed(
            handlers.substitute(lambda: sample_field(spec.field, spec.weight_prior, spec.param_priors), data=p), 0
        )()
        return jax.vmap(lambda y: field(t_rel, y, spec.args))(pts)

    out = jax.jit(jax.vmap(one, in_axes=(0, None)))(params, jnp.asarray(points, dtype=dtype))
    return np.asarray(out, dtype=np.float64)


def _plane_limits(values, margin):
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    width = hi - lo if hi > lo else max(abs(hi), 1.0)
    low = lo - margin * width
    if lo > 0:
        low = max(low, 0.5 * lo)  # positive data: stay positive (log-scaled fields need y > 0)
    return low, hi + margin * width


def plot_vector_field(
    post,
    *,
    x=0,
    y=1,
    grid: int = 25,
    xlim=None,
    ylim=None,
    fixed=None,
    t=None,
    num_draws: int = 200,
    relative: bool = False,
    data: bool = True,
    ax=None,
    cmap: str = "viridis",
):
    """The learned vector field: streamlines of its posterior mean over a colour map of its posterior spread.

    On a ``grid x grid`` lattice of the ``(x, y)`` plane (other states held at
    ``fixed``), the field ``dy/dt`` of ``num_draws`` posterior draws is computed
    (see :func:`field_draws`). Streamlines follow the mean of the ``(x, y)``
    components over draws; the colour is their posterior standard deviation,
    ``sqrt(var(dx/dt) + var(dy/dt))``, i.e. how unsure the fit is about the
    direction and speed of the flow there. Far from the data the spread grows:
    the network is constrained only where trajectories pass.

    Parameters
    ----------
    post : Posterior
    x, y : int or str
        States on the two axes (index or name; default 0 and 1).
    grid : int
        Points per axis (default 25).
    xlim, ylim : (low, high), optional
        Plot window; default the range of the data (or of the fitted
        trajectories when an ``observation_fn`` is used) widened by 10%
        (kept positive for positive data).
    fixed : (state,) array, optional
        Values of the other states (default their median in the data or trajectories).
    t : float, optional
        Time passed to the field (raw units; default the earliest ``t0``).
    num_draws : int
        Posterior draws used (default 200, spread evenly).
    relative : bool
        Colour by spread divided by the mean speed (a unitless ratio) instead.
    data : bool
        Overlay the observed ``(x, y)`` points (default True).
    ax : matplotlib Axes, optional
    cmap : str
        Colour map of the spread.

    Returns
    -------
    (fig, ax)
        ``ax`` holds a ``QuadMesh`` of the spread (``grid x grid``; a colour
        bar is added), the streamlines (a ``LineCollection`` and arrow
        patches) and, with ``data``, one line of data points.

    Examples
    --------
    >>> fig, ax = plot_vector_field(post, x="hare", y="lynx")  # doctest: +SKIP
    """
    names, xi, yi = _plane(post, x, y, "a vector-field plot")
    spec = post.model.spec
    d = post.data
    if not (isinstance(grid, (int, np.integer)) and grid >= 2):
        raise ConfigError(f"`grid` must be an int >= 2; got {grid!r}.")
    if spec.observation_fn is None:
        states = d.ys.reshape(-1, d.num_observed)
    else:
        states = _flat(np.asarray(post.to_arviz().posterior_predictive["trajectory"].values)).reshape(
            -1, spec.state_dim
        )
    xlim = _plane_limits(states[:, xi], 0.1) if xlim is None else tuple(float(v) for v in xlim)
    ylim = _plane_limits(states[:, yi], 0.1) if ylim is None else tuple(float(v) for v in ylim)
    if fixed is None:
        fixed = np.array(
            [np.nanmedian(states[:, k]) if np.isfinite(states[:, k]).any() else 1.0 for k in range(len(names))]
        )
    fixed = np.asarray(fixed, dtype=np.float64)
    if fixed.shape != (len(names),):
        raise ConfigError(f"`fixed` must have one value per state, shape ({len(names)},); got {fixed.shape}.")
    gx, gy = np.linspace(*xlim, grid), np.linspace(*ylim, grid)
    X, Y = np.meshgrid(gx, gy)  # (grid_y, grid_x)
    pts = np.tile(fixed, (X.size, 1))
    pts[:, xi], pts[:, yi] = X.ravel(), Y.ravel()
    f = field_draws(post, pts, t=t, num_draws=num_draws)[:, :, [xi, yi]]  # (draws, points, 2)
    finite = np.isfinite(f).all(axis=-1)
    count = finite.sum(axis=0)
    fz = np.where(finite[..., None], f, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = fz.sum(axis=0) / count[:, None]
        var = (np.where(finite[..., None], f - mean[None], 0.0) ** 2).sum(axis=0) / count[:, None]
        spread = np.sqrt(var.sum(axis=-1))
        if relative:
            spread = spread / np.maximum(np.linalg.norm(mean, axis=-1), np.finfo(float).tiny)
    U, V = mean[:, 0].reshape(X.shape), mean[:, 1].reshape(X.shape)
    S = spread.reshape(X.shape)
    fig, ax = _single_ax(ax, figsize=(6.0, 4.8))
    mesh = ax.pcolormesh(X, Y, np.ma.masked_invalid(S), shading="nearest", cmap=cmap)
    label = "posterior sd / mean speed" if relative else f"posterior sd of (d{names[xi]}/dt, d{names[yi]}/dt)"
    fig.colorbar(mesh, ax=ax, label=label)
    ax.streamplot(gx, gy, np.ma.masked_invalid(U), np.ma.masked_invalid(V), color="w", linewidth=0.8, density=1.0)
    if data and spec.observation_fn is None:
        m = np.isfinite(states[:, xi]) & np.isfinite(states[:, yi])
        ax.plot(states[m, xi], states[m, yi], "o", color="C1", mec="k", ms=4, label="data")
        ax.legend(fontsize=7, loc="upper right")
    ax.set_xlim(xlim)
    ax.set_ylim(ylim)
    ax.set_xlabel(names[xi])
    ax.set_ylabel(names[yi])
    ax.set_title(f"posterior-mean field ({f.shape[0]} draws)", fontsize=9)
    fig.tight_layout()
    return fig, ax


def prior_predictive(model, data, *, key, num_draws: int = 100, ts=None, num_points: int = 100) -> dict:
    """Draws from the prior predictive, vectorised over draws.

    Parameters
    ----------
    model, data, key, num_draws : as in :func:`plot_prior_predictive`
    ts : (time,) array, optional
        Times (raw units), no earlier than the latest series start. Default
        ``num_points`` times from each series' ``t0`` to its last observation.

    Returns
    -------
    dict with ``ts`` (series, time), ``trajectory`` (draws, series, time, state),
    ``obs`` (draws, series, time, observed) and ``failed`` (draws, series).
    """
    from ..checks import as_key
    from ..model.assembly import check_model

    check_model(model)
    data = as_data(data)
    model.spec.check_data(data)
    if not (isinstance(num_draws, (int, np.integer)) and num_draws > 0):
        raise ConfigError(f"`num_draws` must be a positive int; got {num_draws!r}.")
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
    pts = jnp.asarray(ts - data.t_ref, dtype=md.ts.dtype)
    keys = jax.random.split(as_key(key), int(num_draws))

    def one(k):
        tr = handlers.trace(handlers.seed(model, k)).get_trace(md, predict_ts=pts)
        return tr["trajectory_predict"]["value"], tr["obs_predict"]["value"], tr["predict_status"]["value"]

    traj, obs, status = jax.device_get(jax.jit(jax.vmap(one))(keys))
    return {"ts": ts, "trajectory": np.asarray(traj), "obs": np.asarray(obs), "failed": np.asarray(status) != 0}


def plot_prior_predictive(
    model,
    data,
    *,
    key,
    num_draws: int = 100,
    ts=None,
    num_points: int = 100,
    prob: float = 0.9,
    num_lines: int = 20,
    series=None,
    yscale: str | None = None,
    axes=None,
):
    """Prior predictive check: what the model expects before it sees the data.

    Draw the field, ``y0`` and noise from their priors, solve, and compare with
    the data. A good prior covers the data without being absurd (populations of
    1e12, oscillations a hundred times too fast). Failed solves are counted in the
    title: many failures mean NUTS will struggle.

    Parameters
    ----------
    model : from :func:`make_model` or :mod:`bayesode.models`
    data : Data
        The data the model will be fitted to (the default ``y0`` prior is centred
        on each series' first observation, so it is needed).
    key : PRNG key or int seed (keyword-only)
    num_draws : int
        Prior draws (default 100).
    ts, num_points : times (raw units) to predict at; default ``num_points`` over the data span.
    prob : float
        Band probability of the noisy prior predictive (default 0.9).
    num_lines : int
        Prior trajectories drawn as thin lines per column (default 20).
    series : int, str or list, optional
        Series to draw (default all, at most 6).
    yscale : {"log", "linear"}, optional
        Default ``"log"`` for positive likelihoods (prior draws span orders of magnitude).
    axes : Axes or array of Axes, optional

    Returns
    -------
    (fig, axes)
        One Axes per series; each holds, per observed column, one band, up to
        ``num_lines`` thin lines and one line of data points.

    Examples
    --------
    >>> fig, axes = plot_prior_predictive(model, data, key=0)  # doctest: +SKIP
    """
    from ..model.assembly import check_model

    check_model(model)
    _check_prob(prob)
    data = as_data(data)
    if yscale is None:
        yscale = "log" if model.spec.likelihood.positive else "linear"
    if yscale not in ("log", "linear", "symlog"):
        raise ConfigError(f"`yscale` must be 'log', 'linear' or 'symlog'; got {yscale!r}.")
    series = _series_list(series, data)
    draws = prior_predictive(model, data, key=key, num_draws=num_draws, ts=ts, num_points=num_points)
    ts = draws["ts"]
    names = list(data.state_names)
    direct = model.spec.observation_fn is None
    line_src = draws["trajectory"] if direct else draws["obs"]
    fig, axes = _grid(len(series), axes)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, s in zip(axes, series):
        ok = np.flatnonzero(~draws["failed"][:, s])
        lines = ok[: max(int(num_lines), 0)]
        for k, name in enumerate(names):
            c = colors[k % len(colors)]
            if ok.size:
                lo, _, hi = _bands(draws["obs"][ok, s, :, k], prob)
                ax.fill_between(ts[s], lo, hi, color=c, alpha=0.15, lw=0, label=f"{name} {prob:.0%} prior predictive")
            for i in lines:
                ax.plot(ts[s], line_src[i, s, :, k], color=c, alpha=0.3, lw=0.6)
            t_s, y_s = data.series(s)
            m = np.isfinite(y_s[:, k])
            ax.plot(t_s[m], y_s[m, k], "o", color=c, ms=4, mec="k", mew=0.5, label=f"{name} data")
        ax.set_yscale(yscale)
        n_fail = int(draws["failed"][:, s].sum())
        title = "prior predictive" + (f", series {data.series_names[s]}" if data.num_series > 1 else "")
        ax.set_title(f"{title} ({n_fail} of {num_draws} draws failed to solve)", fontsize=9)
        ax.set_xlabel(data.time_name)
    axes[0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig, axes[: len(series)]
