"""A Laplace approximation of the jump filter's posterior over every weight: a Gaussian at the MAP.

``weights ~ Normal(w_MAP, (G + alpha I)^-1)``

- ``G`` is the generalised Gauss-Newton matrix of the one-step Gaussian likelihood at the MAP:
  ``sum_i J_mean,i^T J_mean,i / sd_i^2 + 2 J_sd,i^T J_sd,i / sd_i^2`` over every observed entry
  (the Fisher information of ``Normal(mean, sd)`` pulled back through the net). Unlike the
  Hessian it is positive semi-definite anywhere, so the Gaussian exists even where the MAP
  is not an exact optimum (MacKay 1992; Immer, Korzepa & Bauer 2021; Daxberger et al. 2021,
  "Laplace Redux"). The Jacobians are forward-mode (``diffrax.ForwardMode``), one series at a
  time: memory of one series times the number of weights ``P``; cost ``P`` forward solves.
- ``alpha``, the prior precision, is chosen after the fit (post-hoc tuning, as Laplace Redux
  does, there on validation data). A Gaussian whose draws go through the nonlinear net
  forecasts worse and wider the smaller ``alpha`` is; the Laplace marginal likelihood picks
  too small a one for such a predictive, and bands calibrated on the fitted observations
  themselves collapse to the MAP's, which cover too little of new data (both measured:
  docs/decisions.md, 2026-12-06 evening). The default rule holds data out: a MAP fitted without
  every fifth series (or, with fewer than 5 series, without the last 20% of each one's
  observations; :func:`tuning_split`), and the smallest ``alpha`` (widest posterior) whose
  one-step 90% bands cover no more than 90% of those held-out observations, by bisection in
  ``log alpha`` with the same normal draws throughout. The final Gaussian sits at the MAP of all
  the data with that ``alpha``.

The draws are weights like any other posterior's: forecasts, bands, LOO and online
filtering use them unchanged.
"""

from __future__ import annotations

import dataclasses

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ..model import net_from_draw
from ..results.jump_filter import one_step_mixture, one_step_per_draw
from ..solving import filter_observations

ALPHA_SPAN = 1e6  # the search runs from the weight prior's precision to this many times it
BISECTIONS = 10  # steps in log alpha: 1e6 span / 2^10 leaves a factor of about 1.4
TUNING_DRAWS = 50  # draws the coverage is measured with at each alpha
MIN_SERIES_FOR_SERIES_SPLIT = 5  # from this many series, whole series are held out to tune on


def gauss_newton(net, centre: dict, ts, ys, mask, config) -> np.ndarray:
    """The (P, P) generalised Gauss-Newton matrix (float64) of the one-step likelihood at ``centre``.

    ``centre``: site -> weight array (the MAP); P is their total size, in ``ravel_pytree``'s order
    of ``centre``. ``ts`` (series, obs), ``ys`` and ``mask`` (series, obs, D) as the model takes
    them. An observation whose solve failed contributes nothing.
    """
    forward = dataclasses.replace(config, adjoint=diffrax.ForwardMode())  # jacfwd through the solves
    return np.asarray(_gauss_newton(net, centre, jnp.asarray(ts), jnp.asarray(ys), jnp.asarray(mask), forward),
                      dtype=np.float64)  # fmt: skip


@eqx.filter_jit  # compiled once per net structure, data shapes and config
def _gauss_newton(net, centre, ts, ys, mask, config):
    flat, unravel = ravel_pytree(centre)

    def one_series(t, y, m):
        def mean_sd(v):
            n = net_from_draw(net, unravel(v))
            f = filter_observations(n, t, y, m, config=config)
            return (jax.vmap(n.readout)(f.h_before), jax.vmap(n.forecast_sd)(f.h_before)), f.status

        mean_jac, sd_jac = jax.jacfwd(lambda v: mean_sd(v)[0])(flat)  # each (obs, D, P)
        (_, sd), status = mean_sd(flat)
        weight = jnp.where(m & (status == 0)[:, None], 1.0 / sd**2, 0.0)  # (obs, D)
        mean_jac = jnp.where(weight[..., None] > 0, mean_jac, 0.0)  # a failed solve's NaNs stay out
        sd_jac = jnp.where(weight[..., None] > 0, sd_jac, 0.0)
        return (jnp.einsum("odp,od,odq->pq", mean_jac, weight, mean_jac)
                + jnp.einsum("odp,od,odq->pq", sd_jac, 2.0 * weight, sd_jac))  # fmt: skip

    def body(acc, series):
        return acc + one_series(*series), None

    return jax.lax.scan(body, jnp.zeros((flat.size, flat.size), flat.dtype), (ts, ys, mask))[0]


class LaplaceGaussian:
    """``Normal(centre, (G + alpha I)^-1)`` for any ``alpha > 0``, from one eigendecomposition of ``G``.

    ``centre``: site -> array; ``ggn``: (P, P) from :func:`gauss_newton`. ``draws(alpha, z)`` maps
    standard normal ``z`` (n, P) to weight draws (site -> (n, ...)), so draws at different ``alpha``
    share their randomness.
    """

    def __init__(self, centre: dict, ggn: np.ndarray):
        flat, self._unravel = ravel_pytree(centre)
        self.centre = np.asarray(flat, np.float64)
        self.size = self.centre.size
        eigenvalues, self._vectors = np.linalg.eigh((ggn + ggn.T) / 2)
        self.eigenvalues = np.maximum(eigenvalues, 0.0)  # round-off makes the null space slightly negative
        self._dtype = flat.dtype

    def draws(self, alpha: float, z) -> dict:
        z = np.asarray(z, np.float64)
        offsets = ((z @ self._vectors) / np.sqrt(self.eigenvalues + alpha)) @ self._vectors.T
        flat = jnp.asarray(self.centre[None] + offsets, self._dtype)
        return jax.vmap(self._unravel)(flat)


def one_step_coverage(net, draws: dict, ts, ys, mask, config, prob: float, scored=None) -> tuple[float, np.ndarray]:
    """Share of the ``scored`` entries (default: every observed entry but each series' first observation,
    forecast from nothing) inside the central ``prob`` band of the draws' one-step predictive mixture
    (:func:`~bayesode.results.jump_filter.one_step_mixture`), and which draws had a failed solve on a real
    observation ((draws,) bool; left out of the mixture); NaN when all did."""
    _, lower, upper, failed = one_step_mixture(net, draws, ts, ys, mask, config, prob)
    if failed.all():
        return float("nan"), failed
    if scored is None:
        scored = np.asarray(mask).copy()
        scored[:, 0] = False
    y = np.asarray(ys)
    inside = (lower <= y) & (y <= upper)
    return float(inside[scored].mean()), failed


def failed_draws(net, draws: dict, ts, ys, mask, config) -> np.ndarray:
    """(draws,) bool: which draws had a failed solve on a real observation of the data."""
    return np.asarray(one_step_per_draw(net, draws, jnp.asarray(ts), jnp.asarray(ys), jnp.asarray(mask), config)[2])


def tuning_split(mask, lengths, share: float = 0.2):
    """Observations held out to tune on: ``(fit mask, scored mask)``, both (series, obs, D) bool.

    With at least :data:`MIN_SERIES_FOR_SERIES_SPLIT` series, every fifth series (share 0.2; the 5th,
    10th, ...) is held out whole, each observation but its first scored: new series forecast from
    their own past, as held-out data would be. With fewer, the last ``share`` of each series'
    observations (rounded up; none of a one-observation series) are scored; the filter still sees
    them in order, so each is forecast from every observation before it.
    """
    mask = np.asarray(mask, bool)
    lengths = np.asarray(lengths)
    rows = np.arange(mask.shape[1])[None, :]
    if lengths.size >= MIN_SERIES_FOR_SERIES_SPLIT:
        every = int(round(1 / share))
        held_series = (np.arange(lengths.size) % every == every - 1)[:, None, None]  # (series, 1, 1)
        return mask & ~held_series, mask & held_series & (rows > 0)[..., None]
    cut = lengths[:, None] - np.where(lengths > 1, np.ceil(share * lengths), 0).astype(int)[:, None]
    later = (rows >= cut)[..., None] & mask
    return mask & ~later, later


def tune_prior_precision(gaussian: LaplaceGaussian, coverage_of, alpha_min: float, key, prob: float) -> dict:
    """The smallest ``alpha`` in ``[alpha_min, alpha_min * ALPHA_SPAN]`` whose draws' one-step bands cover
    no more than ``prob`` of the held-out observations ``coverage_of(draws) -> (coverage, failed)`` scores.

    Bisection in ``log alpha``, the same :data:`TUNING_DRAWS` normal draws at every step (coverage then
    falls with ``alpha`` but for noise). Returns ``alpha`` and every tried ``(alpha, coverage)``.
    """
    z = np.asarray(jax.random.normal(key, (TUNING_DRAWS, gaussian.size)))
    tried = []

    def coverage(alpha):
        c, _ = coverage_of(gaussian.draws(alpha, z))
        tried.append((float(alpha), c))
        return c

    lo, hi = np.log(alpha_min), np.log(alpha_min * ALPHA_SPAN)
    c = coverage(np.exp(lo))
    if np.isfinite(c) and c <= prob:  # the prior's own precision is narrow enough
        return dict(alpha=float(np.exp(lo)), tried=tried)
    if coverage(np.exp(hi)) > prob:  # even the narrowest covers more: take it
        return dict(alpha=float(np.exp(hi)), tried=tried)
    for _ in range(BISECTIONS):
        mid = (lo + hi) / 2
        c = coverage(np.exp(mid))
        lo, hi = (mid, hi) if (c > prob or not np.isfinite(c)) else (lo, mid)
    return dict(alpha=float(np.exp(hi)), tried=tried)
