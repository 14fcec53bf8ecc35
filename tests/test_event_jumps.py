"""Event-driven neural jump ODEs: likelihood against closed forms (Poisson, Hawkes), jumps exactly at
event times, gradients against finite differences, thinning and the time-rescaling check."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from numpyro import handlers

from bayesode.datasets import make_event_sequences
from bayesode.diagnostics import time_rescaling_test
from bayesode.errors import ConfigError, DataError
from bayesode.model import event_arrays, point_process_model
from bayesode.solving import (
    FixedSteps,
    NeuralJumpProcess,
    SolverConfig,
    events_log_likelihood,
    per_event_log_likelihood,
    simulate_events,
    solve_event_jumps,
)

TIGHT64 = SolverConfig(rtol=1e-10, atol=1e-10, max_steps=4096)
# One compiled program per call shape (the unjitted scan would compile its body on every call).
solve_jit = eqx.filter_jit(solve_event_jumps)


class Hawkes(eqx.Module):
    """Exponential-kernel Hawkes as a jump ODE: z decays at rate beta, jumps by alpha, lambda = mu + z."""

    mu: jax.Array
    alpha: jax.Array
    beta: jax.Array
    z0: jax.Array

    def __init__(self, mu, alpha, beta, dtype=jnp.float32):
        self.mu, self.alpha, self.beta = (jnp.asarray(v, dtype) for v in (mu, alpha, beta))
        self.z0 = jnp.zeros(1, dtype)

    def field(self, t, z, args):
        return -self.beta * z

    def jump_size(self, z, mark):
        return jnp.broadcast_to(self.alpha, z.shape)

    def rates(self, z):
        return self.mu + z


class ConstantRates(eqx.Module):
    """Homogeneous (marked) Poisson process: lambda_k constant, no flow, no jumps."""

    rates_: jax.Array
    z0: jax.Array

    def __init__(self, rates):
        self.rates_ = jnp.asarray(rates)
        self.z0 = jnp.zeros(1, self.rates_.dtype)

    def field(self, t, z, args):
        return jnp.zeros_like(z)

    def jump_size(self, z, mark):
        return jnp.zeros_like(z)

    def rates(self, z):
        return self.rates_


def hawkes_log_likelihood(t, t_end, mu, alpha, beta):
    """Closed form (Ozaki 1979): sum_i log(mu + alpha sum_{j<i} e^{-beta (t_i - t_j)}) - compensator."""
    t = np.asarray(t, np.float64)
    intensity = np.array([mu + alpha * np.sum(np.exp(-beta * (ti - t[:i]))) for i, ti in enumerate(t)])
    compensator = mu * t_end + alpha / beta * np.sum(1.0 - np.exp(-beta * (t_end - t)))
    return np.sum(np.log(intensity)) - compensator, intensity


def simulate_hawkes(rng, t_end, mu, alpha, beta):
    """Ogata thinning with the exact bound (the intensity only decays between events), in NumPy."""
    t, events, excite = 0.0, [], 0.0
    while True:
        bound = mu + excite
        w = rng.exponential(1.0 / bound)
        excite *= np.exp(-beta * w)
        t += w
        if t > t_end:
            return np.array(events)
        if rng.uniform() * bound <= mu + excite:
            events.append(t)
            excite += alpha


def padded(seqs, width):
    times = np.zeros((len(seqs), width))
    mask = np.zeros((len(seqs), width), bool)
    for i, s in enumerate(seqs):
        times[i, : len(s)], mask[i, : len(s)] = s, True
    return times, mask


# ------------------------------------------------------------------ closed forms
@pytest.mark.parametrize("config", [SolverConfig(), FixedSteps(grid_size=7)], ids=["adaptive", "fixed_steps"])
def test_constant_rates_give_the_marked_poisson_likelihood_for_padded_sequences(config):
    rates = jnp.array([0.7, 1.9])
    seqs = [[0.3, 1.1, 2.5, 4.0], [0.9], []]
    marks = [[0, 1, 1, 0], [1], []]
    t_end = jnp.array([5.0, 3.0, 2.0])
    times, mask = padded(seqs, 4)
    mark_arr, _ = padded(marks, 4)
    sol = jax.jit(jax.vmap(lambda t, m, k, e: solve_event_jumps(ConstantRates(rates), t, m, k, e, config=config)))(
        jnp.asarray(times, jnp.float32), jnp.asarray(mark_arr, jnp.int32), jnp.asarray(mask), t_end
    )
    ll = jax.vmap(events_log_likelihood)(sol, jnp.asarray(mask))
    expected = [
        sum(np.log([0.7, 1.9, 1.9, 0.7])) - 2.6 * 5.0,
        np.log(1.9) - 2.6 * 3.0,
        -2.6 * 2.0,
    ]
    # float32 solve of a constant integrand (exact for any Runge-Kutta step): only round-off (relative 1e-6)
    np.testing.assert_allclose(ll, expected, rtol=1e-5)
    assert sol.status.tolist() == [0, 0, 0]


def test_hawkes_form_gives_the_closed_form_hawkes_likelihood_to_float_tolerance():
    rng = np.random.default_rng(1)
    mu, alpha, beta, t_end = 0.5, 0.8, 1.3, 40.0
    events = simulate_hawkes(rng, t_end, mu, alpha, beta)
    assert 20 < events.size < 200
    with jax.enable_x64(True):
        n = events.size
        times = jnp.concatenate([jnp.asarray(events), jnp.zeros(5)])  # 5 padded entries
        mask = jnp.arange(n + 5) < n
        sol = solve_jit(Hawkes(mu, alpha, beta, jnp.float64), times, jnp.zeros(n + 5, int), mask, t_end,
                                config=TIGHT64)  # fmt: skip
        ll = float(events_log_likelihood(sol, mask))
        per_event_sum = float(jnp.sum(per_event_log_likelihood(sol, mask)))
        before = np.exp(np.asarray(sol.log_rates)[:n])
    expected, intensity = hawkes_log_likelihood(events, t_end, mu, alpha, beta)
    # float64 at rtol = atol = 1e-10: agreement to ~1e-9 relative; 1e-8 leaves room for the compensator's sum.
    np.testing.assert_allclose(ll, expected, rtol=1e-8)
    # intensity just before each event: the jump at t_i is not seen by lambda(t_i-)
    np.testing.assert_allclose(before, intensity, rtol=1e-8)
    tail = mu * (t_end - events[-1]) + np.sum(alpha / beta * (np.exp(-beta * (events[-1] - events)) - np.exp(-beta * (t_end - events))))
    np.testing.assert_allclose(per_event_sum, expected + tail, rtol=1e-8)


def test_jumps_land_exactly_at_event_times_not_at_solver_steps():
    with jax.enable_x64(True):
        # A counting process: no flow, each event adds 1; z(t) = N(t), right-continuous.
        events = jnp.array([0.3, 0.3 + 1e-9, 1.7, 2.25])
        save = jnp.array([0.0, 0.3 - 1e-12, 0.3, 0.3 + 1e-9, 1.0, 1.7 - 1e-12, 1.7, 2.25, 3.0])
        counter = eqx.tree_at(lambda p: p.alpha, Hawkes(1.0, 1.0, 0.0, jnp.float64), jnp.float64(1.0))
        sol = solve_jit(counter, events, jnp.zeros(4, int), jnp.ones(4, bool), 3.0, save_ts=save,
                                config=TIGHT64)  # fmt: skip
        np.testing.assert_array_equal(np.asarray(sol.zs[:, 0]), [0, 0, 1, 2, 2, 2, 3, 4, 4])
        np.testing.assert_array_equal(np.asarray(sol.z_before[:, 0]), [0, 1, 2, 3])
        # With decay: the state between events is exactly the Hawkes excitation at the save times.
        mu, alpha, beta = 0.2, 0.8, 1.5
        grid = jnp.linspace(0.0, 3.0, 31)
        sol = solve_jit(Hawkes(mu, alpha, beta, jnp.float64), events, jnp.zeros(4, int), jnp.ones(4, bool),
                                3.0, save_ts=grid, config=TIGHT64)  # fmt: skip
        rates, ev, grid = np.asarray(sol.rates[:, 0]), np.asarray(events), np.asarray(grid)
    truth = [mu + alpha * np.sum(np.exp(-beta * (s - ev[ev <= s]))) for s in grid]
    np.testing.assert_allclose(rates, truth, rtol=1e-8)


# ------------------------------------------------------------------ gradients
def test_gradient_of_the_neural_likelihood_matches_finite_differences():
    with jax.enable_x64(True):
        process = NeuralJumpProcess(2, 2, width=4, depth=1, key=jr.key(3), rate_scale=1.5, t_scale=0.7)
        process = jax.tree.map(lambda x: x.astype(jnp.float64) if eqx.is_inexact_array(x) else x, process)
        params, static = eqx.partition(process, eqx.is_inexact_array)
        flat, unravel = jax.flatten_util.ravel_pytree(params)
        times = jnp.array([0.4, 0.9, 1.0, 2.2, 3.1, 0.0])
        marks = jnp.array([0, 1, 1, 0, 1, 0])
        mask = jnp.arange(6) < 5

        @jax.jit
        def loglik(p):
            sol = solve_event_jumps(eqx.combine(unravel(p), static), times, marks, mask, 4.0, config=TIGHT64)
            return events_log_likelihood(sol, mask)

        grad = jax.grad(loglik)(flat)
        directions = jr.normal(jr.key(4), (3, flat.size), jnp.float64)
        h = 1e-5
        for d in directions:
            fd = (loglik(flat + h * d) - loglik(flat - h * d)) / (2 * h)
            # central differences in float64 with h = 1e-5: truncation O(h^2) plus solver error 1e-10 / h
            np.testing.assert_allclose(float(jnp.dot(grad, d)), float(fd), rtol=1e-5, atol=1e-6)
        assert np.all(np.isfinite(np.asarray(grad)))


@pytest.mark.parametrize("config", [SolverConfig(), FixedSteps()], ids=["adaptive", "fixed-steps"])
def test_an_intensity_that_underflows_at_an_event_keeps_a_finite_gradient_under_a_scaled_likelihood(config):
    # A minibatch scales the log-likelihood by sequences / batch size (10 here). Where the intensity underflows at an
    # event, the old floor log(maximum(rate, tiny)) passed the cotangent 10 / tiny (inf in float32) through its zero
    # gradient: inf * 0 = NaN, at every step of a minibatched self-correcting fit of 300 sequences (docs/decisions.md).
    times, marks, mask = jnp.array([0.5, 1.5, 2.5]), jnp.zeros(3, int), jnp.ones(3, bool)

    def scaled_grad(process):
        params, static = eqx.partition(process, eqx.is_inexact_array)

        def loss(p):
            sol = solve_event_jumps(eqx.combine(p, static), times, marks, mask, 3.0, config=config)
            return 10.0 * events_log_likelihood(sol, mask)

        return jax.grad(loss)(params)

    # Without log_rates (the floor): mu = 0 puts the first event's intensity at 0; its term has no gradient, the others do.
    grad = scaled_grad(Hawkes(mu=0.0, alpha=1.0, beta=1.0))
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grad))
    assert float(grad.alpha) != 0.0
    # NeuralJumpProcess.log_rates: exact where the intensity underflows (readout bias -200: every rate 0 in float32), so
    # d(loglik)/d(bias) = number of events (each log-rate is linear in the bias there; the compensator ~ e^-200 is 0).
    process = NeuralJumpProcess(2, width=4, key=jr.key(0), rate_scale=2.0)
    z = jnp.array([0.3, -0.4])
    np.testing.assert_allclose(process.log_rates(z), jnp.log(process.rates(z)), rtol=1e-6)  # ordinary intensities: the same
    starved = eqx.tree_at(lambda p: p.readout.bias, process, jnp.full((1,), -200.0))
    assert float(starved.rates(z)[0]) == 0.0 and np.isfinite(float(starved.log_rates(z)[0]))
    grad = scaled_grad(starved)
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grad))
    np.testing.assert_allclose(float(grad.readout.bias[0]), 30.0, rtol=1e-5)


def test_decay_keeps_the_latent_state_bounded_where_the_flow_alone_drifts():
    # The flow's last bias at +3 pushes z up by 3 per unit time forever. With decay 1 the state
    # settles within the flow's output bound (sum |W_last| + |b|, tanh units are in [-1, 1]);
    # without decay it drifts far past it over 200 time units (no events: the flow alone).
    process = NeuralJumpProcess(2, 1, width=4, key=jr.key(1), t_scale=1.0)
    last = process.flow.layers[-1]
    bound = np.sum(np.abs(np.asarray(last.weight)), axis=1) + 3.0
    ends = {}
    for decay in (0.0, 1.0):
        p = eqx.tree_at(lambda q: q.flow.layers[-1].bias, NeuralJumpProcess(
            2, 1, width=4, key=jr.key(1), t_scale=1.0, decay=decay), jnp.full(2, 3.0))  # fmt: skip
        sol = solve_jit(p, jnp.zeros(1), jnp.zeros(1, int), jnp.zeros(1, bool), 200.0, save_ts=jnp.array([200.0]))
        assert int(sol.status) == 0
        ends[decay] = np.abs(np.asarray(sol.zs[0]))
    assert np.all(ends[1.0] <= bound + 1e-3), (ends[1.0], bound)
    assert np.all(ends[0.0] > 10 * bound), (ends[0.0], bound)
    with pytest.raises(ConfigError, match="`decay` must be >= 0"):
        NeuralJumpProcess(2, 1, key=jr.key(0), decay=-1.0)


# ------------------------------------------------------------------ simulation and time rescaling
def test_thinning_reproduces_poisson_counts_and_hawkes_passes_time_rescaling():
    sim = jax.jit(jax.vmap(lambda k: simulate_events(ConstantRates(jnp.array([1.0, 2.0])), jnp.zeros(1), 0.0, 20.0,
                                                     key=k, max_events=200, window=2.0)))  # fmt: skip
    out = sim(jr.split(jr.key(0), 64))
    counts = np.asarray(out.mask.sum(axis=1))
    # 64 draws of Poisson(60): the mean's sd is sqrt(60 / 64) ~ 0.97; 4 sd allowed.
    assert abs(counts.mean() - 60.0) < 4 * 0.97
    # marks in proportion 1 : 2 (binomial over ~3840 events: sd ~ 0.0076; 4 sd)
    frac = float(np.sum(np.asarray(out.marks) * np.asarray(out.mask)) / counts.sum())
    assert abs(frac - 2 / 3) < 0.031
    assert int(out.bound_violations.sum()) == 0 and not bool(out.truncated.any())

    # Hawkes by thinning with the grid bound, checked by time rescaling under the true intensity.
    hawkes = Hawkes(0.5, 0.6, 1.0)
    hs = simulate_events(hawkes, jnp.zeros(1), 0.0, 300.0, key=jr.key(1), max_events=1000, window=0.5,
                         bound_factor=2.0)  # fmt: skip
    n = int(hs.mask.sum())
    assert 200 < n < 1000 and int(hs.bound_violations) == 0
    sol = solve_jit(hawkes, hs.times, hs.marks, hs.mask, 300.0)
    true = time_rescaling_test(sol.increments, hs.mask)
    wrong = time_rescaling_test(solve_jit(Hawkes(1.1, 0.0, 1.0), hs.times, hs.marks, hs.mask, 300.0).increments,
                                hs.mask)  # fmt: skip
    # Fixed seeds; the true intensity passes at 1%, a Poisson with the same mean rate (wrong shape) fails at 1e-4.
    assert true.pvalue > 0.01, true
    assert wrong.pvalue < 1e-4, wrong


def test_time_rescaling_rejects_a_wrong_intensity_on_a_simulated_hawkes_sequence():
    rng = np.random.default_rng(7)
    events = simulate_hawkes(rng, 500.0, 0.2, 0.8, 1.0)
    n = events.size
    mask = jnp.ones(n, bool)
    truth = solve_jit(Hawkes(0.2, 0.8, 1.0), jnp.asarray(events, jnp.float32), jnp.zeros(n, int), mask, 500.0)
    slow_decay = solve_jit(Hawkes(0.2, 0.8, 0.3), jnp.asarray(events, jnp.float32), jnp.zeros(n, int), mask,
                                   500.0)  # fmt: skip
    assert time_rescaling_test(truth.increments).pvalue > 0.05
    assert time_rescaling_test(slow_decay.increments).pvalue < 1e-3


def test_time_rescaling_errors_name_the_argument():
    with pytest.raises(DataError, match=r"`mask` must have the shape of `increments` \(3,\)"):
        time_rescaling_test(np.ones(3), np.ones(2, bool))
    with pytest.raises(DataError, match="non-negative"):
        time_rescaling_test(np.array([1.0, -0.5, 2.0]))


# ------------------------------------------------------------------ the NumPyro model and the data
def test_model_sites_shapes_and_failed_solve_is_minus_inf_not_an_exception():
    seqs = make_event_sequences([[0.5, 1.0, 1.5], [2.0]], marks=[[0, 1, 0], [1]], t_end=[2.0, 3.0])
    process = NeuralJumpProcess(2, 2, width=4, key=jr.key(0))
    model = point_process_model(process)
    data = event_arrays(seqs)
    tr = handlers.trace(handlers.seed(model, 0)).get_trace(**data, save_ts=jnp.linspace(0.0, 3.0, 7))
    assert tr["event_log_lik"]["value"].shape == (2, 3)
    assert tr["intensity"]["value"].shape == (2, 7, 2)
    assert "field.flow.layers[0].weight" in tr and "field.jump.layers[0].weight" in tr and "field.z0" in tr
    assert float(tr["event_log_lik"]["value"][1, 1]) == 0.0  # padding
    factor = np.asarray(tr["events"]["fn"].log_factor)  # one term per sequence (plate `sequences`)
    assert factor.shape == (2,) and np.all(np.isfinite(factor))

    # A field that explodes: the factor is -inf, the status says why, nothing raises.
    explode = eqx.tree_at(lambda p: p.flow.layers[-1].bias, process, jnp.full(2, 1e9))
    blown = handlers.trace(handlers.substitute(handlers.seed(point_process_model(explode, weight_prior=None), 0),
                                               data={"field.flow.layers[1].bias": jnp.full(2, 1e9)})).get_trace(**data)  # fmt: skip
    assert np.all(np.asarray(blown["events"]["fn"].log_factor) == -np.inf)
    assert np.all(np.asarray(blown["solve_status"]["value"]) > 0)


def test_event_sequences_check_input_and_split():
    with pytest.raises(DataError, match=r"sequence 0: `times` must increase; times\[1\]=2.0 > times\[2\]=1.0"):
        make_event_sequences([[0.5, 2.0, 1.0]], t_end=3.0)
    with pytest.raises(DataError, match=r"must lie in \(t0, t_end\]"):
        make_event_sequences([[0.5, 4.0]], t_end=3.0)
    with pytest.raises(DataError, match="`marks` go up to 2, but `num_marks`=2"):
        make_event_sequences([[0.5]], marks=[[2]], t_end=1.0, num_marks=2)
    seqs = make_event_sequences([[0.5, 1.5, 2.5], [0.2]], t_end=3.0)
    before, after = seqs.split(1.0)
    assert before.num_events.tolist() == [1, 1] and after.num_events.tolist() == [2, 0]
    assert after.t0.tolist() == [1.0, 1.0] and np.all(after.times[1] == 3.0)
