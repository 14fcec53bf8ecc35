"""Plots over time: posterior predictive bands with a forecast, and the prior predictive check.

Every plot function in :mod:`bayesode.plots` follows ArviZ's convention: it takes ``ax`` (an
Axes, or an array of Axes for one panel per series) and returns the Axes it drew on; without
``ax`` it makes a figure of legible size (``PANEL_SIZE`` inches per panel). Axes are labelled
with the data's names (time name, state names) and units where the data carry them
(``time_unit``, ``state_units``). The legend sits outside the panels, so it hides no data and
no forecast label. Every number drawn is computed in :mod:`bayesode.results`.

ArviZ's own plots (``az.plot_trace``, ``az.plot_rank``, ``az.plot_ppc``, ``az.plot_dist_comparison``)
work on ``post.to_arviz(key=...)``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from ..datasets import as_data
from ..errors import ConfigError
from ..model import check_model
from ..results import prior_predictive, series_indices, series_predictions

PANEL_SIZE = (7.0, 4.0)  # inches per panel: 840 x 480 px at the CLI's 120 dpi
TITLE_SIZE = 11
LEGEND_SIZE = 9


def _bands(values, prob):
    """(3, ...) lower, median, upper equal-tailed ``prob`` quantiles over axis 0."""
    lo, hi = (1 - prob) / 2, 1 - (1 - prob) / 2
    return np.quantile(values, [lo, 0.5, hi], axis=0)


def _check_prob(prob):
    if not 0 < prob < 1:
        raise ConfigError(f"`prob` must be in (0, 1), e.g. 0.9; got {prob!r}.")


def panels(n, ax, size=PANEL_SIZE):
    """``(axes, new)``: ``n`` Axes, the given ones (``ax``: an Axes or array of them) or a new
    constrained-layout figure of ``n`` panels in at most 2 columns; ``new`` says which."""
    if ax is not None:
        axes = np.atleast_1d(ax).ravel()
        if axes.size < n:
            raise ConfigError(f"`ax` has {axes.size} axes; this plot needs {n} (one per series).")
        return axes[:n], False
    ncols = min(n, 2)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False, layout="constrained"
    )
    for extra in axes.ravel()[n:]:
        extra.set_visible(False)
    return axes.ravel()[:n], True


def one_panel(ax, size=(6.0, 5.0)):
    """The given Axes, or one in a new constrained-layout figure."""
    if ax is not None:
        return ax
    return plt.subplots(figsize=size, layout="constrained")[1]


def label(name, unit=None):
    """Axis label: ``name`` with its unit in brackets when there is one."""
    return f"{name} [{unit}]" if unit else str(name)


def time_label(data):
    return label(data.time_name, getattr(data, "time_unit", None))


def label_time_axis(ax, data):
    """Time name (and unit) on x; ticks on round steps (1, 2, 5, 10 x 10^k: no crowded '1902.5')."""
    ax.set_xlabel(time_label(data))
    ax.xaxis.set_major_locator(MaxNLocator(nbins="auto", steps=[1, 2, 5, 10]))


def values_label(data, names):
    """y label of a panel of several columns: their names, and their unit when they share one."""
    units = getattr(data, "state_units", None)
    shared = {units[data.state_names.index(n)] for n in names if n in data.state_names} if units else set()
    return label(", ".join(names), shared.pop() if len(shared) == 1 else None)


def legend_outside(axes, new):
    """One legend. On a figure made here it sits outside the panels (right of them), so it covers no
    data and no forecast label; on given Axes (the caller's layout) it goes inside the first, where
    matplotlib finds the least overlap (the shaded forecast region counts as occupied)."""
    handles, labels = axes[0].get_legend_handles_labels()
    if not handles:
        return
    if new:
        axes[0].figure.legend(handles, labels, loc="outside right upper", fontsize=LEGEND_SIZE, frameon=False)
    else:
        axes[0].legend(handles, labels, loc="best", fontsize=LEGEND_SIZE)


def _mark_forecast(ax, ts, t_last, data):
    if ts[-1] > t_last:
        ts, t_last = data.to_dates(ts), data.to_dates(t_last)  # dates when the data had dates
        ax.axvline(t_last, color="0.4", ls="--", lw=1)
        ax.axvspan(t_last, ts[-1], color="0.5", alpha=0.06, lw=0)
        ax.text(t_last, 0.98, " forecast", transform=ax.get_xaxis_transform(), va="top", fontsize=LEGEND_SIZE,
                color="0.3")  # fmt: skip


def plot_trajectories(
    post, *, key, ts=None, until=None, num_points: int = 200, prob: float = 0.9, series=None, ax=None
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
        Times (raw units, or dates for data with dates) to predict at. Default
        ``num_points`` times from the earliest ``t0`` to ``until``.
    until : float or date, optional
        Last time to predict at (default: the last observation; later = forecast);
        a date such as ``"2021-06-01"`` for data with dates.
    num_points : int
        Number of default times (default 200).
    prob : float
        Band probability (default 0.9).
    series : int, str or list, optional
        Series to draw (index or name; default all, at most 6).
    ax : matplotlib Axes or array of Axes, optional
        One per series drawn; default a new figure.
    key : PRNG key or int seed (required, keyword-only)
        Seed of the predictive noise draws; the same key gives the same draws.

    Returns
    -------
    NumPy array of Axes, one per series. Each holds, per observed column, two
    bands (one when an ``observation_fn`` is used), one median line and one
    line of data points; x labelled with the time name, y with the columns.

    Examples
    --------
    >>> axes = plot_trajectories(post, until=1935, key=0)  # doctest: +SKIP
    >>> axes[0].figure.savefig("trajectories.png")  # doctest: +SKIP
    """
    _check_prob(prob)
    d = post.data
    t_last = float(np.max(d.ts))
    preds = series_predictions(post, series, ts=ts, until=until, num_points=num_points, key=key)
    axes, new = panels(len(preds), ax)
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
        ax.set_title(title, fontsize=TITLE_SIZE)
        label_time_axis(ax, d)
        ax.set_ylabel(values_label(d, p["names"]))
    legend_outside(axes, new)
    return axes


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
    ax=None,
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
    ax : Axes or array of Axes, optional
        One per series drawn; default a new figure.

    Returns
    -------
    NumPy array of Axes, one per series; each holds, per observed column, one band,
    up to ``num_lines`` thin lines and one line of data points.

    Examples
    --------
    >>> axes = plot_prior_predictive(model, data, key=0)  # doctest: +SKIP
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
    axes, new = panels(len(series), ax)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, s in zip(axes, series):
        ok = np.flatnonzero(~draws["failed"][:, s])
        lines = ok[: max(int(num_lines), 0)]
        for k, name in enumerate(names):
            c = colors[k % len(colors)]
            if ok.size:
                lo, _, hi = _bands(draws["obs"][ok, s, :, k], prob)
                ax.fill_between(ts[s], lo, hi, color=c, alpha=0.15, lw=0, label=f"{name} {prob:.0%} prior predictive")
            for j, i in enumerate(lines):
                what = f"{name}: {lines.size} prior draws" if j == 0 else None
                ax.plot(ts[s], line_src[i, s, :, k], color=c, alpha=0.3, lw=0.6, label=what)
            t_s, y_s = data.series(s)
            m = np.isfinite(y_s[:, k])
            ax.plot(t_s[m], y_s[m, k], "o", color=c, ms=4, mec="k", mew=0.5, label=f"{name} data")
        ax.set_yscale(yscale)
        n_fail = int(draws["failed"][:, s].sum())
        title = "prior predictive" + (f", series {data.series_names[s]}" if data.num_series > 1 else "")
        ax.set_title(f"{title} ({n_fail} of {num_draws} draws failed to solve)", fontsize=TITLE_SIZE)
        label_time_axis(ax, data)
        ax.set_ylabel(values_label(data, names))
    legend_outside(axes, new)
    return axes
