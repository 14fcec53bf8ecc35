"""Fixed steps between events against the adaptive solve: accuracy and gradient cost, side by side.

An exponential-kernel Hawkes process written as a jump ODE (``dz/dt = -beta z``, jump ``alpha``,
``lambda = mu + z``) on one sequence of about ``--events`` events (simulated with a fixed seed), so the
log-likelihood has a closed form (Ozaki 1979). For each solver: the error of the float32 log-likelihood
against the closed form (nats), the solve's status, and the time of one likelihood and of one
likelihood + gradient (median of 10, after compiling). Also the fitted-weights case that matters in
practice is in ``benchmarks/event_fit_1000.py --solver fixed``.

    python benchmarks/event_grid.py --events 1000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_event_jumps import Hawkes, hawkes_log_likelihood, simulate_hawkes  # noqa: E402

from bayesode.infer import EVENT_SOLVER  # noqa: E402
from bayesode.solving import FixedSteps, events_log_likelihood, solve_event_jumps  # noqa: E402


def median_seconds(fn, *args, repeats=10):
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1000, help="about this many events (default 1000)")
    args = ap.parse_args(argv)
    mu, alpha, beta = 1.0, 0.5, 1.0  # stationary rate mu / (1 - alpha / beta) = 2 per unit time
    t_end = args.events / 2.0
    events = simulate_hawkes(np.random.default_rng(0), t_end, mu, alpha, beta)
    n = events.size
    expected, _ = hawkes_log_likelihood(events, t_end, mu, alpha, beta)
    times, marks, mask = jnp.asarray(events, jnp.float32), jnp.zeros(n, jnp.int32), jnp.ones(n, bool)
    template = Hawkes(mu, alpha, beta)
    params, static = eqx.partition(template, eqx.is_inexact_array)
    solvers = {
        "adaptive (EVENT_SOLVER)": EVENT_SOLVER,
        "FixedSteps() (Tsit5)": FixedSteps(),
        "FixedSteps(Bosh3)": FixedSteps(diffrax.Bosh3()),
        "FixedSteps(Bosh3, grid 2n)": FixedSteps(diffrax.Bosh3(), grid_size=2 * n),
    }
    print(f"Hawkes (mu {mu}, alpha {alpha}, beta {beta}), {n} events on [0, {t_end:g}]; closed form {expected:.3f}")
    print(f"{'solver':26s} {'ll_error':>9s} {'status':>6s} {'ll_ms':>7s} {'grad_ms':>8s} {'grad_vs_adaptive':>16s}")
    base = None
    for name, config in solvers.items():

        def loglik(p, config=config):
            sol = solve_event_jumps(eqx.combine(p, static), times, marks, mask, t_end, config=config)
            return events_log_likelihood(sol, mask), sol.status

        value = jax.jit(loglik)
        grad = jax.jit(jax.grad(lambda p, f=loglik: f(p)[0]))
        ll, status = value(params)
        ll_s, grad_s = median_seconds(value, params), median_seconds(grad, params)
        base = grad_s if base is None else base
        print(f"{name:26s} {abs(float(ll) - expected):9.4f} {int(status):6d} {1e3 * ll_s:7.2f} {1e3 * grad_s:8.2f} "
              f"{grad_s / base:16.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
