"""Stability of posterior dynamics: equilibria, their linearisation and Lyapunov exponents for every draw.

:func:`posterior_stability` runs :func:`~bayesode.diagnostics.fixed_points.fixed_points`
and :func:`~bayesode.diagnostics.lyapunov.lyapunov_exponent` for every draw of a
:class:`~bayesode.Posterior` and returns an ``xarray.Dataset`` with dims
``(chain, draw, ...)`` plus posterior probabilities of stability, chaos and
a limit cycle.

:func:`bayesode.plots.plot_stability` draws the result.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import xarray as xr
from numpyro import handlers

from ..caching import ProgramCache
from ..errors import ConfigError
from ..model.priors import SITE_Y0, sample_field
from ..solving import SolverConfig, Status, solve_series
from .fixed_points import STABLE_FOCUS, STABLE_NODE, _default_tol, _fixed_points_impl
from .lyapunov import _lyapunov_impl, _window_counts
from .stability_dataset import stability_dataset

# The compiled stability programs, per (model, settings).
STABILITY_PROGRAMS = ProgramCache()


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
    # A point within the root search's tolerance of the box is in it: a root on the edge (the origin of a
    # positive system, with the box clipped at 0) ends a rounding error either side of it.
    slack = st.tol * jnp.maximum(hi - lo, 1.0)
    inside = fp.valid & jnp.all((fp.points >= (lo - slack)[None, :]) & (fp.points <= (hi + slack)[None, :]), axis=1)
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
    """Compiled and vectorised over draws; kept in ``STABILITY_PROGRAMS`` per model and settings."""

    def build():
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

        return eqx.filter_jit(many)

    return STABILITY_PROGRAMS.get(model, "stability", st, build)


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
    return stability_dataset(out, data, spec, draw_idx, num_burn, attrs)
