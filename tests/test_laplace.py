"""The Laplace approximation of the jump filter: its Gauss-Newton matrix, its draws, how alpha is tuned, the fit."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from bayesode.datasets import njode_synthetic
from bayesode.errors import ConfigError
from bayesode.infer import fit_jump_filter
from bayesode.infer.laplace import LaplaceGaussian, gauss_newton, tune_prior_precision, tuning_split
from bayesode.model import HierarchicalNormal, net_from_draw, net_sites, one_step_forecasts
from bayesode.solving import NeuralJumpODE, filter_config

TS = jnp.array([[0.0, 0.13, 0.4, 0.41, 0.9], [0.0, 0.2, 0.5, 0.7, 0.7]])
YS = jnp.array([[[1.0, 2.0], [1.5, -1.0], [0.2, 3.0], [0.7, 0.1], [-0.4, 0.5]],
                [[0.3, 0.1], [0.0, 0.4], [0.9, 0.9], [0.2, 0.0], [0.0, 0.0]]])  # fmt: skip
MASK = jnp.array([[[True, True], [True, False], [False, True], [True, True], [False, True]],
                  [[True, False], [True, True], [False, True], [True, True], [False, False]]])  # fmt: skip


def _weights(net):
    params = jax.tree.leaves(eqx.filter(net, eqx.is_inexact_array))
    return {name: leaf for (name, _), leaf in zip(net_sites(net), params)}


def test_gauss_newton_is_the_fisher_pulled_back_through_reverse_mode_jacobians():
    """Forward-mode per series (the module) against reverse mode over the whole batch (here): the same
    ``sum J_mean^T J_mean / sd^2 + 2 J_sd^T J_sd / sd^2`` over observed entries, to float32 round-off."""
    net = NeuralJumpODE(2, hidden_dim=3, width=4, key=jr.key(0))
    centre = _weights(net)
    config = filter_config()
    got = gauss_newton(net, centre, TS, YS, MASK, config)

    flat, unravel = ravel_pytree(centre)
    outputs = lambda v: one_step_forecasts(net_from_draw(net, unravel(v)), TS, YS, MASK, config)[:2]  # noqa: E731
    mean_jac, sd_jac = jax.jacrev(outputs)(flat)  # (series, obs, D, P) each
    _, sd = outputs(flat)
    w = np.where(np.asarray(MASK), 1.0 / np.asarray(sd, np.float64) ** 2, 0.0)
    jm, js = np.asarray(mean_jac, np.float64), np.asarray(sd_jac, np.float64)
    want = np.einsum("sodp,sod,sodq->pq", jm, w, jm) + np.einsum("sodp,sod,sodq->pq", js, 2 * w, js)
    assert got.shape == (flat.size, flat.size)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * np.abs(want).max())
    assert np.linalg.eigvalsh(got).min() > -1e-4 * np.abs(want).max()  # positive semi-definite


def test_laplace_draws_have_the_stated_mean_and_covariance():
    """20,000 draws: each covariance entry's standard error is about 1% of the diagonal, so 5% is 5 sigma."""
    centre = {"a": jnp.array([1.0, -2.0]), "b": jnp.array([[0.5]])}
    root = np.array([[2.0, 0.3, 0.0], [0.0, 1.0, 0.5], [0.4, 0.0, 3.0]])
    ggn = root @ root.T  # ravel_pytree order: a[0], a[1], b[0, 0]
    alpha = 0.7
    gaussian = LaplaceGaussian(centre, ggn)
    draws = gaussian.draws(alpha, jr.normal(jr.key(1), (20_000, 3)))
    flat = np.concatenate([np.asarray(draws["a"]), np.asarray(draws["b"]).reshape(-1, 1)], axis=1)
    want = np.linalg.inv(ggn + alpha * np.eye(3))
    scale = np.sqrt(np.diag(want))
    np.testing.assert_allclose(flat.mean(0), [1.0, -2.0, 0.5], atol=0.05 * scale.max())
    np.testing.assert_allclose(np.cov(flat.T), want, atol=0.05 * np.diag(want).max())
    assert draws["b"].shape == (20_000, 1, 1)


class _Spread:
    """A stand-in Gaussian: draws of spread ``1 / sqrt(alpha)`` in one weight."""

    size = 1

    def draws(self, alpha, z):
        return {"w": np.asarray(z)[:, 0] / np.sqrt(alpha)}


def test_tuning_finds_the_widest_alpha_that_does_not_over_cover():
    # coverage 0.5 + spread: crosses 0.9 at spread 0.4 (alpha 6.25), noisy only through the 50 draws
    def coverage_of(draws):
        return min(1.0, 0.5 + float(np.std(draws["w"]))), np.zeros(50, bool)

    tuned = tune_prior_precision(_Spread(), coverage_of, 1.0, jr.key(0), 0.9)
    tried = dict(tuned["tried"])
    assert tried[tuned["alpha"]] <= 0.9
    below = [a for a in tried if a < tuned["alpha"]]
    assert max(below) > tuned["alpha"] / 1.5 and tried[max(below)] > 0.9  # bisection to a factor of 1.4
    assert 2.0 < tuned["alpha"] < 20.0  # 6.25 up to the spread of 50 normal draws
    narrow = tune_prior_precision(_Spread(), lambda d: (0.5, np.zeros(50, bool)), 2.0, jr.key(0), 0.9)
    assert narrow["alpha"] == 2.0 and len(narrow["tried"]) == 1  # the prior is narrow enough: no search
    wide = tune_prior_precision(_Spread(), lambda d: (1.0, np.zeros(50, bool)), 2.0, jr.key(0), 0.9)
    assert wide["alpha"] == pytest.approx(2e6)  # covers everything at every alpha: the narrowest
    failed = tune_prior_precision(_Spread(), lambda d: (float("nan"), np.ones(50, bool)), 2.0, jr.key(0), 0.9)
    assert failed["alpha"] == pytest.approx(2e6)  # all draws failed is never "narrow enough"


def test_tuning_split_holds_out_every_fifth_series_or_the_last_fifth_of_each():
    mask = np.ones((3, 10, 2), bool)
    mask[0, 6:] = False  # 6 observations: the last 2 (rounded up from 1.2) scored
    mask[1, 1:] = False  # 1 observation: none scored
    mask[2, 4, 1] = False
    fit, later = tuning_split(mask, [6, 1, 10])
    assert later[0].any(-1).nonzero()[0].tolist() == [4, 5]
    assert not later[1].any()
    assert later[2].any(-1).nonzero()[0].tolist() == [8, 9]
    assert not (fit & later).any() and ((fit | later) == mask).all()
    many = np.ones((10, 4, 1), bool)
    fit, later = tuning_split(many, [4] * 10)  # 10 series: the 5th and the 10th held out, their first left out
    assert later.any((1, 2)).nonzero()[0].tolist() == [4, 9] and not later[[4, 9], 0].any()
    assert not fit[[4, 9]].any() and fit[[0, 1, 2, 3, 5, 6, 7, 8]].all()


def test_laplace_errors_name_the_argument():
    net = NeuralJumpODE(2, hidden_dim=2, width=4, key=jr.key(0))
    sp = njode_synthetic.simulate_paths("ornstein_uhlenbeck", 2, seed=0)
    data = njode_synthetic.to_irregular(sp, slice(0, 2))
    with pytest.raises(ConfigError, match="map_steps"):
        fit_jump_filter(net, data, key=0, method="laplace", map_steps=0)
    with pytest.raises(ConfigError, match="Normal `weight_prior`"):
        fit_jump_filter(net, data, key=0, method="laplace", weight_prior=HierarchicalNormal())
    with pytest.raises(ConfigError, match="prior_precision"):
        fit_jump_filter(net, data, key=0, method="laplace", prior_precision=-1.0)


@pytest.mark.slow
def test_laplace_fit_tunes_alpha_on_held_out_observations_and_draws_around_the_map():
    """Fixed seeds, 8 OU paths, hidden 4: the fit's settings record the tuning, the draws spread around
    the MAP (a Gaussian: their mean within a few of its standard errors of the MAP), and a fixed alpha is
    used as given."""
    sp = njode_synthetic.simulate_paths("ornstein_uhlenbeck", 8, seed=3)
    data = njode_synthetic.to_irregular(sp, slice(0, 8))
    net = NeuralJumpODE(2, hidden_dim=4, width=8, key=jr.key(0), y_loc=np.nanmean(data.ys),
                        y_scale=np.nanstd(data.ys), t_scale=0.1)  # fmt: skip
    fit = fit_jump_filter(net, data, key=jr.key(1), map_steps=150, num_draws=30)
    s = fit.settings
    assert s["method"] == "laplace" and s["prior_precision"] >= 1.0
    assert len(s["laplace_tuning"]) >= 1 and fit.num_draws == 30 - s["laplace_failed_draws"]
    tried = dict((a, c) for a, c in s["laplace_tuning"])
    assert tried[s["prior_precision"]] <= 0.9 or s["prior_precision"] == pytest.approx(1e6)
    draws = np.concatenate([np.asarray(v).reshape(fit.num_draws, -1) for v in fit.samples.values()], 1)
    assert np.all(draws.std(0) > 0)
    fixed = fit_jump_filter(net, data, key=jr.key(1), map_steps=150, num_draws=30, prior_precision=1e4)
    assert fixed.settings["prior_precision"] == 1e4 and fixed.settings["laplace_tuning"] == []
    # (G + alpha I)^-1 has every variance at most 1 / alpha (G is positive semi-definite): the draws' variances
    # average under 1e-4; each of 30 draws' sample variance is off by about 26%, their mean over the
    # weights by far less, so 10% above the bound is a wide margin.
    variance = np.concatenate([np.asarray(v).reshape(fixed.num_draws, -1) for v in fixed.samples.values()], 1).var(0)
    assert 0 < variance.mean() < 1.1e-4
    assert fixed.forecast(np.linspace(0.0, 1.0, 5), series=0).mean.shape == (5, 2)


@pytest.mark.slow
def test_laplace_stage_is_checkpointed_and_loaded_back(tmp_path):
    """A second run with the same folder loads the saved stage (same draws, no refit) and a run with another
    prior precision is refused before any work."""
    sp = njode_synthetic.simulate_paths("ornstein_uhlenbeck", 3, seed=4)
    data = njode_synthetic.to_irregular(sp, slice(0, 3))
    net = NeuralJumpODE(2, hidden_dim=2, width=4, key=jr.key(0), y_loc=np.nanmean(data.ys),
                        y_scale=np.nanstd(data.ys), t_scale=0.1)  # fmt: skip
    kw = dict(key=jr.key(2), map_steps=10, num_draws=6, prior_precision=50.0, checkpoint_dir=str(tmp_path / "ck"))
    first = fit_jump_filter(net, data, **kw)
    saved = (tmp_path / "ck" / "laplace.npz").stat().st_mtime_ns
    again = fit_jump_filter(net, data, **kw)
    assert (tmp_path / "ck" / "laplace.npz").stat().st_mtime_ns == saved  # loaded, not computed and written again
    for site, value in first.samples.items():
        np.testing.assert_array_equal(value, again.samples[site])
    assert again.settings["prior_precision"] == 50.0 and again.settings["laplace_tuning"] == []
    with pytest.raises(ConfigError, match="checkpoint"):
        fit_jump_filter(net, data, **dict(kw, prior_precision=60.0))
