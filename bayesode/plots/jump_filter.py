"""Drawing a neural jump ODE forecast: the posterior band, the mean, the observations (missing ones left out)."""

from __future__ import annotations

import numpy as np


def plot_jump_forecast(forecast, data, *, series=0, ax=None, prob: float | None = None):
    """One panel per coordinate: ``forecast`` (a :class:`bayesode.results.Forecast`) of ``series``
    with its band, and the observed entries of ``data`` (an ``IrregularData``) as dots.

    ``ax``: a sequence of D axes (default: a new figure with D rows). Returns the axes.
    """
    import matplotlib.pyplot as plt

    i = data.series_names.index(series) if isinstance(series, str) else int(series)
    d = data.obs_dim
    if ax is None:
        _, ax = plt.subplots(d, 1, figsize=(7, 2.2 * d), sharex=True, squeeze=False)
        ax = ax[:, 0]
    label = "band" if prob is None else f"{round(100 * prob)}% band"
    n = int(data.lengths[i])
    for j, a in enumerate(ax):
        a.fill_between(forecast.ts, forecast.lower[:, j], forecast.upper[:, j], alpha=0.25, color="C0", label=label)
        a.plot(forecast.ts, forecast.mean[:, j], color="C0", label="posterior mean forecast")
        seen = data.mask[i, :n, j]
        a.plot(data.ts[i, :n][seen], data.ys[i, :n, j][seen], "o", color="k", ms=3, label="observed")
        a.set_ylabel(data.state_names[j])
        if not np.any(seen):
            a.text(0.5, 0.5, "never observed", transform=a.transAxes, ha="center")
    ax[0].legend(loc="best", fontsize=8)
    ax[-1].set_xlabel("time")
    return ax
