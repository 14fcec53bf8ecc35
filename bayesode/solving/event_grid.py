"""Fixed steps between events: the fast solve of an event-driven jump ODE on long sequences.

:func:`~bayesode.solving.solve_event_jumps` with a :class:`SolverConfig` runs one adaptive
``diffeqsolve`` per gap between events. On a sequence of a thousand events most of its cost
is the adaptive loop's bookkeeping, paid a thousand times in sequence, and more again in its
reverse pass. With :class:`FixedSteps` the same model is solved by one ``lax.scan`` over the
event times merged with a uniform grid on the window (and the save times): one step of a
diffrax Runge-Kutta solver (through its public ``init``/``step``) from each point to the next.
Every jump still lands exactly at its event time, and no step is longer than
``window / grid_size``.

There is no step-size control, but there is an error check: each step's embedded error
estimate (the solver's lower-order pair) is turned into an error of the log-likelihood, in nats
(the compensator's error, and at each event the log-rate's at the state's error), summed over
the sequence; over ``tolerance`` nats per event the solve fails with status ``step_error``.
Without the check an optimiser or a sampler finds weights whose dynamics the grid cannot follow
and whose *discretised* likelihood is far higher than the true one (seen on a 1,000-event
sequence with ``Bosh3``: a maximum a posteriori fit with log-likelihood 2,168 on the grid where
the adaptive solve failed); with it such weights are rejected like any failed solve.
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

from ..errors import ConfigError
from .status import Status


def log_intensity(process, z, mark):
    """``log lambda_mark(z)``: the process's own ``log_rates(z)[mark]`` where it has one (exact also
    where the intensity underflows), else ``log rates(z)[mark]`` floored at the dtype's smallest
    normal number, with gradient 0 below the floor.

    Why the double ``where`` rather than ``log(maximum(rate, tiny))``: that floor also has gradient 0,
    but its reverse pass multiplies the cotangent ``1 / tiny`` by 0, and a subsampled likelihood's
    scale (sequences / batch size) lifts ``1 / tiny`` past float32's range: ``inf * 0`` made the whole
    gradient NaN at every step of a minibatched fit whose intensity underflowed at some event.
    """
    if hasattr(process, "log_rates"):
        return process.log_rates(z)[mark]
    rate = process.rates(z)[mark]
    tiny = jnp.finfo(rate.dtype).tiny
    above = rate > tiny
    return jnp.where(above, jnp.log(jnp.where(above, rate, 1.0)), jnp.log(tiny))


class FixedSteps(eqx.Module):
    """Solve a jump ODE between events with fixed steps on a grid (see the module docstring).

    Parameters
    ----------
    solver : diffrax explicit Runge-Kutta solver
        Default ``diffrax.Tsit5()`` (5th order): on a 1,000-event Hawkes sequence it was both
        more accurate than ``Bosh3`` on twice the grid and cheaper (``benchmarks/event_grid.py``).
    grid_size : int or None
        Points of a uniform grid over each sequence's window, merged with its event times;
        each step ends at the next event, grid point or save time. ``None`` (default): as many
        points as event slots, so no step is longer than the mean gap between events.
    tolerance : float
        Largest estimated error of a sequence's log-likelihood, in nats per event (default 1e-3,
        so 1 nat on 1,000 events; the bar for a sequence is ``tolerance * max(events, 1)``); over
        it the solve fails (status ``step_error``). The estimate sums each step's local error and leaves
        out how a state's error carries on into later steps, so it can fall short of the true
        error several times over (on a test Hawkes process: 0.23 estimated, 1.96 true); it is a
        guard against grossly wrong solves, and the fit's check against the adaptive solve
        measures the rest.
    max_abs_state : float
        A state beyond this size counts as a blow-up (status ``blow_up``).

    Examples
    --------
    >>> FixedSteps(grid_size=200).grid_size
    200
    """

    solver: diffrax.AbstractSolver = eqx.field(static=True, default_factory=diffrax.Tsit5)
    grid_size: int | None = eqx.field(static=True, default=None)
    tolerance: float = eqx.field(static=True, default=1e-3)
    max_abs_state: float = eqx.field(static=True, default=1e8)

    def __check_init__(self):
        if not isinstance(self.solver, diffrax.AbstractERK):
            raise ConfigError(
                f"`FixedSteps(solver=...)` must be an explicit diffrax Runge-Kutta solver such as diffrax.Bosh3() "
                f"or diffrax.Tsit5(); got {self.solver!r}."
            )
        if self.grid_size is not None and not (isinstance(self.grid_size, int) and self.grid_size >= 1):
            raise ConfigError(f"`FixedSteps(grid_size=...)` must be a positive int or None; got {self.grid_size!r}.")
        if not (isinstance(self.tolerance, (int, float)) and self.tolerance > 0):
            raise ConfigError(f"`FixedSteps(tolerance=...)` must be a positive number (nats per event); got {self.tolerance!r}.")
        if not (self.max_abs_state > 0):
            raise ConfigError(f"`FixedSteps(max_abs_state=...)` must be positive; got {self.max_abs_state!r}.")

    @property
    def forward_mode(self) -> bool:  # read by guard_gradients
        return False


def solve_on_grid(process, flow, z0, times, marks, mask, t_end, t0, save, args, config: FixedSteps):
    """The body of :func:`~bayesode.solving.solve_event_jumps` for :class:`FixedSteps`.

    ``times, marks, mask`` as cleaned there (padding at ``t_end``, mark 0); ``flow(t, y, args)``
    the field with the compensator as the last state of ``y``; ``process`` gives ``rates`` and
    ``jump_size``. Returns the fields of ``EventJumpSolution`` as a dict.
    """
    n, num_save = times.shape[0], save.shape[0]
    dtype = times.dtype
    grid_size = n if config.grid_size is None else config.grid_size
    grid = t0 + (t_end - t0) * jnp.arange(1, grid_size + 1, dtype=dtype) / grid_size
    points = jnp.concatenate([times, jnp.clip(save, t0, t_end), grid])
    # Stable sort with the events first: a save or grid point at an event's time sees the state after its jump.
    order = jnp.argsort(points, stable=True)
    is_event = jnp.concatenate([mask, jnp.zeros((num_save + grid_size,), bool)])[order]
    mark = jnp.concatenate([marks, jnp.zeros((num_save + grid_size,), jnp.int32)])[order]
    term = diffrax.ODETerm(flow)
    solver = config.solver

    def step(carry, x):
        t_prev, y_prev, state, jumped, ok, error = carry
        t, event, k = x
        # FSAL solvers carry the field's value at the step's end; after a jump it is recomputed.
        y, y_error, _, state, _ = solver.step(term, t_prev, t, y_prev, args, state, jumped)
        z_before, compensator = y[:-1], y[-1]
        log_rate = log_intensity(process, z_before, k)
        # The step's error in the log-likelihood, in nats: the compensator's, and at an event the
        # log-rate's at the state's error.
        error = error + jnp.abs(y_error[-1])
        error = error + jnp.where(event, jnp.abs(log_intensity(process, z_before + y_error[:-1], k) - log_rate), 0.0)
        ok = ok & jnp.all(jnp.isfinite(y)) & (jnp.max(jnp.abs(y)) < config.max_abs_state)
        z_after = jnp.where(event, z_before + process.jump_size(z_before, k), z_before)
        carry = (t, jnp.concatenate([z_after, compensator[None]]), state, event, ok, error)
        return carry, (log_rate, compensator, z_before, z_after)

    y0 = jnp.concatenate([z0, jnp.zeros((1,), dtype)])
    init = (t0, y0, solver.init(term, t0, t0, y0, args), jnp.asarray(False), jnp.asarray(True), jnp.zeros((), dtype))
    (_, y_end, _, _, ok, error), (log_rate, compensator, z_before, z_after) = jax.lax.scan(
        step, init, (points[order], is_event, mark)
    )
    position = jnp.argsort(order)  # where each original point sits in the sorted order
    at_event, at_save = position[:n], position[n : n + num_save]
    at_events = compensator[at_event]
    increments = jnp.diff(jnp.concatenate([jnp.zeros((1,), dtype), at_events]))
    bar = config.tolerance * jnp.maximum(jnp.sum(mask), 1).astype(dtype)
    status = jnp.where(error <= bar, Status.OK, Status.STEP_ERROR)
    status = jnp.where(ok, status, jnp.where(jnp.all(jnp.isfinite(y_end)), Status.BLOW_UP, Status.NONFINITE))
    return {
        "log_rates": log_rate[at_event],
        "increments": increments,
        "compensator": y_end[-1],
        "z_before": z_before[at_event],
        "z_end": y_end[:-1],
        "zs": z_after[at_save],
        "status": status.astype(jnp.int32),
        "num_steps": jnp.asarray(points.shape[0], jnp.int32),
    }
