"""Time and peak memory of one gradient through a long solve, per diffrax adjoint.

``python benchmarks/adjoints.py [--points 2000] [--series 16] [--repeats 3]``

Two problems, each a sum-of-squares loss over ``--points`` save times of
``--series`` series (vmapped, as in a bayesode model):

- ``neural``: an ``MLPField`` (2 states, width 16, depth 1: 82 parameters) on an
  oscillator's time span;
- ``lotka_volterra``: the 4-parameter mechanistic field.

Adjoints: ``checkpoint`` (``RecursiveCheckpointAdjoint``, the default),
``backsolve`` (``BacksolveAdjoint``: needs a ``bayesode.solve`` that drops its
blow-up event for this adjoint, otherwise reported as unsupported) and
``forward`` (``ForwardMode``, gradient by ``jax.jacfwd``). The ``loss only`` row
is the forward solve without a gradient: the baseline memory of JAX plus the
solve.

Each case runs in its own process. Memory is the device's ``peak_bytes_in_use``
where ``jax.devices()[0].memory_stats()`` reports it (GPU); on CPU it is the
process's peak resident set (``ru_maxrss``), which includes JAX itself and XLA
compilation, so compare rows with each other and with ``loss only``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ADJOINTS = ["loss only", "checkpoint", "backsolve", "forward"]
PROBLEMS = ["neural", "lotka_volterra"]


def _problem(name: str, points: int, series: int):
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import jax.random as jr

    import bayesode as bo

    if name == "neural":
        field = bo.MLPField(2, width=16, depth=1, key=jr.key(0))
        y0 = jnp.stack([jnp.ones(series), jnp.linspace(-0.5, 0.5, series)], axis=-1)
        t1 = 20.0
    else:
        field = bo.lotka_volterra_field(alpha=0.55, beta=0.028, gamma=0.8, delta=0.024)
        y0 = jnp.stack([jnp.full(series, 30.0), jnp.linspace(4.0, 6.0, series)], axis=-1)
        t1 = 40.0
    params, static = eqx.partition(field, eqx.is_inexact_array)
    theta, unravel = jax.flatten_util.ravel_pytree(params)
    ts = jnp.linspace(0.0, t1, points)
    return theta, unravel, static, y0, ts


def worker(problem: str, adjoint: str, points: int, series: int, repeats: int) -> dict:
    import diffrax
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    import bayesode as bo

    theta, unravel, static, y0, ts = _problem(problem, points, series)
    adj = {
        "loss only": diffrax.RecursiveCheckpointAdjoint(),
        "checkpoint": diffrax.RecursiveCheckpointAdjoint(),
        "backsolve": diffrax.BacksolveAdjoint(),
        "forward": diffrax.ForwardMode(),
    }[adjoint]
    config = bo.SolverConfig(rtol=1e-6, atol=1e-6, adjoint=adj, max_steps=16384)

    def loss(th):
        field = eqx.combine(unravel(th), static)
        sol = jax.vmap(lambda y: bo.solve(field, y, ts, config=config))(y0)
        return jnp.sum(sol.ys**2) / sol.ys.size, jnp.max(sol.status)

    if adjoint == "loss only":
        fn = jax.jit(lambda th: loss(th)[0])
    elif adjoint == "forward":
        fn = jax.jit(jax.jacfwd(lambda th: loss(th)[0]))
    else:
        fn = jax.jit(jax.grad(lambda th: loss(th)[0]))
    out = {"problem": problem, "adjoint": adjoint, "params": int(theta.size), "points": points, "series": series}
    try:
        t = time.perf_counter()
        jax.block_until_ready(fn(theta))
        out["compile_and_first_s"] = time.perf_counter() - t
    except NotImplementedError as e:
        out["error"] = str(e).splitlines()[0][:80]
        return out
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(theta))
        runs.append(time.perf_counter() - t)
    out["run_s"] = statistics.median(runs)
    out["status"] = int(jax.jit(lambda th: loss(th)[1])(theta))
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        out["peak_mb"], out["memory"] = stats["peak_bytes_in_use"] / 2**20, "device peak"
    else:
        out["peak_mb"], out["memory"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process max RSS"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=2000)
    parser.add_argument("--series", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--problems", nargs="+", default=PROBLEMS, choices=PROBLEMS)
    parser.add_argument("--worker", nargs=2, metavar=("PROBLEM", "ADJOINT"), help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker[0], a.worker[1], a.points, a.series, a.repeats)))
        return
    print(f"{'problem':<15} {'adjoint':<11} {'params':>6} {'compile+1st s':>13} {'run s':>8} {'peak MiB':>9}  memory")
    for problem in a.problems:
        for adjoint in ADJOINTS:
            cmd = [
                sys.executable,
                os.path.abspath(__file__),
                "--worker",
                problem,
                adjoint,
                "--points",
                str(a.points),
                "--series",
                str(a.series),
                "--repeats",
                str(a.repeats),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{problem:<15} {adjoint:<11} failed: {proc.stderr.strip().splitlines()[-1][:100]}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            if "error" in r:
                print(f"{problem:<15} {adjoint:<11} {r['params']:>6} unsupported: {r['error']}")
                continue
            print(
                f"{problem:<15} {adjoint:<11} {r['params']:>6} {r['compile_and_first_s']:>13.1f} {r['run_s']:>8.3f} "
                f"{r['peak_mb']:>9.0f}  {r['memory']}{'' if r['status'] == 0 else ' (solve failed!)'}",
                flush=True,
            )


if __name__ == "__main__":
    main()
