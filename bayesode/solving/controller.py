"""The step-size controller of every bayesode solve, with a step floor set by the time resolution.

A step-size floor is there to stop a solve that cannot progress (a NaN field
value makes every step fail; a finite-time singularity shrinks the step
forever) cheaply, as ``dt_min``, instead of burning ``max_steps``. It must
never bind a step that the dtype can take. A floor relative to the span
(``64 eps (t1 - t0)``, used before) did: in float32 a dose switched on at
``t0 = 0`` needs steps far below it while ``t`` is near 0, and failed on
every prior draw of a one-compartment model that diffrax itself solves.

The floor here is local, in units of the time's own resolution (ULPs of
``t``: near ``t = 0`` any step is allowed), and it asks for a pattern, not
one short step, because diffrax does cross a jump with a few short steps
(by rounding). Two patterns stop a solve (``dt_min``):

- *stuck*: :data:`STUCK_PATIENCE` step proposals in a row shorter than
  :data:`STUCK_ULPS` ULPs of ``t`` (a NaN field value; a jump too large for
  the dtype at this tolerance);
- *blowing up*: :data:`GROWTH_PATIENCE` accepted steps in a row shorter than
  :data:`GROWTH_ULPS` ULPs of ``t``, each shorter than the one before and
  growing the largest state by over 1% (a finite-time singularity: in float32
  ``1/(t* - t)`` cannot reach the ``max_abs_state`` bound, since ``t* - t``
  cannot go below one ULP; its steps shrink with ``t* - t``). Without "shorter
  than the one before", a fast rise that the controller resolves with
  growing steps (an absorption with a rate of 40, an event's delayed onset)
  failed once ``t`` was large: 1024 ULPs of ``t = 500`` are 0.06 time units in
  float32, longer than the rise itself, so every such solve there stopped.

With these values the discontinuity family in ``tests/test_solve.py``
succeeds wherever plain diffrax (no floor) does, and failed solves stay
cheap (``tests/test_robustness.py``). A ``dtmin`` of the smallest normal
number backs them up. Known jump times in ``SolverConfig(jump_ts=...)``
make a jump cheap and exact.
"""

from __future__ import annotations

from collections.abc import Callable

import diffrax
import jax
import jax.numpy as jnp

STUCK_ULPS, STUCK_PATIENCE = 4, 16
GROWTH_ULPS, GROWTH_PATIENCE, GROWTH_FACTOR = 1024, 8, 1.01


def _shorter_than(t0, t1, ulps):
    """``|t1 - t0| < ulps`` ULPs of ``t0`` (either direction: BacksolveAdjoint runs back); True for NaN."""
    return ~(jnp.abs(t1 - t0) >= ulps * jnp.finfo(jnp.result_type(t0)).eps * jnp.abs(t0))


def _size(y):
    """Largest absolute value over the state's leaves (a pytree: BacksolveAdjoint's augmented
    state holds the adjoints too, and None leaves)."""
    sizes = [jnp.max(jnp.abs(leaf)) for leaf in jax.tree_util.tree_leaves(y) if jnp.size(leaf) > 0]
    return jnp.max(jnp.stack(sizes)) if sizes else jnp.zeros(())


class ResolutionFloor(diffrax.AbstractAdaptiveStepSizeController):
    """Wraps an adaptive controller: ``dt_min`` when the steps are stuck or blowing up (module docstring).

    Built only through public diffrax API (an ``AbstractAdaptiveStepSizeController``
    that delegates to the wrapped one, as ``diffrax.ClipStepSizeController`` does).
    """

    controller: diffrax.AbstractAdaptiveStepSizeController

    @property
    def rtol(self):
        return self.controller.rtol

    @property
    def atol(self):
        return self.controller.atol

    @property
    def norm(self) -> Callable:
        return self.controller.norm

    def wrap(self, direction):
        return ResolutionFloor(self.controller.wrap(direction))

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        t1, state = self.controller.init(terms, t0, t1, y0, dt0, args, func, error_order)
        # (inner state, stuck count, growth count, length of the last accepted step: none yet, so inf)
        last = jnp.full((), jnp.inf, jnp.result_type(t0))
        return t1, (state, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), last)

    def adapt_step_size(self, t0, t1, y0, y1_candidate, args, y_error, error_order, controller_state):
        inner, stuck, growth, last = controller_state
        keep, next_t0, next_t1, made_jump, inner, result = self.controller.adapt_step_size(
            t0, t1, y0, y1_candidate, args, y_error, error_order, inner
        )
        stuck = jnp.where(_shorter_than(next_t0, next_t1, STUCK_ULPS), stuck + 1, 0)
        length = jnp.abs(t1 - t0)
        growing = (
            _shorter_than(t0, t1, GROWTH_ULPS)
            & (length < last)
            & ~(_size(y1_candidate) <= GROWTH_FACTOR * _size(y0))
        )
        growth = jnp.where(keep, jnp.where(growing, growth + 1, 0), growth)
        last = jnp.where(keep, length, last)
        failed = (stuck >= STUCK_PATIENCE) | (growth >= GROWTH_PATIENCE)
        result = diffrax.RESULTS.where(failed, diffrax.RESULTS.dt_min_reached, result)
        return keep, next_t0, next_t1, made_jump, (inner, stuck, growth, last), result


def step_controller(config, dtype, norm=None) -> diffrax.AbstractAdaptiveStepSizeController:
    """PID on ``config.rtol``/``config.atol`` (``norm`` if given), floored by the time resolution,
    clipped to ``config.jump_ts`` when set. ``dtype``: the dtype of the times."""
    pid = diffrax.PIDController(
        rtol=config.rtol,
        atol=config.atol,
        dtmin=float(jnp.finfo(dtype).tiny),
        force_dtmin=False,
        **({} if norm is None else {"norm": norm}),
    )
    controller = ResolutionFloor(pid)
    if config.jump_ts is None:
        return controller
    return diffrax.ClipStepSizeController(controller, jump_ts=jnp.asarray(config.jump_ts, dtype))
