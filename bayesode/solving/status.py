"""Solve status: one enumeration of outcomes, the map from diffrax's results, and advice per cause.

Every bayesode solve (:func:`bayesode.solve`, jumps, state events, Lyapunov
windows) reports an int32 code from :class:`Status`; 0 is success. Failures are
counted by cause (``FAILURE_CAUSES``) in ``sample_stats`` and explained with
``FAILURE_ADVICE`` in warnings and errors.
"""

from __future__ import annotations

import enum

import diffrax
import jax
import jax.numpy as jnp


class Status(enum.IntEnum):
    """Outcome of a solve. An ``IntEnum``: members compare equal to the int32 codes solves return."""

    OK = 0
    MAX_STEPS = 1  # the step budget ran out
    NONFINITE = 2  # NaN/inf initial state, field value at t0 or saved state
    BLOW_UP = 3  # a state left [-max_abs_state, max_abs_state]
    DT_MIN = 4  # the step size collapsed (stiffness, singularity, NaN field mid-solve)
    OTHER = 5  # any other diffrax failure, or more state events than max_events
    STEP_ERROR = 6  # a fixed step's error estimate exceeded its tolerance (FixedSteps: the grid is too coarse)


# Failure code -> cause name, as counted in ``sample_stats`` (``solver_failures_<cause>``).
FAILURE_CAUSES = {
    Status.MAX_STEPS: "max_steps",
    Status.NONFINITE: "nonfinite",
    Status.BLOW_UP: "blow_up",
    Status.DT_MIN: "dt_min",
    Status.OTHER: "other",
    Status.STEP_ERROR: "step_error",
}
# What to try, per cause; used in warnings and errors.
FAILURE_ADVICE = {
    "max_steps": "raise SolverConfig(max_steps=...) or use a stiff solver such as diffrax.Kvaerno5()",
    "nonfinite": "the initial state or field value is NaN/inf: check y0 priors and the field",
    "blow_up": "trajectories explode: tighten the weight/parameter priors or raise max_abs_state",
    "dt_min": "step size collapsed (stiff system, singularity or NaN field output): try diffrax.Kvaerno5() "
    "or tighter priors",
    "other": "see diffrax.RESULTS",
    "step_error": "the fixed steps are too long for these dynamics: raise FixedSteps(grid_size=...), or solve "
    "adaptively with a SolverConfig",
}


def status_of(result) -> jax.Array:
    """int32 :class:`Status` code of a ``diffrax.RESULTS`` value.

    ``event_occurred`` is a blow-up: the bound event every solve carries. A solve with
    events of its own (:func:`bayesode.solve_with_events`) sets OK where one of them hit.
    """
    r = diffrax.RESULTS
    status = jnp.where(result == r.dt_min_reached, Status.DT_MIN, Status.OTHER)
    status = jnp.where(result == r.event_occurred, Status.BLOW_UP, status)
    status = jnp.where(result == r.max_steps_reached, Status.MAX_STEPS, status)
    return jnp.where(result == r.successful, Status.OK, status).astype(jnp.int32)


def status_from(result, ys, ok_start) -> jax.Array:
    """:func:`status_of` ``result``, ``NONFINITE`` for a bad start (``ok_start`` False) or non-finite ``ys``."""
    status = jnp.where(ok_start, status_of(result), Status.NONFINITE)
    return jnp.where((status == Status.OK) & ~jnp.all(jnp.isfinite(ys)), Status.NONFINITE, status).astype(jnp.int32)
