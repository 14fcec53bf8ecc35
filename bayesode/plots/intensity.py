"""Point-process plots: the posterior intensity with its band, and the time-rescaling Q-Q plot.

Drawing only: the numbers come from :func:`bayesode.infer.intensity_bands` and
:func:`bayesode.diagnostics.time_rescaling_test`.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError

__all__ = ["plot_intensity", "plot_time_rescaling"]


def plot_intensity(ax, save_ts, bands: dict, *, events=None, sequence: int = 0, mark: int | None = None,
                   truth=None, label: str = "posterior mean"):  # fmt: skip
    """Posterior-mean intensity with its band, events as a rug, and optionally the true intensity.

    Parameters
    ----------
    ax : matplotlib axes
    save_ts : (time,) times of ``bands``.
    bands : dict from :func:`bayesode.infer.intensity_bands` (``mean, lower, upper``: (sequence, time, mark)).
    events : (event,) times to mark along the bottom, optional.
    sequence : which sequence to draw.
    mark : which mark; default the total over marks.
    truth : (time,) true intensity, optional.

    Returns
    -------
    ax
    """
    save_ts = np.asarray(save_ts)
    if bands["mean"].shape[1] != save_ts.size:
        raise ConfigError(f"`bands` hold {bands['mean'].shape[1]} times; `save_ts` has {save_ts.size}.")

    def pick(a):
        a = np.asarray(a)[sequence]
        return a.sum(-1) if mark is None else a[:, mark]

    if mark is None and bands["mean"].shape[-1] > 1 and "draws" in bands:
        total = np.asarray(bands["draws"])[:, sequence].sum(-1)  # a band of the total needs the draws
        q = np.quantile(total, [0.05, 0.95], axis=0)
        lower, upper = q[0], q[1]
    else:
        lower, upper = pick(bands["lower"]), pick(bands["upper"])
    ax.fill_between(save_ts, lower, upper, alpha=0.3, label="posterior band")
    ax.plot(save_ts, pick(bands["mean"]), lw=1.5, label=label)
    if truth is not None:
        ax.plot(save_ts, np.asarray(truth), "k--", lw=1, label="true intensity")
    if events is not None:
        ev = np.asarray(events)
        ax.plot(ev, np.zeros_like(ev), "|", color="k", ms=8, alpha=0.6, label="events")
    ax.set_xlabel("time")
    ax.set_ylabel("intensity")
    ax.legend(loc="upper right", fontsize="small")
    return ax


def plot_time_rescaling(ax, result):
    """Q-Q plot of ``1 - exp(-rescaled gaps)`` against Uniform(0, 1) with a 95% KS band.

    ``result`` from :func:`bayesode.diagnostics.time_rescaling_test`.
    """
    u = result.uniform
    n = u.size
    expected = (np.arange(1, n + 1) - 0.5) / n
    band = 1.36 / np.sqrt(n)  # the KS test's 5% critical value, large-n approximation
    ax.plot(expected, u, ".", ms=3, label="events")
    ax.plot([0, 1], [0, 1], "k-", lw=1)
    ax.fill_between([0, 1], [-band, 1 - band], [band, 1 + band], color="grey", alpha=0.2, label="95% KS band")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("uniform quantile")
    ax.set_ylabel("rescaled gap quantile")
    ax.set_title(f"time rescaling: KS p = {result.pvalue:.3g}")
    ax.legend(loc="upper left", fontsize="small")
    return ax
