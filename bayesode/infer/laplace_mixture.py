"""Every weight Bayesian by a mixture of Laplace approximations at MAP members (Eschenhagen et al. 2021).

:func:`run_laplace_mixture` (the members, their Hessians and draws: :mod:`.laplace_members`):

1. fits ``num_members`` MAP points from prior draws (:func:`bayesode.infer.map_points`, one
   vmapped program); a member whose log density there is not finite is dropped, with the reason;
2. at each member takes the exact Hessian ``H`` of the potential (minus the log joint density
   in NumPyro's unconstrained space, every latent: weights, ``y0``, noise), forward over forward
   mode through a twin of the model whose solves use ``diffrax.ForwardMode`` (the default
   adjoint's custom VJP has no forward mode; central differences of the gradient are far off
   where the curvature is steep);
3. replaces ``H``'s eigenvalues below a *floor* by the floor and draws ``Normal(centre, H_floored^-1)``,
   redrawing any draw where the model fails on the data (zero posterior density there);
4. mixes the members with equal weights (or, ``weighting="stacking"``, by stacking on their own
   held-out densities at the origins below).

**Why a floor.** The MAP points of a neural ODE are not exact optima: the potential is a narrow,
curved valley and Adam stops on its wall, so every member's Hessian has negative and near-zero
eigenvalues. Unfloored, the draws explode through the net; the floor is the precision given to
those directions. It is chosen by leave-future-out over several origins (``origins``): the
members are refitted with the training points after each origin held out (masked: same shapes,
so the programs compile once), every floor in ``floors`` is scored by the mean log predictive
density of the held-out training points, and the floor with the best mean over the origins is
used for the members fitted on all points. Earlier origins forecast further ahead, as a held-out
future asks; one late origin alone picks floors that are too narrow (measured:
docs/decisions.md, 2026-12-06 (late)).

This is not MCMC: the draws are independent, so R-hat and ESS say nothing of convergence; the
function-space report (:func:`bayesode.diagnostics.function_space_report`) says how far the
members differ. The returned :class:`~bayesode.infer.Ensemble`'s ``pooled`` posterior has the same
layout as :func:`bayesode.infer.run_ensemble`'s: ``posterior`` (chain, draw) is a weighted resample
of the members' draws, ``sample_stats`` holds ``member``, ``member_chain``, ``member_draw`` (where
each draw came from), the ``stacking`` group the weights, and ``settings["ensemble"]`` the floor,
the validation table and every start (kept or dropped, its Hessian's negative eigenvalues, its
redrawn draws).

Cost: per fit, the member fits plus one Hessian per member, ``P`` x ``P`` forward-mode solves
batched (``P`` latents); the floor's choice repeats that at every origin. Memory grows with
``num_members * P**2`` batched solves, fine for the small networks this is for (``P`` ~ 50-200).
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np
from scipy.special import logsumexp

from ..checks import as_key, positive_int, positive_number, seed_of
from ..datasets import as_data
from ..errors import ConfigError, InitializationError
from ..model import check_model
from ..results import Posterior
from ..results.predictive import model_draws
from .console import phase
from .ensemble import Ensemble, _attach_stacking_group, pool_members
from .laplace_members import (
    FLOORS,
    MAX_LATENTS,
    REDRAW_ROUNDS,
    _constrained,
    _draws,
    _fit_members,
    _Members,
    _num_latents,
    forward_twin,
    redraw_failed,
)
from .precision import fits_in_precision
from .stacking import stacking_weights

__all__ = ["FLOORS", "ORIGINS", "run_laplace_mixture"]

ORIGINS = (0.6, 0.7, 0.8)  # leave-future-out origins, as fractions of the observation times
MIN_HELD_OUT_TIMES = 2  # an origin must leave at least this many observation times to score
MIN_SCORED_DRAWS = 0.5  # a floor whose draws mostly fail to solve on the data scores -inf
WEIGHTINGS = ("equal", "stacking")


def _log_likelihood(model, md, params: dict, entries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(log_lik (draw, entry), ok (draw,))`` of the draws ``params`` (site -> (draw, ...)) at the
    ``entries`` (series, time, observed); ``ok``: the draw's solve succeeded and every entry's
    log-likelihood is finite (elsewhere the posterior density is zero)."""
    n = next(iter(params.values())).shape[0]
    out = model_draws(model, md, np.zeros((n, 2), np.uint32), params)  # the log-likelihood draws nothing
    ll = np.asarray(out["log_lik"], np.float64)[:, entries]
    return ll, np.all(np.asarray(out["status"]) == 0, axis=1) & np.all(np.isfinite(ll), axis=1)


def _held_out_lpd(model, md, params: dict, held: np.ndarray, num_members: int) -> tuple[float, np.ndarray]:
    """Log predictive densities of the ``held`` entries (series, time, observed) under the draws ``params``
    (site -> (draw, ...), member-major blocks of ``num_members``): the mixture's mean over the entries,
    and each member's own per entry, ``(entry, member)``. Draws whose solve fails are left out; a
    mixture (or member) whose draws mostly fail scores -inf."""
    ll, ok = _log_likelihood(model, md, params, held)
    per_member = np.full((ll.shape[1], num_members), -np.inf)
    for m, (rows, good) in enumerate(zip(np.split(ll, num_members), np.split(ok, num_members))):
        if good.mean() >= MIN_SCORED_DRAWS:
            per_member[:, m] = logsumexp(rows[good], axis=0) - np.log(good.sum())
    if ok.mean() < MIN_SCORED_DRAWS:
        return -np.inf, per_member
    ll = ll[ok]
    return float(np.mean(logsumexp(ll, axis=0) - np.log(ll.shape[0]))), per_member


def _solvable_draws(model, md, members: _Members, floor: float, normals: np.ndarray, rng):
    """Each member's Gaussian restricted to where the model solves on the data and its likelihood is
    finite (elsewhere the posterior density is zero, and NUTS would reject the point too), by rejection
    (:func:`~bayesode.infer.laplace_members.redraw_failed`).

    Returns ``(samples site -> (member, draw, ...), rejected (member,))``: the count of draws replaced.
    Raises where draws still fail after the last round (the Gaussian sits mostly where the model fails)."""

    def failed(samples):
        flat = {k: v.reshape((-1,) + v.shape[2:]) for k, v in samples.items()}
        return ~_log_likelihood(model, md, flat, np.asarray(md.mask))[1].reshape(normals.shape[:2])

    samples, rejected, bad = redraw_failed(lambda z: _constrained(model, md, members, _draws(members, floor, z)),
                                           failed, normals, rng)  # fmt: skip
    if bad.any():
        raise InitializationError(
            f"{int(bad.sum())} of {bad.size} Laplace draws still fail to solve on the data (or give a non-finite "
            f"likelihood) after {REDRAW_ROUNDS} rounds of redrawing ({int(rejected.sum())} replaced in all): the "
            f"Gaussians at floor {floor:g} reach far into where the model fails; pass a larger `floor`.")
    return samples, rejected


def validation_origins(data, origins) -> list[float]:
    """The held-out origins (raw times): for each fraction, the observation time at that fraction of the
    distinct observation times; an origin leaving fewer than ``MIN_HELD_OUT_TIMES`` after it is skipped."""
    times = np.unique(data.ts[data.mask.any(axis=-1)])
    cuts = []
    for fraction in origins:
        cut = float(times[max(int(np.ceil(fraction * times.size)) - 1, 0)])
        if np.sum(times > cut) >= MIN_HELD_OUT_TIMES and cut not in cuts:
            cuts.append(cut)
    return cuts


def held_out_before(data, cut: float):
    """``data`` with every observation after ``cut`` (raw time) made missing: the same shapes."""
    ys = np.where((data.ts > cut)[..., None], np.nan, data.ys)
    return dataclasses.replace(data, ys=ys)


@fits_in_precision
def run_laplace_mixture(
    model,
    ts,
    ys=None,
    *,
    key,
    num_members: int = 8,
    map_steps: int = 2000,
    floor: float | None = None,
    floors=FLOORS,
    origins=ORIGINS,
    draws_per_member: int = 100,
    num_chains: int = 4,
    weighting: str = "equal",
    forward_model=None,
    progress: bool = True,
    precision: str | None = None,
    **data_kwargs,
) -> Ensemble:
    """A posterior over every weight: an equal-weight mixture of Laplace approximations at MAP members.

    Parameters
    ----------
    model : a bayesode model (a preset, or from ``make_model`` with ``forward_model``).
    key : int or PRNG key: the MAP starts, the Gaussian draws and the pooling.
    num_members, map_steps : MAP members and Adam steps each (:func:`bayesode.infer.map_points`).
    floor : the precision floor on the Hessians' eigenvalues; None (default) chooses it from
        ``floors`` by leave-future-out over ``origins`` (fractions of the observation times; see
        the module docstring). Choosing costs ``len(origins)`` more member fits.
    draws_per_member : Gaussian draws per member (the pooled posterior holds the same total, in
        ``num_chains`` chains).
    weighting : ``"equal"`` (default) or ``"stacking"``: members weighted by stacking
        (:func:`bayesode.infer.stacking_weights`) on their own held-out densities at the chosen floor,
        every origin's held-out points together (each origin's members start from the same prior draws
        as the final ones); needs the floor chosen (``floor=None``) and every start kept at every origin.
    forward_model : the model with ``ForwardMode`` solves (default :func:`forward_twin`).
    precision : {"float32", "float64"}, optional; default the model's (see :func:`bayesode.run_nuts`).

    Returns
    -------
    Ensemble : ``members`` (chain = member, its Gaussian draws), equal ``weights`` and ``pooled``,
    the posterior to use; ``pooled.settings["ensemble"]`` holds ``floor``, ``validation``
    (``[floor, mean mlpd, per-origin mlpd]`` rows), ``origins`` (raw times) and ``starts`` (every
    start: kept or dropped with the reason, its potential, its Hessian's negative eigenvalues).
    :func:`bayesode.diagnostics.fit_full_weight` adds the function-space report.
    """
    check_model(model)
    data = as_data(ts, ys, **data_kwargs)
    model.spec.check_data(data)
    num_members = positive_int("num_members", num_members)
    map_steps = positive_int("map_steps", map_steps)
    draws_per_member = positive_int("draws_per_member", draws_per_member)
    num_chains = positive_int("num_chains", num_chains)
    if floor is not None:
        floor = positive_number("floor", floor)
    floors = tuple(positive_number("floors", f) for f in np.atleast_1d(floors).tolist())
    if not floors:
        raise ConfigError("`floors` is empty; give at least one precision floor to choose from.")
    origins = tuple(np.atleast_1d(origins).tolist())
    if not origins or not all(isinstance(o, float) and 0 < o < 1 for o in origins):
        raise ConfigError(f"`origins` must be fractions of the observation times in (0, 1); got {origins!r}.")
    if weighting not in WEIGHTINGS:
        raise ConfigError(f"`weighting`={weighting!r} is unknown; choose one of {list(WEIGHTINGS)}.")
    if weighting == "stacking" and floor is not None:
        raise ConfigError("`weighting='stacking'` weights members on the held-out points the floor is chosen on; "
                          "leave `floor=None`.")  # fmt: skip
    if forward_model is None:
        twin = forward_twin(model)
    else:
        check_model(forward_model)
        if not forward_model.spec.solver.forward_mode:
            raise ConfigError("`forward_model` must solve with SolverConfig(adjoint=diffrax.ForwardMode()); "
                              f"its adjoint is {type(forward_model.spec.solver.adjoint).__name__}.")  # fmt: skip
        twin = forward_model
    seed = seed_of(key)
    k_fit, k_draw, k_pool = jax.random.split(as_key(key), 3)
    rng = np.random.default_rng(np.asarray(k_draw).tolist())
    md = data.model_data()
    num_latents = _num_latents(model, md)
    if num_latents > MAX_LATENTS:
        raise ConfigError(
            f"the model has {num_latents} latent values (weights, y0, noise); the Laplace mixture's exact Hessian "
            f"costs their square in ODE solves per member, and past {MAX_LATENTS} that is out of reach. Use "
            "method='nuts' (NUTS members), a smaller network, or neural-linear (run_neural_linear).")  # fmt: skip
    t0 = time.time()

    normals = None  # (member, draw, P): the same standard normals at every origin and floor
    table, cuts = [], []
    if floor is None:
        cuts = validation_origins(data, origins)
        if not cuts:
            raise ConfigError(
                f"too few observation times to choose the Laplace floor by leave-future-out (each origin must leave "
                f">= {MIN_HELD_OUT_TIMES} times after it); pass `floor=` (e.g. 100).")  # fmt: skip
        table = np.full((len(floors), len(cuts)), -np.inf)
        member_lpd = {f: [] for f in floors}  # floor -> per origin (entry, start) held-out densities
        kept_everywhere = True
        for j, cut in enumerate(cuts):
            with phase(f"Laplace mixture: {num_members} MAP fits without the points after {cut:g} "
                       f"({j + 1} of {len(cuts)} origins)", progress):  # fmt: skip
                early = _fit_members(model, twin, held_out_before(data, cut), k_fit, num_members, map_steps)
            kept_everywhere &= early.num_kept == num_members
            if not early.num_kept:
                continue
            if normals is None:
                normals = rng.standard_normal((num_members, draws_per_member, early.centres.shape[1]))
            held = (data.ts > cut)[..., None] & data.mask
            for i, f in enumerate(floors):
                params = _constrained(model, md, early, _draws(early, f, normals[: early.num_kept]))
                params = {k: v.reshape((-1,) + v.shape[2:]) for k, v in params.items()}
                table[i, j], per_member = _held_out_lpd(model, md, params, held, early.num_kept)
                member_lpd[f].append(per_member)
        mean = table.mean(axis=1)
        if not np.any(np.isfinite(mean)):
            raise InitializationError(
                "no precision floor gave finite held-out log densities at every origin (the members' fits or "
                f"their draws' solves failed); per floor and origin: {np.round(table, 3).tolist()}. Pass `floor=` "
                "to skip the choice, or check the model against the data (bayesode.infer.prior_failure_rate).")
        floor = floors[int(np.argmax(np.where(np.isfinite(mean), mean, -np.inf)))]
    with phase(f"Laplace mixture: {num_members} MAP fits on all the data, their Hessians", progress):
        members_fit = _fit_members(model, twin, data, k_fit, num_members, map_steps)
    if not members_fit.num_kept:
        reasons = "; ".join(f"start {r['start']}: {r['reason']}" for r in members_fit.records)
        raise InitializationError(f"every member's fit failed, so there is no Laplace mixture: {reasons}.")
    if normals is None:
        normals = rng.standard_normal((num_members, draws_per_member, members_fit.centres.shape[1]))
    num_kept = members_fit.num_kept
    samples, rejected = _solvable_draws(model, md, members_fit, floor, normals[:num_kept], rng)
    for record in members_fit.records:
        if record["kept"]:
            record["rejected_draws"] = int(rejected[record["member"]])
    members = Posterior(samples=samples, sample_stats={}, data=data, model=model,
                        settings={"method": "laplace-mixture-members", "seed": seed})  # fmt: skip
    member_of_chain = np.arange(num_kept)
    weights = np.full(num_kept, 1.0 / num_kept)
    weighting_note = "equal"
    if weighting == "stacking":
        if kept_everywhere and num_kept == num_members:
            weights = stacking_weights(np.concatenate(member_lpd[floor], axis=0))
            weighting_note = "stacking on the origins' held-out points"
        else:
            weighting_note = "equal (stacking asked, but a start was dropped at some origin, so members do not match)"
    pooled = pool_members(members, member_of_chain, weights, key=k_pool, num_chains=num_chains)
    info = {
        "method": "laplace-mixture",
        "rejected_draws": int(rejected.sum()),
        "floor": float(floor),
        "floor_chosen": bool(len(cuts)),
        "origins": cuts,
        "validation": [[f, float(np.mean(row)), [float(x) for x in row]] for f, row in zip(floors, table)] if len(cuts) else [],
        "weights": weights.tolist(),
        "weighting": weighting_note,
        "starts": members_fit.records,
        "map_steps": map_steps,
        "draws_per_member": draws_per_member,
        "member_of_chain": member_of_chain.tolist(),
    }
    members.settings["ensemble"] = info
    pooled.settings.update(method="laplace-mixture", seed=seed, ensemble=info, precision=precision,
                           wall_time_s=time.time() - t0)  # fmt: skip
    # The same `stacking` group as the NUTS ensemble's: here equal weights, no per-member elpd.
    group = {"weights": info["weights"], "elpd": [np.nan] * num_kept, "pareto_k_max": [np.nan] * num_kept,
             "validation": "none (a Laplace mixture: equal weights)"}  # fmt: skip
    _attach_stacking_group(pooled, group, member_of_chain, key=jax.random.fold_in(k_pool, 1))
    return Ensemble(members=members, member_of_chain=member_of_chain, weights=weights, lpd=np.zeros((0, num_kept)),
                    pareto_k=np.zeros((0, num_kept)), starts=members_fit.records, validation="laplace-floor",
                    lfo_start=None, pooled=pooled)  # fmt: skip
