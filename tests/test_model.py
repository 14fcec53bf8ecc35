"""Model composition: site names and shapes, gradients, the failure path, configuration errors."""

import json

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.infer.util import log_density

import bayesode as bo

TS = np.linspace(0.0, 4.0, 9)
DATA = bo.make_data(TS, 10.0 + np.arange(18.0).reshape(9, 2), state_names=["prey", "predator"])


def trace(model, data=DATA, **kw):
    return handlers.trace(handlers.seed(model, 0)).get_trace(data.model_data(), **kw)


def test_lotka_volterra_sites_have_readable_names():
    tr = trace(bo.models.lotka_volterra())
    latent = {k: v["value"].shape for k, v in tr.items() if v["type"] == "sample" and not v["is_observed"]}
    assert latent == {"alpha": (), "beta": (), "gamma": (), "delta": (), "y0": (1, 2), "sigma": (2,)}
    assert tr["obs"]["value"].shape == (1, 9, 2) and tr["trajectory"]["value"].shape == (1, 9, 2)


def test_neural_sites_and_hierarchical_scales():
    field = bo.MLPField(2, width=4, depth=1, key=jr.key(0))
    tr = trace(bo.make_model(field, weight_prior=bo.HierarchicalNormal(1.0)))
    names = {k for k, v in tr.items() if v["type"] == "sample"}
    assert {"field.layers[0].weight_z", "field.layers[0].weight_scale", "field.layers[1].bias_z"} <= names
    assert tr["field.layers[0].weight_z"]["value"].shape == (4, 2)


def test_fixed_layers_are_constants_and_the_rest_keeps_its_prior():
    field = bo.MLPField(2, width=4, depth=2, key=jr.key(0), fixed_layers=2)
    tr = trace(bo.make_model(field))
    weights = {k for k, v in tr.items() if v["type"] == "sample" and k.startswith("field.")}
    assert weights == {"field.layers[2].weight", "field.layers[2].bias"}
    # The fixed layers enter the field unchanged: the field rebuilt inside the model equals the given one
    # once the output layer takes the sampled values.
    rebuilt = handlers.substitute(
        lambda: bo.sample_field(field), {k: tr[k]["value"] for k in weights}
    )()
    x = jnp.array([0.3, -1.2])
    np.testing.assert_array_equal(rebuilt.layers[0](x), field.layers[0](x))
    np.testing.assert_array_equal(rebuilt.layers[2].weight, tr["field.layers[2].weight"]["value"])


class _Fit:
    """Just the ``samples`` a Posterior carries: (chain, draw, ...) arrays."""

    def __init__(self, samples):
        self.samples = samples


def test_freeze_hidden_fixes_the_median_and_survives_the_recipe():
    model = bo.models.neural(data=DATA, width=3)
    rng = np.random.default_rng(0)
    w = rng.normal(size=(2, 5, 3, 2))
    b = rng.normal(size=(2, 5, 3))
    frozen = bo.models.freeze_hidden(model, _Fit({"field.layers[0].weight": w, "field.layers[0].bias": b}))
    layer = frozen.spec.field.layers[0]
    np.testing.assert_allclose(layer.weight, np.median(w.reshape(10, 3, 2), axis=0), rtol=1e-6)
    np.testing.assert_allclose(layer.bias, np.median(b.reshape(10, 3), axis=0), rtol=1e-6)
    names = {k for k, v in trace(frozen).items() if v["type"] == "sample" and k.startswith("field.")}
    assert names == {"field.layers[1].weight", "field.layers[1].bias"}
    # A saved fit rebuilds the model from its recipe (JSON): the fixed weights must come back.
    again = bo.models.from_recipe(json.loads(json.dumps(frozen.spec.recipe)))
    np.testing.assert_allclose(again.spec.field.layers[0].weight, layer.weight)
    assert again.spec.field.fixed_layers == 1 and again.spec.field.y_scale == frozen.spec.field.y_scale


def test_run_neural_linear_is_svi_then_freeze_then_the_stage_two_fit():
    model = bo.models.neural(data=DATA, width=3)
    post = bo.run_neural_linear(model, DATA, key=3, method="svi", hidden_svi_steps=30, num_draws=7, progress=False)
    # The same two stages by hand, with the same key: identical draws.
    hidden = bo.run_svi(model, DATA, key=3, guide="full-rank", num_steps=30, num_draws=100, progress=False)
    by_hand = bo.run_svi(bo.models.freeze_hidden(model, hidden), DATA, key=3, num_steps=10, num_draws=7, progress=False)
    assert set(post.samples) == set(by_hand.samples) and "field.layers[0].weight" not in post.samples
    for k in post.samples:
        np.testing.assert_array_equal(post.samples[k], by_hand.samples[k])
    assert post.settings["hidden_fit"]["final_loss"] == pytest.approx(float(hidden.losses[-1]))
    assert post.model.spec.recipe["fixed_layers"] is not None
    # its caveat (fixed hidden layers: narrow bands away from the data, optimistic LOO) goes with it:
    # in the diagnostics, in the InferenceData az.loo reads, and in the command line's table
    from bayesode.cli.common import diagnostics_table
    from bayesode.results.posterior import NEURAL_LINEAR_CAVEAT

    assert post.diagnostics()["caveats"] == [NEURAL_LINEAR_CAVEAT] and by_hand.diagnostics()["caveats"] == []
    assert post.to_arviz(key=0).log_likelihood.attrs["bayesode_caveat"] == NEURAL_LINEAR_CAVEAT
    table = diagnostics_table(post)
    assert "caveat: neural-linear posterior" in table and "optimistic, see the caveat below" in table
    with pytest.raises(bo.ConfigError, match="`method` must be one of"):
        bo.run_neural_linear(model, DATA, key=0, method="mcmc")
    with pytest.raises(bo.ConfigError, match="`hidden_svi_steps` must be a positive int"):
        bo.run_neural_linear(model, DATA, key=0, hidden_svi_steps=0)


def test_freeze_hidden_errors():
    fit = _Fit({"field.layers[0].weight": np.zeros((1, 2, 3, 2)), "field.layers[0].bias": np.zeros((1, 2, 3))})
    with pytest.raises(bo.ConfigError, match="`model` must come from bayesode.models.neural"):
        bo.models.freeze_hidden(bo.models.lotka_volterra(), fit)
    with pytest.raises(bo.ConfigError, match=r"`fit` has no samples of \['field.layers\[0\].bias'\]"):
        bo.models.freeze_hidden(bo.models.neural(data=DATA, width=3), _Fit({"field.layers[0].weight": np.zeros((1, 2, 3, 2))}))
    with pytest.raises(bo.ConfigError, match=r"`fixed_layers\[0\]` has weight \(3, 2\) and bias \(3,\); layer 0"):
        bo.models.freeze_hidden(bo.models.neural(data=DATA, width=4), fit)
    with pytest.raises(bo.ConfigError, match="`statistic` must be 'median' or 'mean'"):
        bo.models.freeze_hidden(bo.models.neural(data=DATA, width=3), fit, statistic="mode")
    bad = [{"weight": np.full((3, 2), np.nan), "bias": np.zeros(3)}]
    with pytest.raises(bo.ConfigError, match=r"`fixed_layers\[0\]` contains non-finite values"):
        bo.models.neural(data=DATA, width=3, fixed_layers=bad)


def test_hybrid_has_both_parts():
    tr = trace(bo.models.hybrid(data=DATA))
    assert "alpha" in tr and "field.correction.layers[0].weight" in tr


def test_predict_sites():
    model = bo.models.lotka_volterra()
    new = jnp.linspace(0.0, 8.0, 5)[None]
    tr = trace(model, predict_ts=new)
    assert tr["trajectory_predict"]["value"].shape == (1, 5, 2)
    assert tr["obs_predict"]["value"].shape == (1, 5, 2)


def test_missing_values_do_not_enter_the_likelihood():
    model = bo.models.lotka_volterra()
    ys = DATA.ys[0].copy()
    params = {k: v["value"] for k, v in trace(model).items() if v["type"] == "sample" and not v["is_observed"]}
    lp_full, _ = log_density(model, (DATA.model_data(),), {}, params)
    ys_missing = ys.copy()
    ys_missing[3, 1] = np.nan
    ys_changed = ys.copy()
    ys_changed[3, 1] = 1e4  # a wild value at the same entry
    lp_a, _ = log_density(model, (bo.make_data(TS, ys_missing).model_data(),), {}, params)
    d_changed = bo.make_data(TS, ys_changed)
    lp_b, _ = log_density(model, (d_changed.model_data(),), {}, params)
    assert float(lp_a) != float(lp_full)
    assert float(lp_b) != float(lp_a)  # the changed value counts when observed ...
    d_masked = bo.Data(d_changed.ts, np.where(np.isnan(ys_missing), np.nan, ys_changed)[None], d_changed.lengths,
                       d_changed.t0, d_changed.state_names, d_changed.series_names)
    lp_c, _ = log_density(model, (d_masked.model_data(),), {}, params)
    assert float(lp_c) == float(lp_a)  # ... and not at all when masked


@pytest.mark.parametrize("noise", [bo.NormalNoise, bo.LogNormalNoise, bo.StudentTNoise])
def test_known_sigma_is_a_constant_not_a_site(noise):
    """``sigma=`` fixes the noise: no ``sigma`` site, and the log density is the learned-sigma model's
    at that sigma minus its sigma prior term."""
    known = (0.3, 0.05)
    spec = dict(param_priors=bo.models.lotka_volterra_priors(), y0_prior=dist.LogNormal(np.log(10.0), 1.0))
    prior = dist.LogNormal(0.0, 1.0).expand([2]).to_event(1)
    fixed = bo.make_model(bo.lotka_volterra_field(), likelihood=noise(sigma=known), **spec)
    learned = bo.make_model(bo.lotka_volterra_field(), likelihood=noise(sigma_prior=prior), **spec)
    tr = trace(fixed)
    assert "sigma" not in tr and tr["obs"]["value"].shape == (1, 9, 2)
    params = {k: v["value"] for k, v in tr.items() if v["type"] == "sample" and not v["is_observed"]}
    lp_fixed, _ = log_density(fixed, (DATA.model_data(),), {}, params)
    sigma = jnp.asarray(known)
    lp_learned, _ = log_density(learned, (DATA.model_data(),), {}, {**params, "sigma": sigma})
    np.testing.assert_allclose(float(lp_fixed), float(lp_learned - prior.log_prob(sigma)), rtol=1e-5)
    with pytest.raises(bo.ConfigError, match=r"has 3 values but `ys` has 2 observed columns"):
        bo.run_nuts(bo.make_model(bo.lotka_volterra_field(), likelihood=noise(sigma=(1.0, 2.0, 3.0)), **spec),
                    DATA, key=0)


def test_gradient_of_log_density_matches_finite_differences():
    with jax.enable_x64(True):
        model = bo.make_model(
            bo.lotka_volterra_field(),
            param_priors=bo.models.lotka_volterra_priors(),
            y0_prior=dist.LogNormal(np.log(10.0), 1.0),
            likelihood=bo.LogNormalNoise(),
            solver=bo.SolverConfig(rtol=1e-10, atol=1e-10),
        )
        md = DATA.model_data(jnp.float64)
        base = {"alpha": 0.6, "beta": 0.03, "gamma": 0.8, "delta": 0.025, "sigma": jnp.array([0.3, 0.3]),
                "y0": jnp.array([[10.0, 11.0]])}
        base = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), base)

        @jax.jit  # one compile for all eight evaluations below
        def lp(p):
            return log_density(model, (md,), {}, p)[0]

        grad = jax.jit(jax.grad(lp))(base)
        for name in ("alpha", "beta", "gamma", "delta"):
            h = 1e-6
            up = dict(base, **{name: base[name] + h})
            down = dict(base, **{name: base[name] - h})
            fd = (lp(up) - lp(down)) / (2 * h)
            # central differences in float64 with tol 1e-10 solves: relative error ~1e-6 expected
            assert abs(float(grad[name]) - float(fd)) <= 1e-4 * max(1.0, abs(float(fd))), name


def test_failed_solve_gives_minus_inf_and_finite_gradient():
    model = bo.make_model(
        bo.MechanisticField(lambda t, y, p, a: p["k"] * y**2, {"k": 1.0}, state_dim=1),
        param_priors={"k": dist.Normal(0.0, 1.0)},
        y0_prior=dist.LogNormal(0.0, 0.5),
    )
    data = bo.make_data(TS, np.ones((9, 1)))
    md = data.model_data()

    def lp(k):
        return log_density(model, (md,), {}, {"k": k, "y0": jnp.ones((1, 1)), "sigma": jnp.ones(1)})[0]

    assert np.isfinite(float(lp(-1.0)))
    assert float(lp(1.0)) == -np.inf  # y' = y^2 from y=1 blows up at t=1 < 4
    assert np.isfinite(float(jax.grad(lp)(1.0)))


def test_prior_failure_rate_reports_causes():
    model = bo.make_model(
        bo.MechanisticField(lambda t, y, p, a: p["k"] * y**2, {"k": 1.0}, state_dim=1),
        param_priors={"k": dist.Normal(0.0, 1.0)},
        y0_prior=dist.LogNormal(0.0, 0.1),
    )
    rate = bo.prior_failure_rate(model, bo.make_data(TS, np.ones((9, 1))), key=0, num_draws=200)
    # k > 1/(4 y0) ~ k > 0.25 blows up before t=4: P(k > 0.25) ~ 0.40 under N(0, 1).
    assert 0.3 < rate["fraction"] < 0.5
    assert rate["blow_up"] + rate["dt_min"] + rate["max_steps"] == round(rate["fraction"] * 200)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"param_priors": {}}, r"no prior for mechanistic parameter\(s\) \['k'\]"),
        ({"param_priors": {"k": dist.Normal(), "q": dist.Normal()}}, r"names \['q'\], which the field does not have"),
        ({"param_priors": {"k": 1.0}}, r"`param_priors\['k'\]` must be a numpyro distribution"),
        ({"param_priors": {"k": dist.Normal()}, "y0_prior": dist.Normal(jnp.zeros(3), 1.0)}, r"`y0_prior` has shape \(3,\)"),
        ({"param_priors": {"k": dist.Normal()}, "y0_prior": 1.0}, r"`y0_prior` must be a numpyro distribution"),
        ({"param_priors": {"k": dist.Normal()}, "likelihood": "normal"}, r"`likelihood` must be a bayesode likelihood"),
        ({"param_priors": {"k": dist.Normal()}, "solver": {"rtol": 1}}, r"`solver` must be a bayesode.SolverConfig"),
        ({"param_priors": {"k": dist.Normal()}, "observation_fn": lambda y: y}, r"give `y0_prior=`"),
        ({"param_priors": {"k": dist.Normal()}, "weight_prior": 0.5}, r"`weight_prior` must be"),
    ],
)
def test_make_model_errors(kwargs, match):
    field = bo.MechanisticField(lambda t, y, p, a: -p["k"] * y, {"k": 1.0}, state_dim=1)
    with pytest.raises(bo.ConfigError, match=match):
        bo.make_model(field, **kwargs)


@pytest.mark.parametrize(
    "fn, match",
    [
        (lambda t, y, p, a: jnp.zeros(3), r"must return dy/dt with the shape of y, \(2,\); got \(3,\)"),
        (lambda t, y, p, a: jnp.zeros(2, dtype=jnp.int32), r"must return floats; got dtype int32"),
        (lambda t, y, p, a: y @ jnp.ones((3, 3)), r"calling `field\(t, y, args\)` with y of shape \(2,\) failed"),
    ],
)
def test_field_output_checked(fn, match):
    field = bo.MechanisticField(fn, {"k": 1.0}, state_dim=2)
    with pytest.raises(bo.FieldError, match=match):
        bo.make_model(field, param_priors={"k": dist.Normal()})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"state_dim": 0}, "`state_dim` must be a positive int"),
        ({"width": 0}, "`width` must be a positive int"),
        ({"depth": -1}, "`depth` must be a non-negative int"),
        ({"activation": "sigmoidish"}, r"`activation`='sigmoidish' is unknown"),
        ({"form": "log"}, r"`form`='log' is unknown"),
        ({"y_scale": [1.0, 2.0, 3.0]}, r"`y_scale` has 3 entries; expected state_dim=2"),
        ({"y_scale": -1.0}, r"`y_scale` must be positive"),
        ({"t_scale": 0.0}, r"`t_scale` must be positive"),
        ({"fixed_layers": 2}, r"`fixed_layers` must be an int from 0 to depth=1"),
    ],
)
def test_mlp_field_errors(kwargs, match):
    args = dict(state_dim=2, width=4, depth=1, key=jr.key(0))
    args.update(kwargs)
    with pytest.raises(bo.ConfigError, match=match):
        bo.MLPField(**args)


@pytest.mark.parametrize("scale", [0.0, -1.0, float("inf")])
def test_weight_prior_scale_errors(scale):
    with pytest.raises(bo.ConfigError, match="must be positive and finite"):
        bo.Normal(scale)
    with pytest.raises(bo.ConfigError, match="must be positive and finite"):
        bo.HierarchicalNormal(scale)


def test_equinox_closure_convert_gap_is_still_there():
    """The one equinox adapter (bayesode/model/equinox_adapter.py) is needed only while equinox's
    closure-conversion check compares shardings: fail loudly when equinox renames or fixes it."""
    from jax.sharding import SingleDeviceSharding

    from bayesode.model import equinox_adapter

    original = equinox_adapter.equinox_original()  # raises if equinox renamed the function
    struct = jax.ShapeDtypeStruct((), jnp.int32, sharding=SingleDeviceSharding(jax.devices()[0]))
    assert original(struct).sharding is not None, (
        "equinox no longer records shardings in filter_closure_convert (diffrax#765 fixed): delete "
        "bayesode/model/equinox_adapter.py and its call in make_model"
    )
    equinox_adapter.allow_closure_convert_in_shard_map()
    equinox_adapter.allow_closure_convert_in_shard_map()  # idempotent: the original is kept once
    import equinox._ad as eqx_ad

    assert eqx_ad._strip_weak_dtype(struct) == jax.ShapeDtypeStruct((), jnp.int32)
    assert equinox_adapter.equinox_original() is original


def test_weight_priors_work_inside_jit():
    """Python scales are checked even under tracing; traced scales (a sampled hyperparameter) pass."""
    draw = jax.jit(lambda s: handlers.seed(lambda: bo.Normal(s).sample("w", (3,)), 0)())
    assert draw(2.0).shape == (3,)
    assert jnp.allclose(draw(2.0), 2.0 * draw(1.0))  # same seed: the traced scale really scales
    fixed = jax.jit(lambda: handlers.seed(lambda: bo.HierarchicalNormal(1.0).sample("w", (2,)), 0)())
    assert fixed().shape == (2,)
    with pytest.raises(bo.ConfigError, match=r"`Normal\(scale=...\)` must be positive and finite; got -1.0"):
        jax.jit(lambda: bo.Normal(-1.0).sample("w", (2,)))()


def test_weight_prior_inside_a_user_model_run_by_nuts():
    """A user's NumPyro model: w ~ bo.Normal(scale), scale fixed or sampled, y_i ~ N(sum w, 1).

    With a fixed scale 2 the posterior of ``w.sum()`` (two weights, prior N(0, 8)) is normal
    with precision 1/8 + n and mean sum(y) / (n + 1/8). Tolerance: 5 posterior sd / sqrt(ESS),
    ESS taken as 200 (1 chain, 1000 draws of a 2-d Gaussian; NumPyro's own estimate is higher).
    """
    import numpyro
    from numpyro.infer import MCMC, NUTS

    ys = jnp.array([1.0, 1.5, 0.5, 2.0, 1.0])

    def fixed_scale(ys):
        w = bo.Normal(2.0).sample("w", (2,))
        numpyro.sample("y", dist.Normal(w.sum(), 1.0), obs=ys)

    def sampled_scale(ys):
        s = numpyro.sample("s", dist.LogNormal(0.0, 0.5))
        w = bo.HierarchicalNormal(s).sample("w", (2,))
        numpyro.sample("y", dist.Normal(w.sum(), 1.0), obs=ys)

    mcmc = MCMC(NUTS(fixed_scale), num_warmup=500, num_samples=1000, progress_bar=False)
    mcmc.run(jr.key(0), ys)
    total = mcmc.get_samples()["w"].sum(-1)
    precision = 1.0 / 8.0 + ys.size
    assert abs(float(total.mean()) - float(ys.sum()) / precision) < 5 * precision**-0.5 / 200**0.5
    assert 0.85 < float(total.std()) * precision**0.5 < 1.15

    mcmc = MCMC(NUTS(sampled_scale), num_warmup=50, num_samples=50, progress_bar=False)
    mcmc.run(jr.key(1), ys)
    assert mcmc.get_samples()["w_z"].shape == (50, 2) and bool(jnp.all(mcmc.get_samples()["w_scale"] > 0))
