"""Plots in the plane of two states: the phase portrait and the learned vector field.

Conventions as in :mod:`bayesode.plots.core` (take ``ax``, return it; names and units on the axes).
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..results import field_draws, model_state_names, series_indices, series_predictions
from .core import LEGEND_SIZE, TITLE_SIZE, label, one_panel


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


def state_label(data, names, i):
    """Axis label of state ``i``: its name, with the data's unit for it when the states are observed directly."""
    units = getattr(data, "state_units", None)
    unit = units[i] if units and tuple(names) == tuple(data.state_names) else None
    return label(names[i], unit)


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
        Times along each trajectory (``until`` past the data shows the forecast orbit);
        dates for data with dates, and the title then names the first and last date.
    num_draws : int
        Number of posterior draws drawn as thin lines, spread evenly over all
        draws whose solve succeeded (default 50).
    ax : matplotlib Axes, optional
    key : PRNG key or int seed (required, keyword-only)
        Seed of the predictive draws (as in :func:`plot_trajectories`).

    Returns
    -------
    The Axes. It holds ``min(num_draws, successful draws)`` trajectory lines, then
    one line of data points (joined in time order) when the states are
    observed directly; a marker shows each trajectory's start.

    Examples
    --------
    >>> ax = plot_phase(post, x="hare", y="lynx", key=0)  # doctest: +SKIP
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
    ax = one_panel(ax)
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
    ax.set_xlabel(state_label(d, names, xi))
    ax.set_ylabel(state_label(d, names, yi))
    title = "phase portrait" + (f", series {d.series_names[s]}" if d.num_series > 1 else "")
    if d.time_origin is not None:  # time is not on an axis here: the title says which dates the orbit covers
        first, last = np.datetime_as_string(d.to_dates(p["ts"][[0, -1]]), unit="D")
        title += f"\n{first} to {last}"
    if ok.size < traj.shape[0]:
        title += f" ({traj.shape[0] - ok.size} draws failed to solve)"
    ax.set_title(title, fontsize=TITLE_SIZE)
    if spec.observation_fn is None:
        ax.legend(fontsize=LEGEND_SIZE, loc="best")
    return ax


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
    The Axes. It holds a ``QuadMesh`` of the spread (``grid x grid``; a colour
    bar is added to its figure), the streamlines (a ``LineCollection`` and arrow
    patches) and, with ``data``, one line of data points.

    Examples
    --------
    >>> ax = plot_vector_field(post, x="hare", y="lynx")  # doctest: +SKIP
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
    ax = one_panel(ax, size=(7.0, 5.5))
    mesh = ax.pcolormesh(X, Y, np.ma.masked_invalid(S), shading="nearest", cmap=cmap)
    label = "posterior sd / mean speed" if relative else f"posterior sd of (d{names[xi]}/dt, d{names[yi]}/dt)"
    ax.figure.colorbar(mesh, ax=ax, label=label)
    ax.streamplot(gx, gy, np.ma.masked_invalid(U), np.ma.masked_invalid(V), color="w", linewidth=0.8, density=1.0)
    if data and spec.observation_fn is None:
        m = np.isfinite(states[:, xi]) & np.isfinite(states[:, yi])
        ax.plot(states[m, xi], states[m, yi], "o", color="C1", mec="k", ms=4, label="data")
        ax.legend(fontsize=LEGEND_SIZE, loc="upper right")
    ax.set_xlim(xlim)
    ax.set_ylim(ylim)
    ax.set_xlabel(state_label(d, names, xi))
    ax.set_ylabel(state_label(d, names, yi))
    ax.set_title(f"posterior-mean field ({f.shape[0]} draws)", fontsize=TITLE_SIZE)
    return ax
