"""Convergence judged in function space, and the plain-words situation of a multimodal fit.

The weights of a neural vector field are not identified (permuting hidden units or flipping
signs gives the same function), so R-hat on them reports symmetries, not sampling. What a user
believes is the function: the trajectories at the observed and forecast times and the vector
field itself. These quantities are invariant to permuting hidden units, so every number here is.

- within each group of chains (an ensemble member, or each chain of a plain run): R-hat
  (rank-normalised, split; ArviZ) and bulk ESS over the function-space quantities;
- between groups: which groups sit in the same mode (their means of every quantity within one
  posterior standard deviation of each other), the spread of the group means relative to the
  spread within a group, and the stacking weights where there are some;
- one plain-words situation: ``one mode that mixes``, ``one mode, not yet mixed``,
  ``several modes, weighted`` (an ensemble), ``chains in different modes`` (a plain run).

:func:`function_space_report` works on any :class:`~bayesode.Posterior`;
:func:`ensemble_report` on a :class:`~bayesode.infer.ensemble.Ensemble`.
"""

from __future__ import annotations

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from numpyro import handlers

from ..errors import ConfigError
from ..model import sample_field

__all__ = ["MODE_DISTANCE", "RHAT_MAX", "SITUATIONS", "ensemble_report", "field_on_points",
           "function_space_draws", "function_space_report", "mode_groups"]

RHAT_MAX = 1.01  # within a group (Vehtari et al. 2021)
# Two groups are in different modes if some function-space quantity's means differ by more than
# this many posterior standard deviations (within-group, pooled). One sd: far beyond Monte Carlo
# error for any ESS above ~10 (sd * sqrt(2 / ESS)), and a difference a user would see in a plot.
MODE_DISTANCE = 1.0
MAX_QUANTITIES = 400  # evenly spaced subset of the quantities' entries, to keep ArviZ fast
SITUATIONS = ("one mode that mixes", "one mode, not yet mixed", "several modes, weighted", "chains in different modes")


def field_on_points(post, points) -> np.ndarray:
    """The vector field of every draw at ``points`` (state space), time ``t_ref``.

    Returns (chain, draw, point, state).
    """
    post.require_model()
    spec = post.model.spec
    points = jnp.asarray(np.asarray(points, dtype=np.float64), dtype=jnp.zeros(()).dtype)
    if points.ndim != 2 or points.shape[1] != spec.state_dim:
        raise ConfigError(f"`points` must have shape (point, state) = (n, {spec.state_dim}); got {points.shape}.")

    def build():
        return sample_field(spec.field, spec.weight_prior, spec.param_priors)

    tr = handlers.trace(handlers.seed(build, 0)).get_trace()
    sites = [k for k, v in tr.items() if v["type"] == "sample"]
    flat = {k: jnp.asarray(np.asarray(post.samples[k]).reshape((-1,) + np.shape(post.samples[k])[2:])) for k in sites}

    def one(p):
        field = handlers.seed(handlers.substitute(build, data=p), 0)()
        return jax.vmap(lambda y: field(jnp.zeros((), points.dtype), y, spec.args))(points)

    out = np.asarray(jax.jit(jax.vmap(one))(flat), dtype=np.float64)
    return out.reshape((post.num_chains, post.num_draws) + out.shape[1:])


def _default_grid(post, size: int) -> np.ndarray:
    """``size`` points per state over the observed range (states observed directly only)."""
    ys = post.data.ys
    lo, hi = np.nanmin(ys, axis=(0, 1)), np.nanmax(ys, axis=(0, 1))
    axes = [np.linspace(a, b, size) for a, b in zip(lo, hi)]
    return np.stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")], axis=-1)


def function_space_draws(post, *, forecast_ts=None, grid=None, grid_size: int = 5) -> dict:
    """Function-space quantities of every draw, each (chain, draw, ...).

    ``trajectory``: the states at the observed times; ``forecast``: at ``forecast_ts`` (raw
    times, optional); ``field``: the vector field on ``grid`` ((point, state); default
    ``grid_size`` points per state over the data's range, when the model observes its states
    directly; an empty grid leaves the field out).
    """
    out = {"trajectory": np.asarray(post.fitted()["trajectory"])}
    if forecast_ts is not None:
        # Only the noise-free trajectory is read: the key seeds the noisy draws, which are discarded.
        forecast = post.predict(np.asarray(forecast_ts, dtype=np.float64), key=0)
        out["forecast"] = np.asarray(forecast["trajectory"].values)
    spec = post.model.spec
    if grid is None and spec.observation_fn is None:
        grid = _default_grid(post, grid_size)
    if grid is not None and len(grid):
        out["field"] = field_on_points(post, grid)
    return out


def _columns(quantities: dict) -> np.ndarray:
    """(chain, draw, column): every quantity flattened, at most MAX_QUANTITIES columns, finite
    and non-constant ones only (a fixed y0 makes the first trajectory point constant)."""
    cols = np.concatenate([q.reshape(q.shape[:2] + (-1,)) for q in quantities.values()], axis=2)
    keep = np.all(np.isfinite(cols), axis=(0, 1)) & (np.ptp(cols, axis=(0, 1)) > 0)
    cols = cols[:, :, keep]
    if cols.shape[2] > MAX_QUANTITIES:
        cols = cols[:, :, np.unique(np.linspace(0, cols.shape[2] - 1, MAX_QUANTITIES).round().astype(int))]
    return cols


def _rhat_ess(cols: np.ndarray) -> tuple[float, float]:
    """Max R-hat and min bulk ESS over columns of (chain, draw, column); split R-hat with one chain."""
    if cols.shape[2] == 0 or cols.shape[1] < 4:
        return float("nan"), float("nan")
    if cols.shape[0] == 1:  # ArviZ needs two chains: the halves of the one chain (split R-hat)
        half = cols.shape[1] // 2
        cols = np.stack([cols[0, :half], cols[0, half : 2 * half]])
    ds = xr.Dataset({"value": (("chain", "draw", "quantity"), cols)})
    rhat = np.asarray(az.rhat(ds)["value"].values)
    ess = np.asarray(az.ess(ds, method="bulk")["value"].values)
    return float(np.nanmax(rhat)), float(np.nanmin(ess))


def mode_groups(cols: np.ndarray, groups) -> list[list[int]]:
    """Groups (by label) in the same mode, as connected components of "means within
    ``MODE_DISTANCE`` pooled within-group sds on every column". ``cols``: (chain, draw, column)."""
    groups = np.asarray(groups)
    labels = list(np.unique(groups))
    means = np.stack([cols[groups == g].mean(axis=(0, 1)) for g in labels])  # (group, column)
    var = np.stack([cols[groups == g].var(axis=(0, 1)) for g in labels])
    parent = list(range(len(labels)))

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for a in range(len(labels)):
        for b in range(a + 1, len(labels)):
            sd = np.sqrt((var[a] + var[b]) / 2)
            distance = np.abs(means[a] - means[b]) / np.where(sd > 0, sd, np.inf)
            if np.max(distance, initial=0.0) <= MODE_DISTANCE:
                parent[root(b)] = root(a)
    modes: dict[int, list[int]] = {}
    for i, g in enumerate(labels):
        modes.setdefault(root(i), []).append(int(g))
    return sorted(modes.values())


def _spread(cols: np.ndarray, groups, weights) -> float:
    """Median over columns of (weighted sd of group means) / (mean within-group sd)."""
    labels = np.unique(groups)
    if labels.size < 2:
        return 0.0
    means = np.stack([cols[groups == g].mean(axis=(0, 1)) for g in labels])
    within = np.sqrt(np.mean([cols[groups == g].var(axis=(0, 1)) for g in labels], axis=0))
    w = np.full(labels.size, 1 / labels.size) if weights is None else np.asarray(weights)
    centre = w @ means
    between = np.sqrt(w @ (means - centre) ** 2)
    return float(np.median(between / np.where(within > 0, within, np.inf)))


def _fmt_groups(modes, noun) -> str:
    return "; ".join(f"{noun}s {', '.join(map(str, m))}" if len(m) > 1 else f"{noun} {m[0]}" for m in modes)


def function_space_report(post, *, groups=None, weights=None, dropped=(), forecast_ts=None, grid=None,
                          quantities=None, independent: bool = False) -> dict:
    """Within-group convergence and between-group modes in function space, in numbers and words.

    Parameters
    ----------
    post : Posterior with at least 4 draws per chain.
    groups : (chain,) group label of each chain (ensemble members); default each chain its own.
    weights : (group,) stacking weights, or None for a plain run (then several modes are
        reported as "chains in different modes": their equal pooling is not a posterior).
    dropped : records of starts that were dropped (``start`` and ``reason``), reported as such.
    forecast_ts, grid : see :func:`function_space_draws`.
    quantities : the output of :func:`function_space_draws`, if already computed (then
        ``forecast_ts`` and ``grid`` are not used).
    independent : the draws within each group are independent (a Laplace mixture's), not a
        Markov chain: within-group R-hat is still computed but judges nothing, so it adds no words.

    Returns
    -------
    dict with ``situation`` (one of :data:`SITUATIONS`), ``message`` (plain words),
    ``within`` (per group: ``rhat_max``, ``ess_bulk_min``), ``rhat_within_max``, ``modes``
    (lists of group labels), ``spread`` (between-group / within-group spread, median over
    quantities), ``weights``, ``dropped``.
    """
    groups = np.arange(post.num_chains) if groups is None else np.asarray(groups)
    if groups.shape != (post.num_chains,):
        raise ConfigError(f"`groups` must give one label per chain ({post.num_chains}); got shape {groups.shape}.")
    if quantities is None:
        quantities = function_space_draws(post, forecast_ts=forecast_ts, grid=grid)
    cols = _columns(quantities)
    labels = np.unique(groups)
    within = {int(g): dict(zip(("rhat_max", "ess_bulk_min"), _rhat_ess(cols[groups == g]))) for g in labels}
    rhat_within = max(v["rhat_max"] for v in within.values())
    modes = mode_groups(cols, groups)
    spread = _spread(cols, groups, weights)
    noun = "member" if weights is not None else "chain"
    lines = []
    if len(modes) == 1:
        mixed = independent or rhat_within <= RHAT_MAX
        situation = SITUATIONS[0] if mixed else SITUATIONS[1]
        who = f"all {labels.size} {noun}s agree" if labels.size > 1 else f"the one {noun}"
        if independent:
            lines.append(f"{situation}: {who} on the trajectories and the vector field (independent draws).")
        else:
            lines.append(f"{situation}: {who} on the trajectories and the vector field (function-space R-hat within "
                         f"{noun}s {rhat_within:.3f}{' <= ' if mixed else ' > '}{RHAT_MAX})"
                         + ("." if mixed else "; run longer before trusting intervals."))  # fmt: skip
    elif weights is not None:
        situation = SITUATIONS[2]
        w = np.asarray(weights)
        mass = [float(sum(w[list(labels).index(g)] for g in m)) for m in modes]
        parts = "; ".join(f"{_fmt_groups([m], noun)} weight {p:.2f}" for m, p in zip(modes, mass))
        lines.append(f"{situation}: the {labels.size} members sit in {len(modes)} distinct modes (functions that "
                     f"differ by more than their own spread; between/within spread {spread:.1f}). {'Weights' if independent else 'Stacking weights'} "
                     f"by mode: {parts}. The pooled posterior mixes them in these proportions.")  # fmt: skip
    else:
        situation = SITUATIONS[3]
        lines.append(f"{situation}: the {labels.size} chains sit in {len(modes)} different modes "
                     f"({_fmt_groups(modes, 'chain')}): the trajectories they give differ by more than their own "
                     f"spread (between/within {spread:.1f}), so R-hat across chains reports the modes, not slow "
                     "mixing. Pooling the chains with equal weight is not a posterior estimate; use "
                     "bayesode.fit_full_weight (members weighted by stacking), or keep one mode.")  # fmt: skip
    if len(modes) > 1 and rhat_within > RHAT_MAX and not independent:
        worst = [g for g, v in within.items() if v["rhat_max"] > RHAT_MAX]
        lines.append(f"Within {_fmt_groups([worst], noun)} the function-space R-hat exceeds {RHAT_MAX} (max "
                     f"{rhat_within:.3f}): not mixed inside its own mode; run longer.")  # fmt: skip
    for d in dropped:
        lines.append(f"Start {d['start']} was dropped: {d['reason']}.")
    return {
        "situation": situation,
        "message": " ".join(lines),
        "within": within,
        "rhat_within_max": rhat_within,
        "modes": modes,
        "spread": spread,
        "weights": None if weights is None else np.asarray(weights).tolist(),
        "dropped": list(dropped),
    }


def ensemble_report(ens, *, forecast_ts=None, grid=None) -> dict:
    """:func:`function_space_report` of an ensemble's members, grouped by member, with weights."""
    dropped = [s for s in ens.starts if not s["kept"]]
    return function_space_report(ens.members, groups=ens.member_of_chain, weights=ens.weights, dropped=dropped,
                                 forecast_ts=forecast_ts, grid=grid,
                                 independent=ens.pooled.settings.get("method") == "laplace-mixture")  # fmt: skip
