"""Robertson's stiff reactions solved two ways, for ``tests/test_solve.py`` and ``benchmarks/implicit_derivatives.py``.

Kvaerno5 at rtol 1e-5, atol 1e-9 (as ``published_models.robertson``), log rate constants as
the argument; call inside ``jax.enable_x64(True)`` (the rates span 9 orders of magnitude).
"""

import diffrax
import jax.numpy as jnp
import numpy as np

import bayesode as bo
from bayesode.solving.controller import step_controller

ROBERTSON_LOG_K = np.log([0.04, 3.0e7, 1.0e4])  # the textbook rate constants
# Far out in the tails (where NUTS's first warmup trajectories can go): a Newton solve inside a
# rejected Kvaerno5 step goes non-finite, and plain diffrax's derivative raises there.
ROBERTSON_LOG_K_FAR = np.array([0.8974295388731277, 27.641841634053204, 7.924993742535841])


def robertson(t, y, log_k):
    k1, k2, k3 = jnp.exp(log_k)
    slow, fast, mid = k1 * y[0], k2 * y[1] ** 2, k3 * y[1] * y[2]
    return jnp.stack([-slow + mid, slow - mid - fast, fast])


def robertson_solves(adjoint):
    """``(plain, ours)``: log k -> ``(ys (12, 3), status)`` by plain ``diffrax.diffeqsolve``
    (``throw=False``) and by ``bayesode.solve``: same solver, controller, step budget and adjoint.
    ``status``: 0 where the solve succeeded (diffrax's result for the first, bayesode's status for the second)."""
    ts = jnp.asarray(np.geomspace(0.4, 4e5, 12))
    y0 = jnp.asarray([1.0, 0.0, 0.0])
    config = bo.SolverConfig(solver=diffrax.Kvaerno5(), rtol=1e-5, atol=1e-9, adjoint=adjoint)

    def plain(log_k):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(robertson), diffrax.Kvaerno5(), 0.0, ts[-1], None, y0, args=log_k,
            saveat=diffrax.SaveAt(ts=ts), stepsize_controller=step_controller(config, jnp.float64, None),
            adjoint=adjoint, max_steps=config.max_steps, throw=False,
        )  # fmt: skip
        return sol.ys, jnp.where(sol.result == diffrax.RESULTS.successful, 0, 1)  # public API, not the code

    def ours(log_k):
        sol = bo.solve(robertson, y0, ts, t0=0.0, args=log_k, config=config)
        return sol.ys, sol.status

    return plain, ours
