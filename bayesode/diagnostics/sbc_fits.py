"""Fitting the simulated data sets of simulation-based calibration (:func:`bayesode.sbc`).

Two ways, with the same starting points, keys and settings: one
:func:`bayesode.run_nuts` call per data set (:func:`fit_one`), or one
vectorised NUTS run per batch of data sets, each chain with its own data
(:func:`fit_replications`). :func:`replication_diagnostics` summarises the
convergence of one fit over the tested quantities.
"""

from __future__ import annotations

import time

import arviz as az
import jax
import numpy as np

from ..caching import ProgramCache
from ..checks import positive_int
from ..errors import ConfigError
from ..infer import get_sampler, retry_nonfinite_starts, run_nuts

# run_nuts settings fit_replications takes; any other sends sbc to one run_nuts call per data set.
VECTORISED_SETTINGS = {"target_accept_prob", "max_tree_depth", "dense_mass", "progress"}
# Data sets per vectorised fit: wider batches vectorise more, but every NUTS iteration of
# a batch costs its longest trajectory.
BATCH_REPLICATIONS = 32
# quiet_model's wrappers, one per model: the same wrapper each time, so the compiled sampler
# (keyed by the wrapper in the inference wing's cache) is reused.
QUIET_MODELS = ProgramCache()


def quiet_model(model):
    """``model`` without the per-evaluation host report of failed solves (same log density).

    The report is one host callback per gradient, which costs more than the
    solve for small models; SBC fits hundreds of data sets and gates on
    divergences, R-hat and ESS instead. Kept in ``QUIET_MODELS`` so the compiled sampler is reused.
    """

    def build():
        def quiet(data, **kwargs):
            kwargs.pop("chain_id", None)
            kwargs.pop("iteration", None)
            return model(data, **kwargs)

        quiet.spec = model.spec
        return quiet

    return QUIET_MODELS.get(model, "quiet", (), build)


def fit_one(model, data, key, with_trajectory, **nuts):
    """One replication through ``run_nuts``: ``(draws, sample_stats, seconds)``."""
    start = time.time()
    post = run_nuts(model, data, key=key, **nuts)
    draws = dict(post.samples)
    if with_trajectory:
        draws["trajectory"] = post.fitted()["trajectory"]
    return draws, post.sample_stats, time.time() - start


def fit_replications(model, datas, fit_keys, *, num_warmup, num_samples, num_chains, target_accept_prob=0.8,
                      max_tree_depth=10, dense_mass=False, progress=False):  # fmt: skip
    """Fit every data set in ``datas`` with NUTS, ``BATCH_REPLICATIONS`` of them per vectorised run.

    Each replication's chains start where ``run_nuts(key=fit_keys[r])`` would start them,
    with the same chain keys and settings. Yields ``(draws, sample_stats, seconds)`` per
    data set: constrained sites and ``trajectory`` with (chain, draw) leading axes;
    ``diverging`` and ``energy`` (chain, draw); the batch's wall time per data set.
    """
    del progress  # one compiled call per batch: nothing to report in between
    settings = dict(
        num_warmup=num_warmup,
        target_accept_prob=float(target_accept_prob),
        max_tree_depth=positive_int("max_tree_depth", max_tree_depth),
        dense_mass=bool(dense_mass),
        forward_mode=model.spec.solver.forward_mode,
    )
    sampler = get_sampler(model, datas[0].model_data(), settings)
    start, init, run, postprocess = sampler.per_chain_data(num_warmup + num_samples)
    for b in range(0, len(datas), BATCH_REPLICATIONS):
        t0 = time.time()
        batch = range(b, min(b + BATCH_REPLICATIONS, len(datas)))
        # chain c of replication r is row r * num_chains + c, with r's data
        md = jax.tree.map(lambda *xs: np.repeat(np.stack(xs), num_chains, axis=0), *[datas[r].model_data() for r in batch])
        k_init, k_chains = zip(*[jax.random.split(fit_keys[r]) for r in batch])  # as run_nuts splits its key

        def start_keys(attempt):
            return np.concatenate(
                [jax.random.split(k if attempt == 0 else jax.random.fold_in(k, attempt), num_chains) for k in k_init]
            )

        chain_keys = np.concatenate([jax.random.split(k, num_chains) for k in k_chains])
        states, bad = retry_nonfinite_starts(
            start(start_keys(0), md, 0.0), lambda z: init(z, chain_keys, md), lambda a: start(start_keys(a), md, 2.0)  # noqa: B023
        )
        if bad.any():
            raise ConfigError(
                f"SBC: no starting point with a finite log density for replication(s) "
                f"{sorted({b + int(i) // num_chains for i in np.flatnonzero(bad)})} after 20 attempts."
            )
        zs, (diverging, _, energy) = run(states, md)
        kept = jax.tree.map(lambda x: x[:, num_warmup:], zs)
        draws = jax.device_get(postprocess(kept, md))
        diverging, energy = np.asarray(diverging)[:, num_warmup:], np.asarray(energy)[:, num_warmup:]
        seconds = (time.time() - t0) / len(batch)
        for i in range(len(batch)):
            rows = slice(i * num_chains, (i + 1) * num_chains)
            yield (
                {k: np.asarray(v[rows]) for k, v in draws.items()},
                {"diverging": diverging[rows], "energy": energy[rows]},
                seconds,
            )


def replication_diagnostics(num_chains: int, st: dict, chains: dict, count_failures: bool) -> dict:
    """Convergence of one replication's fit over the tested quantities."""
    rhat, bulk, tail = [], [], []
    for x in chains.values():
        x = np.asarray(x, dtype=np.float64)
        if num_chains >= 2:
            rhat.append(float(az.rhat(x)))
        bulk.append(float(az.ess(x, method="bulk")))
        tail.append(float(az.ess(x, method="tail")))
    return {
        "rhat_max": float(np.nanmax(rhat)) if rhat else float("nan"),
        "ess_bulk_min": float(np.nanmin(bulk)),
        "ess_tail_min": float(np.nanmin(tail)),
        "divergences": int(np.sum(st["diverging"])),
        "ebfmi_min": float(np.min(az.bfmi(st["energy"]))),
        "solver_failures": int(np.sum(st["solver_failures"])) if count_failures else None,
    }
