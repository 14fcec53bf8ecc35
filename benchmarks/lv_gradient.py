"""Cost of one gradient of the LV preset's log density near the posterior, per adjoint.

One process, the adjoints timed in interleaved rounds (medians). Rows: one chain
(unbatched, as sequential and CPU-parallel chains run) and 4 chains under ``vmap``
(as vectorised chains run). Also checks each gradient against the checkpointed one.

    python benchmarks/lv_gradient.py
"""

from __future__ import annotations

import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from numpyro.infer.util import initialize_model

import bayesode as bo
from bayesode.infer.programs import gradient_by_forward_mode

ADJOINTS = ("sensitivity", "forward", "checkpoint")
# a point near the lynx-hare posterior (unconstrained: logs)
NEAR_POSTERIOR = {
    "alpha": np.log(0.55),
    "beta": np.log(0.028),
    "gamma": np.log(0.80),
    "delta": np.log(0.024),
    "y0": np.log([[33.9, 5.9]]),
    "sigma": np.log([0.25, 0.25]),
}


def gradient_programs(adjoint, md):
    model = bo.models.lotka_volterra(adjoint=adjoint)
    forward = adjoint == "forward"
    info = initialize_model(jr.key(0), model, model_args=(md,), forward_mode_differentiation=forward)
    potential = gradient_by_forward_mode(info.potential_fn) if forward else info.potential_fn
    value_and_grad = jax.value_and_grad(potential)
    return jax.jit(value_and_grad), jax.jit(jax.vmap(value_and_grad))


def time_call(f, arg, repeats=200, rounds=5):
    jax.block_until_ready(f(arg))
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            r = f(arg)
        jax.block_until_ready(r)
        out.append((time.perf_counter() - start) / repeats)
    return statistics.median(out)


def main():
    md = bo.datasets.load("lynx_hare").to_data().model_data()
    z = {k: jnp.asarray(v, jnp.float32) for k, v in NEAR_POSTERIOR.items()}
    z4 = jax.tree.map(lambda v: jnp.stack([v + 0.01 * k for k in range(4)]), z)  # 4 nearby chains
    programs = {a: gradient_programs(a, md) for a in ADJOINTS}
    _, reference = programs["checkpoint"][0](z)
    times = {a: ([], []) for a in ADJOINTS}
    for _ in range(3):
        for a, (one, four) in programs.items():
            times[a][0].append(time_call(one, z))
            times[a][1].append(time_call(four, z4))
    print(
        f"machine: {platform.processor() or platform.machine()}, jax {jax.__version__}; command: python {' '.join(sys.argv)}"
    )
    print(f"{'adjoint':12s} {'1 chain us':>11s} {'4 chains (vmap) us':>19s} {'max rel. diff. vs checkpoint':>29s}")
    for a, (one, _) in programs.items():
        _, g = one(z)
        diff = max(float(jnp.max(jnp.abs(g[k] - reference[k]) / (jnp.abs(reference[k]) + 1e-3))) for k in g)
        t1, t4 = (1e6 * statistics.median(t) for t in times[a])
        print(f"{a:12s} {t1:11.1f} {t4:19.1f} {diff:29.1e}")


if __name__ == "__main__":
    main()
