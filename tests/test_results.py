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
