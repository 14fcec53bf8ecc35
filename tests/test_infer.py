"""Inference plumbing (smoke): NUTS and SVI on tiny problems, ArviZ structure, determinism,
save/load, missing data, solver failures during sampling, checkpoint resume."""

import contextlib
import warnings

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
import pytest

import bayesode as bo

TS = np.linspace(0.0, 6.0, 11)
TRUE = bo.lotka_volterra_field(0.55, 0.028, 0.8, 0.024)
CLEAN = np.asarray(bo.solve(TRUE, jnp.array([30.0, 4.0]), TS).ys)
YS = CLEAN * np.exp(0.1 * np.random.default_rng(0).standard_normal(CLEAN.shape))
SMALL = dict(num_warmup=30, num_samples=20, num_chains=2, progress=False)


@pytest.fixture(scope="module")
def lv():
    return bo.models.lotka_volterra()


@pytest.fixture(scope="module")
def data():
    return bo.make_data(TS + 1900.0, YS, state_names=["hare", "lynx"])


@pytest.fixture(scope="module")
def post(lv, data):
    return bo.run_nuts(lv, data, key=0, **SMALL)


def test_nuts_shapes_and_stats(post):
    assert post.samples["alpha"].shape == (2, 20)
    assert post.samples["y0"].shape == (2, 20, 1, 2)
    for k in ("diverging", "tree_depth", "num_steps", "solver_failures", "solver_failures_blow_up"):
        assert post.sample_stats[k].shape == (2, 20), k
    assert post.settings["seed"] == 0 and post.settings["chain_method"] == "sequential"  # "auto" on one CPU device
    assert "numpyro" in post.settings["versions"]


def test_to_arviz_groups_dims_coords(post, data):
    idata = post.to_arviz(key=0)
    for g in ("posterior", "posterior_predictive", "log_likelihood", "sample_stats", "observed_data", "constant_data"):
        assert g in idata.groups(), g
    assert idata.posterior["y0"].dims == ("chain", "draw", "series", "state")
    assert list(idata.posterior["sigma"].coords["state"].values) == ["hare", "lynx"]
    traj = idata.posterior_predictive["trajectory"]
    assert traj.dims == ("chain", "draw", "series", "time", "state")
    np.testing.assert_allclose(traj.coords["time"].values, TS + 1900.0)  # real times, not indices
    assert idata.log_likelihood["obs"].shape == (2, 20, YS.size)
    assert set(idata.log_likelihood["obs"].coords) >= {"obs_series", "obs_time", "obs_state"}
    assert set(idata.observed_data["hare"].coords) >= {"hare_series", "hare_time"}
    assert idata.prior["alpha"].shape[0] == 1 and "prior_predictive" in idata.groups()
    for k in ("diverging", "tree_depth", "lp", "energy", "solver_failures"):
        assert k in idata.sample_stats, k
    with warnings.catch_warnings():
        # 20 draws are too few for stable Pareto-k estimates; the smoke test checks plumbing only.
        warnings.simplefilter("ignore", UserWarning)
        loo = az.loo(idata)
    assert np.isfinite(loo.elpd_loo)


@contextlib.contextmanager
def traced_functions():
    """Names of the functions JAX traces (to compile, or to look up in the compile cache) meanwhile."""
    names = []

    def listen(event, duration, **kw):
        if event == "/jax/core/compile/jaxpr_trace_duration":
            names.append(kw.get("fun_name"))

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        yield names
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)


def test_same_seed_same_draws_different_seed_differs(lv, data, post):
    # Fits of the same model and shapes reuse the compiled sampler: nothing is traced again,
    # for new data values or a new seed either.
    new_values = bo.make_data(TS + 1900.0, YS * 1.1, state_names=["hare", "lynx"])
    with traced_functions() as traced:
        again = bo.run_nuts(lv, data, key=0, **SMALL)
        other = bo.run_nuts(lv, data, key=1, **SMALL)
        bo.run_nuts(lv, new_values, key=2, **SMALL)
    assert traced == [], traced
    for k in post.samples:
        np.testing.assert_array_equal(again.samples[k], post.samples[k])
    assert not np.array_equal(other.samples["alpha"], post.samples["alpha"])


def test_netcdf_round_trip_is_exact(post, tmp_path):
    path = tmp_path / "fit.nc"
    post.save(path, key=0)
    loaded = bo.Posterior.load(path)  # the model comes back from its stored recipe
    a, b = post.to_arviz(), az.from_netcdf(path)
    for g in a.groups():
        assert a[g].equals(b[g]) or all(np.array_equal(a[g][v].values, b[g][v].values) for v in a[g].data_vars), g
    for k in post.samples:
        np.testing.assert_array_equal(loaded.samples[k], post.samples[k])
    np.testing.assert_array_equal(loaded.data.ys, post.data.ys)
    new = np.array([1900.0, 1910.0, 1920.0])
    p1, p2 = post.predict(new, key=3), loaded.predict(new, key=3)
    np.testing.assert_array_equal(p1["trajectory"].values, p2["trajectory"].values)


def test_predict_forecast_bands_widen(post):
    pred = post.predict(np.linspace(1900.0, 1930.0, 31), key=0)
    assert pred["trajectory"].dims == ("chain", "draw", "series", "time", "state")
    width = pred["trajectory"].quantile(0.95, ("chain", "draw")) - pred["trajectory"].quantile(0.05, ("chain", "draw"))
    w = width.isel(series=0).mean("state").values
    assert w[-5:].mean() > w[:5].mean()  # forecast uncertainty grows past the data
    with pytest.raises(bo.DataError, match="before the start"):
        post.predict(np.array([1800.0, 1900.0]), key=0)


def test_missing_values_are_masked(lv):
    ys = YS.copy()
    ys[[2, 5], 0] = np.nan
    ys[7, 1] = np.nan
    post = bo.run_nuts(lv, TS, ys, key=0, **SMALL)
    idata = post.to_arviz(key=0)
    # columns named y0, y1 by default: y0 is exported as obs_y0 (y0 is also the initial-state site)
    assert list(idata.observed_data.data_vars) == ["obs_y0", "y1"]
    assert idata.observed_data["obs_y0"].size + idata.observed_data["y1"].size == YS.size - 3
    assert np.isnan(idata.constant_data["ys"].values).sum() == 3
    assert np.all(np.isfinite(idata.log_likelihood["obs"].values))


def test_blown_up_field_during_nuts_finishes_and_counts_failures():
    # y' = k y^2 blows up before t=6 whenever k y0 > 1/6: a wide prior on k makes many proposals fail.
    model = bo.make_model(
        bo.MechanisticField(lambda t, y, p, a: p["k"] * y**2 - 0.5 * y, {"k": 0.0}, state_dim=1),
        param_priors={"k": dist.Normal(0.0, 1.0)},
        y0_prior=dist.LogNormal(0.0, 0.3),
    )
    ts = np.linspace(0.0, 6.0, 9)
    ys = np.exp(-0.5 * ts)[:, None] + 0.05 * np.random.default_rng(1).standard_normal((9, 1))
    post = bo.run_nuts(model, ts, ys, key=0, num_warmup=100, num_samples=100, num_chains=2, progress=False)
    total = post.sample_stats["solver_failures"].sum() + post.settings["warmup_solver_failures"]["total"]
    assert total > 0
    assert np.all(np.isfinite(post.samples["k"]))
    assert post.samples["k"].mean() < 0.2  # blown-up proposals were rejected, not accepted
    diag = post.diagnostics()
    assert "solver_failures" in diag


def test_all_starts_fail_gives_clear_error():
    model = bo.make_model(
        bo.MechanisticField(lambda t, y, p, a: p["k"] * jnp.full_like(y, jnp.nan), {"k": 0.0}, state_dim=1),
        param_priors={"k": dist.LogNormal(3.0, 0.1)},  # NaN field: every start fails
        y0_prior=dist.LogNormal(0.0, 0.1),
    )
    with pytest.raises(bo.InitializationError, match=r"100% gave a failed solve; by cause: \{'nonfinite': 100\}. Fix: the initial state or field"):
        bo.run_nuts(model, np.linspace(0.0, 6.0, 9), np.ones((9, 1)), key=0, **SMALL)
    with pytest.raises(bo.InitializationError, match=r"100% gave a failed solve; by cause: \{'nonfinite': 100\}"):
        bo.run_svi(model, np.linspace(0.0, 6.0, 9), np.ones((9, 1)), key=0, num_steps=5, progress=False)


def test_svi_looks_for_a_finite_start_when_the_prior_median_fails_the_model(monkeypatch):
    """The guide starts at the prior median, checked against the prior only; where the model
    fails there, run_svi falls back to NumPyro's set-up on the whole model, which retries."""
    from numpyro.infer import SVI

    calls = []
    original = SVI.init
    monkeypatch.setattr(SVI, "init", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    model = bo.make_model(  # NaN field for |k| < 0.5, where the median of 15 prior draws nearly always is
        bo.MechanisticField(lambda t, y, p, a: jnp.where(jnp.abs(p["k"]) < 0.5, jnp.nan, -p["k"]) * y, {"k": 0.0},
                            state_dim=1),
        param_priors={"k": dist.Normal(0.0, 1.0)},
        y0_prior=dist.LogNormal(0.0, 0.3),
    )
    ts = np.linspace(0.0, 3.0, 7)
    svi = bo.run_svi(model, ts, np.exp(-ts)[:, None], key=0, num_steps=50, num_draws=20, progress=False)
    assert len(calls) == 2  # traced once for the compiled init, then NumPyro's own (eager) set-up
    assert np.isfinite(svi.losses[0])
    assert np.all(np.abs(svi.samples["k"]) >= 0.5)


def test_svi_smoke(lv, data):
    with pytest.raises(bo.ConfigError, match="SVI needs reverse-mode gradients"):
        bo.run_svi(bo.models.lotka_volterra(adjoint="forward"), data, key=0, num_steps=20, progress=False)
    # the preset's ForwardSensitivity is differentiated in reverse mode: SVI runs
    svi = bo.run_svi(lv, data, key=0, num_steps=20, num_draws=50, progress=False)
    assert svi.losses[-1] < svi.losses[0]
    assert svi.losses.shape == (20,)
    assert svi.samples["alpha"].shape == (1, 50)
    idata = svi.to_arviz(key=0)
    assert "svi" in idata.groups() and idata.svi["loss"].size == 20


def test_svi_gives_the_same_fit_with_and_without_progress(capsys):
    """The progress line is drawn between compiled chunks, so showing it changes no float (NumPyro's
    ``SVI.run`` ran a different program with its bar on: the main job's loss moved by 1.4); a
    partial last chunk passes the state through, so a shorter run is a prefix of a longer one."""
    from bayesode.infer.svi import SVI_CHUNK

    decay = bo.MechanisticField(lambda t, y, p, a: -p["k"] * y, {"k": 0.5}, state_dim=1)  # small: cheap to compile
    model = bo.make_model(decay, param_priors={"k": dist.LogNormal(0.0, 0.5)}, y0_prior=dist.LogNormal(0.0, 0.3))
    data, n = bo.make_data(TS, YS[:, :1] / 30.0), SVI_CHUNK + 10
    fits = {p: bo.run_svi(model, data, key=1, optimizer=optax.adam(0.01), num_steps=n, num_draws=20, progress=p)
            for p in (True, False)}  # fmt: skip
    bars = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("svi: ")]  # one per chunk
    assert len(bars) == 2 and bars[-1].startswith("svi: 100%|") and f"{n}/{n}" in bars[-1], bars
    np.testing.assert_array_equal(fits[True].losses, fits[False].losses)
    np.testing.assert_array_equal(fits[True].samples["k"], fits[False].samples["k"])
    shorter = bo.run_svi(model, data, key=1, optimizer=optax.adam(0.01), num_steps=n - 20, num_draws=20, progress=False)
    np.testing.assert_array_equal(shorter.losses, fits[False].losses[: n - 20])
    assert fits[False].losses[-1] < fits[False].losses[0]


def test_a_second_svi_fit_of_the_same_shapes_traces_no_optimisation_and_equals_a_fresh_one():
    """The SVI program (guide, optimiser, compiled chunk) is cached on the model. A second fit on
    other data of the same shapes traces no optimisation step, and gives the same numbers as a
    fit of a freshly built model (the cached guide is set up again from the new data)."""
    from bayesode.infer.svi import SVI_CHUNK

    def model():
        decay = bo.MechanisticField(lambda t, y, p, a: -p["k"] * y, {"k": 0.5}, state_dim=1)
        return bo.make_model(decay, param_priors={"k": dist.LogNormal(0.0, 0.5)})  # y0 prior centred on the data

    cached = model()
    kw = dict(num_steps=SVI_CHUNK, num_draws=20, progress=False, guide="full-rank")
    bo.run_svi(cached, TS, YS[:, :1] / 30.0, key=0, **kw)
    other_data = YS[:, 1:] / 4.0  # other values, same shapes; its own y0 prior centre
    with traced_functions() as traced:
        second = bo.run_svi(cached, TS, other_data, key=1, **kw)
    # NumPyro's guide draws eagerly through one small `lax.map` ("scan"), traced per call and
    # then found in the compile cache; the optimisation itself is not traced again.
    assert set(traced) <= {"scan"}, traced
    fresh = bo.run_svi(model(), TS, other_data, key=1, **kw)
    np.testing.assert_array_equal(second.losses, fresh.losses)
    for k in fresh.samples:
        np.testing.assert_array_equal(second.samples[k], fresh.samples[k])


def test_checkpoint_resume_returns_the_same_draws(lv, data, tmp_path, post):
    first = bo.run_nuts(lv, data, key=0, chunk_size=10, checkpoint_dir=str(tmp_path), **SMALL)
    for k in post.samples:
        np.testing.assert_array_equal(first.samples[k], post.samples[k])  # chunking does not change draws
    again = bo.run_nuts(lv, data, key=0, chunk_size=10, checkpoint_dir=str(tmp_path), **SMALL)
    np.testing.assert_array_equal(again.samples["alpha"], first.samples["alpha"])
    with pytest.raises(bo.ConfigError, match="different settings"):
        bo.run_nuts(lv, data, key=5, chunk_size=10, checkpoint_dir=str(tmp_path), **SMALL)
    # A state.npz as versions before the equinox format wrote it (leaves as state_0, state_1, ...):
    # a clear error, not a silent misread.
    state = tmp_path / "state.npz"
    with np.load(state) as z:
        old = {k: z[k] for k in z.files if k != "states"}
    np.savez(state, state_0=np.zeros(2, np.float32), **old)
    with pytest.raises(bo.ConfigError, match="older version of bayesode.*new `checkpoint_dir`"):
        bo.run_nuts(lv, data, key=0, chunk_size=10, checkpoint_dir=str(tmp_path), **SMALL)


def test_checkpoint_state_round_trips_and_a_mismatched_state_is_a_config_error(tmp_path):
    from bayesode.infer.checkpoint import load_checkpoint, save_checkpoint
    from bayesode.solving.failures import FailureLog

    states = {"z": np.arange(6, dtype=np.float32).reshape(2, 3), "i": np.array([4, 4], np.int32)}
    meta = {"iteration": 4, "num_chains": 2}
    save_checkpoint(tmp_path, meta, states, [np.ones((2, 4))], {"diverging": np.zeros((2, 4), bool)}, FailureLog())
    like = jax.tree.map(np.zeros_like, states)
    done, loaded, draws, stats, *_ = load_checkpoint(tmp_path, meta, like)
    assert done == 4 and isinstance(loaded["z"], jax.Array)
    for k in states:
        np.testing.assert_array_equal(loaded[k], states[k])
        assert loaded[k].dtype == states[k].dtype
    np.testing.assert_array_equal(draws[0], np.ones((2, 4)))
    with pytest.raises(bo.ConfigError, match="does not match this run"):  # e.g. another number of chains
        load_checkpoint(tmp_path, meta, dict(like, z=np.zeros((3, 3), np.float32)))


def test_thinning_keeps_every_nth_draw_and_resumes_to_the_same_draws(lv, data, tmp_path, post, monkeypatch):
    # NumPyro's convention: num_samples // thinning draws, counted back from the last (20 % 3 = 2: draws 2, 5, ... 17).
    import bayesode.infer.nuts as nuts

    real_save = nuts.save_checkpoint

    def save_then_interrupt(path, meta, *args):  # a Ctrl-C after the checkpoint at iteration 40 (10 draws in)
        real_save(path, meta, *args)
        if meta["iteration"] == 40:
            raise KeyboardInterrupt

    monkeypatch.setattr(nuts, "save_checkpoint", save_then_interrupt)
    with pytest.warns(UserWarning, match="interrupted at iteration 40"):
        part = bo.run_nuts(lv, data, key=0, chunk_size=10, checkpoint_dir=str(tmp_path), thinning=3, **SMALL)
    assert part.samples["alpha"].shape == (2, 3)  # draws 2, 5, 8 of the first 10
    monkeypatch.setattr(nuts, "save_checkpoint", real_save)
    thinned = bo.run_nuts(lv, data, key=0, chunk_size=10, checkpoint_dir=str(tmp_path), thinning=3, **SMALL)
    assert thinned.settings["thinning"] == 3 and post.settings["thinning"] == 1
    for k in post.samples:
        assert thinned.samples[k].shape[:2] == (2, 20 // 3)
        np.testing.assert_array_equal(thinned.samples[k], post.samples[k][:, 2::3])
    for k in ("diverging", "energy", "num_steps", "solver_failures", "tree_depth"):
        np.testing.assert_array_equal(thinned.sample_stats[k], post.sample_stats[k][:, 2::3])
    assert thinned.to_arviz(key=0).posterior.sizes["draw"] == 6
    # its checkpoint holds thinned draws: an unthinned run must not resume from it
    with pytest.raises(bo.ConfigError, match="different settings"):
        bo.run_nuts(lv, data, key=0, chunk_size=10, checkpoint_dir=str(tmp_path), **SMALL)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_warmup": -1}, "`num_warmup` must be a non-negative int"),
        ({"num_samples": 0}, "`num_samples` must be a positive int"),
        ({"num_chains": 1.5}, "`num_chains` must be a positive int"),
        ({"thinning": 0}, "`thinning` must be a positive int"),
        ({"thinning": 2.0}, "`thinning` must be a positive int"),
        ({"num_samples": 5, "thinning": 6}, "`thinning`=6 keeps no draw of num_samples=5"),
        ({"chain_method": "pmap"}, "`chain_method`='pmap' is unknown"),
        ({"target_accept_prob": 1.0}, r"`target_accept_prob` must be in \(0, 1\)"),
        ({"key": None}, "`key` is required"),
        ({"key": "seed"}, "`key` must be a PRNG key or an int seed"),
    ],
)
def test_run_nuts_argument_errors(lv, data, kwargs, match):
    args = dict(key=0, progress=False)
    args.update(kwargs)
    with pytest.raises(bo.ConfigError, match=match):
        bo.run_nuts(lv, data, **args)


def test_nonfinite_starts_retry_only_the_bad_chains_and_report_the_rest():
    from types import SimpleNamespace

    from bayesode.infer import retry_nonfinite_starts

    def init(z):  # a "log density" finite only for x > 0
        return SimpleNamespace(z=z, potential_energy=np.where(np.asarray(z["x"])[:, 0] > 0, 1.0, np.inf))

    calls = []

    def retry(attempt):  # every chain's candidate; chains 1 and 2 become valid on the second attempt
        calls.append(attempt)
        return {"x": jnp.asarray([[-1.0], [attempt - 1.5], [attempt - 1.5]])}

    z = {"x": jnp.asarray([[0.5], [-1.0], [-2.0]])}
    states, bad = retry_nonfinite_starts(z, init, retry)
    assert calls == [1, 2] and not bad.any()
    np.testing.assert_array_equal(np.asarray(states.z["x"])[:, 0], [0.5, 0.5, 0.5])  # chain 0 kept its start
    states, bad = retry_nonfinite_starts(z, init, lambda a: {"x": -jnp.ones((3, 1))}, attempts=3)
    assert bad.tolist() == [False, True, True]


def test_a_chain_stuck_in_a_poor_mode_is_restarted_from_a_good_chain_in_warmup(tmp_path):
    """Decay rate with a two-spike prior, 0.7 (the data's rate) or 2.0: a chain started at 2.0 cannot cross
    the gap between the spikes (prior log density ~-500 between them) and, with the noise known, its log
    density sits ~80 nats below the other chain's. With restarts on (the default) it takes chain 0's state at the half-warmup
    check and samples the good mode; with them off it stays at 2.0. Chain 0 is untouched either way."""
    decay = bo.MechanisticField(lambda t, y, p, a: -p["k"] * y, {"k": 0.5}, state_dim=1)
    spikes = dist.MixtureSameFamily(dist.Categorical(probs=jnp.array([0.5, 0.5])),
                                    dist.Normal(jnp.array([0.7, 2.0]), 0.02))  # fmt: skip
    model = bo.make_model(decay, param_priors={"k": spikes}, y0_prior=dist.LogNormal(0.0, 0.3),
                          likelihood=bo.NormalNoise(sigma=0.05))  # fmt: skip
    ts = np.linspace(0.0, 3.0, 7)
    ys = np.exp(-0.7 * ts)[:, None] * np.exp(0.05 * np.random.default_rng(0).standard_normal((7, 1)))
    inits = {"k": np.array([0.7, 2.0]), "y0": np.ones((2, 1, 1))}
    kw = dict(key=0, num_warmup=100, num_samples=30, num_chains=2, chunk_size=25, init_params=inits, progress=False)
    on = bo.run_nuts(model, ts, ys, **kw)
    off = bo.run_nuts(model, ts, ys, restart_stuck_chains=False, **kw)
    [r] = on.settings["restarted_chains"]
    assert (r["chain"], r["donor"], r["iteration"]) == (1, 0, 50)  # half the warmup, a chunk boundary
    assert r["potential"] - r["donor_potential"] > 50
    assert np.all(np.abs(on.samples["k"] - 0.7) < 0.1)
    assert np.all(np.abs(off.samples["k"][1] - 2.0) < 0.1) and off.settings["restarted_chains"] == []
    np.testing.assert_array_equal(on.samples["k"][0], off.samples["k"][0])
    assert not np.array_equal(on.samples["k"][1], on.samples["k"][0])  # its own key: its own path
    assert any("chain 1 was stuck in warmup" in w for w in on.diagnostics()["warnings"])
    assert not any("stuck" in w for w in off.diagnostics()["warnings"])
    on.save(tmp_path / "fit.nc", key=0)  # the record survives the netCDF round trip
    assert bo.Posterior.load(tmp_path / "fit.nc").settings["restarted_chains"] == on.settings["restarted_chains"]


def _two_spike_decay():
    """The stuck-chain case above: chain 1 starts in the far poorer spike (k = 2.0) and cannot leave it."""
    decay = bo.MechanisticField(lambda t, y, p, a: -p["k"] * y, {"k": 0.5}, state_dim=1)
    spikes = dist.MixtureSameFamily(dist.Categorical(probs=jnp.array([0.5, 0.5])),
                                    dist.Normal(jnp.array([0.7, 2.0]), 0.02))  # fmt: skip
    model = bo.make_model(decay, param_priors={"k": spikes}, y0_prior=dist.LogNormal(0.0, 0.3),
                          likelihood=bo.NormalNoise(sigma=0.05))  # fmt: skip
    ts = np.linspace(0.0, 3.0, 7)
    ys = np.exp(-0.7 * ts)[:, None] * np.exp(0.05 * np.random.default_rng(0).standard_normal((7, 1)))
    inits = {"k": np.array([0.7, 2.0]), "y0": np.ones((2, 1, 1))}
    kw = dict(key=0, num_warmup=100, num_samples=30, num_chains=2, chunk_size=25, init_params=inits)
    return model, ts, ys, kw


@pytest.mark.slow  # three fits of 130 iterations (about 2.5 min on the busy 2-core machine)
def test_stuck_chains_policy_report_or_drop_never_replaces_a_chain_unseen(tmp_path, capsys):
    model, ts, ys, kw = _two_spike_decay()
    report = bo.run_nuts(model, ts, ys, stuck_chains="report", progress=True, **kw)
    err = capsys.readouterr().err
    assert "stuck chains (stuck_chains='report'): chain(s) 1" in err and "left as they are" in err
    [found] = report.settings["stuck_chains_found"]
    assert (found["chain"], found["iteration"]) == (1, 50) and found["potential"] - found["best_potential"] > 50
    assert report.settings["stuck_chains"] == "report" and report.settings["restarted_chains"] == []
    assert np.all(np.abs(report.samples["k"][1] - 2.0) < 0.1)  # left where it went
    # The older alias gives the same run (restart_stuck_chains=False: no chain moved).
    alias = bo.run_nuts(model, ts, ys, restart_stuck_chains=False, progress=False, **kw)
    assert alias.settings["stuck_chains"] == "report"
    np.testing.assert_array_equal(alias.samples["k"], report.samples["k"])
    drop = bo.run_nuts(model, ts, ys, stuck_chains="drop", progress=False, **kw)
    assert drop.settings["dropped_chains"] == [1] and drop.settings["stuck_chains_found"] == [found]
    assert drop.samples["k"].shape == (1, 30) and drop.sample_stats["diverging"].shape == (1, 30)
    np.testing.assert_array_equal(drop.samples["k"], report.samples["k"][:1])  # the other chain's draws unchanged
    drop.save(tmp_path / "fit.nc", key=0)  # the records survive the netCDF round trip
    loaded = bo.Posterior.load(tmp_path / "fit.nc").settings
    assert loaded["stuck_chains_found"] == [found] and loaded["dropped_chains"] == [1]
    with pytest.raises(bo.ConfigError, match="`stuck_chains`='keep' is unknown; choose one of"):
        bo.run_nuts(model, ts, ys, stuck_chains="keep", **kw)
    with pytest.raises(bo.ConfigError, match="`restart_stuck_chains`=False contradicts `stuck_chains`='drop'"):
        bo.run_nuts(model, ts, ys, stuck_chains="drop", restart_stuck_chains=False, **kw)


def test_progress_shows_compiling_as_a_phase_and_plain_lines_off_a_terminal(lv, data, post, capsys):
    # Same model, shapes and settings as the module's fit: the programs are compiled already, and
    # the phase lines still frame each step. Output captured by pytest is not a terminal.
    again = bo.run_nuts(lv, data, key=0, **dict(SMALL, progress=True))
    err = capsys.readouterr().err
    np.testing.assert_array_equal(again.samples["alpha"], post.samples["alpha"])  # progress changes no draw
    assert "\r" not in err
    lines = err.splitlines()
    first = lines.index("compiling the sampler (once per model, data shapes and settings) ...")
    assert lines[first + 1].startswith("compiling the sampler (once per model, data shapes and settings): ")
    bars = [ln for ln in lines if ln.startswith("nuts: ")]
    assert len(bars) == 1 and "50/50" in bars[0] and "phase=sample" in bars[0] and "divergences=" in bars[0]
    assert lines.index(bars[0]) > first + 1 and lines[-1].startswith("collecting the draws: ")
    assert again.settings["compile_s"] >= again.settings["init_and_compile_s"] > 0


@pytest.mark.slow  # compiles SVI and NUTS for two small models (about 7 min on the busy 2-core machine)
def test_svi_nuts_and_neural_linear_keep_the_time_name_given_with_arrays():
    # Before: both passed only state_names/series_names/t0 to make_data, so time_name went on to
    # run_nuts/run_svi with the Data already made, and the fit stopped with a DataError.
    tiny = dict(key=0, time_name="year", progress=False)
    decay = bo.MechanisticField(lambda t, y, p, a: -p["k"] * y, {"k": 0.5}, state_dim=1)  # small: cheap to compile
    model = bo.make_model(decay, param_priors={"k": dist.LogNormal(0.0, 0.5)}, y0_prior=dist.LogNormal(0.0, 0.3))
    ys = YS[:, :1] / 30.0
    post = bo.run_svi_nuts(model, TS, ys, svi_steps=20, guide="mean-field", num_warmup=5, num_samples=5,
                           num_chains=1, **tiny)  # fmt: skip
    assert post.data.time_name == "year"
    neural = bo.models.neural(data=bo.make_data(TS, ys), width=2, depth=1)
    post = bo.run_neural_linear(neural, TS, ys, method="svi", hidden_svi_steps=20, num_draws=5, **tiny)
    assert post.data.time_name == "year"


def test_ctrl_c_in_svi_keeps_the_fit_so_far_and_says_it_was_interrupted(monkeypatch):
    import signal

    import bayesode.infer.svi

    decay = bo.MechanisticField(lambda t, y, p, a: -p["k"] * y, {"k": 0.5}, state_dim=1)  # small: cheap to compile
    model = bo.make_model(decay, param_priors={"k": dist.LogNormal(0.0, 0.5)}, y0_prior=dist.LogNormal(0.0, 0.3))
    data = bo.make_data(TS, YS[:, :1] / 30.0)

    class CtrlCAfterFirstChunk(bayesode.infer.svi.Progress):
        def update(self, done, **figures):
            super().update(done, **figures)
            signal.raise_signal(signal.SIGINT)  # as the user pressing Ctrl-C while the first chunk ran

    monkeypatch.setattr(bayesode.infer.svi, "Progress", CtrlCAfterFirstChunk)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.warns(UserWarning, match="interrupted after 250 of 750 SVI steps; returning draws from the guide"):
        post = bo.run_svi(model, data, key=0, num_steps=750, guide="mean-field", num_draws=10, progress=False)
    assert post.settings["interrupted"] is True and len(post.losses) == 250
    assert post.samples["k"].shape == (1, 10)
    assert signal.getsignal(signal.SIGINT) is handler  # put back
    with pytest.raises(KeyboardInterrupt, match="interrupted during the SVI stage of run_svi_nuts"), \
            pytest.warns(UserWarning, match="interrupted after 250"):  # fmt: skip
        bo.run_svi_nuts(model, data, key=0, svi_steps=750, guide="mean-field", num_warmup=5, num_samples=5,
                        num_chains=1, progress=False)
