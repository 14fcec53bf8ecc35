"""The step-size controller of every bayesode solve, with a step floor set by the time resolution.

A step-size floor is there to stop a solve that cannot progress (a NaN field
value makes every step fail; a finite-time singularity shrinks the step
forever) cheaply, as ``dt_min``, instead of burning ``max_steps``. It must
never bind a step that the dtype can take. A floor relative to the span
(``64 eps (t1 - t0)``, used before) did: in float32 a dose switched on at
``t0 = 0`` needs steps far below it while ``t`` is near 0, and failed on
every prior draw of a one-compartment model that diffrax itself solves.

The floor here is local, in units of the time's own resolution: the solve
stops (``dt_min``) once :data:`FLOOR_PATIENCE` consecutive step proposals
have been shorter than :data:`FLOOR_ULPS` units in the last place of the
current time, i.e. steps whose stage times are barely distinct numbers.
Near ``t = 0`` any step is allowed. A jump mid-span may take a few such
steps to cross (diffrax does cross it, by rounding), so one short step is
not enough: a solve stuck at a singularity or a NaN takes many in a row.
With these values the discontinuity family in ``tests/test_solve.py``
succeeds wherever plain diffrax (no floor) does, and stuck solves stop
within a few hundred steps instead of ``max_steps``. A ``dtmin`` of the
smallest normal number backs it up where ``t = 0`` exactly. Known jump
times in ``SolverConfig(jump_ts=...)`` make the jump cheap and exact.
"""

from __future__ import annotations

from collections.abc import Callable

import diffrax
import equinox as eqx
import jax.numpy as jnp

# Steps shorter than FLOOR_ULPS units in the last place of t, FLOOR_PATIENCE times in a row: stuck.
FLOOR_ULPS = 4
FLOOR_PATIENCE = 16


class ResolutionFloor(diffrax.AbstractAdaptiveStepSizeController):
    """Wraps an adaptive controller: ``dt_min`` after ``patience`` proposed steps in a row below ``ulps`` ULPs of ``t``.

    Built only through public diffrax API (an ``AbstractAdaptiveStepSizeController``
    that delegates to the wrapped one, as ``diffrax.ClipStepSizeController`` does).
    """

    controller: diffrax.AbstractAdaptiveStepSizeController
    ulps: float = eqx.field(static=True, default=FLOOR_ULPS)
    patience: int = eqx.field(static=True, default=FLOOR_PATIENCE)

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
        return ResolutionFloor(self.controller.wrap(direction), self.ulps, self.patience)

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        t1, state = self.controller.init(terms, t0, t1, y0, dt0, args, func, error_order)
        return t1, (state, jnp.zeros((), jnp.int32))

    def adapt_step_size(self, t0, t1, y0, y1_candidate, args, y_error, error_order, controller_state):
        inner, below = controller_state
        keep, next_t0, next_t1, made_jump, inner, result = self.controller.adapt_step_size(
            t0, t1, y0, y1_candidate, args, y_error, error_order, inner
        )
        eps = jnp.finfo(jnp.result_type(next_t0)).eps
        # ``not >=`` so that a NaN step size (NaN error estimate) counts as below too.
        small = ~(next_t1 - next_t0 >= self.ulps * eps * jnp.abs(next_t0))
        below = jnp.where(small, below + 1, 0)
        result = diffrax.RESULTS.where(below >= self.patience, diffrax.RESULTS.dt_min_reached, result)
        return keep, next_t0, next_t1, made_jump, (inner, below), result


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
