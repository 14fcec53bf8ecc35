"""Observation operators (``Observation``, ``Incidence``), one family per column (``PerColumn``), user families.

Log-likelihoods are compared with SciPy's densities computed from the traced trajectory,
so the operator, the per-column split and the mask are each checked independently.
"""

import doctest

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.infer import Predictive
from scipy import stats

import bayesode as bo
from bayesode.model import likelihoods

TS = np.arange(1.0, 7.0)
N = 100.0


def sir(t, y, p, args):
    s, i, _ = y
    infection = p["beta"] * s * i / N
    return jnp.stack([-infection, infection - p["gamma"] * i, p["gamma"] * i])


FIELD = bo.MechanisticField(sir, {"beta": 1.5, "gamma": 0.4}, state_dim=3)
PRIORS = {"beta": dist.LogNormal(0.4, 0.2), "gamma": dist.LogNormal(-1.0, 0.2)}
Y0 = np.array([99.0, 1.0, 0.0])


def trace(model, data, seed=0):
    return handlers.trace(handlers.seed(model, seed)).get_trace(data.model_data())


def obs_log_prob(tr):
    """Pointwise log-likelihood of the ``obs`` site, under jit as in a fit (eagerly, NumPyro
    warns about the placeholder values behind the mask)."""
    return np.asarray(jax.jit(lambda value: tr["obs"]["fn"].log_prob(value))(tr["obs"]["value"]))


def test_increments_and_incidence_from_a_depleting_compartment():
    ys = jnp.array([[90.0, 5.0], [70.0, 20.0], [60.0, 22.0]])
    assert bo.increments(ys[:, 0], jnp.array(100.0)).tolist() == [-10.0, -20.0, -10.0]
    new = bo.Incidence(0, scale=-1.0)(None, ys, jnp.array([100.0, 0.0]), None)
    assert new.shape == (3, 1) and new[:, 0].tolist() == [10.0, 20.0, 10.0]
    summed = bo.Incidence((0, 1), scale=2.0)(None, ys, jnp.array([100.0, 0.0]), None)
    assert summed[:, 0].tolist() == [-10.0, -10.0, -16.0]


def test_incidence_likelihood_is_poisson_on_new_cases():
    cases = np.array([[3.0], [8.0], [np.nan], [30.0], [20.0], [10.0]])  # one missing week
    data = bo.make_data(TS, cases, state_names=["new_cases"], t0=0.0)  # first interval (0, 1]
    model = bo.make_model(FIELD, param_priors=PRIORS, y0=Y0, observation=bo.Incidence(0, scale=-1.0))
    tr = trace(model, data)
    s = np.asarray(tr["trajectory"]["value"][0, :, 0])
    expected = np.concatenate([[Y0[0] - s[0]], -np.diff(s)])
    loglik = obs_log_prob(tr)[0, :, 0]
    ok = np.isfinite(cases[:, 0])
    np.testing.assert_allclose(loglik[ok], stats.poisson.logpmf(cases[ok, 0], expected[ok]), rtol=1e-4)
    assert loglik[~ok] == 0.0  # masked: adds nothing


def two_columns(ts, ys, y0, field):
    """New cases (a reported share rho of infections) and the infected count."""
    cases = field.params["rho"] * bo.increments(-ys[:, 0], -y0[0])
    return jnp.stack([cases, ys[:, 1]], axis=-1)


def rho_field():
    return bo.MechanisticField(
        lambda t, y, p, a: sir(t, y, p, a), {"beta": 1.5, "gamma": 0.4, "rho": 0.5}, state_dim=3
    )


def test_one_family_per_column_with_parameters_and_a_mask():
    ys = np.array([[1.0, 2.0], [4.0, 6.0], [9.0, np.nan], [12.0, 20.0], [8.0, 18.0], [5.0, 10.0]])
    data = bo.make_data(TS, ys, state_names=["cases", "infected"], t0=0.0)
    observation = bo.Observation(two_columns, families=(bo.PoissonNoise(), bo.LogNormalNoise()))
    model = bo.make_model(
        rho_field(), param_priors=dict(PRIORS, rho=dist.Beta(5.0, 5.0)), y0=Y0, observation=observation
    )
    tr = trace(model, data)
    noise_sites = {k: v["value"].shape for k, v in tr.items() if k.startswith("col")}
    assert noise_sites == {"col1_sigma": (1,)}  # Poisson has no noise site; column 1's sigma is scoped
    traj = np.asarray(tr["trajectory"]["value"][0])
    rho, sigma = float(tr["rho"]["value"]), float(tr["col1_sigma"]["value"][0])
    cases = rho * np.concatenate([[Y0[0] - traj[0, 0]], -np.diff(traj[:, 0])])
    loglik = obs_log_prob(tr)[0]
    np.testing.assert_allclose(loglik[:, 0], stats.poisson.logpmf(ys[:, 0], cases), rtol=1e-4)
    ok = np.isfinite(ys[:, 1])
    infected = stats.lognorm.logpdf(ys[ok, 1], sigma, scale=traj[ok, 1])
    np.testing.assert_allclose(loglik[ok, 1], infected, rtol=1e-4)
    assert loglik[~ok, 1] == 0.0
    draw = tr["obs"]["fn"].sample(jr.key(1))
    assert draw.shape == (1, 6, 2) and draw.dtype == jnp.result_type(float)
    assert np.all(np.asarray(draw[..., 0]) == np.round(np.asarray(draw[..., 0])))  # Poisson column: counts


def test_observation_of_the_states_gives_the_same_draws_as_likelihood():
    """The new path with the identity operator and one family is the old ``likelihood=`` path."""
    data = bo.make_data(TS, np.abs(np.sin(TS))[:, None] * [50.0, 10.0, 5.0] + 1.0)
    old = bo.make_model(FIELD, param_priors=PRIORS, y0=Y0, likelihood=bo.LogNormalNoise())
    new = bo.make_model(
        FIELD, param_priors=PRIORS, y0=Y0, observation=bo.Observation(lambda ts, ys, y0, f: ys, bo.LogNormalNoise())
    )
    a, b = trace(old, data, seed=3), trace(new, data, seed=3)
    assert list(a) == list(b)
    for site in a:
        np.testing.assert_array_equal(np.asarray(a[site]["value"]), np.asarray(b[site]["value"]))


def test_log_likelihood_per_observed_point_reaches_arviz():
    ys = np.array([[1.0, 2.0], [4.0, 6.0], [9.0, np.nan], [12.0, 20.0], [8.0, 18.0], [5.0, 10.0]])
    data = bo.make_data(TS, ys, state_names=["cases", "infected"], t0=0.0)
    observation = bo.Observation(two_columns, families=(bo.NegativeBinomialNoise(), bo.NormalNoise()))
    model = bo.make_model(
        rho_field(), param_priors=dict(PRIORS, rho=dist.Beta(5.0, 5.0)), y0=Y0, observation=observation
    )
    draws = Predictive(model, num_samples=3, return_sites=["beta", "gamma", "rho", "col0_phi_inv", "col1_sigma"])(
        jr.key(0), data.model_data()
    )
    samples = {k: np.asarray(v)[None] for k, v in draws.items()}
    post = bo.Posterior(samples=samples, sample_stats={}, data=data, model=model, settings={})
    idata = post.to_arviz(key=1)
    loglik = idata.log_likelihood["obs"].values
    assert loglik.shape == (1, 3, 11)  # 12 entries, one missing
    assert np.all(np.isfinite(loglik))
    # one observed variable per column, each with its observed entries (the joint `obs` lists them column by column)
    for k, name in enumerate(["cases", "infected"]):
        column = ys[:, k]
        assert np.allclose(idata.observed_data[name].values, column[np.isfinite(column)])
    # the first draw's total equals the model's own log density of `obs`
    one = {k: jnp.asarray(v[0, 0]) for k, v in samples.items()}
    tr = handlers.trace(handlers.substitute(handlers.seed(model, 0), data=one)).get_trace(data.model_data())
    total = float(tr["obs"]["fn"].log_prob(tr["obs"]["value"]).sum())
    assert np.isclose(loglik[0, 0].sum(), total, rtol=1e-4)


def test_binomial_family():
    family = bo.BinomialNoise(total_count=50)
    d = family.distribution(jnp.array([[[0.2], [0.5]]]), {})
    np.testing.assert_allclose(
        np.asarray(d.log_prob(jnp.array([[[10.0], [30.0]]]))).ravel(),
        stats.binom.logpmf([10, 30], 50, [0.2, 0.5]),
        rtol=1e-4,
    )
    with pytest.raises(bo.DataError, match=r"counts above BinomialNoise\(total_count=50\)"):
        family.check_data(np.array([[[51.0]]]))


def test_user_family_docstring_example_runs():
    """The example in ``AbstractLikelihood``'s docstring, run as written."""
    finder = doctest.DocTestFinder()
    [test] = [t for t in finder.find(likelihoods.AbstractLikelihood) if t.examples]
    result = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS).run(test, out=lambda s: None)
    assert result.failed == 0 and result.attempted >= 8


class LaplaceNoise(bo.AbstractLikelihood):
    """As in the docstring: a family written by a user."""

    def sample_noise(self, scale):
        import numpyro

        return {"b": numpyro.sample("b", dist.HalfNormal(scale).to_event(1))}

    def distribution(self, pred, noise):
        return dist.Laplace(pred, noise["b"])


def test_user_family_log_likelihood_and_as_one_column():
    ys = np.array([[1.0, 2.0], [4.0, 6.0], [9.0, 8.0], [12.0, 20.0], [8.0, 18.0], [5.0, 10.0]])
    data = bo.make_data(TS, ys, t0=0.0)
    observation = bo.Observation(two_columns, families=[bo.PoissonNoise(), LaplaceNoise()])
    model = bo.make_model(
        rho_field(), param_priors=dict(PRIORS, rho=dist.Beta(5.0, 5.0)), y0=Y0, observation=observation
    )
    tr = trace(model, data)
    b = float(tr["col1_b"]["value"][0])
    infected = np.asarray(tr["trajectory"]["value"][0, :, 1])
    loglik = obs_log_prob(tr)[0, :, 1]
    np.testing.assert_allclose(loglik, stats.laplace.logpdf(ys[:, 1], infected, b), rtol=1e-4)


def test_prediction_applies_the_operator_at_new_times():
    data = bo.make_data(TS, np.array([[3.0], [8.0], [20.0], [30.0], [20.0], [10.0]]), t0=0.0)
    model = bo.make_model(FIELD, param_priors=PRIORS, y0=Y0, observation=bo.Incidence(0, scale=-1.0))
    new_ts = jnp.array([[0.5, 1.0, 3.0]])
    tr = handlers.trace(handlers.seed(model, 0)).get_trace(data.model_data(), predict_ts=new_ts)
    assert tr["obs_predict"]["value"].shape == (1, 3, 1)
    assert tr["trajectory_predict"]["value"].shape == (1, 3, 3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(observation=lambda ts, ys, y0, f: ys), r"`observation` must be a bayesode Observation"),
        (
            dict(observation=bo.Incidence(0), likelihood=bo.PoissonNoise()),
            r"`observation` carries its own likelihood families",
        ),
        (dict(observation=bo.Incidence(5)), r"`Incidence\(state=...\)` names state\(s\) \[5\]; the field has 3"),
        (dict(observation=bo.Observation(lambda ts, ys, y0, f: ys[0])), r"must return \(time, observed\)"),
    ],
)
def test_observation_errors(kwargs, match):
    with pytest.raises((bo.ConfigError, bo.FieldError), match=match):
        bo.make_model(FIELD, param_priors=PRIORS, y0=Y0, **kwargs)


def test_observation_constructor_and_data_errors():
    with pytest.raises(bo.ConfigError, match=r"`Observation\(fn=...\)` must be a function"):
        bo.Observation(3)
    with pytest.raises(bo.ConfigError, match=r"`Incidence\(scale=...\)` must be a finite non-zero number"):
        bo.Incidence(0, scale=0.0)
    with pytest.raises(bo.ConfigError, match="`families` must be a likelihood or a non-empty sequence"):
        bo.PerColumn([])
    with pytest.raises(bo.ConfigError, match=r"`BinomialNoise\(total_count=...\)` must be a positive integer"):
        bo.BinomialNoise(total_count=0)
    with pytest.raises(bo.ConfigError, match="give `y0_prior=`"):
        bo.make_model(FIELD, param_priors=PRIORS, observation=bo.Incidence(0))
    model = bo.make_model(
        rho_field(),
        param_priors=dict(PRIORS, rho=dist.Beta(5.0, 5.0)),
        y0=Y0,
        observation=bo.Observation(two_columns, families=(bo.PoissonNoise(), bo.LogNormalNoise())),
    )
    with pytest.raises(bo.DataError, match=r"`ys\[..., 0\]` must hold non-negative integer counts"):
        model.spec.check_data(bo.make_data(TS, np.full((6, 2), 1.5)))
    with pytest.raises(bo.DataError, match=r"data have 1 observed column\(s\).*observation outputs = 2"):
        model.spec.check_data(bo.make_data(TS, np.ones((6, 1))))


def test_per_column_noise_sites_under_jit():
    family = bo.PerColumn((bo.NormalNoise(), bo.StudentTNoise(df=3.0)))

    @jax.jit
    def noise(scale):
        tr = handlers.trace(handlers.seed(family.sample_noise, 0)).get_trace(scale)
        return {k: v["value"] for k, v in tr.items()}

    sites = noise(jnp.array([1.0, 2.0]))
    assert set(sites) == {"col0_sigma", "col1_sigma"} and sites["col1_sigma"].shape == (1,)


def test_observation_module_docstring_examples_run():
    """The examples of ``Observation``, ``Incidence`` and ``increments``, run as written."""
    from bayesode.model import observation

    result = doctest.testmod(observation, optionflags=doctest.ELLIPSIS, report=False, verbose=False)
    assert result.failed == 0 and result.attempted >= 6
