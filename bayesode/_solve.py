"""The one wrapper over :func:`diffrax.diffeqsolve`.

Inside inference every solve runs with ``throw=False`` and returns a status
code instead of raising, so a failed solve becomes a rejected proposal.
Failures are made cheap:

- a non-finite initial state or field value at ``t0`` skips integration
  entirely (the solve runs over a zero-length interval);
- a state that leaves ``[-max_abs_state, max_abs_state]`` or turns
  non-finite stops the solve through a diffrax event (blow-up);
- a step size that collapses below ``dtmin`` (NaN field output mid-solve
  makes the controller reject every step) stops it too;
- otherwise ``max_steps`` bounds the work.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import NamedTuple

import diffrax
import equinox as eqx
import equinox.internal as eqxi
import jax
import jax.numpy as jnp

from ._errors import ConfigError

# Status codes; 0 is success. Reported by cause in ``sample_stats``.
STATUS_OK = 0
STATUS_MAX_STEPS = 1
STATUS_NONFINITE = 2
STATUS_BLOW_UP = 3
STATUS_DT_MIN = 4
STATUS_OTHER = 5
FAILURE_CAUSES = {
    STATUS_MAX_STEPS: "max_steps",
    STATUS_NONFINITE: "nonfinite",
    STATUS_BLOW_UP: "blow_up",
    STATUS_DT_MIN: "dt_min",
    STATUS_OTHER: "other",
}
# What to try, per cause; used in warnings and errors.
FAILURE_ADVICE = {
    "max_steps": "raise SolverConfig(max_steps=...) or use a stiff solver such as diffrax.Kvaerno5()",
    "nonfinite": "the initial state or field value is NaN/inf: check y0 priors and the field",
    "blow_up": "trajectories explode: tighten the weight/parameter priors or raise max_abs_state",
    "dt_min": "step size collapsed (stiff system, singularity or NaN field output): try diffrax.Kvaerno5() "
    "or tighter priors",
    "other": "see diffrax.RESULTS",
}


class SolverConfig(eqx.Module):
    """How to integrate: solver, tolerances, step budget, adjoint.

    Parameters
    ----------
    solver : diffrax solver
        Default ``Tsit5()``. Use ``Kvaerno5()`` for stiff systems.
    rtol, atol : float
        Tolerances of the PID step-size controller (default 1e-6 both).
    max_steps : int
        Step budget per solve (default 2048). A solve that exhausts it is a
        failure (status ``max_steps``), which also bounds what a failure costs.
    adjoint : diffrax adjoint
        Default ``RecursiveCheckpointAdjoint()``. ``ForwardMode()`` is cheaper
        for models with few parameters (pair it with
        ``run_nuts(forward_mode=True)``); ``BacksolveAdjoint`` uses O(1) memory in
        the number of steps.
    max_abs_state : float
        A state beyond this magnitude counts as a blow-up and stops the solve.
    dt0 : float or None
        Initial step; None lets diffrax choose.

    Examples
    --------
    >>> cfg = SolverConfig(rtol=1e-8, atol=1e-8)
    >>> cfg.max_steps
    2048
    """

    solver: diffrax.AbstractSolver = eqx.field(static=True, default_factory=diffrax.Tsit5)
    rtol: float = eqx.field(static=True, default=1e-6)
    atol: float = eqx.field(static=True, default=1e-6)
    max_steps: int = eqx.field(static=True, default=2048)
    adjoint: diffrax.AbstractAdjoint = eqx.field(static=True, default_factory=diffrax.RecursiveCheckpointAdjoint)
    max_abs_state: float = eqx.field(static=True, default=1e8)
    dt0: float | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        for name in ("rtol", "atol", "max_abs_state"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v > 0 and v == v and v != float("inf")):
                raise ConfigError(f"`SolverConfig({name}=...)` must be a positive finite number; got {v!r}.")
        if not (isinstance(self.max_steps, int) and self.max_steps > 0):
            raise ConfigError(f"`SolverConfig(max_steps=...)` must be a positive int; got {self.max_steps!r}.")
        if self.dt0 is not None and not (self.dt0 > 0):
            raise ConfigError(f"`SolverConfig(dt0=...)` must be positive or None; got {self.dt0!r}.")
        if not isinstance(self.solver, diffrax.AbstractSolver):
            raise ConfigError(f"`SolverConfig(solver=...)` must be a diffrax solver such as diffrax.Tsit5(); got {self.solver!r}.")
        if not isinstance(self.adjoint, diffrax.AbstractAdjoint):
            raise ConfigError(f"`SolverConfig(adjoint=...)` must be a diffrax adjoint; got {self.adjoint!r}.")

    @property
    def forward_mode(self) -> bool:
        return isinstance(self.adjoint, diffrax.ForwardMode)


class Solution(NamedTuple):
    """``ys``: (time, state) states at ``ts``; ``status``: int code (0 = ok); ``num_steps``."""

    ys: jax.Array
    status: jax.Array
    num_steps: jax.Array


@jax.custom_vjp
def _finite_cotangent(x):
    """Identity whose backward pass zeroes non-finite cotangents.

    A failed solve's backward pass can produce NaN (0 * inf); its log
    density is -inf anyway, and this keeps the gradient finite.
    """
    return x


def _fc_fwd(x):
    return x, None


def _fc_bwd(_, ct):
    return (jax.tree.map(lambda c: jnp.where(jnp.isfinite(c), c, 0.0), ct),)


_finite_cotangent.defvjp(_fc_fwd, _fc_bwd)


def _status_from(result, ys, ok_start) -> jax.Array:
    r = diffrax.RESULTS
    status = jnp.where(
        result == r.successful,
        STATUS_OK,
        jnp.where(
            result == r.max_steps_reached,
            STATUS_MAX_STEPS,
            jnp.where(
                result == r.event_occurred,
                STATUS_BLOW_UP,
                jnp.where(result == r.dt_min_reached, STATUS_DT_MIN, STATUS_OTHER),
            ),
        ),
    )
    status = jnp.where(ok_start, status, STATUS_NONFINITE)
    return jnp.where((status == STATUS_OK) & ~jnp.all(jnp.isfinite(ys)), STATUS_NONFINITE, status).astype(jnp.int32)


def _within_bound(y, bound) -> jax.Array:
    """True while every state is finite and smaller than ``bound`` in size."""
    return jnp.all(jnp.isfinite(y)) & (jnp.max(jnp.abs(y)) < bound)


class _NaNOutside(eqx.Module):
    """``field`` where all states are finite and below ``bound`` in size; NaN elsewhere.

    A module (not a closure) so that ``BacksolveAdjoint`` sees the field's weights as inputs.
    """

    field: Callable
    bound: float = eqx.field(static=True)

    def __call__(self, t, y, args):
        return jnp.where(_within_bound(y, self.bound), self.field(t, y, args), jnp.nan)


@contextlib.contextmanager
def _checks_without_callbacks():
    """diffrax checks ``saveat.ts`` (increasing, within the interval) with equinox's
    ``error_if``, which raises through a host callback, and JAX never writes a program
    with a host callback to the persistent compilation cache: every process would
    recompile every model. Our times are validated before any solve, so while our
    solve is traced these checks return NaN instead of raising (``on_error="nan"``:
    a NaN time fails the solve, which is then counted like any other failure).
    Only ``equinox.internal.error_if``, the name diffrax calls, is swapped, and only
    during the trace; equinox caches the two variants under different keys.
    """
    original = eqxi.error_if
    eqxi.error_if = functools.partial(original, on_error="nan")
    try:
        yield
    finally:
        eqxi.error_if = original


def solve(field, y0, ts, *, t0=None, args=None, config: SolverConfig | None = None) -> Solution:
    """Integrate ``dy/dt = field(t, y, args)`` from ``(t0, y0)``, saving at ``ts``. Never raises.

    Parameters
    ----------
    field : callable ``(t, y, args) -> dy/dt``
    y0 : (state,) array
    ts : (time,) increasing array of save times; repeated trailing values
        (padding) are allowed.
    t0 : scalar, optional
        Start time; default ``ts[0]``. Must be ``<= ts[0]``.
    config : SolverConfig

    Returns
    -------
    Solution
        ``ys`` (time, state) is finite wherever ``status == 0``; where the solve
        failed ``ys`` holds ``y0`` repeated (a finite placeholder that the model
        multiplies by a -inf factor).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> sol = solve(lambda t, y, a: -y, jnp.ones(1), jnp.linspace(0.0, 1.0, 3))
    >>> int(sol.status), round(float(sol.ys[-1, 0]), 4)
    (0, 0.3679)
    """
    config = SolverConfig() if config is None else config
    y0 = jnp.asarray(y0)
    ts = jnp.asarray(ts, dtype=y0.dtype)
    t0 = ts[0] if t0 is None else jnp.asarray(t0, dtype=ts.dtype)
    if not config.forward_mode:
        dynamic, static = eqx.partition(field, eqx.is_inexact_array)
        dynamic, y0 = _finite_cotangent((dynamic, y0))
        field = eqx.combine(dynamic, static)

    # Bad start: integrate over a zero-length interval (no steps, no cost).
    f0 = field(t0, jnp.where(jnp.isfinite(y0), y0, 0.0), args)
    ok_start = jnp.all(jnp.isfinite(y0)) & jnp.all(jnp.isfinite(f0))
    y0_run = jnp.where(ok_start, y0, jnp.zeros_like(y0))
    t1 = jnp.where(ok_start, ts[-1], t0)
    ts_run = jnp.where(ok_start, ts, t0)

    span = jnp.maximum(t1 - t0, jnp.finfo(ts.dtype).tiny)
    dtmin = span * max(1e-10, 64 * float(jnp.finfo(ts.dtype).eps))
    controller = diffrax.PIDController(rtol=config.rtol, atol=config.atol, dtmin=dtmin, force_dtmin=False)
    bound = config.max_abs_state

    def leaves_bounds(t, y, args, **kwargs):
        return ~_within_bound(y, bound)

    # diffrax's BacksolveAdjoint refuses events. There the field is NaN outside the bound, so the
    # controller rejects steps until dtmin stops the solve (cheap, reported as dt_min), and the
    # saved states are checked against the bound afterwards.
    backsolve = isinstance(config.adjoint, diffrax.BacksolveAdjoint)
    if backsolve:
        field = _NaNOutside(field, bound)

    with _checks_without_callbacks():
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(field),
            config.solver,
            t0=t0,
            t1=t1,
            dt0=config.dt0,
            y0=y0_run,
            args=args,
            saveat=diffrax.SaveAt(ts=ts_run),
            stepsize_controller=controller,
            adjoint=config.adjoint,
            event=None if backsolve else diffrax.Event(leaves_bounds),
            max_steps=config.max_steps,
            throw=False,
        )
    status = _status_from(sol.result, sol.ys, ok_start)
    if backsolve:
        out_of_bounds = jnp.max(jnp.where(jnp.isfinite(sol.ys), jnp.abs(sol.ys), 0.0)) >= bound
        status = jnp.where((status == STATUS_OK) & out_of_bounds, STATUS_BLOW_UP, status).astype(jnp.int32)
    ok = status == STATUS_OK
    placeholder = jnp.broadcast_to(jnp.where(jnp.isfinite(y0), y0, 1.0), sol.ys.shape)
    ys = jnp.where(ok, sol.ys, jax.lax.stop_gradient(placeholder))
    return Solution(ys=ys, status=status, num_steps=sol.stats["num_steps"])


def solve_series(field, y0, ts, t0, *, args=None, config: SolverConfig | None = None) -> Solution:
    """Vectorised :func:`solve` over independent series sharing one field.

    ``y0``: (series, state); ``ts``: (series, time); ``t0``: (series,).
    Returns ``ys`` (series, time, state) and ``status`` (series,). A failure in
    one series leaves the others untouched.
    """
    return jax.vmap(lambda y, t, s: solve(field, y, t, t0=s, args=args, config=config))(y0, ts, t0)
