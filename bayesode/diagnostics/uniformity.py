"""Uniformity of SBC ranks: the result object, a chi-square test over bins and simultaneous ECDF bands.

Tests come from the libraries that keep them: ``scipy.stats.chisquare`` and ArviZ's ECDF
confidence bands (Säilynoja, Bürkner and Vehtari 2022).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from arviz.stats.ecdf_utils import ecdf_confidence_band
from scipy import stats

from ..checks import positive_int
from ..errors import ConfigError


@dataclass(frozen=True, eq=False)
class SBCResult:
    """Ranks, uniformity tests and per-replication diagnostics of :func:`sbc`.

    Attributes
    ----------
    quantities : tuple of str
        Scalar quantities tested, e.g. ``k``, ``y0[0,0]``, ``trajectory[0,5,0]``.
    ranks : dict of str to (replication,) int arrays
        Number of kept posterior draws below the true value (0 .. ``num_draws``).
    pit : dict of str to (replication,) float arrays
        Randomised fractional ranks in (0, 1); uniform under calibration.
    truths : dict of str to (replication,) float arrays
        The prior draws the data were simulated from.
    num_draws : (replication,) int array
        Kept (thinned) draws per replication.
    diagnostics : list of dict
        Per replication: ``rhat_max``, ``ess_bulk_min``, ``ess_tail_min`` (over the
        tested quantities), ``divergences``, ``ebfmi_min``, ``thin``, ``num_draws``,
        ``solver_failures`` (None unless counted), ``simulation_attempts``, ``wall_time_s``.
    num_bins : int
        Bins of the chi-square test.
    chi2, p_values : dict of str to float
        Chi-square statistic over ``num_bins`` equal bins of ``pit`` (``num_bins - 1``
        degrees of freedom) and its p-value, per quantity.
    """

    quantities: tuple[str, ...]
    ranks: dict
    pit: dict
    truths: dict
    num_draws: np.ndarray
    diagnostics: list
    num_bins: int
    chi2: dict
    p_values: dict

    @property
    def num_replications(self) -> int:
        return int(self.num_draws.size)

    def histogram(self, name: str) -> np.ndarray:
        """(num_bins,) counts of ``pit[name]`` in equal bins of (0, 1)."""
        return _bin_counts(self.pit[name], self.num_bins)

    def ecdf_inside(self, *, alpha: float = 0.05, num_points: int | None = None) -> dict:
        """Per quantity: True if the ECDF difference stays inside simultaneous ``1 - alpha`` bands."""
        z, lower, upper = ecdf_bands(self.num_replications, alpha=alpha, num_points=num_points)
        out = {}
        for name, u in self.pit.items():
            diff = np.mean(u[:, None] <= z[None, :], axis=0) - z
            out[name] = bool(np.all((diff >= lower) & (diff <= upper)))
        return out

    def worst_diagnostics(self) -> dict:
        """Worst value of each diagnostic across replications (for gating a test)."""
        d = self.diagnostics
        return {
            "rhat_max": max(x["rhat_max"] for x in d),
            "ess_bulk_min": min(x["ess_bulk_min"] for x in d),
            "ess_tail_min": min(x["ess_tail_min"] for x in d),
            "divergences": sum(x["divergences"] for x in d),
            "ebfmi_min": min(x["ebfmi_min"] for x in d),
            "num_draws_min": int(self.num_draws.min()),
        }


def chi2_uniformity(pit: np.ndarray, num_bins: int) -> tuple[float, float]:
    """Chi-square test that ``pit`` (values in (0, 1)) is uniform: ``(statistic, p_value)``.

    Examples
    --------
    >>> u = np.random.default_rng(0).uniform(size=200)
    >>> stat, p = chi2_uniformity(u, 10)
    >>> p > 0.01
    True
    """
    result = stats.chisquare(_bin_counts(pit, num_bins))  # equal expected counts: uniform
    return float(result.statistic), float(result.pvalue)


def ecdf_bands(
    num_replications: int, *, alpha: float = 0.05, num_points: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simultaneous ``1 - alpha`` bands for the ECDF difference ``F(z) - z`` of uniform draws.

    Säilynoja, Bürkner and Vehtari (2022), through ArviZ's
    ``arviz.stats.ecdf_utils.ecdf_confidence_band`` (its "optimized" method: the pointwise
    level is found by optimisation, not simulation, so nothing random is drawn).

    Returns
    -------
    z : (num_points - 1,) evaluation points in (0, 1); ``num_points`` default ``min(n, 100)``
    lower, upper : (num_points - 1,) band for ``F(z) - z``

    Examples
    --------
    >>> z, lower, upper = ecdf_bands(100)
    >>> bool(np.all(lower < 0) and np.all(upper > 0))
    True
    """
    n = positive_int("num_replications", num_replications)
    if not 0 < alpha < 1:
        raise ConfigError(f"`alpha` must be in (0, 1), e.g. 0.05; got {alpha!r}.")
    k = num_points or min(n, 100)
    z = np.arange(1, k) / k
    lower, upper = ecdf_confidence_band(n, z, z, prob=1 - alpha, method="optimized")
    return z, lower - z, upper - z


def _bin_counts(pit, num_bins):
    idx = np.minimum((np.asarray(pit) * num_bins).astype(int), num_bins - 1)
    return np.bincount(idx, minlength=num_bins)
