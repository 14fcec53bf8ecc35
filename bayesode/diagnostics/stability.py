"""Stability of vector fields and of posterior dynamics: equilibria, their linearisation, Lyapunov exponents.

Three layers, each pure JAX and vmappable:

- :func:`fixed_points` finds equilibria ``f(t, y*) = 0`` from many starting
  points (damped Newton / Levenberg-Marquardt), removes duplicates, and
  classifies each by the eigenvalues of the Jacobian there;
- :func:`lyapunov_exponent` estimates the largest Lyapunov exponent along a
  trajectory by Benettin's method (state and tangent vector integrated
  together, tangent renormalised every ``dt_renorm``);
- :func:`posterior_stability` does both for every draw of a
  :class:`~bayesode.Posterior` and returns an ``xarray.Dataset`` with dims
  ``(chain, draw, ...)`` plus posterior probabilities of stability, chaos and
  a limit cycle.

:func:`bayesode.plots.plot_stability` draws the result.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import xarray as xr
from numpyro import handlers

from ..errors import ConfigError
from ..fields.basic import field_state_dim
from ..model.priors import SITE_Y0, sample_field
from ..solving import SolverConfig, Status, integrate, solve_series, status_from

# Kinds of fixed point (``FixedPoints.kind``); -1 marks an empty slot.
KIND_NONE = -1
STABLE_NODE = 0
STABLE_FOCUS = 1
UNSTABLE_NODE = 2
UNSTABLE_FOCUS = 3
SADDLE = 4
CENTRE = 5
# ``KIND_NAMES[KIND_NONE]`` is "none", so indexing with any code works.
KIND_NAMES = ("stable node", "stable focus", "unstable node", "unstable focus", "saddle", "centre/marginal", "none")

_DEFINITIONS = (
    "stable fixed point: a fixed point whose Jacobian eigenvalues all have Re < 0 (stable node or focus); "
    "region: the bounding box of the data (of the draw's fitted trajectories when the model has an "
    "observation_fn), widened by `margin` times its width on each side (not below 0 for non-negative data); "
    "bounded: the Lyapunov run succeeded and every state after the burn-in stayed in the region widened to "
    "`bound_scale` times its width; chaos: largest exponent > lyapunov_tol along a bounded trajectory; "
    "stable limit cycle: no stable fixed point in the region AND |largest exponent| < lyapunov_tol along "
    "a bounded trajectory."
)


class FixedPoints(NamedTuple):
    """Equilibria found by :func:`fixed_points` (``N = num_starts`` slots, ``D = state``).

    Attributes
    ----------
    points : (N, D) the equilibria; NaN in empty slots. Valid slots come first, sorted by ``points[:, 0]``.
    valid : (N,) bool, True where a slot holds a distinct converged equilibrium.
    eigenvalues : (N, D) complex eigenvalues of the Jacobian, sorted by decreasing real part; NaN if empty.
    kind : (N,) int32 code indexing :data:`KIND_NAMES` (-1, "none", if empty).
    residual : (N,) ``max |f(y*)|`` at the point the search stopped (before deduplication).
    """

    points: jax.Array
    valid: jax.Array
    eigenvalues: jax.Array
    kind: jax.Array
    residual: jax.Array


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


# ----------------------------------------------------------------------------- fixed points
def _classify(lam, eig_tol):
    """Kind code from eigenvalues ``lam`` (D,) complex."""
    re, im = jnp.real(lam), jnp.imag(lam)
    size = jnp.max(jnp.abs(lam))
    marginal = jnp.any(jnp.abs(re) <= eig_tol * size)
    oscillating = jnp.any(jnp.abs(im) > eig_tol * size)
    stable = jnp.where(oscillating, STABLE_FOCUS, STABLE_NODE)
    unstable = jnp.where(oscillating, UNSTABLE_FOCUS, UNSTABLE_NODE)
    kind = jnp.where(jnp.all(re < 0), stable, jnp.where(jnp.all(re > 0), unstable, SADDLE))
    return jnp.where(marginal, CENTRE, kind).astype(jnp.int32)


def _root_search(fn, y, num_steps):
    """Levenberg-Marquardt with a full Newton step tried first; only steps that lower ``|f|^2`` are taken."""
    dtype = y.dtype
    tiny = jnp.finfo(dtype).tiny
    eye = jnp.eye(y.shape[0], dtype=dtype)

    def sq(f):
        return jnp.where(jnp.all(jnp.isfinite(f)), jnp.sum(f * f), jnp.inf)

    def body(_, carry):
        y, mu = carry
        fy = fn(y)
        jac = jax.jacfwd(fn)(y)
        jac = jnp.where(jnp.isfinite(jac), jac, 0.0)
        newton = y + jnp.linalg.solve(jac, -fy)
        jtj = jac.T @ jac
        d = jnp.diag(jtj)
        damp = mu * (d + jnp.finfo(dtype).eps * jnp.max(d) + tiny)
        lm = y + jnp.linalg.solve(jtj + damp[:, None] * eye, -(jac.T @ fy))
        r0 = sq(fy)
        r_newton = jnp.where(jnp.all(jnp.isfinite(newton)), sq(fn(newton)), jnp.inf)
        r_lm = jnp.where(jnp.all(jnp.isfinite(lm)), sq(fn(lm)), jnp.inf)
        take_newton = r_newton < r0
        take_lm = ~take_newton & (r_lm < r0)
        y = jnp.where(take_newton, newton, jnp.where(take_lm, lm, y))
        mu = jnp.where(take_newton | take_lm, mu / 3.0, mu * 4.0)
        return y, jnp.clip(mu, 1e-12, 1e12)

    y, _ = jax.lax.fori_loop(0, num_steps, body, (y, jnp.asarray(1e-3, dtype)))
    return y


def _fixed_points_impl(field, starts, t, args, tol, eig_tol, dedup_tol, num_steps, reach) -> FixedPoints:
    dtype = starts.dtype
    t = jnp.asarray(t, dtype)

    def fn(y):
        return field(t, y, args)

    ends = jax.vmap(lambda y: _root_search(fn, y, num_steps))(starts)
    f_end = jax.vmap(fn)(ends)
    jac = jax.vmap(jax.jacfwd(fn))(ends)
    finite = jnp.all(jnp.isfinite(ends), axis=1) & jnp.all(jnp.isfinite(f_end), axis=1)
    finite = finite & jnp.all(jnp.isfinite(jac), axis=(1, 2))
    residual = jnp.max(jnp.abs(f_end), axis=1)
    # Converged: |f(y*)| small next to |J| (|y*| + s) (s: size of the search region) AND the next
    # Newton step small next to |y*| + s AND |y*| <= reach * s. Far out a saturated network is nearly
    # flat (|f| > 0, J ~ 0): the search drifts off to huge |y| where relative tests pass; `reach` stops that.
    s = jnp.maximum(jnp.max(jnp.abs(starts)), 1.0)
    jac_norm = jnp.max(jnp.sum(jnp.abs(jac), axis=2), axis=1)
    y_norm = jnp.max(jnp.abs(ends), axis=1)
    step = jax.vmap(jnp.linalg.solve)(
        jnp.where(finite[:, None, None], jac, 0.0), jnp.where(finite[:, None], f_end, 0.0)
    )
    step_norm = jnp.where(jnp.all(jnp.isfinite(step), axis=1), jnp.max(jnp.abs(step), axis=1), jnp.inf)
    small = (residual <= tol * jac_norm * (y_norm + s)) & (step_norm <= tol * (y_norm + s))
    converged = finite & ((residual == 0) | small) & (y_norm <= reach * s)

    dist = jnp.max(jnp.abs(ends[:, None, :] - ends[None, :, :]), axis=2)
    same = dist <= dedup_tol * (y_norm[:, None] + s)
    n = starts.shape[0]
    earlier = jnp.arange(n)[None, :] < jnp.arange(n)[:, None]
    duplicate = jnp.any(same & earlier & converged[None, :], axis=1)
    valid = converged & ~duplicate

    safe_jac = jnp.where(valid[:, None, None], jac, 0.0)
    lam = jnp.linalg.eigvals(safe_jac)
    order = jnp.argsort(-jnp.real(lam), axis=1)
    lam = jnp.take_along_axis(lam, order, axis=1)
    kind = jnp.where(valid, jax.vmap(lambda v: _classify(v, eig_tol))(lam), KIND_NONE).astype(jnp.int32)

    key = jnp.where(valid, ends[:, 0], jnp.inf)
    perm = jnp.argsort(key, stable=True)
    nan = jnp.asarray(jnp.nan, dtype)
    points = jnp.where(valid[:, None], ends, nan)[perm]
    lam = jnp.where(valid[:, None], lam, jnp.asarray(jnp.nan, lam.dtype))[perm]
    return FixedPoints(points, valid[perm], lam, kind[perm], residual[perm])


_fixed_points_jit = eqx.filter_jit(_fixed_points_impl)


def _default_tol(dtype) -> float:
    return float(jnp.sqrt(jnp.finfo(dtype).eps))


def fixed_points(
    field,
    *,
    key=None,
    starts=None,
    num_starts: int = 32,
    bounds=None,
    t=None,
    args=None,
    tol: float | None = None,
    eig_tol: float = 1e-3,
    dedup_tol: float = 1e-3,
    num_steps: int = 100,
    reach: float = 100.0,
) -> FixedPoints:
    """Find and classify the equilibria ``f(t, y*) = 0`` of a vector field.

    A damped Newton search (a full Newton step when it lowers ``|f|``, else a
    Levenberg-Marquardt step) runs from every start for ``num_steps``
    iterations; converged end points closer than ``dedup_tol`` are merged.
    Output sizes are fixed (one slot per start), so the function vmaps over
    fields (posterior draws) and compiles once per field structure.

    Parameters
    ----------
    field : callable ``(t, y, args) -> dy/dt``, e.g. an equinox module.
    key : PRNGKey
        Draws ``num_starts`` starts uniformly in ``bounds``; unused if ``starts`` is given.
    starts : (num_starts, state) array, optional
        Explicit starting points (then ``key``, ``num_starts`` and ``bounds`` are ignored).
    num_starts : int
        Number of random starts (default 32). Raise it for fields with many equilibria.
    bounds : pair ``(low, high)`` of scalars or (state,) arrays
        Box for the random starts, e.g. the range of the data. Equilibria
        outside it are found too when Newton runs there.
    t : scalar, optional
        Time at which a non-autonomous field is frozen (default 0).
    args : passed to the field.
    tol : float
        Convergence test: ``max|f(y*)| <= tol * |J|_inf * (|y*|_inf + s)`` and the
        Newton step ``max|J^-1 f(y*)| <= tol * (|y*|_inf + s)``, with ``s`` the largest
        start coordinate (at least 1); or ``f(y*) = 0`` exactly. Default ``sqrt(eps)``
        of the dtype (3.5e-4 in float32).
    eig_tol : float
        An eigenvalue with ``|Re| <= eig_tol * max|eigenvalue|`` counts as
        marginal (the point is a ``centre/marginal``); one with ``|Im|`` above
        that makes a node a focus. Default 1e-3.
    dedup_tol : float
        Points closer than ``dedup_tol * (|y*|_inf + s)`` (max-norm) are one point.
    num_steps : int
        Newton iterations per start (default 100).
    reach : float
        Points with ``|y*|_inf > reach * s`` are dropped (default 100): far from
        the data a saturating network is nearly flat and the search drifts
        off to where relative tests cannot tell a root from a plateau.

    Returns
    -------
    FixedPoints
        ``points`` (N, D), ``valid`` (N,), ``eigenvalues`` (N, D) complex, ``kind`` (N,),
        ``residual`` (N,); ``KIND_NAMES[kind]`` names a kind.

    Examples
    --------
    >>> import jax.numpy as jnp, jax.random as jr
    >>> fp = fixed_points(lambda t, y, a: jnp.stack([y[1], -y[0] - y[1]]), key=jr.key(0),
    ...                   num_starts=4, bounds=(-jnp.ones(2), jnp.ones(2)))
    >>> int(fp.valid.sum()), KIND_NAMES[int(fp.kind[0])]
    (1, 'stable focus')
    """
    if starts is None:
        if key is None or bounds is None:
            raise ConfigError(
                "fixed_points(...) needs starting points: pass `key=` and `bounds=(low, high)` "
                f"(got key={'None' if key is None else 'set'}, bounds={bounds!r}), or `starts=` (num_starts, state)."
            )
        if not (isinstance(num_starts, int) and num_starts >= 1):
            raise ConfigError(f"`num_starts` must be a positive int; got {num_starts!r}.")
        if hasattr(field, "state_dim"):
            dim = field_state_dim(field)
        elif max(np.size(bounds[0]), np.size(bounds[1])) > 1:
            dim = max(np.size(bounds[0]), np.size(bounds[1]))
        else:
            raise ConfigError(
                "fixed_points(...): the field has no `state_dim`, so give `bounds` as two (state,) arrays "
                f"(got {bounds!r}) or pass `starts=` (num_starts, state)."
            )
        dtype = jnp.zeros(()).dtype
        low = jnp.broadcast_to(jnp.asarray(bounds[0], dtype), (dim,))
        high = jnp.broadcast_to(jnp.asarray(bounds[1], dtype), (dim,))
        u = jr.uniform(key, (num_starts, dim), dtype)
        starts = low[None, :] + u * (high - low)[None, :]
    starts = jnp.asarray(starts)
    if starts.ndim != 2:
        raise ConfigError(f"`starts` must have shape (num_starts, state); got {starts.shape}.")
    if not jnp.issubdtype(starts.dtype, jnp.floating):
        starts = starts.astype(jnp.zeros(()).dtype)
    if not (isinstance(num_steps, int) and num_steps >= 1):
        raise ConfigError(f"`num_steps` must be a positive int; got {num_steps!r}.")
    tol = _default_tol(starts.dtype) if tol is None else float(tol)
    t = jnp.asarray(0.0 if t is None else t, starts.dtype)
    return _fixed_points_jit(field, starts, t, args, tol, float(eig_tol), float(dedup_tol), num_steps, float(reach))


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


# ----------------------------------------------------------------------------- posterior
def _widen(low, high, margin, nonneg):
    width = high - low
    width = np.where(width > 0, width, np.maximum(np.abs(high), 1.0))
    lo = low - margin * width
    lo = np.where(nonneg, np.maximum(lo, 0.0), lo)
    return lo, high + margin * width


def _check_sites(spec, samples):
    def build():
        return sample_field(spec.field, spec.weight_prior, spec.param_priors)

    tr = handlers.trace(handlers.seed(build, 0)).get_trace()
    missing = [name for name, site in tr.items() if site["type"] == "sample" and name not in samples]
    if missing:
        raise ConfigError(
            f"posterior_stability(post): `post.samples` lacks the field site(s) {missing}; the posterior must "
            "come from the same make_model(...) as `post.model`."
        )
    if SITE_Y0 not in samples:
        raise ConfigError(f"posterior_stability(post): `post.samples` has no '{SITE_Y0}' site; got {sorted(samples)}.")


class _Settings(NamedTuple):
    """Everything static in a posterior stability run (the compiled program's cache key)."""

    tol: float
    eig_tol: float
    dedup_tol: float
    num_steps: int
    reach: float
    margin: float
    bound_scale: float
    num_burn: int
    num_avg: int
    lyapunov_tol: float
    lyapunov: bool
    region_from_data: bool
    config: SolverConfig


def _draw_stability(spec, st: _Settings, params, y0, u, md, dt, data_lo, data_hi, nonneg):
    """One draw: rebuild the field, find and classify its equilibria, estimate its largest exponent."""
    build = handlers.substitute(lambda: sample_field(spec.field, spec.weight_prior, spec.param_priors), data=params)
    field = handlers.seed(build, 0)()
    if st.region_from_data:
        lo, hi = data_lo, data_hi
    else:
        ys = solve_series(field, y0, md.ts, md.t0, args=spec.args, config=st.config).ys
        low, high = jnp.min(ys, axis=(0, 1)), jnp.max(ys, axis=(0, 1))
        width = jnp.where(high > low, high - low, jnp.maximum(jnp.abs(high), 1.0))
        lo = jnp.where(nonneg & (low >= 0), jnp.maximum(low - st.margin * width, 0.0), low - st.margin * width)
        hi = high + st.margin * width
    starts = lo[None, :] + u * (hi - lo)[None, :]
    fp = _fixed_points_impl(field, starts, 0.0, spec.args, st.tol, st.eig_tol, st.dedup_tol, st.num_steps, st.reach)
    inside = fp.valid & jnp.all((fp.points >= lo[None, :]) & (fp.points <= hi[None, :]), axis=1)
    stable = (fp.kind == STABLE_NODE) | (fp.kind == STABLE_FOCUS)
    out = {
        "fixed_point": fp.points,
        "fixed_point_valid": fp.valid,
        "fixed_point_kind": fp.kind,
        "fixed_point_in_region": inside,
        "eigenvalue_real": jnp.real(fp.eigenvalues),
        "eigenvalue_imag": jnp.imag(fp.eigenvalues),
        "num_fixed_points": jnp.sum(fp.valid.astype(jnp.int32)),
        "has_stable_fixed_point": jnp.any(fp.valid & stable),
        "stable_fixed_point_in_region": jnp.any(inside & stable),
        "region_low": lo,
        "region_high": hi,
    }
    if st.lyapunov:
        res = _lyapunov_impl(field, y0[0], md.t0[0], dt, spec.args, st.config, st.num_burn, st.num_avg)
        half = 0.5 * st.bound_scale * (hi - lo)
        within = jnp.all(jnp.abs(res.ys - (0.5 * (hi + lo))[None, :]) <= half[None, :])
        bounded = (res.status == Status.OK) & within
        out.update(
            lyapunov_exponent=res.exponent,
            lyapunov_running=res.running,
            lyapunov_status=res.status,
            bounded=bounded,
            chaotic=bounded & (res.exponent > st.lyapunov_tol),
            limit_cycle=bounded & (jnp.abs(res.exponent) < st.lyapunov_tol) & ~out["stable_fixed_point_in_region"],
        )
    return out


def _stability_fn(model, st: _Settings):
    """Compiled and vectorised over draws; cached on the model function per settings."""
    cache = model.__dict__.setdefault("_bayesode_stability", {})
    if st not in cache:
        spec = model.spec

        def many(params, y0s, u, md, dt, data_lo, data_hi, nonneg, batch_size):
            def one(p):
                return _draw_stability(spec, st, p[0], p[1], u, md, dt, data_lo, data_hi, nonneg)

            # Pad to whole batches: lax.map would compile a second, remainder-sized copy of `one`.
            n = y0s.shape[0]
            size = min(batch_size, n)
            padded = -(-n // size) * size
            pad = jax.tree.map(lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], padded - n, axis=0)]), (params, y0s))
            out = jax.lax.map(one, pad, batch_size=size)
            return jax.tree.map(lambda x: x[:n], out)

        cache[st] = eqx.filter_jit(many)
    return cache[st]


def _select_draws(total: int, num_draws) -> np.ndarray:
    if num_draws is None:
        return np.arange(total)
    if not (isinstance(num_draws, int) and num_draws >= 1):
        raise ConfigError(f"`num_draws` must be a positive int or None; got {num_draws!r}.")
    return np.unique(np.linspace(0, total - 1, min(num_draws, total)).round().astype(int))


def posterior_stability(
    post,
    *,
    key,
    num_draws: int | None = None,
    lyapunov: bool = True,
    num_starts: int = 32,
    margin: float = 0.25,
    t_burn: float | None = None,
    t_total: float | None = None,
    dt_renorm: float | None = None,
    lyapunov_tol: float | None = None,
    bound_scale: float = 3.0,
    tol: float | None = None,
    eig_tol: float = 1e-3,
    dedup_tol: float = 1e-3,
    num_steps: int = 100,
    reach: float = 100.0,
    config: SolverConfig | None = None,
    batch_size: int = 64,
) -> xr.Dataset:
    """Fixed points, their stability and the largest Lyapunov exponent for every posterior draw.

    For each draw the field is rebuilt from its parameters (``sample_field``
    under ``handlers.substitute``); equilibria are searched from
    ``num_starts`` points spread uniformly over the region (the same relative
    positions for every draw); the largest Lyapunov exponent is estimated
    along the draw's own trajectory from its ``y0`` of series 0, at that
    series' start. Times are model times (relative to ``post.data.t_ref``);
    the fixed-point search freezes the field at model time 0.

    Definitions (also in ``ds.attrs["definitions"]``):

    - *region*: the bounding box of the data (of the draw's fitted
      trajectories when the model has an ``observation_fn``), widened by
      ``margin`` times its width on each side, and not below 0 for a state
      whose data are non-negative;
    - *stable fixed point*: all Jacobian eigenvalues have ``Re < 0``;
    - *bounded*: the Lyapunov run succeeded and every state after the
      burn-in lies in the region widened to ``bound_scale`` times its width;
    - *chaos*: largest exponent ``> lyapunov_tol`` along a bounded trajectory;
    - *stable limit cycle*: no stable fixed point in the region and
      ``|largest exponent| < lyapunov_tol`` along a bounded trajectory. This
      is a finite-time heuristic: centres (Lotka-Volterra's closed orbits)
      and very slowly decaying spirals pass it too; read it with the
      fixed-point kinds.

    Parameters
    ----------
    post : bayesode.Posterior with its model.
    key : PRNGKey or int seed for the starting points.
    num_draws : int, optional
        Draws per chain, evenly spaced (default all).
    lyapunov : bool
        Also estimate exponents (the costly part); without them there are no
        chaos or limit-cycle results.
    num_starts : int
        Fixed-point searches per draw (default 32).
    margin, bound_scale : float
        See the definitions above (defaults 0.25 and 3).
    t_burn, t_total, dt_renorm : float, optional
        As in :func:`lyapunov_exponent`, in the data's time units. Defaults,
        with ``span`` the data's time span: ``span``, ``10 * span`` and ``span / 20``.
    lyapunov_tol : float, optional
        Exponents within ``±lyapunov_tol`` count as zero. Default
        ``5 / (t_total - t_burn)``: a finite-time estimate of a zero exponent
        is of order ``log(transient growth) / averaging time``.
    tol, eig_tol, dedup_tol, num_steps, reach : as in :func:`fixed_points`.
    config : SolverConfig, optional
        Solver for trajectories (default the model's).
    batch_size : int
        Draws vectorised together (memory against speed; default 64).

    Returns
    -------
    xarray.Dataset
        Dims ``chain, draw`` plus ``fixed_point`` (trimmed to the most found
        in any draw), ``state``, ``eigen``, ``window``. Variables
        ``fixed_point``, ``fixed_point_valid``, ``fixed_point_kind`` (codes of
        ``attrs["kind_names"]``, -1 empty), ``fixed_point_in_region``,
        ``eigenvalue_real``, ``eigenvalue_imag``, ``num_fixed_points``,
        ``has_stable_fixed_point``, ``stable_fixed_point_in_region``,
        ``region_low``, ``region_high``; with ``lyapunov=True`` also
        ``lyapunov_exponent``, ``lyapunov_running``, ``lyapunov_status``,
        ``bounded``, ``chaotic``, ``limit_cycle``. ``attrs`` hold
        ``p_stable_fixed_point``, ``p_stable_fixed_point_in_region`` and (with
        exponents) ``p_chaos``, ``p_limit_cycle``, ``p_lyapunov_failed``, plus
        the settings used and the definitions.
    """
    if getattr(post, "model", None) is None:
        raise ConfigError(
            "posterior_stability(post): `post.model` is None; load the posterior with "
            "Posterior.load(path, model=make_model(...)) so the field can be rebuilt."
        )
    spec = post.model.spec
    data = post.data
    md = data.model_data()
    dtype = md.ts.dtype
    _check_sites(spec, post.samples)
    for name, value in (("num_starts", num_starts), ("batch_size", batch_size), ("num_steps", num_steps)):
        if not (isinstance(value, int) and value >= 1):
            raise ConfigError(f"`{name}` must be a positive int; got {value!r}.")
    if not (margin >= 0 and bound_scale >= 1):
        raise ConfigError(
            f"need `margin` >= 0 and `bound_scale` >= 1; got margin={margin!r}, bound_scale={bound_scale!r}."
        )
    config = spec.solver if config is None else config
    if not isinstance(config, SolverConfig):
        raise ConfigError(f"`config` must be a bayesode.SolverConfig; got {type(config).__name__}.")

    num_chains, total = post.num_chains, post.num_draws
    draw_idx = _select_draws(total, num_draws)
    n = num_chains * draw_idx.size

    def flat(v):
        v = np.asarray(v)[:, draw_idx]
        v = v.reshape((n,) + v.shape[2:])
        return jnp.asarray(v.astype(dtype) if np.issubdtype(v.dtype, np.floating) else v)

    params = {k: flat(v) for k, v in post.samples.items()}
    y0s = jnp.broadcast_to(params.pop(SITE_Y0), (n, data.num_series, spec.state_dim))

    num_burn = num_avg = 0
    lyap_tol = 0.0
    if not lyapunov:
        dt_renorm = 1.0  # unused
    else:
        span = float(np.max(data.ts) - data.t0[0])
        if span <= 0 and None in (t_burn, t_total):
            raise ConfigError("the data span no time; give `t_burn`, `t_total` and `dt_renorm` explicitly.")
        t_burn = span if t_burn is None else t_burn
        t_total = 10.0 * span if t_total is None else t_total
        dt_renorm = span / 20.0 if dt_renorm is None else dt_renorm
        num_burn, num_avg = _window_counts(t_burn, t_total, dt_renorm)
        lyap_tol = 5.0 / (num_avg * dt_renorm) if lyapunov_tol is None else float(lyapunov_tol)

    from_data = spec.observation_fn is None
    low = np.nanmin(data.ys, axis=(0, 1))
    nonneg = bool(from_data and np.all(low >= 0))
    if from_data:
        lo, hi = _widen(low, np.nanmax(data.ys, axis=(0, 1)), margin, low >= 0)
    else:
        lo = hi = np.zeros(spec.state_dim)
        nonneg = bool(np.all(low >= 0))
    tol = _default_tol(dtype) if tol is None else float(tol)
    st = _Settings(
        tol,
        float(eig_tol),
        float(dedup_tol),
        num_steps,
        float(reach),
        float(margin),
        float(bound_scale),
        num_burn,
        num_avg,
        lyap_tol,
        bool(lyapunov),
        from_data,
        config,
    )
    fn = _stability_fn(post.model, st)
    from ..checks import as_key

    u = jr.uniform(as_key(key), (num_starts, spec.state_dim), dtype)
    out = fn(
        params,
        y0s,
        u,
        md,
        jnp.asarray(dt_renorm, dtype),
        jnp.asarray(lo, dtype),
        jnp.asarray(hi, dtype),
        nonneg,
        batch_size,
    )
    out = {k: np.asarray(v).reshape((num_chains, draw_idx.size) + v.shape[1:]) for k, v in jax.device_get(out).items()}
    attrs = dict(
        lyapunov_tol=lyap_tol,
        t_burn=num_burn * float(dt_renorm),
        t_total=(num_burn + num_avg) * float(dt_renorm),
        dt_renorm=float(dt_renorm),
        margin=float(margin),
        bound_scale=float(bound_scale),
        num_starts=num_starts,
        tol=tol,
        eig_tol=float(eig_tol),
    )
    return _to_dataset(out, data, spec, draw_idx, num_burn, attrs)


def _to_dataset(out, data, spec, draw_idx, num_burn, attrs) -> xr.Dataset:
    keep = max(int(out["num_fixed_points"].max()), 1)
    state_names = list(data.state_names) if spec.observation_fn is None else [f"x{i}" for i in range(spec.state_dim)]
    dims = {
        "fixed_point": ("chain", "draw", "fixed_point_id", "state"),
        "fixed_point_valid": ("chain", "draw", "fixed_point_id"),
        "fixed_point_kind": ("chain", "draw", "fixed_point_id"),
        "fixed_point_in_region": ("chain", "draw", "fixed_point_id"),
        "eigenvalue_real": ("chain", "draw", "fixed_point_id", "eigen"),
        "eigenvalue_imag": ("chain", "draw", "fixed_point_id", "eigen"),
        "region_low": ("chain", "draw", "state"),
        "region_high": ("chain", "draw", "state"),
        "lyapunov_running": ("chain", "draw", "window"),
    }
    variables = {}
    for name, value in out.items():
        d = dims.get(name, ("chain", "draw"))
        if "fixed_point_id" in d:
            value = value[:, :, :keep]
        variables[name] = (d, value)
    coords = {
        "chain": np.arange(out["num_fixed_points"].shape[0]),
        "draw": draw_idx,
        "fixed_point_id": np.arange(keep),
        "state": state_names,
        "eigen": np.arange(spec.state_dim),
    }
    if "lyapunov_running" in out:
        dt = attrs["dt_renorm"]
        coords["window"] = dt * np.arange(num_burn + 1, num_burn + out["lyapunov_running"].shape[-1] + 1)
    ds = xr.Dataset(variables, coords=coords)
    ds["fixed_point_kind"].attrs["flag_values"] = [*range(len(KIND_NAMES) - 1), KIND_NONE]
    ds["fixed_point_kind"].attrs["flag_meanings"] = " ".join(k.replace(" ", "_") for k in KIND_NAMES)
    probs = {
        "p_stable_fixed_point": float(np.mean(out["has_stable_fixed_point"])),
        "p_stable_fixed_point_in_region": float(np.mean(out["stable_fixed_point_in_region"])),
    }
    if "lyapunov_exponent" in out:
        probs.update(
            p_chaos=float(np.mean(out["chaotic"])),
            p_limit_cycle=float(np.mean(out["limit_cycle"])),
            p_lyapunov_failed=float(np.mean(out["lyapunov_status"] != Status.OK)),
        )
    ds.attrs.update(probs)
    ds.attrs.update(attrs)
    ds.attrs["kind_names"] = list(KIND_NAMES)
    ds.attrs["definitions"] = _DEFINITIONS
    return ds
