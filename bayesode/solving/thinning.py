"""Simulating events from a jump-ODE process by thinning (Ogata 1981, with local bounds).

From the current time ``t`` the intensity is bounded over a look-ahead window
``[t, t + window]`` by ``bound_factor`` times its largest value on a grid of
``num_grid`` points there (a neural intensity has no analytic bound). A candidate
``t + Exp(B)`` beyond the window moves ``t`` to the window's end without an event;
one inside is accepted with probability ``lambda(t_cand) / B`` and its mark drawn in
proportion to the per-mark intensities; the state then jumps. A candidate whose
intensity exceeds ``B`` means the bound was wrong there: it is counted in
``bound_violations`` (then the simulation is not exact; shrink ``window`` or raise
``bound_factor``). Everything runs in one ``lax.while_loop``, so it ``vmap``s over
posterior draws.

A delayed process (see :mod:`bayesode.solving.event_jumps`) also jumps at ``t_i + d`` of
every simulated event and of the history's events still ``pending``: the arrivals are a
queue in time order, and a look-ahead window ends at the next one, where the state jumps.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from ..errors import ConfigError
from .diffeq import STATUS_OK, SolverConfig, solve
from .event_jumps import is_delayed


class SimulatedEvents(NamedTuple):
    """``times`` (max_events,) padded with ``t_end``; ``marks`` (max_events,); ``mask`` (max_events,);
    ``z_end`` the state at the end; ``bound_violations``, ``truncated`` (hit ``max_events``)
    and ``status`` (first failed solve, 0 if none)."""

    times: jax.Array
    marks: jax.Array
    mask: jax.Array
    z_end: jax.Array
    bound_violations: jax.Array
    truncated: jax.Array
    status: jax.Array


class _Flow(eqx.Module):
    process: object

    def __call__(self, t, z, args):
        return self.process.field(t, z, args)


def simulate_events(process, z, t_start, t_end, *, key, max_events: int, window: float, num_grid: int = 8,
                    bound_factor: float = 2.0, args=None, config: SolverConfig | None = None,
                    pending=None) -> SimulatedEvents:  # fmt: skip
    """Draw events on ``(t_start, t_end]`` from the process started at state ``z``.

    Parameters
    ----------
    process : object with ``field, jump_size, rates`` (see :mod:`bayesode.solving.event_jumps`)
    z : (latent,) state at ``t_start`` (e.g. ``EventJumpSolution.z_end`` after the history).
    key : PRNGKey, required.
    max_events : int
        Size of the output; simulation stops there (``truncated`` is then True).
    window : float
        Look-ahead over which the intensity is bounded; about the time over which it
        can change by a factor ``bound_factor`` (e.g. a few mean gaps).
    num_grid, bound_factor : grid size and safety factor of the local bound.
    pending : (times, marks), each (pending,), optional; only for a delayed process
        Arrivals already scheduled by the history (``t_j + d`` after ``t_start``, in any order;
        ``inf`` for none): :func:`pending_arrivals` gives them.

    Examples
    --------
    >>> import jax.numpy as jnp, jax.random as jr, equinox as eqx
    >>> class Poisson(eqx.Module):
    ...     def field(self, t, z, args): return jnp.zeros_like(z)
    ...     def jump_size(self, z, mark): return jnp.zeros_like(z)
    ...     def rates(self, z): return jnp.full((1,), 3.0)
    >>> sim = simulate_events(Poisson(), jnp.zeros(1), 0.0, 10.0, key=jr.key(0), max_events=100, window=1.0)
    >>> 10 < int(sim.mask.sum()) < 60
    True
    """
    if not (isinstance(max_events, int) and max_events > 0):
        raise ConfigError(f"`max_events` must be a positive int; got {max_events!r}.")
    if not (float(window) > 0 and float(bound_factor) >= 1 and int(num_grid) >= 2):
        raise ConfigError(f"need `window` > 0, `bound_factor` >= 1, `num_grid` >= 2; got {window}, {bound_factor}, "
                          f"{num_grid}.")  # fmt: skip
    config = SolverConfig() if config is None else config
    delayed = is_delayed(process)
    if pending is not None and not delayed:
        raise ConfigError("`pending` arrivals are only for a delayed process (`process.delayed` True).")
    z = jnp.asarray(z)
    dtype = z.dtype
    t_start, t_end = jnp.asarray(t_start, dtype), jnp.asarray(t_end, dtype)
    flow = _Flow(process)
    fractions = jnp.linspace(0.0, 1.0, num_grid, dtype=dtype)
    max_proposals = 20 * max_events + 10 * num_grid  # a bound on work; normal runs stop far below it
    # The arrival queue (delayed processes): the history's pending arrivals sorted, then one slot per
    # simulated event; its arrivals come in time order, after every pending one.
    if pending is None:
        pending = (jnp.zeros((0,), dtype), jnp.zeros((0,), jnp.int32))
    p_times, p_marks = jnp.asarray(pending[0], dtype), jnp.asarray(pending[1], jnp.int32)
    order = jnp.argsort(p_times)
    num_pending = p_times.shape[0]
    queue_times = jnp.concatenate([p_times[order], jnp.full((max_events if delayed else 0,), jnp.inf, dtype)])
    queue_marks = jnp.concatenate([p_marks[order], jnp.zeros((max_events if delayed else 0,), jnp.int32)])
    delay = jnp.asarray(process.delay(), dtype) if delayed else jnp.zeros((), dtype)

    def total_rate(z):
        return jnp.sum(process.rates(z))

    def step(state):
        t, z, key, n, times, marks, violations, status, proposals, head, q_times, q_marks = state
        key, k_exp, k_acc, k_mark = jr.split(key, 4)
        w_end = jnp.minimum(t + window, t_end)
        if delayed:  # the window stops at the next arrival, which then jumps the state
            next_arrival = q_times[jnp.minimum(head, q_times.shape[0] - 1)]
            arrives = (head < q_times.shape[0]) & (next_arrival <= w_end)
            w_end = jnp.where(arrives, next_arrival, w_end)
        grid = t + (w_end - t) * fractions
        ahead = solve(flow, z, grid, t0=t, args=args, config=config)
        bound = bound_factor * jnp.max(jax.vmap(total_rate)(ahead.ys)) + jnp.finfo(dtype).tiny
        t_cand = t + jr.exponential(k_exp, dtype=dtype) / bound
        inside = t_cand <= w_end
        to_cand = solve(flow, z, jnp.minimum(t_cand, w_end)[None], t0=t, args=args, config=config)
        z_cand = to_cand.ys[0]
        rates = process.rates(z_cand)
        lam = jnp.sum(rates)
        accept = inside & (jr.uniform(k_acc, dtype=dtype) * bound <= lam)
        mark = jr.categorical(k_mark, jnp.log(jnp.maximum(rates, jnp.finfo(dtype).tiny))).astype(jnp.int32)
        z_window_end = ahead.ys[-1]
        if delayed:
            arrival_mark = q_marks[jnp.minimum(head, q_marks.shape[0] - 1)]
            takes_arrival = arrives & ~inside
            z_window_end = jnp.where(takes_arrival, z_window_end + process.delayed_jump_size(z_window_end, arrival_mark),
                                     z_window_end)  # fmt: skip
            head = head + takes_arrival.astype(jnp.int32)
            slot = num_pending + n
            q_times = jnp.where(accept, q_times.at[slot].set(t_cand + delay), q_times)
            q_marks = jnp.where(accept, q_marks.at[slot].set(mark), q_marks)
        z_next = jnp.where(accept, z_cand + process.jump_size(z_cand, mark), jnp.where(inside, z_cand, z_window_end))
        times = jnp.where(accept, times.at[n].set(t_cand), times)
        marks = jnp.where(accept, marks.at[n].set(mark), marks)
        violations = violations + (inside & (lam > bound)).astype(jnp.int32)
        failed = jnp.where(ahead.status != STATUS_OK, ahead.status, to_cand.status)
        status = jnp.where(status == STATUS_OK, failed, status)
        t_next = jnp.where(inside, t_cand, w_end)
        return (t_next, z_next, key, n + accept.astype(jnp.int32), times, marks, violations, status, proposals + 1,
                head, q_times, q_marks)  # fmt: skip

    def going(state):
        t, _, _, n, _, _, _, status, proposals = state[:9]
        return (t < t_end) & (n < max_events) & (status == STATUS_OK) & (proposals < max_proposals)

    init = (t_start, z, key, jnp.zeros((), jnp.int32), jnp.full((max_events,), t_end, dtype),
            jnp.zeros((max_events,), jnp.int32), jnp.zeros((), jnp.int32), jnp.asarray(STATUS_OK, jnp.int32),
            jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), queue_times, queue_marks)  # fmt: skip
    t, z, _, n, times, marks, violations, status = jax.lax.while_loop(going, step, init)[:8]
    mask = jnp.arange(max_events) < n
    return SimulatedEvents(times=times, marks=marks, mask=mask, z_end=z, bound_violations=violations,
                           truncated=(n >= max_events) & (t < t_end), status=status)  # fmt: skip


def pending_arrivals(process, times, marks, mask, t_end):
    """(times, marks) of a delayed process's arrivals ``t_i + d`` after ``t_end`` (``inf`` where none):
    what a history on ``[t0, t_end]`` leaves for :func:`simulate_events` to apply."""
    arrival = jnp.asarray(times) + jnp.asarray(process.delay(), jnp.asarray(times).dtype)
    return jnp.where(jnp.asarray(mask) & (arrival > t_end), arrival, jnp.inf), jnp.asarray(marks, jnp.int32)
