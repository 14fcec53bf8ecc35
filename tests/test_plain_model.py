"""Your own NumPyro model (``numpyro_model``): fitted by run_nuts and run_svi, exported, predicted, saved,
checked by SBC, its failed solves counted and its bad input refused."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers

import bayesode as bo
from bayesode.errors import ConfigError, DataError, FitFailedError
from bayesode.solving.failures import FailureLog

TS = np.linspace(0.0, 2.0, 6)
YS = np.exp(-0.5 * TS)[:, None] * np.exp(0.05 * np.random.default_rng(0).standard_normal((6, 1)))


def decay(ts, ys, mask):
    """y' = -k y, y(0) = y0; observed with noise sigma (the README's shape of a model)."""
    k = numpyro.sample("k", dist.LogNormal(-1.0, 0.5))
    y0 = numpyro.sample("y0", dist.LogNormal(0.0, 0.3).expand([1]).to_event(1))
    sol = bo.record_solve(bo.solve(lambda t, y, args: -k * y, y0, ts))
    sigma = numpyro.sample("sigma", dist.HalfNormal(0.2))
    bo.observe(bo.NormalNoise(), sol.ys, {"sigma": sigma}, ys, mask)


def blow_up(k_mean, k_sd):
    """y' = k y^2 from y(0) = 1 blows up at t = 1/k: every solve to t = 2 with k > 1/2 fails."""

    def model(ts, ys, mask):
        k = numpyro.sample("k", dist.Normal(k_mean, k_sd))
        sol = bo.record_solve(bo.solve(lambda t, y, args: k * y**2, jnp.ones(1), ts))
        bo.observe(bo.NormalNoise(), sol.ys, {"sigma": 0.1}, ys, mask)

    return bo.numpyro_model(model)


@pytest.fixture(scope="module")
def data():
    return bo.make_data(TS, YS, state_names=["x"])


@pytest.fixture(scope="module")
def model():
    return bo.numpyro_model(decay)


@pytest.fixture(scope="module")
def post(model, data):
    return bo.run_nuts(model, data, key=0, num_warmup=60, num_samples=40, num_chains=1, progress=False)


def test_run_nuts_fits_a_plain_model_and_exports_it(post):
    assert post.samples["k"].shape == (1, 40) and post.samples["y0"].shape == (1, 40, 1)
    # the data decay at rate 0.5 (noise 5%): the posterior mean of k within 0.15 of it (prior median 0.37)
    assert abs(float(np.mean(post.samples["k"])) - 0.5) < 0.15
    idata = post.to_arviz(key=1, prior_draws=10)
    for group in ("posterior", "posterior_predictive", "log_likelihood", "prior", "observed_data", "sample_stats"):
        assert group in idata.groups()
    assert set(idata.posterior.data_vars) == {"k", "y0", "sigma"}
    assert idata.posterior_predictive["trajectory"].dims == ("chain", "draw", "series", "time", "state")
    assert list(idata.posterior_predictive["trajectory"].coords["state"].values) == ["x"]
    assert idata.log_likelihood["obs"].shape == (1, 40, 6)
    assert "solver_failures" in idata.sample_stats
    assert np.all(np.isfinite(idata.log_likelihood["obs"].values))


def test_predict_and_fitted_continue_the_solve_from_the_start(post):
    pred = post.predict([2.0, 3.0], key=2)
    traj = pred["trajectory"].values[..., 0]  # (chain, draw, series, time)
    k, y0 = post.samples["k"], post.samples["y0"][..., 0]
    exact = y0[..., None, None] * np.exp(-k[..., None, None] * np.array([2.0, 3.0]))
    np.testing.assert_allclose(traj, exact, rtol=1e-3)  # the solver's tolerance, not the start's value
    assert not pred["failed"].values.any()
    fit = post.fitted()
    np.testing.assert_allclose(fit["trajectory"][..., -1, 0], traj[..., 0], rtol=1e-4)  # t = 2 in both


def test_series_predictions_and_plot_of_a_plain_model(post):
    import matplotlib.pyplot as plt

    bands = bo.series_predictions(post, key=3, until=3.0, num_points=5)[0]  # times 0, 0.75, ..., 3 from the start
    k, y0 = post.samples["k"].ravel(), post.samples["y0"].reshape(-1)
    exact = y0[:, None] * np.exp(-k[:, None] * bands["ts"][None, :])
    np.testing.assert_allclose(bands["trajectory"][..., 0], exact, rtol=1e-3)  # t = 0 (the start itself) included
    axes = bo.plot_trajectories(post, key=3)
    assert len(axes) == 1 and len(axes[0].lines) > 0
    plt.close("all")


def test_save_and_load_with_the_plain_model(post, model, tmp_path):
    post.save(tmp_path / "fit.nc", key=0)  # its own key: the test must not rely on an earlier to_arviz call
    back = bo.Posterior.load(tmp_path / "fit.nc", model=model)
    np.testing.assert_array_equal(back.samples["k"], post.samples["k"])
    assert back.fitted()["trajectory"].shape == (1, 40, 1, 6, 1)


@pytest.mark.slow  # NumPyro sets the guide up eagerly, op by op, through fn's solve: ~110 s on a busy machine
def test_run_svi_fits_a_plain_model(model, data):
    fit = bo.run_svi(model, data, key=0, num_steps=300, num_draws=50, progress=False)
    assert fit.samples["k"].shape == (1, 50)
    assert abs(float(np.mean(fit.samples["k"])) - 0.5) < 0.15  # as for NUTS
    assert "posterior_predictive" in fit.to_arviz(key=0, prior_draws=0).groups()


def test_failed_solves_are_counted_as_for_make_model(data):
    # P(k > 1/2) = 0.31 for k ~ Normal(0, 1); 400 draws: sd 0.023, tolerance 4 sd
    rate = bo.prior_failure_rate(blow_up(0.0, 1.0), data, key=0, num_draws=400)
    assert abs(rate["fraction"] - 0.3085) < 0.09
    # the sampler's report: a failed evaluation lands in the active failure log with its chain and iteration
    model = blow_up(0.0, 1.0)
    md = data.model_data()
    run = jax.jit(lambda k: handlers.substitute(handlers.seed(model, 0), data={"k": k})(md, chain_id=0, iteration=3))
    with FailureLog() as log:
        run(jnp.asarray(0.1))  # solves: counted as solved
        run(jnp.asarray(1.0))  # blows up at t = 1
        jax.effects_barrier()
    counts = log.counts(np.array([[True]]), np.array([[2]]), 3)
    assert counts["total"][0, 0] == 1


@pytest.mark.slow  # compiles the sampler's start and the prior check (~50 s on a busy 2-core machine)
def test_a_mostly_failing_plain_model_stops_loudly(data):
    # P(k > 1/2) = 0.84: most prior draws fail, yet some of each chain's 15 start candidates solve
    with pytest.raises(FitFailedError, match="fails for"):
        bo.run_nuts(blow_up(0.9, 0.4), data, key=0, num_warmup=10, num_samples=10, num_chains=1, progress=False)


@pytest.mark.slow  # 2 replications, each a small NUTS fit
def test_sbc_runs_its_ranks_on_a_plain_model(model, data):
    res = bo.sbc(model, data, key=0, num_replications=2, num_warmup=30, num_samples=20, num_chains=1)
    assert set(res.p_values) >= {"k", "sigma", "y0[0]"}
    assert all(0 <= r <= 20 for q in res.ranks for r in np.ravel(res.ranks[q]))


def test_priors_work_inside_a_traced_model():
    field = bo.MLPField(1, width=3, depth=1, key=jax.random.key(0))

    def sample(scale):
        f = bo.sample_field(field, bo.Normal(1.0))
        g = bo.sample_field(field, bo.HierarchicalNormal(scale))  # a traced scale
        return jax.tree.leaves(f)[0], jax.tree.leaves(g)[0]

    a, b = jax.jit(lambda s: handlers.seed(sample, 0)(s))(jnp.asarray(0.5))
    assert np.all(np.isfinite(a)) and np.all(np.isfinite(b))


def oscillator(ts, ys, mask):
    """x'' = -w^2 x as (x, v), only x observed: the trajectory's states are not the data's columns."""
    w = numpyro.sample("w", dist.LogNormal(0.0, 0.2))
    sol = bo.record_solve(bo.solve(lambda t, y, args: jnp.stack([y[1], -(w**2) * y[0]]), jnp.array([1.0, 0.0]), ts))
    bo.observe(bo.NormalNoise(), sol.ys[:, :1], {"sigma": 0.1}, ys, mask)


def test_state_names_name_the_trajectory_when_it_is_not_the_columns(data):
    with pytest.raises(ConfigError, match=r"expected \(time, state\) = \(6, 1\)"):
        bo.run_nuts(bo.numpyro_model(oscillator), data, key=0, progress=False)
    model = bo.numpyro_model(oscillator, state_names=["x", "v"])
    model.spec.check_data(data)
    w = np.array([[0.8, 1.0, 1.2]])  # three draws of one chain, by hand: the export needs no fit
    post = bo.Posterior(samples={"w": w}, sample_stats={}, data=data, model=model, settings={})
    idata = post.to_arviz(key=0, prior_draws=0)
    traj = idata.posterior_predictive["trajectory"]
    assert list(traj.coords["state"].values) == ["x", "v"] and traj.shape == (1, 3, 1, 6, 2)
    np.testing.assert_allclose(traj.values[0, :, 0, -1, 0], np.cos(w[0] * 2.0), atol=1e-3)  # x(2) = cos(2w)
    assert list(idata.observed_data.data_vars) == ["x"]


def test_bad_plain_models_are_refused(data):
    with pytest.raises(ConfigError, match="not callable"):
        bo.numpyro_model(3)
    with pytest.raises(ConfigError, match="three arguments"):
        bo.numpyro_model(lambda ts, ys: None)
    with pytest.raises(ConfigError, match="state_names"):
        bo.numpyro_model(decay, state_names=3)
    with pytest.raises(ConfigError, match="numpyro_model"):
        bo.run_nuts(decay, data, key=0, progress=False)  # a bare function: told how to wrap it

    def no_record(ts, ys, mask):
        y0 = numpyro.sample("y0", dist.Normal(1.0, 0.1).expand([1]).to_event(1))
        bo.observe(bo.NormalNoise(), bo.solve(lambda t, y, a: -y, y0, ts).ys, {"sigma": 0.1}, ys, mask)

    with pytest.raises(ConfigError, match="record_solve"):
        bo.run_nuts(bo.numpyro_model(no_record), data, key=0, progress=False)

    def summed(ts, ys, mask):
        sol = bo.record_solve(bo.solve(lambda t, y, a: -y, jnp.ones(1), ts))
        numpyro.sample("obs", dist.Normal(sol.ys, 0.1).mask(mask).to_event(2), obs=ys)

    with pytest.raises(ConfigError, match="event shape"):
        bo.run_svi(bo.numpyro_model(summed), data, key=0, progress=False)
    two = bo.make_data([TS, TS], [YS, YS])
    with pytest.raises(DataError, match="one series"):
        bo.run_nuts(bo.numpyro_model(decay), two, key=0, progress=False)
    with pytest.raises(ConfigError, match="vector field"):
        assert bo.numpyro_model(decay).spec.field is None  # raises: features that need a field say so


def hierarchical_decay(ts, ys, mask):
    """Subjects i = 1..S decay at rates k_i ~ LogNormal(mu, 0.3) around a shared mu (all series at once)."""
    mu = numpyro.sample("mu", dist.Normal(-1.0, 1.0))
    with numpyro.plate("subject", ts.shape[0]):
        k = numpyro.sample("k", dist.LogNormal(mu, 0.3))
    sol = bo.record_solve(jax.vmap(lambda ts_i, k_i: bo.solve(lambda t, y, args: -k_i * y, jnp.ones(1), ts_i))(ts, k))
    bo.observe(bo.NormalNoise(), sol.ys, {"sigma": 0.05}, ys, mask)


@pytest.fixture(scope="module")
def subjects():
    """Three subjects of 6, 4 and 5 observations, decaying at rates 0.3, 0.6 and 0.9 (noise 0.02)."""
    rng = np.random.default_rng(1)
    ts = [np.linspace(0.0, 3.0, n) for n in (6, 4, 5)]
    ys = [np.exp(-k * t)[:, None] + 0.02 * rng.standard_normal((t.size, 1)) for k, t in zip((0.3, 0.6, 0.9), ts)]
    return bo.make_data(ts, ys, state_names=["x"], series_names=["a", "b", "c"])


def test_a_model_of_every_series_at_once_fits_predicts_and_exports(subjects):
    with pytest.raises(DataError, match="all_series=True"):
        bo.run_nuts(bo.numpyro_model(hierarchical_decay), subjects, key=0, progress=False)
    model = bo.numpyro_model(hierarchical_decay, all_series=True)
    post = bo.run_nuts(model, subjects, key=0, num_warmup=100, num_samples=50, num_chains=1, progress=False)
    k = post.samples["k"]  # (chain, draw, subject)
    assert k.shape == (1, 50, 3)
    # each subject's rate within 0.15 of its truth (noise 0.02 on 4-6 points pins each to about +-0.05)
    np.testing.assert_allclose(k.mean(axis=(0, 1)), [0.3, 0.6, 0.9], atol=0.15)
    idata = post.to_arviz(key=1, prior_draws=0)
    assert idata.posterior_predictive["trajectory"].shape == (1, 50, 3, 6, 1)
    # one pointwise term per observation, the padding after the shorter series' ends left out: 6 + 4 + 5
    ll = idata.log_likelihood["obs"].values[0, 0]
    assert ll.shape == (15,) and np.all(np.isfinite(ll))
    pred = post.predict([3.0, 4.0], key=2)
    traj = pred["trajectory"].values[..., 0]  # (chain, draw, series, time): each from its own start and rate
    np.testing.assert_allclose(traj, np.exp(-k[..., None] * np.array([3.0, 4.0])), rtol=1e-3)
    assert not pred["failed"].values.any()
    bands = bo.series_predictions(post, key=3, until=4.0, num_points=3)  # one grid: every series starts at 0
    assert [b["trajectory"].shape for b in bands] == [(50, 3, 1)] * 3


def test_a_failed_series_is_counted_in_its_own_row(subjects):
    # k of subject b so large that its solve needs more steps than allowed: only that series fails
    def model_fn(ts, ys, mask):
        k = numpyro.sample("k", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
        cfg = bo.SolverConfig(max_steps=16)
        sol = jax.vmap(lambda ts_i, k_i: bo.solve(lambda t, y, args: -k_i * y, jnp.ones(1), ts_i, config=cfg))(ts, k)
        bo.record_solve(sol)
        bo.observe(bo.NormalNoise(), sol.ys, {"sigma": 0.05}, ys, mask)

    model = bo.numpyro_model(model_fn, all_series=True)
    md = subjects.model_data()
    run = handlers.substitute(handlers.seed(model, 0), data={"k": jnp.array([0.3, 1e4, 0.9])})
    tr = handlers.trace(run).get_trace(md)
    status = np.asarray(tr["solver_status"]["value"])
    assert status.shape == (3,) and status[0] == 0 and status[1] != 0 and status[2] == 0
    assert float(tr["solver_failed"]["fn"].log_factor) == -np.inf  # the point is rejected as a whole


def test_all_series_models_with_wrong_shapes_are_refused(subjects):
    with pytest.raises(ConfigError, match="all_series"):
        bo.numpyro_model(decay, all_series="yes")
    with pytest.raises(ConfigError, match=r"a leading series axis, ts \(3, 6\)"):
        bo.numpyro_model(decay, all_series=True).spec.check_data(subjects)  # a one-series fn given every series

    def per_series_status_missing(ts, ys, mask):  # observes every series, but records the first one's solve only
        sol = jax.vmap(lambda ts_i: bo.solve(lambda t, y, args: -0.5 * y, jnp.ones(1), ts_i))(ts)
        bo.record_solve(bo.solve(lambda t, y, args: -0.5 * y, jnp.ones(1), ts[0]))
        bo.observe(bo.NormalNoise(), sol.ys, {"sigma": 0.05}, ys, mask)

    with pytest.raises(ConfigError, match=r"expected \(series, time, state\) = \(3, 6, 1\)"):
        bo.numpyro_model(per_series_status_missing, all_series=True).spec.check_data(subjects)
