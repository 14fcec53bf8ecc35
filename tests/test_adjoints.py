"""Adjoint choice: gradients of a neural-field loss agree across diffrax adjoints and with finite differences.

All in float64 with tight tolerances, so the comparison is about the adjoint, not round-off:
RecursiveCheckpointAdjoint differentiates the discrete solver steps exactly;
BacksolveAdjoint solves the continuous adjoint ODE backwards (error ~ rtol);
ForwardMode pushes tangents forward (``jax.jacfwd``; reverse mode is refused);
ForwardSensitivity integrates the sensitivities with the state (reverse mode over a custom_vjp).
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import bayesode as bo
from bayesode.infer.preflight import warn_if_forward_mode_is_costly
from bayesode.infer.programs import unconstrained_size
from bayesode.solving.jump_solve import solve_with_jumps

ADJOINTS = {
    "checkpoint": diffrax.RecursiveCheckpointAdjoint(),
    "backsolve": diffrax.BacksolveAdjoint(),
    "forward": diffrax.ForwardMode(),
    "sensitivity": bo.ForwardSensitivity(),
}


def adjoint_params():
    return list(ADJOINTS)


def neural_problem():
    field = bo.MLPField(2, width=8, depth=1, key=jr.key(0))
    field = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64) if eqx.is_inexact_array(x) else x, field)
    params, static = eqx.partition(field, eqx.is_inexact_array)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    ts = jnp.linspace(0.0, 2.0, 11)
    target = jnp.stack([jnp.cos(ts), jnp.sin(ts)], axis=-1)
    return flat, unravel, static, ts, target


def gradient(name, loss, theta):
    if name == "forward":
        return jax.jit(jax.jacfwd(loss))(theta)
    return jax.jit(jax.grad(loss))(theta)


def check_against_finite_differences(loss, theta, g, seed):
    """Directional derivatives along 3 random unit directions, central differences with step 1e-6."""
    for k in range(3):
        v = jr.normal(jr.key(seed + k), theta.shape, jnp.float64)
        v = v / jnp.linalg.norm(v)
        eps = 1e-6
        fd = (loss(theta + eps * v) - loss(theta - eps * v)) / (2 * eps)
        # central differences in float64 with rtol 1e-10 solves: ~1e-7 relative error.
        np.testing.assert_allclose(float(g @ v), float(fd), rtol=1e-5, atol=1e-8)


@pytest.mark.usefixtures("strict_jax")
@pytest.mark.parametrize("name", adjoint_params())
def test_neural_field_gradients_agree_across_adjoints_and_with_finite_differences(name):
    with jax.enable_x64(True):
        flat, unravel, static, ts, target = neural_problem()
        config = bo.SolverConfig(rtol=1e-10, atol=1e-10, adjoint=ADJOINTS[name])
        reference = bo.SolverConfig(rtol=1e-10, atol=1e-10)

        def make_loss(cfg):
            def loss(theta):
                field = eqx.combine(unravel(theta), static)
                sol = bo.solve(field, jnp.array([1.0, 0.0]), ts, config=cfg)
                return jnp.sum((sol.ys - target) ** 2)

            return jax.jit(loss)

        loss = make_loss(config)
        g = gradient(name, loss, flat)
        g_ref = gradient("checkpoint", make_loss(reference), flat)
        assert g.shape == flat.shape and bool(jnp.all(jnp.isfinite(g)))
        # Discrete (checkpoint, forward) agree to round-off; backsolve to ~rtol.
        np.testing.assert_allclose(g, g_ref, rtol=1e-6, atol=1e-9)
        check_against_finite_differences(loss, flat, g, seed=1)


class Decay(eqx.Module):
    k: jax.Array

    def __call__(self, t, y, args):
        return -self.k * y


@pytest.mark.usefixtures("strict_jax")
@pytest.mark.parametrize("name", adjoint_params())
def test_jump_gradients_agree_across_adjoints(name):
    # BacksolveAdjoint cannot differentiate with respect to t0/t1, so there the jump time is fixed.
    with jax.enable_x64(True):
        ts = jnp.linspace(0.0, 3.0, 7)
        config = bo.SolverConfig(rtol=1e-10, atol=1e-10, adjoint=ADJOINTS[name])
        learn_time = name != "backsolve"

        @jax.jit
        def loss(theta):
            tau = theta[1] if learn_time else jnp.asarray(1.3)
            sol = solve_with_jumps(Decay(theta[0]), jnp.ones(1), ts, tau[None], jnp.ones((1, 1)), config=config)
            return jnp.sum(sol.ys**2)

        theta = jnp.array([0.7, 1.3]) if learn_time else jnp.array([0.7])
        g = gradient(name, loss, theta)
        check_against_finite_differences(loss, theta, g, seed=5)


def test_solver_config_accepts_each_adjoint_and_rejects_others():
    for adjoint in ADJOINTS.values():
        assert bo.SolverConfig(adjoint=adjoint).adjoint is adjoint
    assert bo.SolverConfig(adjoint=diffrax.ForwardMode()).forward_mode
    with pytest.raises(bo.ConfigError, match=r"`SolverConfig\(adjoint=...\)` must be a diffrax adjoint"):
        bo.SolverConfig(adjoint="backsolve")


def test_backsolve_is_refused_where_diffrax_cannot_differentiate():
    import numpyro.distributions as dist

    from bayesode.solving.events import StateEvent
    from bayesode.solving.jumps import Jumps

    field = bo.MechanisticField(lambda t, y, p, a: -p["k"] * y, {"k": 0.5}, state_dim=1)
    backsolve = bo.SolverConfig(adjoint=diffrax.BacksolveAdjoint())
    kw = dict(param_priors={"k": dist.LogNormal(0, 1)}, y0=[1.0], solver=backsolve)
    with pytest.raises(bo.ConfigError, match=r"cannot differentiate inferred jump times \(`time_prior`\)"):
        bo.make_model(field, jumps=Jumps(time_prior=dist.Uniform(0, 1), amounts=[1.0], state=0), **kw)
    with pytest.raises(bo.ConfigError, match="cannot differentiate state events"):
        bo.make_model(field, events=StateEvent(lambda t, y, a: y[0], lambda t, y, a: y, max_events=1), **kw)
    # Known jump times are fine: their segment boundaries carry no gradient.
    bo.make_model(field, jumps=Jumps(times=[0.5], amounts=[1.0], state=0), **kw)


def test_nuts_forward_mode_gradient_is_jacfwd_in_one_pass():
    # run_nuts differentiates ForwardMode models with one batched JVP (value and gradient together),
    # not NumPyro's f(z) then jacfwd(f)(z): same numbers, one solve fewer per gradient.
    import numpyro.distributions as dist
    from numpyro.infer.util import initialize_model

    from bayesode.infer.programs import gradient_by_forward_mode

    decay = bo.MechanisticField(lambda t, y, p, a: -p["k"] * y, {"k": 0.5}, state_dim=1)
    model = bo.make_model(decay, param_priors={"k": dist.LogNormal(0.0, 0.5)}, y0_prior=dist.LogNormal(0.0, 0.3),
                          solver=bo.SolverConfig(adjoint=diffrax.ForwardMode()))  # fmt: skip
    ts = np.linspace(0.0, 2.0, 6)
    data = bo.make_data(ts, (1.2 * np.exp(-0.4 * ts))[:, None])
    info = initialize_model(jr.key(0), model, model_args=(data.model_data(),), forward_mode_differentiation=True)
    potential, z = info.potential_fn, info.param_info.z
    value, grad = jax.jit(jax.value_and_grad(gradient_by_forward_mode(potential)))(z)
    assert float(value) == float(jax.jit(potential)(z))
    expected = jax.jit(jax.jacfwd(potential))(z)
    assert set(grad) == set(expected) and all(bool(jnp.any(expected[k] != 0)) for k in expected)
    for k in expected:
        np.testing.assert_allclose(grad[k], expected[k], rtol=1e-6, err_msg=k)
    # The cotangent scales it (reverse mode over the potential, e.g. -log density).
    scaled = jax.grad(lambda z: -3.0 * gradient_by_forward_mode(potential)(z))(z)
    for k in expected:
        np.testing.assert_allclose(scaled[k], -3.0 * np.asarray(expected[k]), rtol=1e-6, err_msg=k)


def test_nuts_warns_when_forward_mode_meets_many_parameters():
    """Forward mode costs one solve direction per parameter; 40 LV series have 86."""
    import warnings

    rng = np.random.default_rng(0)
    ts = np.linspace(0.0, 5.0, 6)
    ys = rng.uniform(5.0, 30.0, size=(40, 6, 2))
    data = bo.make_data([ts] * 40, list(ys))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # stop at the warning, before anything compiles
        warnings.filterwarnings("ignore", "Error (reading|writing) persistent compilation cache")  # see pyproject.toml
        forward = bo.models.lotka_volterra(adjoint="forward")
        with pytest.raises(UserWarning, match=r"ForwardMode.*86 here.*adjoint='checkpoint'.*adjoint='sensitivity'"):
            bo.run_nuts(forward, data, key=0, num_warmup=1, num_samples=1, progress=False)
        # one series: 8 parameters, no warning; reverse mode: never; forward sensitivities: 4 rates and
        # 2 initial states (6 columns) whatever the number of series
        warn_if_forward_mode_is_costly(forward, bo.make_data(ts, ys[0]).model_data())
        # the same model object, both data shapes: the count is per data shape (it was cached per model)
        assert unconstrained_size(forward, data.model_data()) == 86
        assert unconstrained_size(forward, bo.make_data(ts, ys[0]).model_data()) == 8
        warn_if_forward_mode_is_costly(bo.models.lotka_volterra(adjoint="checkpoint"), data.model_data())
        warn_if_forward_mode_is_costly(bo.models.lotka_volterra(adjoint="sensitivity"), data.model_data())
        # ... but a neural field has a column per weight
        neural = bo.make_model(
            bo.MLPField(2, width=16, depth=1, key=jr.key(0)), solver=bo.SolverConfig(adjoint=bo.ForwardSensitivity())
        )
        with pytest.raises(
            UserWarning, match=r"ForwardSensitivity.*one column per field parameter.*\b(8[0-9]|9[0-9]|1[0-9]{2}) here"
        ):
            warn_if_forward_mode_is_costly(neural, data.model_data())


def lv_potential(adjoint, num_series):
    """The LV preset's potential (negative log density) and a point near the posterior, on simulated series."""
    from numpyro.infer.util import initialize_model

    model = bo.models.lotka_volterra(adjoint=adjoint)
    rates = {"alpha": 0.55, "beta": 0.028, "gamma": 0.80, "delta": 0.024}
    y0 = np.array([[33.9, 5.9], [20.0, 10.0], [45.0, 4.0]][:num_series], np.float32)
    ts = np.linspace(0.0, 12.0, 13)
    truth = bo.MechanisticField(bo.lotka_volterra_rhs, rates, state_dim=2)
    noise = np.random.default_rng(3).normal(0.0, 0.25, (num_series, ts.size, 2))
    ys = [np.asarray(bo.solve(truth, y, ts).ys) * np.exp(e) for y, e in zip(y0, noise)]
    md = bo.make_data([ts] * num_series, ys).model_data()
    info = initialize_model(jr.key(0), model, model_args=(md,), forward_mode_differentiation=adjoint == "forward")
    z = {k: jnp.log(jnp.asarray(v, jnp.float32)) for k, v in rates.items()}
    z.update(y0=jnp.log(jnp.asarray(y0) * 1.05), sigma=jnp.log(jnp.array([0.3, 0.2], jnp.float32)))
    return info.potential_fn, z


@pytest.mark.parametrize("num_series", [1, 3])
def test_forward_sensitivity_gradient_of_a_model_matches_reverse_mode(num_series):
    """The whole log density, float32, near the posterior: one series (solved without vmap) and three
    (vmapped, the rates' cotangents summed over series). Tolerance 1e-3 relative: both are float32
    derivatives of the same discrete solve (sensitivity steps are the plain solve's), differing in round-off."""
    potential, z = lv_potential("sensitivity", num_series)
    reference, _ = lv_potential("checkpoint", num_series)
    value, grad = jax.jit(jax.value_and_grad(potential))(z)
    ref_value, ref_grad = jax.jit(jax.value_and_grad(reference))(z)
    assert float(value) == pytest.approx(float(ref_value), rel=1e-6)
    for k in ref_grad:
        assert bool(jnp.any(ref_grad[k] != 0)), k
        np.testing.assert_allclose(
            grad[k], ref_grad[k], rtol=1e-3, atol=1e-3 * float(jnp.max(jnp.abs(ref_grad[k]))), err_msg=k
        )


@pytest.mark.usefixtures("strict_jax")
def test_forward_sensitivity_takes_the_plain_solves_steps():
    """Error control on the states only: the sensitivities ride along without adding steps. In float64,
    where round-off does not move the accept/reject decisions (in float32 at rtol 1e-6 the error
    estimates are at round-off level, and the counts differed by 2 of 62 on this problem)."""
    with jax.enable_x64(True):
        field = jax.tree.map(
            lambda x: jnp.asarray(x, jnp.float64) if eqx.is_inexact_array(x) else x, bo.lotka_volterra_field()
        )
        ts = jnp.linspace(0.0, 12.0, 13)
        y0 = jnp.array([33.9, 5.9])
        plain = bo.solve(field, y0, ts)
        sens = bo.SolverConfig(adjoint=bo.ForwardSensitivity())
        seen = {}

        def loss(y0, config):
            sol = bo.solve(field, y0, ts, config=config)
            seen[config.adjoint.__class__.__name__] = sol.num_steps
            return jnp.sum(jnp.log(sol.ys))

        g = jax.grad(loss)(y0, sens)
        assert int(seen["ForwardSensitivity"]) == int(plain.num_steps) > 20
        ref = jax.grad(loss)(y0, bo.SolverConfig())
        np.testing.assert_allclose(g, ref, rtol=1e-8)
        # Forward-mode AD through the custom_vjp is refused by JAX (use diffrax.ForwardMode() for that).
        with pytest.raises(TypeError, match="custom_vjp"):
            jax.jvp(lambda y: loss(y, sens), (y0,), (jnp.ones(2),))
