"""The neural jump ODE filter: jumps at observation times, masks, closed forms, online = refilter, errors."""

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from bayesode.datasets import make_irregular, njode_synthetic
from bayesode.errors import ConfigError, DataError
from bayesode.infer import filter_online, fit_jump_filter
from bayesode.model import make_jump_filter_model, net_sites
from bayesode.results import JumpFilterFit, mixture_quantiles
from bayesode.solving import NeuralJumpODE, filter_config, filter_observations, hidden_at

TS = jnp.array([0.0, 0.13, 0.4, 0.41, 0.9])
YS = jnp.array([[1.0, 2.0], [1.5, -1.0], [0.2, 3.0], [0.7, 0.1], [-0.4, 0.5]])
MASK = jnp.array([[True, True], [True, False], [False, True], [True, True], [False, True]])


class DecayAndCount(eqx.Module):
    """``dh/dt = -h`` between observations; each jump adds 1: a closed form for every segment."""

    hidden_dim: int = 1
    obs_dim: int = 2

    def vector_field(self, t, h, args):
        return -h

    def jump(self, h, x, mask):
        return h + 1.0

    def readout(self, h):
        return h


class CopyLast(eqx.Module):
    """Zero field, the jump copies each observed coordinate, the readout is the identity."""

    hidden_dim: int = 2
    obs_dim: int = 2

    def vector_field(self, t, h, args):
        return jnp.zeros_like(h)

    def jump(self, h, x, mask):
        return jnp.where(mask, x, h)

    def readout(self, h):
        return h


def test_jumps_land_exactly_at_observation_times():
    f = filter_observations(DecayAndCount(), TS, YS, MASK)
    h_before, h_after = np.asarray(f.h_before[:, 0]), np.asarray(f.h_after[:, 0])
    np.testing.assert_allclose(h_after, h_before + 1.0, rtol=0, atol=1e-6)  # a jump of exactly 1 at each t_i
    # Between observations: exp decay from the state just after the previous jump (solver tolerance 1e-4).
    expected = h_after[:-1] * np.exp(-np.diff(np.asarray(TS)))
    np.testing.assert_allclose(h_before[1:], expected, rtol=1e-3)
    # Right-continuous: at t_i the state has jumped; a moment before, it has not.
    h_at, status = hidden_at(DecayAndCount(), f, TS, TS)
    np.testing.assert_allclose(np.asarray(h_at[:, 0]), h_after, atol=1e-6)
    h_just_before, _ = hidden_at(DecayAndCount(), f, TS, TS[1:] - 1e-4)
    np.testing.assert_allclose(np.asarray(h_just_before[:, 0]), h_before[1:], atol=1e-3)
    assert np.all(np.asarray(status) == 0) and np.all(np.asarray(f.status) == 0)


def test_padding_rows_change_nothing():
    net = NeuralJumpODE(2, hidden_dim=4, width=8, key=jr.key(0))
    f = filter_observations(net, TS, YS, MASK)
    ts_pad = jnp.concatenate([TS, jnp.full(3, TS[-1])])
    ys_pad = jnp.concatenate([YS, jnp.zeros((3, 2))])
    mask_pad = jnp.concatenate([MASK, jnp.zeros((3, 2), bool)])
    g = filter_observations(net, ts_pad, ys_pad, mask_pad)
    for a, b in zip(f.final, g.final):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_mask_hides_missing_coordinates():
    net = NeuralJumpODE(2, hidden_dim=4, width=8, key=jr.key(1))
    changed = jnp.where(MASK, YS, 1e6)  # every hidden entry replaced by a wild value
    f, g = filter_observations(net, TS, YS, MASK), filter_observations(net, TS, changed, MASK)
    np.testing.assert_array_equal(np.asarray(f.h_after), np.asarray(g.h_after))
    np.testing.assert_array_equal(np.asarray(f.h_before), np.asarray(g.h_before))
    # The model's log density is unchanged too; an observed entry does change it.
    from numpyro.infer.util import log_density

    model = make_jump_filter_model(net)
    params = {name: leaf for (name, _), leaf in zip(net_sites(net), jax.tree.leaves(eqx.filter(net, eqx.is_inexact_array)))}
    ld = lambda ys: float(log_density(model, (TS[None], ys[None], MASK[None]), {}, params)[0])  # noqa: E731
    assert ld(YS) == ld(changed)
    assert ld(YS) != ld(YS.at[0, 0].add(0.5))


def test_copy_update_and_zero_field_forecast_the_last_observation():
    net = CopyLast()
    f = filter_observations(net, TS, YS, MASK, state=None)
    query = jnp.array([0.0, 0.05, 0.13, 0.3, 0.405, 0.95, 2.0])
    h, _ = hidden_at(net, f, TS, query)
    # Closed form: each coordinate's latest observed value at or before the query time.
    expected = []
    for q in np.asarray(query):
        row = np.zeros(2)
        for t, y, m in zip(np.asarray(TS), np.asarray(YS), np.asarray(MASK)):
            if t <= q:
                row = np.where(m, y, row)
        expected.append(row)
    np.testing.assert_allclose(np.asarray(h), np.array(expected), atol=1e-6)


def test_anchored_jump_puts_each_observed_coordinate_on_its_observation():
    """``anchored=True``: just after each jump the forecast mean equals the observation on the observed
    coordinates (float32: 1e-4 of the data's scale), by the least move of the hidden state (numpy's
    minimum-norm solution, float64); the paper's architecture (``anchored=False``) does not."""
    from bayesode.solving.observation_jumps import anchor_state

    size = dict(hidden_dim=4, width=8, key=jr.key(3), y_loc=[0.5, 1.0], y_scale=[2.0, 0.5])
    anchored, free = NeuralJumpODE(2, **size), NeuralJumpODE(2, anchored=False, **size)
    after = lambda net: np.asarray(jax.vmap(net.readout)(filter_observations(net, TS, YS, MASK).h_after))  # noqa: E731
    np.testing.assert_allclose(after(anchored)[MASK], np.asarray(YS)[MASK], rtol=0, atol=1e-4 * 2.0)
    assert np.abs(after(free)[MASK] - np.asarray(YS)[MASK]).max() > 0.1
    # The least move: W_m^+ (target - W h - b)_m, the pseudo-inverse over the observed rows.
    h, target, mask = jr.normal(jr.key(4), (4,)), jnp.array([0.3, -1.2]), jnp.array([False, True])
    w, b = jr.normal(jr.key(5), (2, 4)), jnp.array([0.1, 0.2])
    moved = np.asarray(anchor_state(h, w, b, target, mask), np.float64)
    wm = np.asarray(w, np.float64)[1:]
    expected = np.asarray(h) + np.linalg.pinv(wm) @ (np.asarray(target)[1:] - wm @ np.asarray(h) - np.asarray(b)[1:])
    np.testing.assert_allclose(moved, expected, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(anchor_state(h, w, b, target, jnp.zeros(2, bool))), np.asarray(h))


def _fake_fit(num_draws=6, seed=0):
    """A fit with draws from a narrow Normal around random weights: no fitting needed."""
    net = NeuralJumpODE(2, hidden_dim=4, width=8, key=jr.key(seed))
    keys = jr.split(jr.key(seed + 1), len(net_sites(net)))
    weights = jax.tree.leaves(eqx.filter(net, eqx.is_inexact_array))
    samples = {name: np.asarray(w + 0.1 * jr.normal(k, (1, num_draws) + shape))
               for (name, shape), w, k in zip(net_sites(net), weights, keys)}  # fmt: skip
    data = make_irregular([np.asarray(TS[:3]), np.asarray(TS)], [np.where(MASK[:3], YS[:3], np.nan),
                                                                  np.where(MASK, YS, np.nan)])  # fmt: skip
    return JumpFilterFit(net=net, samples=samples, data=data, config=filter_config(), settings={"method": "test"})


def test_flat_draws_merge_chains_and_keep_evenly_spaced_draws():
    fit = _fake_fit(num_draws=6)
    site, x = next(iter(fit.samples.items()))
    np.testing.assert_array_equal(np.asarray(fit.flat_draws()[site]), x.reshape((-1,) + x.shape[2:]))
    np.testing.assert_array_equal(np.asarray(fit.flat_draws(3)[site]), x[0, [0, 2, 5]])  # linspace(0, 5, 3)
    assert fit.flat_draws(100)[site].shape[0] == 6
    assert fit.series_index(1) == 1 and fit.series_index(fit.data.series_names[1]) == 1
    with pytest.raises(DataError, match="`series`="):
        fit.series_index("nope")


def test_online_filtering_equals_refiltering_from_scratch():
    fit = _fake_fit()
    # Two online calls of the same shape (one compiled program), then a refilter of everything.
    new_ts = np.array([0.95, 1.1, 1.2, 1.2])
    new_ys = np.array([[0.3, np.nan], [np.nan, -0.2], [1.0, 1.0], [np.nan, 0.4]])
    query = np.array([1.2, 1.5, 2.0])
    online, states = filter_online(fit, new_ts[:2], new_ys[:2], query_ts=query, series=1)
    online, _ = filter_online(fit, new_ts[2:], new_ys[2:], query_ts=query, series=1, states=states)
    again = fit.with_observations(new_ts, new_ys, series=1).forecast(query, series=1)
    np.testing.assert_allclose(online.draws, again.draws, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(online.lower, again.lower, rtol=1e-4, atol=1e-4)
    assert np.all(online.lower < online.mean) and np.all(online.mean < online.upper)
    # The new observations moved the forecast (the update is not a no-op).
    before = fit.forecast(query, series=1)
    assert np.max(np.abs(before.mean - online.mean)) > 1e-3


def test_to_arviz_groups_dims_and_log_likelihood_per_observation():
    fit = _fake_fit()
    idata = fit.to_arviz(grid_size=7)
    n_obs = fit.data.num_observations
    assert idata.log_likelihood["obs"].shape == (1, 6, n_obs)
    assert idata.posterior_predictive["forecast"].dims == ("chain", "draw", "series", "time", "state")
    assert idata.posterior_predictive["forecast"].shape == (1, 6, 2, 7, 2)
    assert idata.observed_data["obs"].shape == (n_obs, 2)
    np.testing.assert_allclose(idata.observed_data["obs_time"].values[:3], np.asarray(TS[:3]))
    assert np.all(np.isfinite(idata.log_likelihood["obs"].values))


def test_one_step_bands_leave_out_a_draw_whose_solve_fails_and_say_so():
    fit = _fake_fit(num_draws=6)
    broken = {k: v.copy() for k, v in fit.samples.items()}
    for v in broken.values():
        v[0, 2] = np.nan  # the vector field of draw 2 is NaN: its solve fails
    bad = JumpFilterFit(net=fit.net, samples=broken, data=fit.data, config=fit.config, settings=fit.settings)
    with pytest.warns(RuntimeWarning, match="1 of 6 draws had a failed solve"):
        mean, lower, upper = bad.one_step_bands(prob=0.8)
    kept = {k: np.delete(v, 2, axis=1) for k, v in fit.samples.items()}
    good = JumpFilterFit(net=fit.net, samples=kept, data=fit.data, config=fit.config, settings=fit.settings)
    for got, want in zip((mean, lower, upper), good.one_step_bands(prob=0.8)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.all(np.isfinite(lower[fit.data.mask])) and np.all(lower < upper)


def test_mixture_quantiles_match_a_single_normal():
    q = mixture_quantiles(jnp.array([[1.0]]), jnp.array([[2.0]]), (0.05, 0.5, 0.95))
    np.testing.assert_allclose(np.asarray(q[:, 0]), [1 - 2 * 1.6448536, 1.0, 1 + 2 * 1.6448536], atol=1e-4)


def test_synthetic_conditional_expectation_at_observations_is_the_observation():
    sp = njode_synthetic.simulate_paths("ornstein_uhlenbeck", 5, seed=3)
    ce = njode_synthetic.conditional_expectation(sp)
    np.testing.assert_allclose(ce[sp.mask], sp.paths[sp.mask])
    # At time 0, fully observed, it is X0 = 1.
    assert np.all(np.abs(ce[:, 0] - 1.0) < 1e-12)


def test_errors_name_the_argument():
    with pytest.raises(DataError, match="non-decreasing"):
        make_irregular([0.0, 1.0, 0.5], [1.0, 2.0, 3.0])
    with pytest.raises(DataError, match="NaN or infinite where `mask`"):
        make_irregular([0.0, 1.0], [1.0, np.nan], mask=[True, True])
    with pytest.raises(ConfigError, match="hidden_dim"):
        NeuralJumpODE(2, hidden_dim=0, key=jr.key(0))
    with pytest.raises(ConfigError, match=r"hidden_dim >= obs_dim.*anchored=False"):
        NeuralJumpODE(3, hidden_dim=2, key=jr.key(0))
    assert NeuralJumpODE(3, hidden_dim=2, key=jr.key(0), anchored=False).hidden_dim == 2
    fit = _fake_fit()
    with pytest.raises(DataError, match="not before the last observation"):
        filter_online(fit, [0.5], [[1.0, 1.0]], query_ts=[1.0], series=1)
    with pytest.raises(DataError, match="`series`"):
        fit.forecast([0.5], series="nope")
    with pytest.raises(ConfigError, match="`method`"):
        fit_jump_filter(fit.net, fit.data, key=0, method="mcmc")
    with pytest.raises(ConfigError, match="observes 1 coordinates"):
        fit_jump_filter(NeuralJumpODE(1, key=jr.key(0)), fit.data, key=0)
    with pytest.raises(ConfigError, match="map_steps"):
        fit_jump_filter(fit.net, fit.data, key=0, map_steps=-1)
    with pytest.raises(ConfigError, match="map_starts"):
        fit_jump_filter(fit.net, fit.data, key=0, map_starts=0)


def _cli_args(argv):
    import argparse

    from bayesode.cli.irregular import add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["irregular", *argv])


def test_cli_irregular_checks_its_input_before_fitting(tmp_path):
    from bayesode.cli.irregular import run

    with pytest.raises(FileNotFoundError, match="--csv"):
        run(_cli_args(["--csv", str(tmp_path / "none.csv")]))
    csv = tmp_path / "d.csv"
    csv.write_text("t,a,b\n0.0,1.0,\n0.5,,2.0\n")
    with pytest.raises(DataError, match="no time column 'time'"):
        run(_cli_args(["--csv", str(csv), "--out", str(tmp_path / "o")]))
    with pytest.raises(ConfigError, match="--steps"):
        run(_cli_args(["--csv", str(csv), "--time", "t", "--steps", "0"]))
    with pytest.raises(ConfigError, match="--map-steps"):
        run(_cli_args(["--csv", str(csv), "--time", "t", "--map-steps", "-1"]))
    with pytest.raises(ConfigError, match="--map-starts must be a positive integer"):
        run(_cli_args(["--csv", str(csv), "--time", "t", "--map-starts", "0"]))
    with pytest.raises(ConfigError, match="--method laplace.*--map-steps > 0"):
        run(_cli_args(["--csv", str(csv), "--time", "t", "--map-steps", "0"]))
    with pytest.raises(ConfigError, match="--prior-precision must be a positive number"):
        run(_cli_args(["--csv", str(csv), "--time", "t", "--prior-precision", "-1"]))
    out = tmp_path / "never"
    with pytest.raises(ConfigError, match=r"--hidden 1 is smaller than the 2 observed columns.*--unanchored"):
        run(_cli_args(["--csv", str(csv), "--time", "t", "--hidden", "1", "--out", str(out)]))
    assert not out.exists()  # refused before any work


@pytest.mark.slow
def test_cli_irregular_writes_inference_data_and_plot(tmp_path, capsys):
    import arviz as az

    from bayesode.cli.irregular import run

    csv = tmp_path / "d.csv"
    csv.write_text("patient,t,a,b\n1,0.0,1.0,\n1,0.3,,2.0\n1,0.7,1.5,2.5\n2,0.0,0.5,1.0\n2,0.2,0.7,\n")
    out = tmp_path / "out"
    args = _cli_args(["--csv", str(csv), "--time", "t", "--series", "patient", "--map-steps", "5", "--map-starts", "2",
                      "--steps", "5", "--draws", "4",
                      "--hidden", "2", "--width", "4", "--out", str(out)])  # fmt: skip
    with pytest.warns(RuntimeWarning, match="too few to tune the Laplace prior precision"):  # 5 observations
        assert run(args) == 0
    idata = az.from_netcdf(str(out / "posterior.nc"))
    assert idata.log_likelihood["obs"].shape == (1, 4, 5)  # 5 observation times over both series
    assert list(idata.posterior_predictive["forecast"].coords["state"].values) == ["a", "b"]
    assert (out / "forecast.png").stat().st_size > 1000
    settings = json.loads(idata.posterior.attrs["bayesode_settings"])
    assert len(settings["map_start_loss"]) == 2 and settings["map_final_loss"] == min(settings["map_start_loss"])
    assert settings["method"] == "laplace" and settings["prior_precision"] == 1.0  # the weight prior's own
    assert "prior precision 1 (the weight prior's own: too few to tune on)" in capsys.readouterr().out


@pytest.mark.slow
def test_fitted_forecast_approaches_the_ou_conditional_expectation_as_well_as_the_point_fit():
    """Fixed seeds; 20 training paths, the default fit (MAP fits of 300 steps, then the Laplace Gaussian with its
    prior precision tuned on every fifth path held out). The fitted posterior-mean forecast's distance to
    E[X | past] (the paper's metric, 5 held-out paths) must be under a quarter of the prior's (forecasts from
    Normal(0, 1) weights are far off), under the naive last-value forecast's, and under that of the paper's
    point NJ-ODE (its architecture, unanchored) trained with 500 Adam steps on the same paths: issue 24's goal
    itself. Measured 0.0177 against 0.0241 (mean-field SVI gave 0.0110), so chance on these few held-out
    paths (about a tenth) leaves a margin."""
    from dataclasses import replace

    from bayesode.infer import fit_njode_point
    from bayesode.model import samples_from_net

    sp = njode_synthetic.simulate_paths("ornstein_uhlenbeck", 25, seed=11)
    train, test = njode_synthetic.to_irregular(sp, slice(0, 20)), njode_synthetic.to_irregular(sp, slice(20, None))
    truth = njode_synthetic.conditional_expectation(sp)[20:]
    net = NeuralJumpODE(2, hidden_dim=8, width=16, key=jr.key(0), y_loc=np.nanmean(train.ys),
                        y_scale=np.nanstd(train.ys), t_scale=0.1)  # fmt: skip
    fit = fit_jump_filter(net, train, key=jr.key(1), map_steps=300, num_draws=20)
    assert np.isfinite(fit.settings["map_final_loss"])
    keys = jr.split(jr.key(2), len(net_sites(net)))
    prior = {name: np.asarray(jr.normal(k, (1, 20) + shape)) for (name, shape), k in zip(net_sites(net), keys)}
    paper_net = NeuralJumpODE(2, hidden_dim=8, width=16, key=jr.key(0), y_loc=np.nanmean(train.ys),
                              y_scale=np.nanstd(train.ys), t_scale=0.1, anchored=False)  # the paper's architecture  # fmt: skip
    point_net, _ = fit_njode_point(paper_net, train, steps=500)

    def distance(samples, net=fit.net):
        f = replace(fit, net=net, data=test, samples=samples)
        return np.mean([np.mean(np.sum((f.forecast(sp.grid, series=i).mean - truth[i]) ** 2, -1)) for i in range(5)])

    idx = np.where(sp.mask[20:], np.arange(sp.grid.size)[None, :, None], 0)
    naive = np.take_along_axis(sp.paths[20:], np.maximum.accumulate(idx, axis=1), axis=1)
    fitted, from_prior, point = distance(fit.samples), distance(prior), distance(samples_from_net(point_net), paper_net)
    assert fitted < 0.25 * from_prior, (fitted, from_prior)
    assert fitted < np.mean(np.sum((naive - truth) ** 2, -1)), fitted
    assert fitted < point, (fitted, point)
