"""Where the LV forward-mode gradient goes: bare diffrax, no bayesode wrappers.

Prints one table (medians of interleaved timings in one process):
- the plain solve, and ``vmap(jvp)`` over 1, 2, 4, 8 tangent directions (what
  ``jacfwd`` and bayesode's one-pass forward gradient do);
- the same with diffrax's stage sums as elementwise sums instead of ``tensordot``;
- forward sensitivities carried in the state (``(2, 1 + 6)``: states and their
  derivatives with respect to the 4 rates and 2 initial states, error control on the
  states only), under a ``custom_vjp``, so the potential is differentiated in reverse
  mode over it;
- a plain solve with a ``(2, k)`` state of k uncoupled copies (the per-element cost).

    python benchmarks/forward_directions.py
"""

from __future__ import annotations

import platform
import statistics
import sys
import time

import diffrax
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import optimistix as optx

import bayesode as bo

d = bo.datasets.load("lynx_hare").to_data()
TS = jnp.asarray(d.ts[0] - d.ts[0, 0], jnp.float32)
YS = jnp.asarray(d.ys[0], jnp.float32)
POSTERIOR = jnp.array([0.55, 0.028, 0.80, 0.024, 33.9, 5.9, 0.25, 0.25], jnp.float32)  # rates, y0, sigma


def lv(t, z, th):
    u, v = z[0], z[1]
    return jnp.stack([(th[0] - th[1] * v) * u, (-th[2] + th[3] * u) * v])


def solve_plain(th, z0, norm=None):
    ctrl = diffrax.PIDController(rtol=1e-6, atol=1e-6, **({"norm": norm} if norm else {}))
    return diffrax.diffeqsolve(
        diffrax.ODETerm(lv), diffrax.Tsit5(), TS[0], TS[-1], None, z0, args=th, saveat=diffrax.SaveAt(ts=TS),
        stepsize_controller=ctrl, adjoint=diffrax.ForwardMode(), max_steps=2048, throw=False,
    ).ys  # fmt: skip


def loss(zs, s):
    return jnp.sum(((jnp.log(zs) - jnp.log(YS)) / s) ** 2) + jnp.sum(jnp.log(s))


def potential(p):
    return loss(solve_plain(p[:4], p[4:6]), p[6:8])


def by_directions(k):
    basis = jnp.eye(8, dtype=jnp.float32)[:k]
    return jax.jit(lambda p: jax.vmap(lambda v: jax.jvp(potential, (p,), (v,)), out_axes=(None, 0))(basis))


def _sensitivity_field(t, Y, th):
    y, S = Y[:, 0], Y[:, 1:]  # (2,), (2, 6): d y / d (rates, y0)
    P = jnp.concatenate([jnp.eye(4, dtype=Y.dtype), jnp.zeros((4, 2), Y.dtype)], axis=1)
    f, dS = jax.vmap(lambda s, q: jax.jvp(lambda yy, pp: lv(t, yy, pp), (y, th), (s, q)), in_axes=(1, 1), out_axes=(None, 1))(S, P)  # fmt: skip
    return jnp.concatenate([f[:, None], dS], axis=1)


def _solve_with_sensitivities(th, z0):
    Y0 = jnp.concatenate([z0[:, None], jnp.zeros((2, 4), z0.dtype), jnp.eye(2, dtype=z0.dtype)], axis=1)
    ys = diffrax.diffeqsolve(
        diffrax.ODETerm(_sensitivity_field), diffrax.Tsit5(), TS[0], TS[-1], None, Y0, args=th,
        saveat=diffrax.SaveAt(ts=TS), max_steps=2048, throw=False, adjoint=diffrax.ForwardMode(),
        stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-6, norm=lambda Y: optx.rms_norm(Y[:, 0])),
    ).ys  # fmt: skip
    return ys[:, :, 0], ys[:, :, 1:]


@jax.custom_vjp
def solve_sens(th, z0):
    return _solve_with_sensitivities(th, z0)[0]


def _fwd(th, z0):
    zs, S = _solve_with_sensitivities(th, z0)
    return zs, S


def _bwd(S, ct):
    g = jnp.einsum("tn,tnk->k", ct, S)
    return g[:4], g[4:]


solve_sens.defvjp(_fwd, _bwd)


def potential_sens(p):
    return loss(solve_sens(p[:4], p[4:6]), p[6:8])


def elementwise_dot(a, b):
    def one(bi):
        return jnp.sum(jnp.asarray(a, bi.dtype).reshape(a.shape + (1,) * (bi.ndim - 1)) * bi, axis=0)

    return jtu.tree_map(one, b)


def time_call(f, *args, repeats=20, rounds=5):
    jax.block_until_ready(f(*args))
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(repeats):
            r = f(*args)
        jax.block_until_ready(r)
        out.append((time.perf_counter() - t) / repeats)
    return statistics.median(out)


def main():
    rows = []
    fns = {"plain solve": (jax.jit(potential), POSTERIOR)}  # name -> (function, argument)
    for k in (1, 2, 4, 8):
        fns[f"vmap(jvp), {k} direction(s)"] = (by_directions(k), POSTERIOR)
    fns["sensitivities in the state, custom_vjp, value_and_grad"] = (
        jax.jit(jax.value_and_grad(potential_sens)),
        POSTERIOR,
    )
    states_only = lambda Y: optx.rms_norm(Y[:, 0])  # noqa: E731
    for k in (1, 2, 4, 7):
        copies = jax.jit(lambda z0: solve_plain(POSTERIOR[:4], z0, states_only))
        fns[f"plain solve, (2, {k}) state"] = (copies, jnp.tile(POSTERIOR[4:6, None], (1, k)))
    for name, (f, arg) in fns.items():
        rows.append((name, "tensordot (diffrax)", time_call(f, arg)))
    # diffrax's stage sums as elementwise sums (a patch for this measurement only)
    import diffrax._solver.base as base
    import diffrax._solver.runge_kutta as rk
    import diffrax._solver.tsit5 as tsit5

    rk.vector_tree_dot = tsit5.vector_tree_dot = base.vector_tree_dot = elementwise_dot
    for name in (
        "vmap(jvp), 2 direction(s)",
        "vmap(jvp), 8 direction(s)",
        "sensitivities in the state, custom_vjp, value_and_grad",
    ):
        f = (
            by_directions(int(name.split(", ")[1][0]))
            if name.startswith("vmap")
            else jax.jit(jax.value_and_grad(potential_sens))
        )
        rows.append((name, "elementwise stage sums", time_call(f, POSTERIOR)))
    ref = jax.jacfwd(potential)(POSTERIOR)
    _, g = jax.value_and_grad(potential_sens)(POSTERIOR)
    print(
        f"machine: {platform.processor() or platform.machine()}, jax {jax.__version__}, diffrax {diffrax.__version__}"
    )
    print(f"command: python {' '.join(sys.argv)}; LV on lynx-hare at a posterior point, float32, Tsit5 rtol=atol=1e-6")
    print(
        f"sensitivity gradient vs jacfwd: max relative difference {float(jnp.max(jnp.abs(g - ref) / (jnp.abs(ref) + 1e-3))):.1e}"
    )
    print(f"{'what':58s} {'stage sums':24s} {'us':>8s}")
    for name, variant, t in rows:
        print(f"{name:58s} {variant:24s} {t * 1e6:8.1f}")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
