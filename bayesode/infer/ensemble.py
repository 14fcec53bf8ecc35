"""The full-weight posterior: members started from diverse optimised points, sampled locally by
NUTS, combined by stacking.

A posterior over every weight of a neural vector field has many modes (hidden-unit
permutations and sign flips, and different functions that fit the same data); no sampler
crosses them. :func:`run_ensemble` therefore

1. fits ``num_members`` MAP points from prior draws, all in one vmapped program
   (:func:`map_points`; each a local optimum of its own basin, as in deep-ensemble initialised
   sampling, Sommer et al., ICML 2024); a fit whose log density at its end is not finite is
   dropped and the reason recorded;
2. samples every kept member by NUTS, all members as chains of ONE :func:`run_nuts` call, so
   one program compiles once and serves every chain (``restart_stuck_chains=False``: a member
   that sits in a poor mode is kept and weighted, never replaced);
3. weights the members by stacking (:mod:`bayesode.infer.stacking`) on PSIS-LOO or, for
   forecasting, approximate leave-future-out predictive densities;
4. returns the members and a pooled :class:`Posterior`: a weighted resample of the members'
   draws.

How members, chains and weights map onto the InferenceData of ``Ensemble.pooled``
(``pooled.to_arviz()``):

- ``posterior``: the pooled draws, ``(chain, draw)`` = ``(pooled_chains, draws)``; each pooled
  draw is one member draw chosen with probability ``weight[member] / draws_in_member``
  (systematic resampling, then shuffled into chains). So ``az.summary`` means and quantiles,
  ``az.plot_ppc`` and ``Posterior.predict`` are those of the stacked posterior. Its R-hat and
  ESS describe the resample, not convergence: judge convergence within members, in function
  space (:func:`bayesode.diagnostics.function_space_report`).
- ``sample_stats``: the NUTS statistics of each chosen draw, plus ``member``, ``member_chain``
  and ``member_draw`` (chain, draw): where each pooled draw came from.
- ``log_likelihood``: of the pooled draws, so ``az.loo`` estimates the stacked posterior's
  predictive accuracy (slightly optimistic: the weights were chosen on the same LOO values)
  and ``az.compare`` sets it against other fits.
- group ``stacking`` (dim ``member``): ``stacking_weight``, ``elpd`` (the member's own
  summed PSIS-LOO or LFO log predictive density), ``pareto_k_max``, ``num_chains``;
  ``settings["ensemble"]`` (attrs ``bayesode_settings``) holds the same plus every start,
  kept or dropped, with its reason.

``Ensemble.members`` is the plain :class:`Posterior` of every member chain (``chain`` =
member-major: member ``m`` owns chains ``member_of_chain == m``).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass

import jax
import numpy as np
import xarray as xr

from ..checks import as_key, positive_int, seed_of
from ..datasets import as_data
from ..errors import ConfigError, InitializationError
from ..model import check_model
from ..results import Posterior
from .map_fits import _why_failed, map_points
from .nuts import run_nuts
from .stacking import pareto_k_threshold, pointwise_lfo, pointwise_loo, stacking_weights

__all__ = ["VALIDATIONS", "Ensemble", "pool_members", "run_ensemble"]

VALIDATIONS = ("loo", "lfo")


@dataclass(eq=False)
class Ensemble:
    """Members sampled locally and their stacking weights.

    Attributes
    ----------
    members : Posterior of every kept member's chains (chain axis member-major).
    member_of_chain : (chain,) member index of each chain of ``members``.
    weights : (member,) stacking weights (sum to one).
    lpd : (point, member) held-out log predictive density used for the weights.
    pareto_k : (point, member) Pareto shape of each of those estimates.
    starts : one dict per attempted start: ``seed``, ``final_loss``, ``kept`` and, if dropped,
        ``reason``; kept starts carry their ``member`` index.
    validation : "loo" or "lfo" (then ``lfo_start`` is the first predicted time).
    pooled : the weighted resample as a Posterior (see the module docstring).
    """

    members: Posterior
    member_of_chain: np.ndarray
    weights: np.ndarray
    lpd: np.ndarray
    pareto_k: np.ndarray
    starts: list
    validation: str
    lfo_start: float | None
    pooled: Posterior

    @property
    def num_members(self) -> int:
        return int(self.weights.size)

    def to_arviz(self):
        """The pooled posterior's InferenceData (with its ``stacking`` group)."""
        return self.pooled.to_arviz()


def pool_members(members: Posterior, member_of_chain, weights, *, key, num_chains: int = 4) -> Posterior:
    """A weighted resample of ``members``' draws: the stacked posterior as one Posterior.

    Each draw of member ``m`` carries probability ``weights[m] / (draws of m)``; systematic
    resampling picks as many as ``members`` holds (rounded down to a multiple of ``num_chains``),
    shuffled and cut into ``num_chains`` chains. ``sample_stats`` gains ``member``, ``member_chain`` and
    ``member_draw``: the source of each pooled draw.
    """
    member_of_chain = np.asarray(member_of_chain)
    weights = np.asarray(weights, dtype=np.float64)
    num_chains = positive_int("num_chains", num_chains)
    C, D = members.num_chains, members.num_draws
    if C * D < num_chains:
        raise ConfigError(f"`num_chains`={num_chains} is more than the {C * D} member draws.")
    total = (C * D // num_chains) * num_chains  # the largest multiple of num_chains that fits
    chains_in = np.bincount(member_of_chain, minlength=weights.size)
    p = np.repeat(weights[member_of_chain] / (chains_in[member_of_chain] * D), D)  # (chain * draw,) member-major
    p = p / p.sum()
    rng = np.random.default_rng(np.asarray(as_key(key)).tolist())
    # Systematic resampling: the count of each draw is within one of total * p.
    positions = (rng.random() + np.arange(total)) / total
    picks = np.minimum(np.searchsorted(np.cumsum(p), positions), p.size - 1)
    picks = rng.permutation(picks)
    chain_idx, draw_idx = np.divmod(picks, D)
    shape = (num_chains, total // num_chains)

    def take(v):
        v = np.asarray(v)
        return v[chain_idx, draw_idx].reshape(shape + v.shape[2:])

    samples = {k: take(v) for k, v in members.samples.items()}
    stats = {k: take(v) for k, v in members.sample_stats.items()}
    stats["member"] = member_of_chain[chain_idx].reshape(shape)
    stats["member_chain"] = chain_idx.reshape(shape)
    stats["member_draw"] = draw_idx.reshape(shape)
    settings = dict(members.settings, num_chains=num_chains, chain_method="pooled")
    return Posterior(samples=samples, sample_stats=stats, data=members.data, model=members.model,
                     settings=settings, losses=members.losses)  # fmt: skip


def _member_lpd(idata, member_of_chain, validation, lfo_start):
    """(point, member) held-out log predictive densities, their Pareto k, and the points' times."""
    ll = np.asarray(idata.log_likelihood["obs"].values)  # (chain, draw, obs)
    times = np.asarray(idata.log_likelihood["obs_time"].values, dtype=np.float64)
    cols, ks = [], []
    for m in range(int(member_of_chain.max()) + 1):
        mine = ll[member_of_chain == m]
        if validation == "loo":
            lpd, k = pointwise_loo(mine)
        else:
            lpd, k, _ = pointwise_lfo(mine, times, start=lfo_start)
        cols.append(lpd)
        ks.append(k)
    return np.stack(cols, axis=1), np.stack(ks, axis=1)


def _default_lfo_start(data) -> float:
    """The first time of the last third of the observed times (raw units)."""
    times = np.unique(data.ts[data.mask.any(axis=-1)])
    return float(times[int(np.ceil(2 * times.size / 3))] if times.size >= 3 else times[-1])


def run_ensemble(
    model,
    ts,
    ys=None,
    *,
    key,
    num_members: int = 8,
    chains_per_member: int = 1,
    map_steps: int = 2000,
    learning_rate: float = 0.01,
    num_warmup: int = 300,
    num_samples: int = 300,
    max_tree_depth: int = 6,
    validation: str = "loo",
    lfo_start: float | None = None,
    pooled_chains: int = 4,
    progress: bool = True,
    **nuts_kwargs,
) -> Ensemble:
    """The full-weight posterior of ``model``: members from diverse optimised points, sampled by
    NUTS, stacked. See the module docstring for the method and the InferenceData layout.

    Parameters
    ----------
    model : from :func:`make_model` (every weight random, e.g. ``bayesode.models.neural``).
    ts, ys : times and observations, or a :class:`Data` as ``ts``.
    key : PRNG key or int seed (keyword-only).
    num_members : MAP fits started (each from its own prior draws); failed ones are dropped.
    chains_per_member : NUTS chains per member (>= 2 gives a between-chain R-hat inside each
        member; with 1, split R-hat of the one chain is the within-member check).
    map_steps, learning_rate : each member's MAP fit (:func:`map_points`); its end is the start.
    num_warmup, num_samples, max_tree_depth : NUTS settings per chain (``run_nuts``).
    validation : "loo" (PSIS-LOO) or "lfo" (approximate leave-future-out: the points at or
        after ``lfo_start`` are each predicted from the earlier ones; use it when the question
        is forecasting).
    lfo_start : first predicted time (raw units); default the start of the last third of the
        observed times.
    pooled_chains : chains of the pooled resample.
    nuts_kwargs : more ``run_nuts`` options (``chain_method``, ``target_accept_prob``, ...).

    Returns
    -------
    Ensemble

    Raises
    ------
    InitializationError : every member's fit failed (the reasons are listed).
    """
    check_model(model)
    data = as_data(ts, ys, **{k: nuts_kwargs.pop(k) for k in ("state_names", "series_names", "t0") if k in nuts_kwargs})
    model.spec.check_data(data)
    num_members = positive_int("num_members", num_members)
    chains_per_member = positive_int("chains_per_member", chains_per_member)
    map_steps = positive_int("map_steps", map_steps)
    if validation not in VALIDATIONS:
        raise ConfigError(f"`validation`={validation!r} is unknown; choose one of {list(VALIDATIONS)}.")
    for name in ("restart_stuck_chains", "init_params", "num_chains"):
        if name in nuts_kwargs:
            raise ConfigError(f"`{name}` is set by run_ensemble (members are never restarted); do not pass it.")
    if validation == "lfo":
        lfo_start = _default_lfo_start(data) if lfo_start is None else float(lfo_start)
    seed = seed_of(key)
    k_fits, k_nuts, k_pool = jax.random.split(as_key(key), 3)
    # Seeds of the members' and the pooled InferenceData (posterior predictive and prior draws).
    k_members_idata, k_pooled_idata = jax.random.split(jax.random.fold_in(k_pool, 1))
    t0 = time.time()

    params, potential, losses = map_points(model, data, key=k_fits, num_points=num_members, num_steps=map_steps,
                                           learning_rate=learning_rate)  # fmt: skip
    starts, kept = [], []
    for i in range(num_members):
        reason = _why_failed(float(potential[i]))
        record = {"start": i, "final_potential": float(potential[i]), "kept": reason is None,
                  "failed_steps": int(np.isnan(losses[i]).sum())}  # fmt: skip
        if reason is None:
            record["member"] = len(kept)
            kept.append(i)
        else:
            record["reason"] = reason
        starts.append(record)
    if not kept:
        reasons = "; ".join(f"start {s['start']}: {s['reason']}" for s in starts)
        raise InitializationError(f"every member's fit failed, so no member can be sampled: {reasons}.")
    map_s = time.time() - t0
    if progress:
        print(f"{num_members} MAP fits in {map_s:.0f} s; {len(kept)} kept", file=sys.stderr, flush=True)
    # Chains of one member all start at its MAP point; their own keys separate them in warmup.
    init_params = {k: np.repeat(v[kept], chains_per_member, axis=0) for k, v in params.items()}
    members = run_nuts(model, data, key=k_nuts, num_warmup=num_warmup, num_samples=num_samples,
                       num_chains=len(kept) * chains_per_member, init_params=init_params,
                       max_tree_depth=max_tree_depth, restart_stuck_chains=False, progress=progress,
                       **nuts_kwargs)  # fmt: skip
    member_of_chain = np.repeat(np.arange(len(kept)), chains_per_member)

    idata = members.to_arviz(key=k_members_idata)
    lpd, pareto_k = _member_lpd(idata, member_of_chain, validation, lfo_start)
    weights = stacking_weights(lpd)
    k_reliable = pareto_k_threshold(chains_per_member * members.num_draws)  # each member's draws
    pooled = pool_members(members, member_of_chain, weights, key=k_pool, num_chains=pooled_chains)
    info = {
        "method": "ensemble",
        "validation": validation,
        "lfo_start": lfo_start,
        "weights": weights.tolist(),
        "elpd": lpd.sum(axis=0).tolist(),
        "pareto_k_max": pareto_k.max(axis=0).tolist(),
        "pareto_k_threshold": k_reliable,
        "points_pareto_k_high": int((pareto_k > k_reliable).sum()),
        "chains_per_member": chains_per_member,
        "member_of_chain": member_of_chain.tolist(),
        "starts": starts,
        "map_steps": map_steps,
        "map_wall_time_s": map_s,
        "nuts_wall_time_s": members.settings["wall_time_s"],
        "nuts_init_and_compile_s": members.settings["init_and_compile_s"],
        # Per member, over all its chains' kept iterations (the pooled draws hold only the chosen ones).
        "member_divergences": _per_member(members.sample_stats["diverging"], member_of_chain, len(kept)),
        "member_solver_failures": {name[len("solver_failures_"):] or "total": _per_member(v, member_of_chain, len(kept))
                                   for name, v in members.sample_stats.items()
                                   if name.startswith("solver_failures")},  # fmt: skip
    }
    members.settings.update(method="ensemble-members", seed=seed, ensemble=info)
    pooled.settings.update(method="ensemble", seed=seed, ensemble=info, wall_time_s=time.time() - t0)
    _attach_stacking_group(pooled, info, member_of_chain, key=k_pooled_idata)
    return Ensemble(members=members, member_of_chain=member_of_chain, weights=weights, lpd=lpd, pareto_k=pareto_k,
                    starts=starts, validation=validation, lfo_start=lfo_start, pooled=pooled)  # fmt: skip


def _per_member(stat, member_of_chain, num_members: int) -> list[int]:
    """``stat`` (chain, draw) summed over each member's chains and draws."""
    stat = np.asarray(stat)
    return [int(stat[member_of_chain == m].sum()) for m in range(num_members)]


def _attach_stacking_group(pooled: Posterior, info: dict, member_of_chain, *, key) -> None:
    """Add the ``stacking`` group (dim ``member``) to the pooled InferenceData (cached on it;
    ``key`` seeds its predictive draws)."""
    idata = pooled.to_arviz(key=key)
    n = len(info["weights"])
    group = xr.Dataset(
        {
            "stacking_weight": ("member", np.asarray(info["weights"])),
            "elpd": ("member", np.asarray(info["elpd"])),
            "pareto_k_max": ("member", np.asarray(info["pareto_k_max"])),
            "num_chains": ("member", np.bincount(member_of_chain, minlength=n)),
        },
        coords={"member": np.arange(n)},
        attrs={"validation": info["validation"], "weights": json.dumps(info["weights"])},
    )
    idata.add_groups({"stacking": group}, warn_on_custom_groups=False)
