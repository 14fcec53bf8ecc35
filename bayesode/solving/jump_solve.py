"""Integrating through discontinuities at given times: impulses (doses) and regime changes.

``solve_with_jumps`` splits the solve into segments:

- **Jumps at given times** (doses): ``y(t_j) = y(t_j^-) + size_j``. The solve
  is a ``lax.scan`` over ``J + 1`` segments; segment ``k`` is one
  :func:`bayesode.solve` from the previous segment's end state plus jump ``k``,
  and keeps only the save points that fall inside it. Padded jumps (``mask``
  False) do nothing, so each series can have its own dosing table and the
  whole thing ``vmap``s over series.
- **Jumps or regime changes at inferred times**: the same scan with traced
  times. The field can see which regime it is in (``regime=True`` passes
  ``Regime(index, args)`` as ``args``). The gradient with respect to a change
  time flows through the segment boundary: the time is the ``t1`` of one
  segment's solve and the ``t0`` of the next, so
  ``d y(s) / d tau = Phi(s, tau) (f_before(y(tau)) - f_after(y(tau)))`` for a
  regime change, plus ``-Phi(s, tau) f(y(tau)) ...`` terms for a jump,
  which diffrax differentiates exactly. Writing the change as
  ``jnp.where(t < tau, ...)`` inside the field would instead give a zero
  gradient (the field is piecewise constant in ``tau``) and force the step-size
  controller to find the kink.

The schedule a model samples these times and sizes from (:class:`~bayesode.Jumps`)
lives in :mod:`bayesode.solving.jumps`; state-triggered events
(:class:`~bayesode.StateEvent`) in :mod:`bayesode.solving.events`.

Convention: states are right-continuous. A save time equal to a jump time
sees the state *after* the jump; to observe a trough just before a dose,
record it a moment earlier.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ..errors import ConfigError
from .diffeq import Solution, SolverConfig, solve
from .status import Status


class Regime(NamedTuple):
    """What a field receives as ``args`` when a jump schedule passes the regime.

    ``index``: int32 scalar, the number of jumps (change points) already
    passed, so 0 before the first; ``args``: the user's own ``args``.
    """

    index: jax.Array
    args: Any


def solve_with_jumps(
    field,
    y0,
    ts,
    jump_times,
    jump_sizes,
    *,
    jump_mask=None,
    t0=None,
    args=None,
    config: SolverConfig | None = None,
    regime: bool = False,
) -> Solution:
    """Integrate with impulses ``y(t_j) = y(t_j^-) + jump_sizes[j]``. Never raises.

    Parameters
    ----------
    field : callable ``(t, y, args) -> dy/dt``
    y0 : (state,) array, the state at ``t0`` before any jump at ``t0``.
    ts : (time,) non-decreasing save times.
    jump_times : (jump,) array, any order, may be traced (inferred).
        A jump at or before ``t0`` acts at ``t0``; one after ``ts[-1]`` has
        no effect. Several jumps at one time add up.
    jump_sizes : (jump, state) array, what each jump adds to the state.
    jump_mask : (jump,) bool, optional
        False marks padding (no effect), so series with fewer jumps can share
        one padded array.
    t0 : scalar, optional; default ``ts[0]``.
    config : SolverConfig
    regime : bool
        If True the field is called with ``args=Regime(index, args)``, where
        ``index`` counts the jumps passed: a change of dynamics at each jump
        (use zero ``jump_sizes`` for a pure change point).

    Returns
    -------
    Solution
        ``ys`` (time, state), right-continuous at jump times; ``status`` the
        first non-zero segment status (0 if all succeeded); ``num_steps``
        summed over segments.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> ts = jnp.array([0.0, 1.0, 2.0])
    >>> sol = solve_with_jumps(lambda t, y, a: -y, jnp.zeros(1), ts, jnp.array([0.0, 1.0]), jnp.ones((2, 1)))
    >>> [round(float(v), 4) for v in sol.ys[:, 0]]
    [1.0, 1.3679, 0.5032]
    """
    config = SolverConfig() if config is None else config
    y0 = jnp.asarray(y0)
    dtype = y0.dtype
    ts = jnp.asarray(ts, dtype=dtype)
    times = jnp.asarray(jump_times, dtype=dtype)
    sizes = jnp.asarray(jump_sizes, dtype=dtype)
    if times.ndim != 1:
        raise ConfigError(f"`jump_times` must be 1-D (jump,); got shape {times.shape}.")
    if sizes.shape != times.shape + y0.shape:
        raise ConfigError(
            f"`jump_sizes` must have shape (jump, state) = {times.shape + y0.shape}; got {sizes.shape}. "
            "Give one row per jump with one entry per state (zeros where the jump does not act)."
        )
    mask = jnp.ones(times.shape, dtype=bool) if jump_mask is None else jnp.asarray(jump_mask, dtype=bool)
    if mask.shape != times.shape:
        raise ConfigError(f"`jump_mask` must have the shape of `jump_times` {times.shape}; got {mask.shape}.")
    t0 = ts[0] if t0 is None else jnp.asarray(t0, dtype=dtype)
    t_end = ts[-1]

    # Padding sorts last (at +inf: never passed by a save time, clipped to a zero-length segment).
    key = jnp.where(mask, times, jnp.inf)
    order = jnp.argsort(key)
    times_sorted = key[order]
    sizes_sorted = jnp.where(mask[:, None], sizes, 0.0)[order]
    bounds = jnp.clip(times_sorted, t0, t_end)
    starts = jnp.concatenate([t0[None], bounds])
    ends = jnp.concatenate([bounds, t_end[None]])
    kicks = jnp.concatenate([jnp.zeros((1,) + y0.shape, dtype), sizes_sorted])
    # Segment of each save point: how many jumps happened at or before it.
    segment = jnp.sum(times_sorted[None, :] <= ts[:, None], axis=1, dtype=jnp.int32)

    def one_segment(carry, x):
        y, status, num_steps, ys = carry
        k, start, end, kick = x
        y = y + kick
        ts_seg = jnp.concatenate([jnp.clip(ts, start, end), end[None]])
        sol = solve(field, y, ts_seg, t0=start, args=Regime(k, args) if regime else args, config=config)
        ys = jnp.where((segment == k)[:, None], sol.ys[:-1], ys)
        status = jnp.where(status == Status.OK, sol.status, status)
        return (sol.ys[-1], status, num_steps + sol.num_steps, ys), None

    init = (y0, jnp.asarray(Status.OK, jnp.int32), jnp.zeros((), jnp.int32), jnp.zeros(ts.shape + y0.shape, dtype))
    xs = (jnp.arange(times.shape[0] + 1, dtype=jnp.int32), starts, ends, kicks)
    (_, status, num_steps, ys), _ = jax.lax.scan(one_segment, init, xs)
    return Solution(ys=ys, status=status, num_steps=num_steps)
