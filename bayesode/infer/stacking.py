"""Stacking of non-mixing members (Yao, Vehtari & Gelman, JMLR 2022, "Stacking for non-mixing
Bayesian computations").

A full-weight neural ODE posterior has modes no sampler crosses. Each member (one or more
chains started from one optimised point) samples its own mode; stacking then weights the
members by how well each predicts held-out points:

    w = argmax_{w in simplex} sum_i log sum_k w_k p_k(y_i | y_-i),

with ``p_k(y_i | y_-i)`` estimated from member ``k``'s draws by PSIS-LOO (ArviZ's
``az.loo``), or, where the question is forecasting, by approximate leave-future-out
(PSIS-LFO, Buerkner, Gabry & Vehtari 2020): each point is predicted from the observations
strictly before its time, by importance-weighting the member's draws with
``1 / p(y_{>=t_i} | theta)``, Pareto-smoothed; no refits.

The objective is concave in ``w``; it is maximised over softmax logits by L-BFGS with its exact
gradient, from equal weights.
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp, softmax

from ..errors import ConfigError, DataError

__all__ = ["PARETO_K_MAX", "pareto_k_threshold", "pointwise_lfo", "pointwise_loo", "stacking_weights"]

# Above this Pareto k the importance-sampling estimate of a point's predictive density is unreliable
# at any number of draws (Vehtari et al. 2024, "Pareto smoothed importance sampling"); with fewer
# draws the bound is lower (:func:`pareto_k_threshold`). Such points are counted and reported.
PARETO_K_MAX = 0.7


def pareto_k_threshold(num_draws: int) -> float:
    """The Pareto k below which a PSIS estimate from ``num_draws`` draws is reliable:
    ``min(1 - 1 / log10(S), 0.7)`` (Vehtari et al. 2024, section 3); 0.54 at 150 draws, 0.7 from
    about 2,200. ArviZ's ``az.loo`` warns on the same bound."""
    if num_draws < 10:
        return 0.0  # 1 - 1/log10(S) <= 0: no tail estimate from so few draws is trusted
    return float(min(1.0 - 1.0 / np.log10(num_draws), PARETO_K_MAX))


def _check_log_lik(log_lik) -> np.ndarray:
    ll = np.asarray(log_lik, dtype=np.float64)
    if ll.ndim != 3 or min(ll.shape) < 1:
        raise DataError(f"`log_lik` must have shape (chain, draw, point); got {ll.shape}.")
    return ll


def pointwise_loo(log_lik) -> tuple[np.ndarray, np.ndarray]:
    """PSIS-LOO log predictive density of each point under one member, through ``az.loo``.

    Parameters
    ----------
    log_lik : (chain, draw, point) array
        Pointwise log likelihood of the member's draws (its chains only).

    Returns
    -------
    loo_i : (point,) ``log p(y_i | y_-i)``.
    pareto_k : (point,) Pareto shape of each point's importance weights (reliable below
        ``pareto_k_threshold(chain * draw)``).
    """
    ll = _check_log_lik(log_lik)
    idata = az.from_dict(log_likelihood={"obs": ll})
    # Relative efficiency as az.loo takes it from a posterior group (absent here): the mean
    # ESS over draws of the pointwise log likelihood, per draw.
    reff = float(np.mean(az.ess(idata.log_likelihood, method="mean")["obs"].values)) / (ll.shape[0] * ll.shape[1])
    with warnings.catch_warnings():
        # ArviZ warns on large Pareto k; the caller gets k itself and reports it.
        warnings.simplefilter("ignore")
        res = az.loo(idata, pointwise=True, reff=min(reff, 1.0))
    return np.asarray(res.loo_i.values), np.asarray(res.pareto_k.values)


def pointwise_lfo(log_lik, point_times, *, start) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Approximate leave-future-out log predictive density of the points at or after ``start``.

    Point ``i`` (time ``t_i >= start``) is predicted from the points strictly before ``t_i``:
    the member's draws (conditioned on all points) are importance-weighted by
    ``1 / p(y_j, t_j >= t_i | theta)``, Pareto-smoothed (``az.psislw``). All points at one time
    are predicted together, as a forecast from the past would be.

    Parameters
    ----------
    log_lik : (chain, draw, point) array
    point_times : (point,) time of each point.
    start : float
        First time that is predicted; at least one point must lie before it.

    Returns
    -------
    lfo_i : (future,) ``log p(y_i | y_{t < t_i})`` of each predicted point.
    pareto_k : (future,) Pareto shape of the weights used for each point.
    index : (future,) positions of the predicted points in ``point``.
    """
    ll = _check_log_lik(log_lik)
    times = np.asarray(point_times, dtype=np.float64)
    if times.shape != ll.shape[2:]:
        raise DataError(f"`point_times` has shape {times.shape}; expected ({ll.shape[2]},) to match `log_lik`.")
    index = np.flatnonzero(times >= start)
    if index.size == 0 or index.size == times.size:
        raise ConfigError(
            f"`start`={start!r} must leave points on both sides (times run from {times.min()} to {times.max()})."
        )
    flat = ll.reshape(-1, ll.shape[2])  # (sample, point)
    lfo = np.empty(index.size)
    k = np.empty(index.size)
    for t in np.unique(times[index]):
        future = times >= t
        lw, kt = az.psislw(-flat[:, future].sum(axis=1), reff=1.0)
        at = np.flatnonzero(times[index] == t)
        lfo[at] = logsumexp(lw[:, None] + flat[:, index[at]], axis=0)
        k[at] = float(kt)
    return lfo, k, index


def stacking_weights(lpd) -> np.ndarray:
    """Stacking weights: ``argmax_{w in simplex} sum_i log sum_k w_k exp(lpd[i, k])``.

    Parameters
    ----------
    lpd : (point, member) array
        Log predictive density of each held-out point under each member (``pointwise_loo``
        or ``pointwise_lfo``). ``-inf`` entries are allowed (a member that gives a point no
        density); a row that is ``-inf`` for every member is an error.

    Returns
    -------
    (member,) weights, non-negative, summing to one. With one member: ``[1.0]``.

    Examples
    --------
    >>> import numpy as np
    >>> w = stacking_weights(np.log([[0.9, 0.1], [0.1, 0.9], [0.9, 0.1]]))
    >>> bool(w[0] > w[1])
    True
    """
    lpd = np.asarray(lpd, dtype=np.float64)
    if lpd.ndim != 2 or lpd.shape[0] < 1 or lpd.shape[1] < 1:
        raise DataError(f"`lpd` must have shape (point, member); got {lpd.shape}.")
    if np.isnan(lpd).any() or np.isposinf(lpd).any():
        raise DataError("`lpd` holds NaN or +inf; every entry must be a log density or -inf.")
    if not np.isfinite(lpd).any(axis=1).all():
        raise DataError("some point has log density -inf under every member: no weights can predict it.")
    num_members = lpd.shape[1]
    if num_members == 1:
        return np.ones(1)
    # Shift each row by its max: the objective changes by a constant and exp cannot overflow.
    dens = np.exp(lpd - lpd.max(axis=1, keepdims=True))  # (point, member)

    def negative_objective(logits):
        w = softmax(logits)
        mix = dens @ w  # (point,)
        grad_w = dens / mix[:, None]  # d/dw_k of sum_i log mix_i, per point
        g = grad_w.sum(axis=0)
        # Chain rule through softmax: d w_k / d a_j = w_k (delta_kj - w_j).
        return -np.sum(np.log(mix)), -(w * g - w * (w @ g))

    res = minimize(negative_objective, np.zeros(num_members), jac=True, method="L-BFGS-B",
                   options={"maxiter": 1000, "gtol": 1e-10})  # fmt: skip
    return softmax(res.x)
