"""The solve wrapper: accuracy against closed forms, failure codes, cheap failures, finite gradients."""

import diffrax
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
import pytest

import bayesode as bo
from bayesode.solving.diffeq import STATUS_BLOW_UP, STATUS_DT_MIN, STATUS_MAX_STEPS, STATUS_NONFINITE, STATUS_OK

A = jnp.array([[-0.5, 1.0], [-1.0, -0.3]])
TS = jnp.linspace(0.0, 5.0, 11)


def linear(t, y, args):
    return A @ y


def test_linear_ode_matches_matrix_exponential():
    y0 = jnp.array([1.0, -0.5])
    sol = bo.solve(linear, y0, TS, config=bo.SolverConfig(rtol=1e-7, atol=1e-7))
    exact = jnp.stack([jsl.expm(A * t) @ y0 for t in TS])
    assert int(sol.status) == STATUS_OK
    # float32: tolerance 1e-7 is below machine eps, so expect ~1e-5 absolute agreement.
    np.testing.assert_allclose(sol.ys, exact, atol=2e-5)


def test_t0_before_first_observation():
    y0 = jnp.array([1.0, 0.0])
    sol = bo.solve(linear, y0, TS[1:], t0=0.0)
    np.testing.assert_allclose(sol.ys[0], jsl.expm(A * TS[1]) @ y0, atol=2e-5)


@pytest.mark.parametrize(
    "field, y0, expected",
    [
        (lambda t, y, a: y**2, jnp.ones(1), (STATUS_DT_MIN, STATUS_BLOW_UP)),  # finite-time blow-up at t=1
        (lambda t, y, a: 50.0 * y, jnp.ones(1), (STATUS_BLOW_UP,)),  # exponential growth past 1e8
        (lambda t, y, a: -y, jnp.array([jnp.nan]), (STATUS_NONFINITE,)),  # NaN initial state
        (lambda t, y, a: jnp.full_like(y, jnp.nan), jnp.ones(1), (STATUS_NONFINITE,)),  # NaN field at t0
        (lambda t, y, a: jnp.where(t > 1.0, jnp.nan, 1.0) * y, jnp.ones(1), (STATUS_DT_MIN,)),  # NaN mid-solve
        (lambda t, y, a: -1e5 * (y - jnp.cos(t)), jnp.ones(1), (STATUS_DT_MIN, STATUS_MAX_STEPS)),  # stiff
    ],
)
def test_failures_are_codes_not_exceptions_and_cheap(field, y0, expected):
    sol = jax.jit(lambda y: bo.solve(field, y, TS))(y0)
    assert int(sol.status) in expected
    # A failure costs far fewer steps than the budget (2048), except a true max_steps.
    if int(sol.status) != STATUS_MAX_STEPS:
        assert int(sol.num_steps) < 200
    assert bool(jnp.all(jnp.isfinite(sol.ys)))


@pytest.mark.parametrize(
    "field, expected",
    [
        (lambda t, y, a: y**2, (STATUS_DT_MIN, STATUS_BLOW_UP, STATUS_NONFINITE)),  # finite-time blow-up
        (lambda t, y, a: 50.0 * y, (STATUS_DT_MIN, STATUS_BLOW_UP)),  # exponential growth past 1e8
    ],
)
def test_backsolve_has_no_event_but_still_reports_blow_ups_cheaply(field, expected):
    # diffrax refuses events with BacksolveAdjoint; the field is NaN past the bound instead.
    config = bo.SolverConfig(adjoint=diffrax.BacksolveAdjoint())
    sol = jax.jit(lambda y: bo.solve(field, y, TS, config=config))(jnp.ones(1))
    assert int(sol.status) in expected and bool(jnp.all(jnp.isfinite(sol.ys)))
    assert int(sol.num_steps) < 200  # stopped by dtmin, not by max_steps (2048)
    healthy = bo.solve(linear, jnp.ones(2), TS, config=config)
    assert int(healthy.status) == STATUS_OK


def test_max_steps_reported():
    sol = bo.solve(linear, jnp.ones(2), TS, config=bo.SolverConfig(max_steps=3))
    assert int(sol.status) == STATUS_MAX_STEPS


def test_gradient_finite_through_failed_solve():
    def loss(scale):
        return jnp.sum(bo.solve(lambda t, y, a: scale * y**2, jnp.ones(1), TS).ys)

    g = jax.grad(loss)(1.0)
    assert jnp.isfinite(g)


def test_gradient_matches_finite_differences():
    def loss(k):
        return jnp.sum(bo.solve(lambda t, y, a: -k * y, jnp.ones(1), TS, config=bo.SolverConfig(rtol=1e-7, atol=1e-7)).ys)

    g = jax.grad(loss)(0.7)
    exact = jnp.sum(-TS * jnp.exp(-0.7 * TS))  # d/dk sum exp(-k t)
    assert abs(float(g) - float(exact)) < 1e-3 * abs(float(exact))


def test_forward_mode_adjoint_agrees_with_reverse():
    def loss(k, adjoint):
        cfg = bo.SolverConfig(adjoint=adjoint, rtol=1e-7, atol=1e-7)
        return jnp.sum(bo.solve(lambda t, y, a: -k * y, jnp.ones(1), TS, config=cfg).ys)

    g_rev = jax.grad(loss)(0.7, diffrax.RecursiveCheckpointAdjoint())
    g_fwd = jax.jacfwd(loss)(0.7, diffrax.ForwardMode())
    assert abs(float(g_rev) - float(g_fwd)) < 1e-4


def test_series_failure_leaves_others_untouched():
    y0 = jnp.array([[1.0], [jnp.nan], [2.0]])
    ts = jnp.tile(TS, (3, 1))
    sol = bo.solve_series(lambda t, y, a: -y, y0, ts, jnp.zeros(3))
    assert sol.status.tolist() == [0, STATUS_NONFINITE, 0]
    np.testing.assert_allclose(sol.ys[2, :, 0], 2.0 * jnp.exp(-TS), rtol=1e-4)
    np.testing.assert_allclose(sol.ys[0, :, 0], jnp.exp(-TS), rtol=1e-4)


def test_no_retrace_for_new_values():
    import equinox as eqx

    @jax.jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def run(y0):
        return bo.solve(linear, y0, TS).ys

    run(jnp.ones(2))
    run(jnp.array([2.0, 3.0]))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"rtol": 0.0}, "rtol"),
        ({"atol": -1.0}, "atol"),
        ({"max_steps": 0}, "max_steps"),
        ({"rtol": float("nan")}, "rtol"),
        ({"solver": "tsit5"}, "solver"),
        ({"adjoint": "forward"}, "adjoint"),
        ({"dt0": -0.1}, "dt0"),
    ],
)
def test_solver_config_errors(kwargs, match):
    with pytest.raises(bo.ConfigError, match=match):
        bo.SolverConfig(**kwargs)


def test_solve_and_data_under_strict_promotion(strict_jax):
    d = bo.make_data(np.arange(4.0), np.ones((4, 2)))
    md = d.model_data()
    sol = bo.solve_series(linear, jnp.ones((1, 2)), md.ts, md.t0)
    assert sol.ys.shape == (1, 4, 2) and int(sol.status[0]) == 0
