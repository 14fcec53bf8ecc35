"""Implicit solvers under differentiation: how often a derivative raises instead of failing one solve.

Robertson's reactions (Kvaerno5, rtol 1e-5, atol 1e-9, float64, as ``tests/published_models.py``)
at log rate constants drawn around the textbook values with a standard deviation ``scale``
(the priors have 1; NUTS's first warmup trajectories can go much further). For each draw the
derivative of the solution (forward-mode JVP or reverse-mode gradient) is taken through plain
``diffrax.diffeqsolve`` with ``throw=False`` and through ``bayesode.solve`` (whose root finder is
wrapped by ``bayesode.solving.implicit``), and the table counts the draws where the derivative
*raised* (which would end a NUTS run) and, for bayesode, the draws whose solve failed (a status:
a -inf log density, counted and reported by the fit).

    python benchmarks/implicit_derivatives.py
    python benchmarks/implicit_derivatives.py --scales 1 10 40 --draws 60 --adjoint reverse
"""

from __future__ import annotations

import argparse
import os
import sys

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
from stiff_cases import ROBERTSON_LOG_K, robertson_solves  # noqa: E402


def derivatives(adjoint):
    """``{name: jitted log_k -> (derivative, status)}`` for plain diffrax and bayesode."""
    solves = dict(zip(("diffrax", "bayesode"), robertson_solves(adjoint)))

    def differentiate(solve):
        def fn(log_k):
            ys, status = solve(log_k)
            return jnp.sum(ys[:, 1]), status

        if isinstance(adjoint, diffrax.ForwardMode):
            return jax.jit(lambda x: jax.jvp(fn, (x,), (jnp.ones(3),), has_aux=True)[1:])
        return jax.jit(lambda x: jax.grad(fn, has_aux=True)(x))

    return {name: differentiate(solve) for name, solve in solves.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="*", default=[1.0, 10.0, 40.0])
    parser.add_argument("--draws", type=int, default=60)
    parser.add_argument("--adjoint", choices=["forward", "reverse"], default="forward")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    adjoint = diffrax.ForwardMode() if args.adjoint == "forward" else diffrax.RecursiveCheckpointAdjoint()
    with jax.enable_x64(True):
        fns = derivatives(adjoint)
        print(
            f"{'scale':>6s} {'draws':>6s} {'diffrax raised':>15s} {'bayesode raised':>16s} {'bayesode failed solve':>22s}"
        )
        for scale in args.scales:
            rng = np.random.default_rng(args.seed)
            points = ROBERTSON_LOG_K + scale * rng.standard_normal((args.draws, 3))
            raised = {name: 0 for name in fns}
            failed = 0
            for point in points:
                for name, fn in fns.items():
                    try:
                        _, status = jax.block_until_ready(fn(jnp.asarray(point)))
                    except Exception:  # noqa: BLE001 (counting the runtime errors is the point)
                        raised[name] += 1
                        continue
                    if name == "bayesode":
                        failed += int(status) != 0
            print(f"{scale:6.1f} {args.draws:6d} {raised['diffrax']:15d} {raised['bayesode']:16d} {failed:22d}")


if __name__ == "__main__":
    main()
