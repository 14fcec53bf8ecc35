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

import matplotlib.pyplot as plt
import numpy as np

from ..datasets import as_data
from ..errors import ConfigError
from ..model import check_model
from ..results import (
    field_draws,
    model_state_names,
    prior_predictive,
    series_indices,
    series_predictions,
)


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


def _plane(post, x, y, what):
    """State names and the indices of the two states spanning a plot's plane."""
    post.require_model()
    names = model_state_names(post.model.spec, post.data)
    if len(names) < 2:
        raise ConfigError(f"{what} needs at least 2 states; the model has {len(names)} ({names}).")
    xi, yi = _state_index(x, names, "x"), _state_index(y, names, "y")
    if xi == yi:
        raise ConfigError(f"`x` and `y` are the same state ({names[xi]!r}); pick two different states.")
    return names, xi, yi


def _mark_forecast(ax, ts, t_last):
    if ts[-1] > t_last:
        ax.axvline(t_last, color="0.4", ls="--", lw=1)
        ax.axvspan(t_last, ts[-1], color="0.5", alpha=0.06, lw=0)
        ax.text(t_last, 1.0, " forecast", transform=ax.get_xaxis_transform(), va="top", fontsize=7, color="0.3")


def plot_trajectories(
    post, *, key, ts=None, until=None, num_points: int = 200, prob: float = 0.9, series=None, axes=None
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
    key : PRNG key or int seed (required, keyword-only)
        Seed of the predictive noise draws; the same key gives the same draws.

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
        for k, name in enumerate(p["names"]):
            c = colors[k % len(colors)]
            if ok.any():
                lo, mid, hi = _bands(p["obs"][ok, :, k], prob)
                ax.fill_between(grid, lo, hi, color=c, alpha=0.2, lw=0, label=f"{name} {prob:.0%} predictive")
                if p["obs_dim"] == "state":
                    lo, mid, hi = _bands(p["trajectory"][ok, :, k], prob)
                    ax.fill_between(grid, lo, hi, color=c, alpha=0.35, lw=0, label=f"{name} {prob:.0%} trajectory")
                ax.plot(grid, mid, color=c, lw=1.5, label=f"{name} median")
            t_s, y_s = d.series(s)
            m = np.isfinite(y_s[:, k])
            ax.plot(t_s[m], y_s[m, k], "o", color=c, ms=4, mec="k", mew=0.5, label=f"{name} data")
        _mark_forecast(ax, grid, t_last)
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
    key,
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
    key : PRNG key or int seed (required, keyword-only)
        Seed of the predictive draws (as in :func:`plot_trajectories`).

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
    (s,) = series_indices(series, d)
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
        states = post.fitted()["trajectory"].reshape(-1, spec.state_dim)
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
    check_model(model)
    _check_prob(prob)
    data = as_data(data)
    if yscale is None:
        yscale = "log" if model.spec.likelihood.positive else "linear"
    if yscale not in ("log", "linear", "symlog"):
        raise ConfigError(f"`yscale` must be 'log', 'linear' or 'symlog'; got {yscale!r}.")
    series = series_indices(series, data)
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
