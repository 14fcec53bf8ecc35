"""Per-series parameters from population priors, known initial states, and partial count observations."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.infer.util import log_density

import bayesode as bo
from bayesode.model import PopulationPrior, per_series_params


def decay_rhs(t, y, p, a):
    return -p["k"] * y * p["c"]


FIELD = bo.MechanisticField(decay_rhs, {"k": 0.5, "c": 1.0}, state_dim=1)
TS = [np.linspace(0.0, 3.0, 7), np.linspace(0.0, 2.0, 5), np.linspace(0.5, 3.0, 6)]
DATA = bo.make_data(TS, [np.exp(-0.5 * t)[:, None] for t in TS], series_names=["a", "b", "c"])


def latent_and_values(model, data=DATA, **kw):
    def run():
        tr = handlers.trace(handlers.seed(model, 0)).get_trace(data.model_data(), **kw)
        return {k: v["value"] for k, v in tr.items() if v["type"] in ("sample", "deterministic")}

    return jax.jit(run)()


def hierarchical(**kw):
    return bo.make_model(
        FIELD,
        param_priors={"c": dist.LogNormal(0.0, 0.1)},
        series_params={"k": PopulationPrior(dist.LogNormal(np.log(0.5), 0.5), dist.HalfNormal(0.3))},
        y0_prior=dist.LogNormal(0.0, 0.2),
        **kw,
    )


def test_hierarchical_site_names_and_shapes():
    tr = latent_and_values(hierarchical())
    assert tr["k_pop"].shape == () and tr["k_pop_sd"].shape == () and tr["k_z"].shape == (3,)
    assert tr["k"].shape == (3,) and tr["c"].shape == () and tr["y0"].shape == (3, 1)
    np.testing.assert_allclose(tr["k"], np.exp(np.log(tr["k_pop"]) + tr["k_pop_sd"] * tr["k_z"]), rtol=1e-5)


def test_each_series_is_solved_with_its_own_parameter():
    model = hierarchical(solver=bo.SolverConfig(rtol=1e-8, atol=1e-8))
    z = jnp.array([-1.0, 0.0, 2.0])
    fixed = handlers.substitute(model, data={"k_pop": 0.5, "k_pop_sd": 0.4, "k_z": z, "c": 1.0, "y0": jnp.ones((3, 1))})
    tr = latent_and_values(fixed)
    k = 0.5 * np.exp(0.4 * np.asarray(z))
    md = DATA.model_data()
    for i in range(3):
        expected = np.exp(-k[i] * (np.asarray(md.ts[i]) - float(md.t0[i])))
        np.testing.assert_allclose(tr["trajectory"][i, :, 0], expected, rtol=1e-5)


def test_tuple_shorthand_picks_the_link_from_the_support():
    model = bo.make_model(
        FIELD,
        param_priors={"c": dist.Normal(1.0, 0.1)},
        series_params={"k": (dist.LogNormal(0.0, 1.0), dist.HalfNormal(0.5))},
    )
    assert model.spec.series_params["k"].link == "log"
    model = bo.make_model(
        FIELD,
        param_priors={"k": dist.LogNormal(0.0, 1.0)},
        series_params={"c": (dist.Normal(1.0, 0.1), dist.HalfNormal(0.1))},
    )
    assert model.spec.series_params["c"].link == "identity"


def test_per_series_params_rebuilds_draws_from_a_posterior():
    model = hierarchical()
    samples = {
        "k_pop": np.full((2, 3), 0.5),
        "k_pop_sd": np.full((2, 3), 0.2),
        "k_z": np.ones((2, 3, 3)),
        "c": np.ones((2, 3)),
        "y0": np.ones((2, 3, 3, 1)),
    }
    post = bo.Posterior(samples=samples, sample_stats={}, data=DATA, model=model, settings={})
    out = per_series_params(post)
    assert out["k"].shape == (2, 3, 3)
    np.testing.assert_allclose(out["k"], 0.5 * np.exp(0.2), rtol=1e-6)


def test_series_params_errors():
    with pytest.raises(bo.ConfigError, match=r"`series_params` names 'q', which is not a mechanistic parameter"):
        bo.make_model(
            FIELD,
            param_priors={"k": dist.LogNormal(0, 1), "c": dist.LogNormal(0, 1)},
            series_params={"q": (dist.LogNormal(0, 1), dist.HalfNormal(1))},
        )
    with pytest.raises(bo.ConfigError, match="'k' is in both `param_priors` and `series_params`"):
        bo.make_model(
            FIELD,
            param_priors={"k": dist.LogNormal(0, 1), "c": dist.LogNormal(0, 1)},
            series_params={"k": (dist.LogNormal(0, 1), dist.HalfNormal(1))},
        )
    with pytest.raises(bo.ConfigError, match=r"must be PopulationPrior\(center, spread\)"):
        bo.make_model(FIELD, param_priors={"c": dist.LogNormal(0, 1)}, series_params={"k": dist.LogNormal(0, 1)})
    with pytest.raises(bo.ConfigError, match=r"`PopulationPrior\(link=...\)` must be one of"):
        PopulationPrior(dist.LogNormal(0, 1), dist.HalfNormal(1), link="logit")
    with pytest.raises(bo.ConfigError, match=r"`PopulationPrior\(spread=...\)` must be a scalar distribution"):
        PopulationPrior(dist.LogNormal(0, 1), dist.HalfNormal(jnp.ones(2)))


# ---------------------------------------------------------------- known y0, partial count observations
POP = 763.0


def sir(t, y, p, a):
    s, i = y[0], y[1]
    infection = p["beta"] * s * i / POP
    recovery = p["gamma"] * i
    return jnp.stack([-infection, infection - recovery, recovery])


SIR = bo.MechanisticField(sir, {"beta": 1.7, "gamma": 0.5}, state_dim=3)
SIR_PRIORS = {"beta": dist.LogNormal(0.5, 0.5), "gamma": dist.LogNormal(-0.7, 0.5)}


def flu():
    ds = bo.datasets.load("influenza_england_1978_school")
    return bo.make_data(ds.ts, ds.ys[:, :1], state_names=["in_bed"], t0=-1.0, time_name=ds.time_name)


def sir_model(likelihood):
    return bo.make_model(
        SIR, param_priors=SIR_PRIORS, y0=[POP - 1.0, 1.0, 0.0], likelihood=likelihood, observation_fn=lambda y: y[1:2]
    )


TRUE_SIR = {"beta": jnp.asarray(1.7), "gamma": jnp.asarray(0.5)}


@pytest.mark.parametrize("likelihood", [bo.PoissonNoise(), bo.NegativeBinomialNoise()], ids=["poisson", "negbin"])
def test_sir_with_only_infected_counts_observed(likelihood):
    data = flu()
    model = sir_model(likelihood)
    model.spec.check_data(data)
    md = data.model_data()
    params = {**TRUE_SIR, "phi_inv": jnp.asarray(0.1)} if isinstance(likelihood, bo.NegativeBinomialNoise) else TRUE_SIR

    def lp_and_values(p):
        lp, tr = log_density(model, (md,), {}, p)
        return lp, {k: v["value"] for k, v in tr.items() if v["type"] in ("sample", "deterministic")}

    (lp, tr), grad = jax.jit(jax.value_and_grad(lp_and_values, has_aux=True))(params)
    assert tr["trajectory"].shape == (1, 14, 3) and tr["obs"].shape == (1, 14, 1) and "y0" not in tr
    assert np.isfinite(float(lp)) and all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grad))
    # The epidemic peaks near day 5-6 (in bed: 298 on day 5) with these parameters.
    assert 3 <= int(np.argmax(tr["trajectory"][0, :, 1])) <= 7


@pytest.mark.slow
def test_counts_with_observation_fn_forecast_and_export():
    data = flu()
    model = sir_model(bo.NegativeBinomialNoise())
    params = {**TRUE_SIR, "phi_inv": jnp.asarray(0.1)}
    draws = {k: np.broadcast_to(np.asarray(v), (1, 4) + np.shape(v)).copy() for k, v in params.items()}
    post = bo.Posterior(samples=draws, sample_stats={}, data=data, model=model, settings={})
    pred = post.predict(np.arange(-1.0, 20.0), key=0)
    assert pred["obs"].shape == (1, 4, 1, 21, 1) and not bool(pred["failed"].any())
    obs = pred["obs"].values
    assert np.all(obs == np.round(obs)) and np.all(obs >= 0)
    idata = post.to_arviz(key=0)
    assert idata.posterior_predictive["trajectory"].shape == (1, 4, 1, 14, 3)


def test_known_y0_errors():
    with pytest.raises(bo.ConfigError, match="give either `y0` .* or `y0_prior`, not both"):
        bo.make_model(SIR, param_priors=SIR_PRIORS, y0=[1.0, 1.0, 0.0], y0_prior=dist.LogNormal(0, 1))
    with pytest.raises(bo.ConfigError, match=r"`y0` must be a finite \(state,\) = \(3,\)"):
        bo.make_model(SIR, param_priors=SIR_PRIORS, y0=[1.0, 1.0])
    with pytest.raises(bo.ConfigError, match=r"give `y0_prior=` \(or a known `y0=`\)"):
        bo.make_model(SIR, param_priors=SIR_PRIORS, observation_fn=lambda y: y[1:2])
