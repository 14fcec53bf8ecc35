"""Equilibria of a vector field: found by trust-region Newton from many starts, deduplicated, classified.

:func:`fixed_points` finds equilibria ``f(t, y*) = 0`` from many starting
points (``optimistix.root_find`` with ``optimistix.Dogleg``), removes duplicates, and
classifies each by the eigenvalues of the Jacobian there. Pure JAX and vmappable.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optimistix as optx

from ..errors import ConfigError
from ..fields.basic import field_state_dim

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


def _root_search(fn, y, num_steps, tol):
    """A root of ``fn`` near ``y`` by ``optimistix.Dogleg``: its last iterate.

    Dogleg is Newton's method inside a trust region on ``|f|^2``: a full Newton step where it
    helps, a shorter one where it would not lower ``|f|``. Plain ``optimistix.Newton`` (no trust
    region) diverges from many starts of saturating MLP fields and missed equilibria that the
    damped search finds. It stops when both the step and ``f`` are below ``tol / 100`` (relative
    and absolute), well inside the acceptance test of :func:`_fixed_points_impl`, or after
    ``num_steps`` iterations; an end point that is no root fails that test and is dropped.
    """
    solver = optx.Dogleg(rtol=tol / 100, atol=tol / 100)
    sol = optx.root_find(lambda z, _: fn(z), solver, y, max_steps=num_steps, throw=False)
    return sol.value


def _fixed_points_impl(field, starts, t, args, tol, eig_tol, dedup_tol, num_steps, reach) -> FixedPoints:
    dtype = starts.dtype
    t = jnp.asarray(t, dtype)

    def fn(y):
        return field(t, y, args)

    ends = jax.vmap(lambda y: _root_search(fn, y, num_steps, tol))(starts)
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

    Trust-region Newton (``optimistix.Dogleg``) runs from every start for at most
    ``num_steps`` iterations; converged end points closer than ``dedup_tol`` are merged.
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
        Most iterations per start (default 100); a start stops earlier once its
        step and residual are below ``tol / 100``.
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
