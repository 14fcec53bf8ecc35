"""The results wing: predictive draws (one runner), required keys, and the InferenceData export.

The posterior is built by hand (draws scattered around known Lotka-Volterra parameters), so no
sampler is compiled; only the predictive program is.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bayesode as bo
from bayesode.results import model_draws
from bayesode.results.predictive import DRAW_PROGRAMS

TS = np.linspace(0.0, 6.0, 11)
TRUE = {"alpha": 0.55, "beta": 0.028, "gamma": 0.8, "delta": 0.024}
CLEAN = np.asarray(bo.solve(bo.lotka_volterra_field(**TRUE), jnp.array([30.0, 4.0]), TS).ys)
YS = CLEAN * np.exp(0.1 * np.random.default_rng(0).standard_normal(CLEAN.shape))
CHAINS, DRAWS = 2, 25
N_PRED = 31  # every prediction on N_PRED times: one compiled predictive program


@pytest.fixture(scope="module")
def data():
    return bo.make_data(TS + 1900.0, YS, state_names=["hare", "lynx"])


@pytest.fixture(scope="module")
def lv():
    return bo.models.lotka_volterra()


@pytest.fixture(scope="module")
def post(data, lv):
    rng = np.random.default_rng(1)
    jitter = lambda shape: np.exp(0.05 * rng.standard_normal((CHAINS, DRAWS) + shape))  # noqa: E731
    samples = {k: (v * jitter(())).astype(np.float32) for k, v in TRUE.items()}
    samples["y0"] = (np.array([30.0, 4.0]) * jitter((1, 2))).astype(np.float32)
    samples["sigma"] = (0.1 * jitter((2,))).astype(np.float32)
    return bo.Posterior(samples, {}, data, lv, {"method": "test"})


# ------------------------------------------------------------------ keys are required where draws are made
@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda p: p.predict(np.linspace(1900.0, 1906.0, N_PRED), key=None), id="predict"),
        pytest.param(lambda p: p.to_arviz(), id="to_arviz"),
        pytest.param(lambda p: p.save("unused.nc"), id="save"),
        pytest.param(lambda p: bo.series_predictions(p, num_points=N_PRED, key=None), id="series_predictions"),
        pytest.param(lambda p: bo.plot_trajectories(p, num_points=N_PRED, key=None), id="plot_trajectories"),
        pytest.param(lambda p: bo.plot_phase(p, num_points=N_PRED, key=None), id="plot_phase"),
    ],
)
def test_draws_need_a_key(data, lv, call):
    fresh = bo.Posterior({k: np.ones((1, 2)) for k in TRUE}, {}, data, lv, {})  # nothing exported yet
    with pytest.raises(bo.ConfigError, match=r"`key` is required"):
        call(fresh)


def test_key_omitted_is_a_type_error_naming_it(post):
    with pytest.raises(TypeError, match="key"):
        post.predict(np.linspace(1900.0, 1906.0, N_PRED))
    with pytest.raises(TypeError, match="key"):
        bo.plot_trajectories(post, num_points=N_PRED)


def test_same_key_same_draws_other_key_other_draws(post):
    ts = np.linspace(1900.0, 1906.0, N_PRED)
    a, b, c = (post.predict(ts, key=k)["obs"].values for k in (3, 3, 4))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    # the noise-free trajectory does not depend on the key
    np.testing.assert_array_equal(post.predict(ts, key=3)["trajectory"], post.predict(ts, key=4)["trajectory"])


def test_prediction_programs_live_in_the_results_wing_not_on_the_model(post):
    ts = np.linspace(1900.0, 1906.0, N_PRED)

    def programs():
        return {k: v for k, v in DRAW_PROGRAMS._entries.items() if k[0] is post.model}

    post.predict(ts, key=3)
    first = programs()
    assert first  # the compiled draw program is kept, keyed by this model
    post.predict(ts, key=4)
    second = programs()
    assert second.keys() == first.keys() and all(second[k] is first[k] for k in first)  # reused, not rebuilt
    assert not [k for k in vars(post.model) if k.startswith("_bayesode")], vars(post.model).keys()


def test_to_arviz_key_selects_the_draws_and_is_cached(post):
    a = post.to_arviz(key=5)
    assert post.to_arviz() is a and post.to_arviz(key=5) is a  # no key: the InferenceData already made
    b = post.to_arviz(key=6)
    assert b is not a
    noisy = [v for v in a.posterior_predictive.data_vars if v != "trajectory"]
    assert noisy and not any(np.allclose(a.posterior_predictive[v], b.posterior_predictive[v]) for v in noisy)
    np.testing.assert_array_equal(a.posterior_predictive["trajectory"], b.posterior_predictive["trajectory"])


# ------------------------------------------------------------------ one predictive runner
def test_model_draws_prior_matches_one_traced_draw(data, lv):
    """Prior draws from the batched runner equal the model traced by hand, one key at a time."""
    from numpyro import handlers

    md = data.model_data()
    keys = jax.random.split(jax.random.PRNGKey(7), 3)
    out = model_draws(lv, md, keys)
    for i, k in enumerate(keys):
        tr = handlers.trace(handlers.seed(lv, k)).get_trace(md)
        np.testing.assert_allclose(out["latents"]["alpha"][i], tr["alpha"]["value"], rtol=1e-6)
        # batched vs one-at-a-time float32 solves: equal to round-off (1e-6 of the largest state)
        np.testing.assert_allclose(out["trajectory"][i], tr["trajectory"]["value"], rtol=1e-4, atol=1e-4)
        fresh = tr["obs"]["fn"].sample(jax.random.fold_in(k, 1))
        np.testing.assert_allclose(out["obs"][i], fresh, rtol=1e-4, atol=1e-4)
        # log-normal log-likelihood: round-off in a state near 0 is amplified by log, so compare where it is not
        away = np.asarray(tr["trajectory"]["value"]) > 1e-2
        want = np.asarray(tr["obs"]["fn"].log_prob(tr["obs"]["value"]))
        np.testing.assert_allclose(out["log_lik"][i][away], want[away], rtol=1e-4)


def test_fitted_is_the_exported_trajectory(post):
    fitted = post.fitted()
    assert fitted["trajectory"].shape == (CHAINS, DRAWS, 1, TS.size, 2)
    assert np.all(fitted["status"] == 0)
    idata = post.to_arviz(key=0)
    np.testing.assert_allclose(fitted["trajectory"], idata.posterior_predictive["trajectory"].values, rtol=1e-6)


# ------------------------------------------------------------------ InferenceData as ArviZ users expect it
@pytest.fixture(scope="module")
def idata(post):
    return post.to_arviz(key=0, prior_draws=60)


def test_prior_groups_and_one_observed_variable_per_state(idata, post):
    for g in ("posterior", "prior", "posterior_predictive", "prior_predictive", "log_likelihood", "observed_data"):
        assert g in idata.groups(), g
    assert set(idata.prior.data_vars) == set(idata.posterior.data_vars)
    assert idata.prior["alpha"].shape == (1, 60)  # one chain of prior draws
    assert idata.prior["y0"].dims == idata.posterior["y0"].dims == ("chain", "draw", "series", "state")
    # the prior differs from the posterior (drawn, not copied)
    assert float(idata.prior["alpha"].std()) > 3 * float(idata.posterior["alpha"].std())
    for k, name in enumerate(["hare", "lynx"]):
        np.testing.assert_allclose(idata.observed_data[name].values, YS[:, k])
        np.testing.assert_allclose(idata.observed_data[name].coords[f"{name}_time"].values, TS + 1900.0)
        assert idata.posterior_predictive[name].shape == (CHAINS, DRAWS, TS.size)
        assert idata.prior_predictive[name].shape == (1, 60, TS.size)
    assert "obs" not in idata.observed_data  # not pooled into one flat variable
    # log-likelihood: every entry, hare's then lynx's, so az.loo needs no var_name
    ll = idata.log_likelihood["obs"]
    assert ll.shape == (CHAINS, DRAWS, YS.size)
    assert list(ll.coords["obs_state"].values) == ["hare"] * TS.size + ["lynx"] * TS.size
    # stored in float64 whatever the fit's precision: ArviZ's PSIS-LOO returned NaN on a float32 one
    assert post.precision == "float32" and ll.dtype == np.float64


def test_readable_weight_names_and_dims(data):
    from bayesode.model.priors import field_sites
    from bayesode.results.export import latent_layout

    model = bo.models.neural(data=data, width=4, depth=2)
    samples = {name: np.zeros((1, 2) + shape) for name, shape, _ in field_sites(model.spec.field)}
    variables, dims, coords = latent_layout(samples, model.spec, data)
    assert variables["field.layer1.weight"] == "field.layers[1].weight"
    assert dims["field.layer0.weight"] == ["hidden1", "state"]  # unit of hidden layer 1 <- state (input)
    assert dims["field.layer1.weight"] == ["hidden2", "hidden1"]
    assert dims["field.layer2.weight"] == ["state", "hidden2"]  # dy/dt of each state <- hidden layer 2
    assert dims["field.layer2.bias"] == ["state"]
    assert list(coords["hidden1"]) == [0, 1, 2, 3]


# ArviZ 0.23 calls a matplotlib helper that matplotlib 3.11 deprecates (upstream, harmless).
@pytest.mark.filterwarnings("ignore:Passing a dict or None as alias_mapping:matplotlib.MatplotlibDeprecationWarning")
def test_arviz_functions_work_on_the_export(idata):
    import warnings

    import arviz as az
    import matplotlib.pyplot as plt

    with warnings.catch_warnings():
        # 50 draws are too few for stable Pareto-k estimates; this checks the layout, not the fit.
        warnings.simplefilter("ignore", UserWarning)
        loo = az.loo(idata)
    assert np.isfinite(loo.elpd_loo) and loo.n_data_points == YS.size
    summary = az.summary(idata, var_names=["alpha", "sigma"], kind="stats")
    assert list(summary.index) == ["alpha", "sigma[hare]", "sigma[lynx]"]
    axes = np.ravel(az.plot_ppc(idata, num_pp_samples=10, random_seed=0))
    assert sorted(ax.get_xlabel() for ax in axes) == ["hare", "lynx"]  # one panel per state, not pooled
    axes = az.plot_dist_comparison(idata, var_names=["alpha"])
    assert np.size(axes) == 3  # prior, posterior, both
    plt.close("all")


@pytest.mark.slow  # a neural model: compiles its posterior export and a prediction (~60-100 s on a busy box)
def test_netcdf_round_trip_keeps_readable_names_and_predicts_the_same(data, tmp_path):
    """A neural fit saved and loaded: readable names on disk, site names back in ``samples``."""
    from bayesode.model.priors import field_sites

    model = bo.models.neural(data=data, width=3, depth=1)
    rng = np.random.default_rng(4)
    samples = {n: 0.3 * rng.normal(size=(1, 4) + s).astype(np.float32) for n, s, _ in field_sites(model.spec.field)}
    samples["y0"] = np.broadcast_to(YS[0].astype(np.float32), (1, 4, 1, 2)).copy()
    samples["sigma"] = np.full((1, 4, 2), 0.2, np.float32)
    fit = bo.Posterior(samples, {}, data, model, {"method": "test"})
    fit.to_arviz(key=1, prior_draws=0)  # no prior groups: one compile fewer
    fit.save(tmp_path / "fit.nc")
    loaded = bo.Posterior.load(tmp_path / "fit.nc")
    assert "field.layer0.weight" in loaded.to_arviz().posterior  # the stored InferenceData, no key needed
    assert set(loaded.samples) == set(samples)
    for k in samples:
        np.testing.assert_array_equal(loaded.samples[k], samples[k])
    ts = np.linspace(1900.0, 1908.0, N_PRED)
    np.testing.assert_array_equal(fit.predict(ts, key=2)["obs"], loaded.predict(ts, key=2)["obs"])


def test_observed_column_names_never_read_as_another_variable():
    from bayesode.results.export import column_names

    default = bo.make_data(TS, YS)  # columns named y0, y1 when none are given
    assert column_names(default, reserved={"y0", "sigma"}) == ["obs_y0", "y1"]
    odd = bo.make_data(TS, YS, state_names=["trajectory", "lynx"])
    assert column_names(odd) == ["obs_trajectory", "lynx"]
