"""Largest Lyapunov exponent along a trajectory (Benettin's method).

:func:`lyapunov_exponent` integrates the state and a tangent vector together,
renormalising the tangent every ``dt_renorm``. Pure JAX and vmappable.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

from ..errors import ConfigError
from ..solving import SolverConfig, Status, integrate, status_from


class LyapunovResult(NamedTuple):
    """Output of :func:`lyapunov_exponent` (``W`` averaging windows).

    Attributes
    ----------
    exponent : () largest Lyapunov exponent (1/time units of the field); NaN if the integration failed.
    running : (W,) running estimate after each window past the burn-in (its last entry is ``exponent``
        when the run succeeded): plot it to judge convergence.
    ys : (W,) + (D,) state at the end of each averaging window.
    status : () int32, 0 if every window integrated; otherwise the first failure code of
        :func:`bayesode.solve` (2 also when the tangent vector collapsed to 0 or overflowed).
    """

    exponent: jax.Array
    running: jax.Array
    ys: jax.Array
    status: jax.Array


# ----------------------------------------------------------------------------- Lyapunov exponent
class _Tangent(eqx.Module):
    """Augmented field on ``z = [y, v]``: ``dy/dt = f(t, y)``, ``dv/dt = J(t, y) v`` (a jvp)."""

    field: object
    state_dim: int = eqx.field(static=True)

    def __call__(self, t, z, args):
        y, v = z[: self.state_dim], z[self.state_dim :]
        fy, jv = jax.jvp(lambda x: self.field(t, x, args), (y,), (v,))
        return jnp.concatenate([fy, jv])


def _integrate_window(tangent, z, start, dt, args, config, live):
    """``z`` at ``start + dt`` and a status code; a zero-length (free) solve when not ``live``.

    No blow-up event or gradient guard (a forward-only run; leaving them out
    compiles about 40% faster than :func:`bayesode.solve`). A state that
    leaves ``config.max_abs_state`` is caught at the window's end; one that
    turns non-finite makes the step size collapse, which ends the solve cheaply.
    """
    sol = integrate(
        tangent, z, start, jnp.where(live, start + dt, start), config, saveat=diffrax.SaveAt(t1=True), args=args
    )
    end = sol.ys[-1]
    status = status_from(sol.result, sol.ys, jnp.asarray(True))
    y = end[: tangent.state_dim]
    blown = (status == Status.OK) & ~(jnp.max(jnp.abs(y)) < config.max_abs_state)
    return end, jnp.where(blown, Status.BLOW_UP, status)


def _lyapunov_impl(field, y0, t0, dt, args, config, num_burn: int, num_avg: int) -> LyapunovResult:
    dim = y0.shape[0]
    dtype = y0.dtype
    tangent = _Tangent(field, dim)
    v0 = jnp.full((dim,), 1.0 / math.sqrt(dim), dtype)

    def window(carry, i):
        y, v, status = carry
        live = status == Status.OK
        z, code = _integrate_window(tangent, jnp.concatenate([y, v]), t0 + i.astype(dtype) * dt, dt, args, config, live)
        w = z[dim:]
        norm = jnp.sqrt(jnp.sum(w * w))
        ok = live & (code == Status.OK) & (norm > 0) & jnp.isfinite(norm)
        code = jnp.where(code == Status.OK, Status.NONFINITE, code)
        status = jnp.where(live & ~ok, code, status).astype(jnp.int32)
        v = jnp.where(ok, w / jnp.where(ok, norm, 1.0), v)
        y = jnp.where(ok, z[:dim], y)
        growth = jnp.where(ok, jnp.log(jnp.where(ok, norm, 1.0)), jnp.nan)
        return (y, v, status), (growth, y)

    # One scan over burn-in and averaging windows (two scans would compile the window twice).
    carry = (y0, v0, jnp.asarray(Status.OK, jnp.int32))
    (_, _, status), (growth, ys) = jax.lax.scan(window, carry, jnp.arange(num_burn + num_avg))
    growth, ys = growth[num_burn:], ys[num_burn:]
    elapsed = dt * jnp.arange(1, num_avg + 1, dtype=dtype)
    running = jnp.cumsum(growth) / elapsed
    exponent = jnp.where(status == Status.OK, running[-1], jnp.nan)
    return LyapunovResult(exponent, running, ys, status)


_lyapunov_jit = eqx.filter_jit(_lyapunov_impl)


def _window_counts(t_burn, t_total, dt_renorm) -> tuple[int, int]:
    for name, v in (("t_burn", t_burn), ("t_total", t_total), ("dt_renorm", dt_renorm)):
        if not (isinstance(v, (int, float)) and math.isfinite(v)):
            raise ConfigError(f"`{name}` must be a finite number (a Python float); got {v!r}.")
    if not dt_renorm > 0:
        raise ConfigError(f"`dt_renorm` must be positive; got {dt_renorm!r}.")
    if not t_burn >= 0:
        raise ConfigError(f"`t_burn` must be >= 0; got {t_burn!r}.")
    num_burn = int(round(t_burn / dt_renorm))
    num_avg = int(round((t_total - t_burn) / dt_renorm))
    if num_avg < 1:
        raise ConfigError(
            f"`t_total`={t_total!r} leaves no averaging window after `t_burn`={t_burn!r} with "
            f"`dt_renorm`={dt_renorm!r}; t_total includes the burn-in, so make t_total >= t_burn + dt_renorm."
        )
    return num_burn, num_avg


def lyapunov_exponent(
    field,
    y0,
    *,
    t_burn: float,
    t_total: float,
    dt_renorm: float,
    t0: float = 0.0,
    args=None,
    config: SolverConfig | None = None,
) -> LyapunovResult:
    """Largest Lyapunov exponent along the trajectory from ``y0`` (Benettin's method).

    The state and a tangent vector (``dv/dt = J v``, a jvp of the field) are
    integrated together over windows of length ``dt_renorm``; after each
    window the tangent's log growth is recorded and the tangent rescaled to
    norm 1. Windows in the first ``t_burn`` align the tangent with the
    leading direction and are discarded; the exponent is the mean log growth
    per unit time over the rest. One ``lax.scan``: one compiled program per
    field structure and window counts, vmappable over fields and ``y0``.

    Parameters
    ----------
    field : callable ``(t, y, args) -> dy/dt``.
    y0 : (state,) initial state.
    t_burn : float
        Burn-in time, discarded (a few times the slowest relaxation time).
    t_total : float
        Total integration time, burn-in included; the average runs over
        ``t_total - t_burn``. The estimate's error shrinks like ``1/(t_total - t_burn)``
        for regular motion and slowly for chaotic motion, so lengthen it to tighten it.
    dt_renorm : float
        Window length (a fraction of a typical period; the tangent must not
        overflow within one window). ``t_burn`` and ``t_total - t_burn`` are
        rounded to whole windows.
    t0 : float
        Start time (default 0; matters only for non-autonomous fields).
    args : passed to the field.
    config : SolverConfig
        Solver for each window (default ``SolverConfig()``); ``max_steps`` is per window.

    Returns
    -------
    LyapunovResult
        ``exponent`` (), ``running`` (W,), ``ys`` (W, state), ``status`` ().

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> res = lyapunov_exponent(lambda t, y, a: -0.5 * y, jnp.ones(2), t_burn=1.0, t_total=5.0, dt_renorm=0.5)
    >>> round(float(res.exponent), 3)
    -0.5
    """
    num_burn, num_avg = _window_counts(t_burn, t_total, dt_renorm)
    y0 = jnp.asarray(y0)
    if y0.ndim != 1:
        raise ConfigError(f"`y0` must have shape (state,); got {y0.shape}.")
    if not jnp.issubdtype(y0.dtype, jnp.floating):
        y0 = y0.astype(jnp.zeros(()).dtype)
    config = SolverConfig() if config is None else config
    t0 = jnp.asarray(t0, y0.dtype)
    dt = jnp.asarray(dt_renorm, y0.dtype)
    return _lyapunov_jit(field, y0, t0, dt, args, config, num_burn, num_avg)
