"""Goodness of fit of a point-process model by the time-rescaling theorem.

If events come from a process with compensator ``Lambda``, the increments
``Lambda(t_i) - Lambda(t_{i-1})`` (from ``t0`` for the first event) are independent
Exp(1) draws (Brown et al. 2002, "The time-rescaling theorem and its application to
neural spike train data analysis"). A Kolmogorov-Smirnov test of the pooled increments
against Exp(1) (``scipy.stats.kstest``) rejects an intensity that is too high, too
low or shaped wrongly. The increments come from
:func:`bayesode.solving.solve_event_jumps` (``EventJumpSolution.increments``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from ..errors import DataError

__all__ = ["TimeRescalingResult", "posterior_time_rescaling", "time_rescaling_test"]


@dataclass(frozen=True)
class TimeRescalingResult:
    """``increments`` (n,) pooled rescaled gaps (real events only); ``statistic`` and ``pvalue`` of the
    KS test against Exp(1); ``uniform`` (n,) = ``1 - exp(-increments)``, Uniform(0, 1) under the model
    (sorted, for a Q-Q plot against ``(k - 0.5) / n``)."""

    increments: np.ndarray
    statistic: float
    pvalue: float

    @property
    def uniform(self) -> np.ndarray:
        return np.sort(1.0 - np.exp(-self.increments))

    def __str__(self) -> str:
        verdict = "consistent with the model" if self.pvalue >= 0.05 else "NOT consistent with the model"
        return (
            f"time-rescaling KS test: {self.increments.size} events, D = {self.statistic:.4f}, "
            f"p = {self.pvalue:.3g} ({verdict} at the 5% level)"
        )


def time_rescaling_test(increments, mask=None) -> TimeRescalingResult:
    """KS test of compensator increments against Exp(1).

    Parameters
    ----------
    increments : array (any shape, e.g. (sequence, event))
        ``Lambda(t_i) - Lambda(t_{i-1})`` for each event. With posterior draws, pass the
        posterior mean of the compensator increments (a leading draw axis is not
        averaged for you).
    mask : bool array like ``increments``, optional
        False on padding.

    Examples
    --------
    >>> import numpy as np
    >>> gaps = np.random.default_rng(1).exponential(size=500)  # the right intensity: Exp(1) gaps
    >>> time_rescaling_test(gaps).pvalue > 0.05  # (a 5% test: 1 seed in 20 rejects, e.g. seed 0)
    True
    >>> time_rescaling_test(2 * gaps).pvalue < 1e-6
    True
    """
    inc = np.asarray(increments, dtype=np.float64)
    mask = np.ones(inc.shape, bool) if mask is None else np.asarray(mask, bool)
    if mask.shape != inc.shape:
        raise DataError(f"`mask` must have the shape of `increments` {inc.shape}; got {mask.shape}.")
    inc = inc[mask]
    if inc.size < 2:
        raise DataError(f"`increments` holds {inc.size} events; the KS test needs at least 2.")
    if not np.all(np.isfinite(inc)) or np.any(inc < 0):
        raise DataError("`increments` must be finite and non-negative (a compensator only grows); got "
                        f"min {np.nanmin(inc)}, {int(np.sum(~np.isfinite(inc)))} non-finite.")  # fmt: skip
    res = stats.kstest(inc, "expon")
    return TimeRescalingResult(increments=inc, statistic=float(res.statistic), pvalue=float(res.pvalue))


def posterior_time_rescaling(fit, events=None, *, num_draws: int | None = 200) -> TimeRescalingResult:
    """Time-rescaling test of a fitted point-process model (:func:`bayesode.infer.fit_events`).

    Uses the posterior mean of each compensator increment (over ``num_draws`` evenly thinned
    draws) on ``events`` (default the training data; pass held-out events for an honest check).
    """
    from ..infer import solve_draws

    events = fit.events if events is None else events
    increments = np.asarray(solve_draws(fit, events, num_draws=num_draws).increments).mean(axis=0)
    return time_rescaling_test(increments, events.mask)
