"""Implicit solvers whose failed Newton solves stay a status, also under differentiation.

The gap. diffrax's implicit solvers (``Kvaerno5``, ``ImplicitEuler``, ...) call
``optimistix.root_find(..., throw=False)``: a Newton solve that fails rejects the
step, and the step-size controller tries a smaller one. But the root finder's
*derivative* (optimistix's implicit-function-theorem JVP, and lineax's JVP and
transpose rules) solves its linear systems with ``throw=True``, at whatever the
failed solve returned. A non-finite Newton iterate there raises a runtime error
that ends the whole NUTS run (seen on Robertson's reactions during warmup),
although the step it belongs to is rejected anyway.

What we do. :class:`FiniteRootOnFailure` wraps any optimistix root finder (a
public extension point: ``optimistix.AbstractRootFinder``, passed through the
solver's public ``root_finder`` field). Where the Newton solve failed or returned
a non-finite value it returns its starting point instead (diffrax's predictor:
finite, and where diffrax evaluated its Jacobian), so the derivative's linear
solve sees finite input. The failure itself is unchanged: optimistix still
reports it, and diffrax still rejects the step (its error estimate is set to inf
on a failed root find). A successful solve returns exactly what the wrapped
finder returned. Left open: a linear system that is finite but numerically
singular (rate constants ~1e20 times their scale) still raises inside lineax;
``EQX_ON_ERROR=nan`` turns that into a failed solve. ``tests/test_solve.py``
fails when lineax stops throwing here (then this module can go).
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu
import optimistix as optx


class FiniteRootOnFailure(optx.AbstractRootFinder):
    """``inner`` (any optimistix root finder), returning its starting point where it failed.

    Tolerances and norm are ``inner``'s (so diffrax's
    ``with_stepsize_controller_tols`` still fills them from the controller).
    """

    inner: optx.AbstractRootFinder

    @property
    def rtol(self):
        return self.inner.rtol

    @property
    def atol(self):
        return self.inner.atol

    @property
    def norm(self):
        return self.inner.norm

    def init(self, fn, y, args, options, f_struct, aux_struct, tags):
        # diffrax builds the finder's state once per step (the Jacobian) and hands it back as
        # ``options["init_state"]`` for every stage: that is this wrapper's state, so unwrap it.
        if "init_state" in options:
            options = dict(options, init_state=options["init_state"][0])
        return self.inner.init(fn, y, args, options, f_struct, aux_struct, tags), y

    def step(self, fn, y, args, options, state, tags):
        inner_state, y_start = state
        y, inner_state, aux = self.inner.step(fn, y, args, options, inner_state, tags)
        return y, (inner_state, y_start), aux

    def terminate(self, fn, y, args, options, state, tags):
        return self.inner.terminate(fn, y, args, options, state[0], tags)

    def postprocess(self, fn, y, aux, args, options, state, tags, result):
        inner_state, y_start = state
        y, aux, stats = self.inner.postprocess(fn, y, aux, args, options, inner_state, tags, result)
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jtu.tree_leaves(y)]))
        keep = finite & (result == optx.RESULTS.successful)
        return jtu.tree_map(lambda new, start: jnp.where(keep, new, start), y, y_start), aux, stats


def with_finite_roots(solver: diffrax.AbstractSolver) -> diffrax.AbstractSolver:
    """``solver`` with its root finder wrapped in :class:`FiniteRootOnFailure`; explicit solvers unchanged."""
    if not isinstance(solver, diffrax.AbstractImplicitSolver) or isinstance(solver.root_finder, FiniteRootOnFailure):
        return solver
    return eqx.tree_at(lambda s: s.root_finder, solver, FiniteRootOnFailure(solver.root_finder))
