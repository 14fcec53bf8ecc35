"""The one call to :func:`diffrax.diffeqsolve`, and the failure guard every solve shares.

Every bayesode solve (plain, sensitivities, jumps, state events, Lyapunov
windows) integrates through :func:`integrate`: one step-size controller
(:func:`~bayesode.solving.controller.step_controller`), ``throw=False`` (a
failure is a status code, never an exception), implicit solvers whose failed
Newton solves stay a status under differentiation too
(:mod:`~bayesode.solving.implicit`), ``config.max_steps``, and
diffrax's checks of the save times kept free of host callbacks (see
:mod:`~bayesode.solving.cacheable`). Around it, the failure guard:
:func:`guard_gradients` keeps a failed solve's gradient finite and
:func:`placeholder` is what a failed solve returns instead of its states.
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

from .cacheable import checks_without_callbacks
from .controller import step_controller
from .implicit import with_finite_roots


def integrate(field, y0, t0, t1, config, *, saveat, args=None, event=None, adjoint=None, norm=None) -> diffrax.Solution:
    """``diffrax.diffeqsolve`` of ``dy/dt = field(t, y, args)`` with bayesode's settings. Never raises.

    ``config`` is a :class:`~bayesode.SolverConfig`; ``adjoint`` overrides
    ``config.adjoint``; ``norm`` is the controller's error norm (default RMS);
    ``event`` a ``diffrax.Event`` or None. The times' dtype is ``y0``'s.
    """
    with checks_without_callbacks():
        return diffrax.diffeqsolve(
            diffrax.ODETerm(field),
            with_finite_roots(config.solver),
            t0=t0,
            t1=t1,
            dt0=config.dt0,
            y0=y0,
            args=args,
            saveat=saveat,
            stepsize_controller=step_controller(config, jnp.result_type(y0), norm),
            adjoint=config.adjoint if adjoint is None else adjoint,
            event=event,
            max_steps=config.max_steps,
            throw=False,
        )


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


def guard_gradients(field, y0, config):
    """``(field, y0)`` whose reverse-mode cotangents are zeroed where non-finite (a failed solve's).

    Forward mode needs no guard (and a ``custom_vjp`` would refuse it): returned unchanged.
    """
    if config.forward_mode:
        return field, y0
    dynamic, static = eqx.partition(field, eqx.is_inexact_array)
    dynamic, y0 = _finite_cotangent((dynamic, y0))
    return eqx.combine(dynamic, static), y0


def placeholder(y0, shape):
    """What a failed solve returns: ``y0`` repeated (finite), without gradient."""
    return jax.lax.stop_gradient(jnp.broadcast_to(jnp.where(jnp.isfinite(y0), y0, 1.0), shape))
