"""The one wrapper over :func:`diffrax.diffeqsolve`.

Inside inference every solve runs with ``throw=False`` and returns a status
code instead of raising, so a failed solve becomes a rejected proposal.
Failures are made cheap:

- a non-finite initial state or field value at ``t0`` skips integration
  entirely (the solve runs over a zero-length interval);
- a state that leaves ``[-max_abs_state, max_abs_state]`` or turns
  non-finite stops the solve through a diffrax event (blow-up);
- a step size that collapses to nothing (NaN field output mid-solve makes
  the controller reject every step) stops it too (status ``dt_min``);
- otherwise ``max_steps`` bounds the work.

Known discontinuities of the field in time (a dose switched on, a step
input) belong in ``SolverConfig(jump_ts=...)``: the controller then steps to
just before and just after each, instead of rejecting steps to find it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ..errors import ConfigError
from .integrate import guard_gradients, integrate, placeholder
from .status import FAILURE_ADVICE, FAILURE_CAUSES, Status, status_from  # noqa: F401 (old import path)

# The codes by their old names (``Status`` is the enumeration).
STATUS_OK = Status.OK
STATUS_MAX_STEPS = Status.MAX_STEPS
STATUS_NONFINITE = Status.NONFINITE
STATUS_BLOW_UP = Status.BLOW_UP
STATUS_DT_MIN = Status.DT_MIN
STATUS_OTHER = Status.OTHER


def _as_times(value):
    """``jump_ts`` as a sorted tuple of floats (hashable: it is a static field)."""
    if value is None:
        return None
    try:
        return tuple(sorted(float(t) for t in np.ravel(np.asarray(value, dtype=float))))
    except (TypeError, ValueError):
        raise ConfigError(f"`SolverConfig(jump_ts=...)` must be a sequence of times; got {value!r}.") from None


class SolverConfig(eqx.Module):
    """How to integrate: solver, tolerances, step budget, adjoint.

    Parameters
    ----------
    solver : diffrax solver
        Default ``Tsit5()``. Use ``Kvaerno5()`` for stiff systems. An implicit
        solver's root finder is wrapped so that a failed Newton solve stays a
        rejected step under differentiation too (:mod:`bayesode.solving.implicit`).
        Known gap: a Newton system that is finite but numerically singular (rates
        many orders of magnitude beyond their scale) still raises inside ``lineax``'s
        derivative rules; ``EQX_ON_ERROR=nan`` in the environment (set before equinox
        is imported) makes such a solve a counted failure.
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
    jump_ts : sequence of float or None
        Times (model time) at which the field is discontinuous, e.g. a dose
        switched on by ``t > 0`` or a step input; passed to diffrax as
        ``ClipStepSizeController(jump_ts=...)``: the solver steps to just
        before and just after each instead of rejecting steps to find it.
        Give them where the solution is flat before a switch-on (the
        controller may step right over a pulse it never saw) and for large
        jumps in float32 (which step-size control alone may not resolve).
        Times outside a solve's interval are ignored.

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
    jump_ts: tuple[float, ...] | None = eqx.field(static=True, default=None, converter=_as_times)

    def __check_init__(self):
        for name in ("rtol", "atol", "max_abs_state"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v > 0 and v == v and v != float("inf")):
                raise ConfigError(f"`SolverConfig({name}=...)` must be a positive finite number; got {v!r}.")
        if not (isinstance(self.max_steps, int) and self.max_steps > 0):
            raise ConfigError(f"`SolverConfig(max_steps=...)` must be a positive int; got {self.max_steps!r}.")
        if self.dt0 is not None and not (self.dt0 > 0):
            raise ConfigError(f"`SolverConfig(dt0=...)` must be positive or None; got {self.dt0!r}.")
        if self.jump_ts is not None and not all(math.isfinite(t) for t in self.jump_ts):
            raise ConfigError(f"`SolverConfig(jump_ts=...)` must be finite times; got {self.jump_ts!r}.")
        if not isinstance(self.solver, diffrax.AbstractSolver):
            raise ConfigError(
                f"`SolverConfig(solver=...)` must be a diffrax solver such as diffrax.Tsit5(); got {self.solver!r}."
            )
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


class ForwardSensitivity(diffrax.AbstractAdjoint):
    """Gradients from forward sensitivities integrated alongside the state.

    With this adjoint :func:`solve` integrates, next to ``y``, its derivatives
    with respect to the field's parameters (every floating-point array in the
    field and in ``args``) and to ``y0``: ``dS/dt = J_y f S + J_p f``, one
    column per parameter, in one array state ``(state, 1 + parameters + state)``
    so the solver's stage sums run over all columns at once. Error control looks
    at the states only, so the steps are those of the plain solve (up to
    round-off: in float32 at tight tolerances a few accept/reject decisions
    can differ). The solve is a ``custom_vjp``: the model's log density is
    differentiated in reverse mode and the backward pass is one contraction
    with the saved sensitivities (no second solve). Cotangents for ``ts`` and ``t0`` (inferred jump times) come
    from ``f(t, y)``.

    Cost grows with the number of parameters (one column each): use it for
    mechanistic models with a handful of parameters. Measured on Lotka-Volterra
    (4 rates + 2 initial states) it is cheaper per gradient than
    ``diffrax.ForwardMode()`` (which carries one tangent per *unconstrained*
    parameter through the whole log density) and than reverse mode.
    Forward-mode differentiation (``jax.jvp``) through it is not possible.

    Outside :func:`solve` (passed to ``diffrax.diffeqsolve`` directly, or in
    :func:`bayesode.solve_with_events`) it behaves as
    ``diffrax.RecursiveCheckpointAdjoint()``.
    """

    def loop(self, **kwargs):
        return diffrax.RecursiveCheckpointAdjoint().loop(**kwargs)


def _rms_of_states(error):
    """The controller's error norm over the state column only (sensitivities ride along)."""
    return jnp.sqrt(jnp.mean(jnp.square(error[:, 0])))


def _integrate(vector_field, y0, ts, t0, args, config: SolverConfig, *, ok_start, states_of=None, norm=None):
    """``diffeqsolve`` with bayesode's failure handling: returns ``(raw ys, status, num_steps)``.

    ``states_of`` maps the solver's state to the model's states (the identity, or
    column 0 of a state carrying sensitivities); events and statuses look at those.
    """
    states_of = (lambda y: y) if states_of is None else states_of
    # Bad start: integrate over a zero-length interval (no steps, no cost).
    y0_run = jnp.where(ok_start, y0, jnp.zeros_like(y0))
    t1 = jnp.where(ok_start, ts[-1], t0)
    ts_run = jnp.where(ok_start, ts, t0)

    bound = config.max_abs_state

    def leaves_bounds(t, y, args, **kwargs):
        return ~_within_bound(states_of(y), bound)

    # diffrax's BacksolveAdjoint refuses events. There the field is NaN outside the bound, so the
    # controller rejects steps until the step floor stops the solve (cheap, reported as dt_min),
    # and the saved states are checked against the bound afterwards.
    backsolve = isinstance(config.adjoint, diffrax.BacksolveAdjoint)
    if backsolve:
        vector_field = _NaNOutside(vector_field, bound)
    # The sensitivity path is never differentiated through diffrax: a plain while loop.
    adjoint = diffrax.ForwardMode() if isinstance(config.adjoint, ForwardSensitivity) else None
    sol = integrate(
        vector_field,
        y0_run,
        t0,
        t1,
        config,
        saveat=diffrax.SaveAt(ts=ts_run),
        args=args,
        event=None if backsolve else diffrax.Event(leaves_bounds),
        adjoint=adjoint,
        norm=norm,
    )
    status = status_from(sol.result, states_of(sol.ys), ok_start)
    if backsolve:
        out_of_bounds = jnp.max(jnp.where(jnp.isfinite(sol.ys), jnp.abs(sol.ys), 0.0)) >= bound
        status = jnp.where((status == STATUS_OK) & out_of_bounds, STATUS_BLOW_UP, status).astype(jnp.int32)
    return sol.ys, status, sol.stats["num_steps"]


def _start_is_ok(field, y0, t0, args):
    f0 = field(t0, jnp.where(jnp.isfinite(y0), y0, 0.0), args)
    return jnp.all(jnp.isfinite(y0)) & jnp.all(jnp.isfinite(f0))


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
    if isinstance(config.adjoint, ForwardSensitivity):
        return Solution(*_solve_with_sensitivities((field, args, y0, ts, t0), config=config))
    field, y0 = guard_gradients(field, y0, config)
    ok_start = _start_is_ok(field, y0, t0, args)
    ys, status, num_steps = _integrate(field, y0, ts, t0, args, config, ok_start=ok_start)
    ys = jnp.where(status == STATUS_OK, ys, placeholder(y0, ys.shape))
    return Solution(ys=ys, status=status, num_steps=num_steps)


# ---------------------------------------------------------------- forward sensitivities
@eqx.filter_custom_vjp
def _solve_with_sensitivities(inputs, *, config):
    """``(field, args, y0, ts, t0) -> (ys, status, num_steps)``; undifferentiated: the plain solve."""
    field, args, y0, ts, t0 = inputs
    ok_start = _start_is_ok(field, y0, t0, args)
    ys, status, num_steps = _integrate(field, y0, ts, t0, args, config, ok_start=ok_start)
    return jnp.where(status == STATUS_OK, ys, placeholder(y0, ys.shape)), status, num_steps


@_solve_with_sensitivities.def_fwd
def _sensitivities_fwd(perturbed, inputs, *, config):
    field, args, y0, ts, t0 = inputs
    _, _, y0_perturbed, _, t0_perturbed = perturbed
    if y0.ndim != 1:
        raise ConfigError(f"ForwardSensitivity needs a (state,) initial state; got shape {y0.shape}.")
    # The parameters: the differentiated floating-point arrays of the field and args, as one vector.
    params, rest = eqx.partition((field, args), perturbed[:2])
    p, unravel = ravel_pytree(params)
    n, num_p, dtype = y0.shape[0], p.shape[0], y0.dtype
    p = p.astype(dtype)
    # d/dt0 needs the y0 columns too (dy/dt0 = -S_y0 f(t0, y0)).
    num_y0 = n if (y0_perturbed or t0_perturbed) else 0

    def field_at(p, t, y):
        f, a = eqx.combine(unravel(p), rest)
        return f(t, y, a)

    # One column per parameter: the tangent of p is the unit vector; y0 columns have none.
    p_tangents = jnp.concatenate([jnp.eye(num_p, dtype=dtype), jnp.zeros((num_p, num_y0), dtype)], axis=1)

    def augmented(t, state, p):
        y, s = state[:, 0], state[:, 1:]  # (state,), (state, columns)
        f, ds = jax.vmap(
            lambda s_col, p_col: jax.jvp(lambda yy, pp: field_at(pp, t, yy), (y, p), (s_col, p_col)),
            in_axes=(1, 1),
            out_axes=(None, 1),
        )(s, p_tangents)
        return jnp.concatenate([f[:, None], ds], axis=1)

    ok_start = _start_is_ok(field, y0, t0, args)
    s0 = jnp.concatenate([jnp.zeros((n, num_p), dtype), jnp.eye(n, num_y0, dtype=dtype)], axis=1)
    state0 = jnp.concatenate([y0[:, None], s0], axis=1)  # (state, 1 + columns)
    out, status, num_steps = _integrate(
        augmented, state0, ts, t0, p, config, ok_start=ok_start, states_of=lambda st: st[..., 0], norm=_rms_of_states
    )
    ok = status == STATUS_OK
    ys = jnp.where(ok, out[..., 0], placeholder(y0, out.shape[:-1]))
    sens = jnp.where(ok, out[..., 1:], 0.0)  # (time, state, columns); zero for a failed solve
    return (ys, status, num_steps), (ys, sens, ok)


@_solve_with_sensitivities.def_bwd
def _sensitivities_bwd(residuals, grad_obj, perturbed, inputs, *, config):
    ys, sens, ok = residuals
    field, args, y0, ts, t0 = inputs
    field_p, args_p, y0_perturbed, ts_perturbed, t0_perturbed = perturbed
    ct = grad_obj[0]
    if ct is None:
        return jax.tree.map(lambda _: None, inputs)
    # A failed solve's cotangent can be NaN (its -inf log density times 0); it has no gradient.
    ct = jnp.where(ok, ct, 0.0)
    params, _ = eqx.partition((field, args), (field_p, args_p))
    _, unravel = ravel_pytree(params)
    num_p = sum(x.size for x in jax.tree.leaves(params))
    g = jnp.einsum("tn,tnk->k", ct, sens)
    g_field, g_args = unravel(g[:num_p])
    g_y0 = g[num_p:] if y0_perturbed else None
    g_ts = g_t0 = None
    if ts_perturbed:  # dy(t_i)/dt_i = f(t_i, y(t_i))
        f_ts = jax.vmap(lambda t, y: field(t, y, args))(ts, ys)
        g_ts = jnp.where(ok, jnp.sum(ct * f_ts, axis=-1), 0.0)
    if t0_perturbed:  # dy(t_i)/dt0 = -S_y0(t_i) f(t0, y0)
        g_t0 = jnp.where(ok, -jnp.dot(g[num_p:], field(t0, y0, args)), 0.0)
    return (g_field, g_args, g_y0, g_ts, g_t0)


def vmap_unless_one(fn):
    """``jax.vmap(fn)`` over the leading axis of every argument; a batch of one runs unbatched.

    Batched, an adaptive loop (the solver's steps, NUTS's tree) selects every piece of
    its state at every step, since members may stop at different steps, even in a
    batch of one: the LV solve's gradient cost 521 us inside a ``vmap`` over one
    series against 228 us without (2-core CPU). Used for series and for chains.
    """

    def mapped(*args):
        if jax.tree.leaves(args)[0].shape[0] == 1:
            out = fn(*jax.tree.map(lambda x: x[0], args))
            return jax.tree.map(lambda x: x[None], out)
        return jax.vmap(fn)(*args)

    return mapped


def solve_series(field, y0, ts, t0, *, args=None, config: SolverConfig | None = None) -> Solution:
    """Vectorised :func:`solve` over independent series sharing one field.

    ``y0``: (series, state); ``ts``: (series, time); ``t0``: (series,).
    Returns ``ys`` (series, time, state) and ``status`` (series,). A failure in
    one series leaves the others untouched.
    """
    return vmap_unless_one(lambda y, t, s: solve(field, y, t, t0=s, args=args, config=config))(y0, ts, t0)
