"""Fixed steps between events (``FixedSteps``): the Hawkes closed form and the order of accuracy,
jumps exactly at event times, the error check that rejects a grid too coarse for the dynamics,
gradients against finite differences, and the fit's check against the adaptive solve. (The
marked Poisson case on padded sequences runs for both solvers in test_event_jumps.)"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from test_event_jumps import ConstantRates, Hawkes, hawkes_log_likelihood, simulate_hawkes

from bayesode.errors import ConfigError
from bayesode.solving import FixedSteps, NeuralJumpProcess, Status, events_log_likelihood, solve_event_jumps

solve_jit = eqx.filter_jit(solve_event_jumps)


def test_hawkes_likelihood_converges_at_third_order_to_the_closed_form():
    rng = np.random.default_rng(1)
    mu, alpha, beta, t_end = 0.5, 0.8, 1.3, 40.0
    events = simulate_hawkes(rng, t_end, mu, alpha, beta)
    expected, _ = hawkes_log_likelihood(events, t_end, mu, alpha, beta)
    errors = []
    with jax.enable_x64(True):
        n = events.size
        times, mask = jnp.concatenate([jnp.asarray(events), jnp.zeros(3)]), jnp.arange(n + 3) < n
        for grid_size in (100, 200, 400):
            sol = solve_jit(Hawkes(mu, alpha, beta, jnp.float64), times, jnp.zeros(n + 3, int), mask, t_end,
                            config=FixedSteps(diffrax.Bosh3(), grid_size=grid_size, tolerance=1e9))  # the discretisation alone
            assert int(sol.status) == 0
            errors.append(abs(float(events_log_likelihood(sol, mask)) - expected))
    # Bosh3 is 3rd order: halving the longest step divides the error by about 8; 4 allows for the
    # events' own (unhalved) steps. Steps of at most 0.4 (3 per decay time) are within 0.2 nats.
    assert errors[0] < 0.2 and errors[0] / errors[1] > 4 and errors[1] / errors[2] > 4, errors


def test_jumps_land_exactly_at_event_times_and_save_times_are_right_continuous():
    with jax.enable_x64(True):
        events = jnp.array([0.3, 0.3 + 1e-9, 1.7, 2.25])
        save = jnp.array([0.0, 0.3 - 1e-12, 0.3, 0.3 + 1e-9, 1.0, 1.7 - 1e-12, 1.7, 2.25, 3.0])
        counter = eqx.tree_at(lambda p: p.alpha, Hawkes(1.0, 1.0, 0.0, jnp.float64), jnp.float64(1.0))
        sol = solve_jit(counter, events, jnp.zeros(4, int), jnp.ones(4, bool), 3.0, save_ts=save, config=FixedSteps())
        np.testing.assert_array_equal(np.asarray(sol.zs[:, 0]), [0, 0, 1, 2, 2, 2, 3, 4, 4])
        np.testing.assert_array_equal(np.asarray(sol.z_before[:, 0]), [0, 1, 2, 3])


def test_a_grid_too_coarse_for_the_dynamics_fails_with_step_error_not_a_wrong_likelihood():
    rng = np.random.default_rng(3)
    events = simulate_hawkes(rng, 30.0, 0.5, 0.8, 1.3)
    n = events.size
    args = (jnp.asarray(events, jnp.float32), jnp.zeros(n, int), jnp.ones(n, bool), 30.0)
    fast = Hawkes(0.5, 0.8, 3.0)  # decays in 1/3: with 10 grid points the steps are up to ~3 long
    coarse = solve_jit(fast, *args, config=FixedSteps(diffrax.Bosh3(), grid_size=10))
    # Unchecked, this grid gives a finite log-likelihood near +10,000 (truth: -27): the error check fails it.
    assert int(coarse.status) == Status.STEP_ERROR
    assert float(events_log_likelihood(coarse, args[2])) == -np.inf
    # The same process on a grid fine enough for it solves, and agrees with the closed form.
    fine = solve_jit(fast, *args, config=FixedSteps(diffrax.Bosh3(), grid_size=1000))
    expected, _ = hawkes_log_likelihood(events, 30.0, 0.5, 0.8, 3.0)
    assert int(fine.status) == 0
    # Steps of at most 0.03 at 3rd order: ~1e-3 nats; float32 round-off is smaller. 0.01 allowed.
    assert abs(float(events_log_likelihood(fine, args[2])) - expected) < 0.01


def test_gradient_matches_finite_differences():
    with jax.enable_x64(True):
        process = NeuralJumpProcess(2, 2, width=4, depth=1, key=jr.key(3), rate_scale=1.5, t_scale=0.7)
        process = jax.tree.map(lambda x: x.astype(jnp.float64) if eqx.is_inexact_array(x) else x, process)
        params, static = eqx.partition(process, eqx.is_inexact_array)
        flat, unravel = jax.flatten_util.ravel_pytree(params)
        times, marks, mask = jnp.array([0.4, 0.9, 1.0, 2.2, 3.1, 0.0]), jnp.array([0, 1, 1, 0, 1, 0]), jnp.arange(6) < 5

        @jax.jit
        def loglik(p):
            sol = solve_event_jumps(eqx.combine(unravel(p), static), times, marks, mask, 4.0,
                                    config=FixedSteps(grid_size=20))  # fmt: skip
            return events_log_likelihood(sol, mask)

        grad = jax.grad(loglik)(flat)
        h = 1e-6
        for d in jr.normal(jr.key(4), (3, flat.size), jnp.float64):
            fd = (loglik(flat + h * d) - loglik(flat - h * d)) / (2 * h)
            # The discretised likelihood is smooth in the weights: central differences agree to O(h^2).
            np.testing.assert_allclose(float(jnp.dot(grad, d)), float(fd), rtol=1e-6, atol=1e-8)


def test_bad_settings_name_the_argument():
    with pytest.raises(ConfigError, match=r"FixedSteps\(solver=...\)"):
        FixedSteps(solver=diffrax.Kvaerno5())
    with pytest.raises(ConfigError, match=r"FixedSteps\(grid_size=...\)"):
        FixedSteps(grid_size=0)
    with pytest.raises(ConfigError, match=r"FixedSteps\(tolerance=...\)"):
        FixedSteps(tolerance=-1.0)
    with pytest.raises(ConfigError, match="SolverConfig or FixedSteps"):
        solve_event_jumps(ConstantRates(jnp.ones(1)), jnp.ones(1), jnp.zeros(1, int), jnp.ones(1, bool), 2.0,
                          config="fixed")  # fmt: skip


def test_fit_events_checks_fixed_steps_against_the_adaptive_solve_and_warns_when_they_differ():
    from bayesode.datasets import make_event_sequences
    from bayesode.infer import fit_events
    from bayesode.infer.event_draws import check_fixed_steps

    rng = np.random.default_rng(5)
    events = make_event_sequences([np.sort(rng.uniform(0, 20.0, 40))], t_end=20.0)
    settings = dict(key=0, method="svi", map_steps=20, svi_steps=30, num_samples=5, num_chains=1, width=4)
    fit = fit_events(events, config=FixedSteps(), **settings)
    # One step per mean gap at 3rd order on a near-constant intensity: far below the 1-nat bar.
    assert 0.0 <= fit.stats["fixed_steps_ll_error"] < 0.1, fit.stats
    # Faster dynamics (the fitted weights times 3) on two grid points with the error check switched off
    # (tolerance 1e9): the likelihood is tens of nats off, and the check against the adaptive solve says so.
    fast = {k: 3.0 * v for k, v in fit.flat_samples().items()}
    error, message = check_fixed_steps(fit.process, fit.weight_prior, FixedSteps(grid_size=2, tolerance=1e9), events,
                                       fast, "test")  # fmt: skip
    assert error > 1.0 and "differs from an adaptive solve by up to" in message
    assert fit.stats["warnings"] == []  # the fit itself had nothing to report
