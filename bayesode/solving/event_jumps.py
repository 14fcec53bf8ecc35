"""Event-driven jumps: neural jump ODEs for point processes (Jia & Benson, NeurIPS 2019).

A latent state ``z(t)`` flows by a field between events and jumps at each event::

    dz/dt = f(t, z)                          between events
    z(t_i) = z(t_i-) + g(z(t_i-), m_i)       at event i with mark m_i
    z(t_i + d) += h(z(t_i + d-), m_i)        optional: the event's delayed effect, d learned
    lambda_k(t) = rates(z(t))[k]             intensity of mark k

The log-likelihood of events ``(t_i, m_i)`` on ``[t0, T]`` is
``sum_i log lambda_{m_i}(t_i-) - Lambda(T)``, with the compensator
``Lambda(T) = integral_{t0}^{T} sum_k lambda_k(t) dt`` integrated as one extra ODE
state in the same solve. The solve is a ``lax.scan`` over segments between events:
each segment is one :func:`bayesode.solve` that ends exactly at the next event,
so jumps land at event times, not at solver steps. Padded events (``mask``
False, times at ``T``) are zero-length segments without a jump, so sequences of
different lengths ``vmap`` together.

A delayed process (``process.delayed`` True: a delay ``d = process.delay()`` and
``process.delayed_jump_size(z, mark)``) also jumps at every ``t_i + d`` inside the
window: the event times and these arrivals are merged into one sorted timeline, so
the arrivals too land exactly, and the gradient reaches ``d`` through the segments'
ends. Why: an event whose effect starts after a lag (a power-law Hawkes kernel is 0
below its onset, an incubation period) is out of reach of a smooth flow that starts
at the event (see docs/decisions.md, 2026-12-05).

A process is any object with ``z0`` (latent,) (or ``initial_state()``), ``field(t, z, args)``,
``jump_size(z, mark)`` and ``rates(z) -> (mark,)`` positive, and optionally ``log_rates(z)``, its logarithm
computed where ``rates`` underflows (without it the log-rate is floored at the dtype's smallest normal number,
with no gradient below it: :func:`~bayesode.solving.event_grid.log_intensity`):
:class:`NeuralJumpProcess` is the neural one; a test or a parametric model
(Hawkes: ``field = -beta z``, ``jump_size = alpha``, ``rates = mu + z``) can be
written in a few lines.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from ..errors import ConfigError
from ..fields.basic import MLPField
from .diffeq import STATUS_OK, SolverConfig, solve
from .event_grid import FixedSteps, log_intensity, solve_on_grid
from .integrate import guard_gradients

MAX_ONSET_RATE = 40.0  # the delayed inflow's fastest drain rate, per t_scale (an onset time of t_scale / 40)
_ONSET_LOGIT = math.log(4.0 / (MAX_ONSET_RATE - 4.0))  # rate 4 / t_scale at log_onset = 0


def is_delayed(process) -> bool:
    """Whether ``process`` declares delayed effects (``process.delayed`` True; absent means no)."""
    return bool(getattr(process, "delayed", False))


def check_delayed_solver(process, config) -> None:
    """A delayed process needs the adaptive solve: ``FixedSteps`` is refused, naming both."""
    if is_delayed(process) and isinstance(config, FixedSteps):
        raise ConfigError("A delayed process (`delayed=True`) needs the adaptive solver: leave `config` at the "
                          "default or pass a SolverConfig (e.g. EVENT_SOLVER), not FixedSteps.")  # fmt: skip


class NeuralJumpProcess(eqx.Module):
    """A neural jump ODE for (marked) point processes.

    ``flow`` is an :class:`~bayesode.MLPField` on the latent state; ``jump`` an MLP
    from ``(z, one-hot mark)`` to the jump size; ``readout`` a linear map to one
    intensity per mark: ``rates(z) = rate_scale * softplus(readout(z))``. Between
    events ``dz/dt = flow(z) - decay * z / t_scale``.
    Every inexact array (including ``z0``) gets a prior in
    :func:`bayesode.model.point_process_model`.

    Parameters
    ----------
    latent_dim : int
        Size of ``z``. 2-4 are enough for the Jia & Benson synthetic processes.
    num_marks : int
        Number of event types (1: unmarked).
    width, depth : int
        Hidden width and layers of ``flow`` and ``jump``.
    key : PRNGKey
        Initial weights (the prior replaces them inside a model).
    rate_scale : float
        Typical intensity (events per time unit), so the readout works at O(1):
        set it to ``num_events / duration`` of the data.
    t_scale : float
        Typical time between events, so the flow's rates are O(1) per gap.
    delayed : bool
        Experimental: also a delayed effect of every event (default False). At ``t_i + d``, with
        ``d = t_scale * exp(log_delay)`` learned, ``delayed_jump[mark]`` (a learned vector per mark,
        not a function of the state: the state at ``t_i + d`` jumps when another event crosses it,
        which would break the continuity below) is added to an inflow ``u`` that drains into
        ``z`` at the learned rate ``r`` (``4 / t_scale`` at ``log_onset = 0``, at most
        ``MAX_ONSET_RATE / t_scale``): between arrivals
        ``dz/dt = ... + r u e^{-r tau}``, with ``tau`` the time since the last arrival, when ``u``
        was set to what was left of it plus the new amount. The state is ``(z, u, tau)``
        (:meth:`initial_state`; ``z0`` stays ``z``'s) and the intensity reads ``z``. Why the
        inflow: a jump of ``z`` at ``t_i + d`` would make the likelihood jump whenever ``t_i + d``
        crosses another event, and its gradient would only see the smooth part and push ``d`` too
        far (measured: 1.32 for a true onset at 1); through ``u`` the onset is continuous in ``d``
        and as sharp as ``r`` makes it. Why ``e^{-r tau}`` rather than ``du/dt = -r u``: the
        draining inflow is then a known function of time, so a sharp onset (large ``r``) costs
        small steps just after an arrival instead of a stiff state in every step (the latter ran
        out of steps at the MAP). ``log_delay`` and ``log_onset`` get the weight prior (prior
        medians: a delay of ``t_scale``, an onset time of ``t_scale / 4``). Forecasts carry the arrivals still
        pending at the end of the history (:func:`~bayesode.solving.simulate_events`'s ``pending``).
    decay : float
        A fixed linear pull of ``z`` towards 0, in units of ``1 / t_scale`` (0: none). Why: the
        flow's and jump's outputs are bounded (tanh hidden units, a linear last layer), so with
        any ``decay > 0`` the latent state, and with it the intensity, stays bounded for all
        time, also for weights the data did not pin down; without it a posterior draw can
        drift slowly while fitting the training window and blow up when extrapolated.

    Examples
    --------
    >>> import jax.random as jr
    >>> p = NeuralJumpProcess(2, 1, width=8, depth=1, key=jr.key(0))
    >>> p.rates(p.z0).shape
    (1,)
    """

    flow: MLPField
    jump: eqx.nn.MLP
    readout: eqx.nn.Linear
    z0: jax.Array
    delayed_jump: jax.Array | None
    log_delay: jax.Array | None
    log_onset: jax.Array | None
    latent_dim: int = eqx.field(static=True)
    num_marks: int = eqx.field(static=True)
    rate_scale: float = eqx.field(static=True)
    decay: float = eqx.field(static=True)

    def __init__(self, latent_dim: int, num_marks: int = 1, *, width: int = 16, depth: int = 1, key,
                 rate_scale: float = 1.0, t_scale: float = 1.0, decay: float = 0.0, delayed: bool = False):  # fmt: skip
        for name, v in (("latent_dim", latent_dim), ("num_marks", num_marks), ("width", width)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"`{name}` must be a positive int; got {v!r}.")
        if not (float(rate_scale) > 0 and float(t_scale) > 0):
            raise ConfigError(f"`rate_scale` and `t_scale` must be positive; got {rate_scale!r}, {t_scale!r}.")
        if not float(decay) >= 0:
            raise ConfigError(f"`decay` must be >= 0; got {decay!r}.")
        k_flow, k_jump, k_out = jr.split(key, 3)
        self.flow = MLPField(latent_dim, width=width, depth=depth, key=k_flow, t_scale=t_scale)
        self.jump = eqx.nn.MLP(latent_dim + num_marks, latent_dim, width, max(depth, 1), activation=jnp.tanh,
                               key=k_jump)  # fmt: skip
        self.readout = eqx.nn.Linear(latent_dim, num_marks, key=k_out)
        if not isinstance(delayed, bool):
            raise ConfigError(f"`delayed` must be True or False; got {delayed!r}.")
        # (mark, latent); its own key (folded in), so the other weights do not depend on `delayed`.
        self.delayed_jump = 0.1 * jr.normal(jr.fold_in(key, 1), (num_marks, latent_dim)) if delayed else None
        self.log_delay = jnp.zeros(()) if delayed else None
        self.log_onset = jnp.zeros(()) if delayed else None
        self.z0 = jnp.zeros(latent_dim)
        self.latent_dim, self.num_marks, self.rate_scale = latent_dim, num_marks, float(rate_scale)
        self.decay = float(decay)

    def initial_state(self):
        """``z0``, and for a delayed process no inflow yet: ``(z0, u = 0, tau = 0)``."""
        if not self.delayed:
            return self.z0
        return jnp.concatenate([self.z0, jnp.zeros_like(self.z0), jnp.zeros((1,), self.z0.dtype)])

    def field(self, t, y, args):
        z = y[: self.latent_dim]
        dz = self.flow(t, z, args)
        if self.decay != 0.0:
            dz = dz - (self.decay / self.flow.t_scale) * z
        if not self.delayed:
            return dz
        rate, u, tau = self.onset_rate(), y[self.latent_dim : -1], y[-1]
        return jnp.concatenate([dz + rate * u * jnp.exp(-rate * tau), jnp.zeros_like(u), jnp.ones((1,), y.dtype)])

    def jump_size(self, y, mark):
        z = y[: self.latent_dim]
        dz = self.jump(jnp.concatenate([z, jax.nn.one_hot(mark, self.num_marks, dtype=z.dtype)]))
        return jnp.concatenate([dz, jnp.zeros_like(y[self.latent_dim :])]) if self.delayed else dz

    def rates(self, y):
        return self.rate_scale * jax.nn.softplus(self.readout(y[: self.latent_dim]))

    def log_rates(self, y):
        """``log rates(y)``, also where the intensity underflows (``log softplus(x) -> x`` as ``x -> -inf``), so
        the likelihood's gradient still pulls the intensity up at an event it has all but missed."""
        return math.log(self.rate_scale) + _log_softplus(self.readout(y[: self.latent_dim]))

    @property
    def delayed(self) -> bool:
        return self.log_delay is not None

    def delay(self):
        return self.flow.t_scale * jnp.exp(self.log_delay)

    def onset_rate(self):
        # 4 / t_scale at log_onset = 0, at most MAX_ONSET_RATE / t_scale: an unbounded rate let a MAP
        # make the inflow a near-delta, and then float32 solves failed on the step-size floor (dt_min).
        return MAX_ONSET_RATE * jax.nn.sigmoid(self.log_onset + _ONSET_LOGIT) / self.flow.t_scale

    def delayed_jump_size(self, y, mark):
        """At an arrival: ``u`` becomes what is left of it plus ``delayed_jump[mark]``, ``tau`` restarts."""
        z, u, tau = y[: self.latent_dim], y[self.latent_dim : -1], y[-1:]
        left = u * jnp.exp(-self.onset_rate() * tau)
        return jnp.concatenate([jnp.zeros_like(z), left - u + self.delayed_jump[mark].astype(y.dtype), -tau])


def _log_softplus(x):
    """``log(softplus(x))``; below -20, ``x - exp(x) / 2`` (its expansion; ``softplus(x) ~ exp(x)`` underflows).
    Each branch sees only inputs where it is finite, so neither leaks a NaN into the gradient."""
    low = x < -20.0
    x_low, x_high = jnp.where(low, x, -20.0), jnp.where(low, -20.0, x)
    return jnp.where(low, x_low - 0.5 * jnp.exp(x_low), jnp.log(jax.nn.softplus(x_high)))


class _FlowWithCompensator(eqx.Module):
    """``d(z, Lambda)/dt = (field(t, z), sum_k rates(z)_k)``: the compensator rides along in one solve."""

    process: Any

    def __call__(self, t, y, args):
        z = y[:-1]
        return jnp.concatenate([self.process.field(t, z, args), jnp.sum(self.process.rates(z), keepdims=True)])


class EventJumpSolution(NamedTuple):
    """What :func:`solve_event_jumps` returns for one sequence.

    ``log_rates`` (event,): ``log lambda_{m_i}(t_i-)``, 0 on padding;
    ``increments`` (event,): ``Lambda(t_i) - Lambda(t_{i-1})`` (from ``t0`` for the first), 0 on padding;
    ``compensator``: ``Lambda(T) - Lambda(t0)``, including the stretch after the last event;
    ``z_before`` (event, latent): ``z(t_i-)``; ``z_end`` (latent,): ``z(T)`` after every jump;
    ``zs`` (save, latent) and ``rates`` (save, mark) at ``save_ts`` (right-continuous), empty if none;
    ``status`` (0 = every segment solved), ``num_steps`` summed over segments.
    """

    log_rates: jax.Array
    increments: jax.Array
    compensator: jax.Array
    z_before: jax.Array
    z_end: jax.Array
    zs: jax.Array
    rates: jax.Array
    status: jax.Array
    num_steps: jax.Array


def solve_event_jumps(process, times, marks, mask, t_end, *, t0=0.0, save_ts=None, args=None,
                      config: SolverConfig | None = None) -> EventJumpSolution:  # fmt: skip
    """Solve a jump ODE driven by observed events, with its compensator. Never raises.

    Parameters
    ----------
    process : NeuralJumpProcess or any object with ``z0, field, jump_size, rates``
    times : (event,) increasing event times in ``(t0, t_end]``; padding anywhere after
        the real events (it is moved to ``t_end``).
    marks : (event,) int marks; mask : (event,) bool, False on padding.
    t_end, t0 : scalars, the observation window.
    save_ts : (save,) times in ``[t0, t_end]`` to record ``z`` and the intensity at, optional.
        The state there is right-continuous (after a jump at that very time).
    config : SolverConfig or FixedSteps
        ``SolverConfig``: one adaptive solve per gap between events. ``FixedSteps``: fixed
        steps on the events merged with a grid, much cheaper on long sequences, no step-size
        control but an error check (see :mod:`bayesode.solving.event_grid`).

    Returns
    -------
    EventJumpSolution

    Examples
    --------
    A homogeneous Poisson process of rate 2 on [0, 3] (no flow, no jumps):

    >>> import jax.numpy as jnp, equinox as eqx
    >>> class Poisson(eqx.Module):
    ...     z0: jnp.ndarray = eqx.field(default_factory=lambda: jnp.zeros(1))
    ...     def field(self, t, z, args): return jnp.zeros_like(z)
    ...     def jump_size(self, z, mark): return jnp.zeros_like(z)
    ...     def rates(self, z): return jnp.full((1,), 2.0)
    >>> sol = solve_event_jumps(Poisson(), jnp.array([0.5, 1.0]), jnp.zeros(2, int), jnp.ones(2, bool), 3.0)
    >>> round(float(events_log_likelihood(sol, jnp.ones(2, bool))), 4)  # 2 log 2 - 2 * 3
    -4.6137
    """
    config = SolverConfig() if config is None else config
    z0 = jnp.asarray(process.initial_state() if hasattr(process, "initial_state") else process.z0)
    dtype = z0.dtype
    mask = jnp.asarray(mask, dtype=bool)
    t_end = jnp.asarray(t_end, dtype=dtype)
    times = jnp.where(mask, jnp.asarray(times, dtype=dtype), t_end)
    marks = jnp.where(mask, jnp.asarray(marks, dtype=jnp.int32), 0)
    t0 = jnp.asarray(t0, dtype=dtype)
    if times.ndim != 1 or marks.shape != times.shape or mask.shape != times.shape:
        raise ConfigError(f"`times`, `marks`, `mask` must be 1-D of one shape; got {times.shape}, {marks.shape}, "
                          f"{mask.shape}. Use jax.vmap for many sequences.")  # fmt: skip
    save = jnp.zeros((0,), dtype) if save_ts is None else jnp.asarray(save_ts, dtype=dtype)
    delayed = is_delayed(process)
    check_delayed_solver(process, config)
    if isinstance(config, FixedSteps):
        guarded, z0 = guard_gradients(process, z0, config)
        out = solve_on_grid(guarded, _FlowWithCompensator(guarded), z0, times, marks, mask, t_end, t0, save, args,
                            config)  # fmt: skip
        return _solution(guarded.rates, mask, **out)
    if not isinstance(config, SolverConfig):
        raise ConfigError(f"`config` must be a SolverConfig or FixedSteps; got {type(config).__name__}.")
    line = _timeline(process, times, marks, mask, t_end) if delayed else _Timeline(times, marks, mask, mask & False,
                                                                                    jnp.arange(times.shape[0]))  # fmt: skip
    # Save point s belongs to the segment after the last jump (event or arrival) at or before s.
    jumps_here = line.is_event | line.is_arrival
    segment_of_save = jnp.sum(jumps_here[None, :] & (line.times[None, :] <= save[:, None]), axis=1, dtype=jnp.int32)
    flow = _FlowWithCompensator(process)
    zero = jnp.zeros((1,), dtype)

    def segment(carry, x):
        z, status, num_steps, zs = carry
        k, start, end, mark, is_event, is_arrival = x
        ts = jnp.concatenate([jnp.clip(save, start, end), end[None]])
        sol = solve(flow, jnp.concatenate([z, zero]), ts, t0=start, args=args, config=config)
        z_before, increment = sol.ys[-1, :-1], sol.ys[-1, -1]
        log_rate = log_intensity(process, z_before, mark)
        z_after = jnp.where(is_event, z_before + process.jump_size(z_before, mark), z_before)
        if delayed:
            z_after = jnp.where(is_arrival, z_after + process.delayed_jump_size(z_before, mark), z_after)
        zs = jnp.where((segment_of_save == k)[:, None], sol.ys[:-1, :-1], zs)
        status = jnp.where(status == STATUS_OK, sol.status, status)
        return (z_after, status, num_steps + sol.num_steps, zs), (log_rate, increment, z_before)

    n, m = times.shape[0], line.times.shape[0]
    xs = (
        jnp.arange(m + 1, dtype=jnp.int32),
        jnp.concatenate([t0[None], line.times]),
        jnp.concatenate([line.times, t_end[None]]),
        jnp.concatenate([line.marks, jnp.zeros((1,), jnp.int32)]),
        jnp.concatenate([line.is_event, jnp.zeros((1,), bool)]),
        jnp.concatenate([line.is_arrival, jnp.zeros((1,), bool)]),
    )
    init = (z0, jnp.asarray(STATUS_OK, jnp.int32), jnp.zeros((), jnp.int32), jnp.zeros(save.shape + z0.shape, dtype))
    (z_end, status, num_steps, zs), (log_rates, increments, z_before) = jax.lax.scan(segment, init, xs)
    if delayed:  # back from the timeline to the events: Lambda between consecutive events sums its segments
        at_event = jnp.cumsum(increments[:m])[line.event_position]
        increments_events = jnp.diff(at_event, prepend=jnp.zeros((1,), dtype))
        log_rates, z_before = log_rates[line.event_position], z_before[line.event_position]
    else:
        increments_events, log_rates, z_before = increments[:n], log_rates[:n], z_before[:n]
    return _solution(process.rates, mask, log_rates=log_rates, increments=increments_events,
                     compensator=jnp.sum(increments), z_before=z_before, z_end=z_end, zs=zs, status=status,
                     num_steps=num_steps)  # fmt: skip


class _Timeline(NamedTuple):
    """The jumps of one sequence in time order: ``times``, ``marks``, ``is_event`` (an observed
    event: log-rate and jump), ``is_arrival`` (an event's delayed effect) and ``event_position``
    (event,): where each event of the input sits on the timeline."""

    times: jax.Array
    marks: jax.Array
    is_event: jax.Array
    is_arrival: jax.Array
    event_position: jax.Array


def _timeline(process, times, marks, mask, t_end) -> _Timeline:
    """Events merged with their delayed arrivals ``t_i + d`` (those before ``t_end``; the rest, and the
    padding, sit at ``t_end`` without a jump). A stable sort keeps an event before an arrival at the
    same time; the gather ``all_times[order]`` carries the gradient to ``d``."""
    delay = jnp.asarray(process.delay(), times.dtype)
    arrival = times + delay
    arriving = mask & (arrival < t_end)
    all_times = jnp.concatenate([times, jnp.where(arriving, arrival, t_end)])
    order = jnp.argsort(all_times, stable=True)
    kind_event = jnp.concatenate([mask, jnp.zeros_like(mask)])
    kind_arrival = jnp.concatenate([jnp.zeros_like(mask), arriving])
    position = jnp.argsort(order)[: times.shape[0]]
    return _Timeline(all_times[order], jnp.concatenate([marks, marks])[order], kind_event[order], kind_arrival[order],
                     position)  # fmt: skip


def _solution(rates_of, mask, *, log_rates, increments, zs, **rest) -> EventJumpSolution:
    """Both solves' result: log-rates and increments zeroed at padding, the intensity at the save times."""
    rates = jax.vmap(rates_of)(zs) if zs.shape[0] else jnp.zeros((0, 1), zs.dtype)
    return EventJumpSolution(log_rates=jnp.where(mask, log_rates, 0.0), increments=jnp.where(mask, increments, 0.0),
                             zs=zs, rates=rates, **rest)  # fmt: skip


def events_log_likelihood(sol: EventJumpSolution, mask) -> jax.Array:
    """``sum_i log lambda_{m_i}(t_i-) - Lambda(T)``; ``-inf`` where the solve failed."""
    value = jnp.sum(jnp.where(mask, sol.log_rates, 0.0)) - sol.compensator
    return jnp.where(sol.status == STATUS_OK, value, -jnp.inf)


def per_event_log_likelihood(sol: EventJumpSolution, mask) -> jax.Array:
    """(event,) per-event terms ``log lambda_{m_i}(t_i-) - (Lambda(t_i) - Lambda(t_{i-1}))``, 0 on padding.

    They sum to :func:`events_log_likelihood` less the survival term after the last event,
    ``-(Lambda(T) - Lambda(t_n))``; the pointwise values for LOO.
    """
    return jnp.where(mask, sol.log_rates - sol.increments, 0.0)
