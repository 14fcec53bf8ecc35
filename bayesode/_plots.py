"""Plots. Each returns ``(fig, axes)`` and draws on given axes when passed."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ._errors import ConfigError


def _bands(values, prob):
    lo, hi = (1 - prob) / 2, 1 - (1 - prob) / 2
    return np.nanquantile(values, [lo, 0.5, hi], axis=0)


def _grid(n, axes, ncols=None, size=(5.0, 3.2)):
    if axes is not None:
        axes = np.atleast_1d(axes).ravel()
        if axes.size < n:
            raise ConfigError(f"`axes` has {axes.size} axes; this plot needs {n}.")
        return axes[0].figure, axes
    ncols = ncols or min(n, 2)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes.ravel()


def plot_trajectories(
    post, *, ts=None, until=None, num_points: int = 200, prob: float = 0.9, series=None, axes=None, key: int = 0
):
    """Posterior predictive bands over the data, one panel per series.

    For each observed column: a shaded equal-tailed ``prob`` band of noisy
    observations, a darker band of the trajectory, the median trajectory, and
    the data as points. ``until`` past the last time draws a forecast (a
    dashed line marks where the data end).

    Parameters
    ----------
    post : Posterior
    ts : times to predict at; default ``num_points`` from the first ``t0`` to ``until``
        (default: last observation time).
    prob : band probability (default 0.9).
    series : list of series indices to draw (default all, at most 6).
    """
    if not 0 < prob < 1:
        raise ConfigError(f"`prob` must be in (0, 1); got {prob!r}.")
    d = post.data
    t_last = float(np.max(d.ts))
    if ts is None:
        until = t_last if until is None else float(until)
        ts = np.linspace(float(np.min(d.t0)), until, num_points)
    pred = post.predict(ts, key=key)
    obs_dim = "state" if "state" in pred["obs"].dims else "observable"
    names = [str(s) for s in pred[obs_dim].values]
    series = list(range(min(d.num_series, 6))) if series is None else list(series)
    fig, axes = _grid(len(series), axes)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    obs = pred["obs"].values  # chain, draw, series, time, column
    traj = pred["trajectory"].values
    failed = pred["failed"].values.reshape(-1, d.num_series)
    for ax, s in zip(axes, series):
        ok = ~failed[:, s]
        o = obs[:, :, s].reshape((-1,) + obs.shape[3:])[ok]
        for k, name in enumerate(names):
            c = colors[k % len(colors)]
            lo, mid, hi = _bands(o[..., k], prob)
            ax.fill_between(ts, lo, hi, color=c, alpha=0.2, lw=0, label=f"{name} {prob:.0%} predictive")
            if obs_dim == "state":
                tr = traj[:, :, s].reshape((-1,) + traj.shape[3:])[ok][..., k]
                tlo, tmid, thi = _bands(tr, prob)
                ax.fill_between(ts, tlo, thi, color=c, alpha=0.35, lw=0)
                ax.plot(ts, tmid, color=c, lw=1.5, label=f"{name} median")
            else:
                ax.plot(ts, mid, color=c, lw=1.5, label=f"{name} median")
            t_s, y_s = d.series(s)
            m = np.isfinite(y_s[:, k])
            ax.plot(t_s[m], y_s[m, k], "o", color=c, ms=4, mec="k", mew=0.5, label=f"{name} data")
        if ts[-1] > t_last:
            ax.axvline(t_last, color="0.4", ls="--", lw=1)
        ax.set_title(f"series {d.series_names[s]}" if d.num_series > 1 else "posterior predictive")
        ax.set_xlabel(d.time_name)
    axes[0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig, axes[: len(series)]
