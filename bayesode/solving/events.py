"""State-triggered events: a reset ``y <- reset_fn(t, y, args)`` when ``cond_fn(t, y, args)`` crosses zero.

The crossing is located by a Newton root find, so gradients flow through the
event time. diffrax stops a solve at an event, so :func:`solve_with_events`
restarts from the reset state, at most ``max_events`` times (static).
States are right-continuous: a save time equal to an event time sees the
state after the reset.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import optimistix as optx

from ..errors import ConfigError
from .diffeq import SolverConfig
from .integrate import guard_gradients, integrate, placeholder
from .status import Status, status_of


class StateEvent(eqx.Module):
    """A reset when the state crosses a surface: ``y <- reset_fn(t, y, args)`` when ``cond_fn`` hits 0.

    Parameters
    ----------
    cond_fn : callable ``(t, y, args) -> scalar float``
        The event happens where it crosses zero (located by a Newton root find).
    reset_fn : callable ``(t, y, args) -> (state,)``
        The state just after the event.
    max_events : int
        Most events per solve (static: the solve is a scan of ``max_events + 1``
        restarts). A solve with more fails with status ``other``.
    direction : bool or None
        ``True``: only up-crossings (``cond_fn`` going from negative to
        positive); ``False``: only down-crossings; ``None``: both. Set it so that
        the state just after a reset does not trigger again at once.

    Examples
    --------
    A ball dropped from height 1 under unit gravity, bouncing with restitution 0.8:

    >>> import jax.numpy as jnp
    >>> bounce = StateEvent(lambda t, y, a: y[0], lambda t, y, a: jnp.stack([jnp.abs(y[0]), -0.8 * y[1]]),
    ...                     max_events=5, direction=False)
    >>> sol = solve_with_events(lambda t, y, a: jnp.stack([y[1], -jnp.ones_like(y[1])]), jnp.array([1.0, 0.0]),
    ...                         jnp.linspace(0.0, 4.0, 5), bounce)
    >>> int(sol.num_events), [round(float(t), 3) for t in sol.event_times[:2]]
    (2, [1.414, 3.677])
    """

    cond_fn: Callable = eqx.field(static=True)
    reset_fn: Callable = eqx.field(static=True)
    max_events: int = eqx.field(static=True)
    direction: bool | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        if not callable(self.cond_fn) or not callable(self.reset_fn):
            raise ConfigError("`cond_fn` and `reset_fn` must be callables `(t, y, args)`.")
        if not (isinstance(self.max_events, int) and self.max_events >= 1):
            raise ConfigError(f"`max_events` must be a positive int; got {self.max_events!r}.")
        if self.direction not in (None, True, False):
            raise ConfigError(f"`direction` must be True, False or None; got {self.direction!r}.")


class EventSolution(NamedTuple):
    """:class:`Solution` plus ``event_times`` (max_events,) (``inf`` where unused) and ``num_events``."""

    ys: jax.Array
    status: jax.Array
    num_steps: jax.Array
    event_times: jax.Array
    num_events: jax.Array


def solve_with_events(
    field, y0, ts, event: StateEvent, *, t0=None, args=None, config: SolverConfig | None = None
) -> EventSolution:
    """Integrate with state-triggered resets (see :class:`StateEvent`). Never raises.

    Each of ``max_events + 1`` restarts runs ``diffrax.diffeqsolve`` from the
    last event (time and reset state) with a terminating event; save points
    before the event keep its values. Event times are found by a Newton root
    find, so gradients flow through them (implicit function theorem).
    ``BacksolveAdjoint`` is not supported (diffrax does not combine it with
    events); a blow-up or step-size collapse fails as in :func:`bayesode.solve`.

    Parameters
    ----------
    field, y0, ts, t0, args, config : as :func:`bayesode.solve`.
    event : StateEvent

    Returns
    -------
    EventSolution
        ``ys`` (time, state), right-continuous at events.
    """
    config = SolverConfig() if config is None else config
    if isinstance(config.adjoint, diffrax.BacksolveAdjoint):
        raise ConfigError(
            "`SolverConfig(adjoint=diffrax.BacksolveAdjoint())` cannot differentiate through events (diffrax "
            "does not support it); use RecursiveCheckpointAdjoint() or ForwardMode()."
        )
    y0 = jnp.asarray(y0)
    dtype = y0.dtype
    ts = jnp.asarray(ts, dtype=dtype)
    t0 = ts[0] if t0 is None else jnp.asarray(t0, dtype=dtype)
    t_end = ts[-1]
    field, y0 = guard_gradients(field, y0, config)
    bound = config.max_abs_state

    def user(t, y, args, **kwargs):
        return event.cond_fn(t, y, args)

    def blow_up(t, y, args, **kwargs):
        return ~(jnp.all(jnp.isfinite(y)) & (jnp.max(jnp.abs(y)) < bound))

    dx_event = diffrax.Event(
        (user, blow_up), root_finder=optx.Newton(rtol=config.rtol, atol=config.atol), direction=(event.direction, None)
    )
    r = diffrax.RESULTS

    def restart(carry, _):
        t_start, y, ys, status, num_steps, done, times, n = carry
        sol = integrate(
            field,
            y,
            t_start,
            t_end,
            config,
            saveat=diffrax.SaveAt(subs=(diffrax.SubSaveAt(ts=jnp.clip(ts, t_start, t_end)), diffrax.SubSaveAt(t1=True))),
            args=args,
            event=dx_event,
        )
        (_, t_final), (ys_seg, y_final) = sol.ts, sol.ys
        hit = (sol.result == r.event_occurred) & sol.event_mask[0] & ~done
        t_stop = jnp.where(hit, t_final[0], t_end)
        keep = (ts >= t_start) & jnp.where(hit, ts < t_stop, ts <= t_end) & ~done
        ys = jnp.where(keep[:, None], ys_seg, ys)
        seg_status = jnp.where(hit, Status.OK, status_of(sol.result)).astype(jnp.int32)
        status = jnp.where((status == Status.OK) & ~done, seg_status, status)
        times = jnp.where(hit & (jnp.arange(times.shape[0], dtype=jnp.int32) == n), t_stop, times)
        y_next = jnp.where(hit, event.reset_fn(t_stop, y_final[0], args), y_final[0])
        carry = (
            t_stop,
            y_next,
            ys,
            status,
            num_steps + sol.stats["num_steps"],
            done | ~hit,
            times,
            n + hit.astype(jnp.int32),
        )
        return carry, None

    M = event.max_events
    init = (
        t0,
        y0,
        jnp.zeros(ts.shape + y0.shape, dtype),
        jnp.asarray(Status.OK, jnp.int32),
        jnp.zeros((), jnp.int32),
        jnp.zeros((), bool),
        jnp.full((M + 1,), jnp.inf, dtype),
        jnp.zeros((), jnp.int32),
    )
    (_, _, ys, status, num_steps, done, times, n), _ = jax.lax.scan(restart, init, None, length=M + 1)
    # An event in the last restart means more than max_events: the tail is unsolved.
    status = jnp.where((status == Status.OK) & ~done, Status.OTHER, status).astype(jnp.int32)
    status = jnp.where((status == Status.OK) & ~jnp.all(jnp.isfinite(ys)), Status.NONFINITE, status)
    ok = status == Status.OK
    ys = jnp.where(ok, ys, placeholder(y0, ys.shape))
    return EventSolution(ys, status, num_steps, times[:M], jnp.minimum(n, M))
