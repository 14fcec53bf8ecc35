"""``run_nuts``: NUTS in compiled chunks, over chains on this process's devices.

The loop runs in chunks because it must write the sampler state to disk after each (a run
resumes bit-identically after a kill, and Ctrl-C keeps what was drawn), and count failed solves
per chain and iteration (``sample_stats.solver_failures``) by replaying diverged iterations.
Chains run in parallel across devices without ``pmap``: reverse mode through ``diffeqsolve``
with the default checkpointed adjoint fails under ``pmap``/``shard_map`` (equinox closure
conversion sees manually-sharded avals) and automatic SPMD sharding of a batched NUTS
while-loop was 40x slower here, so ``chain_method="parallel"`` gives each device its own thread
(XLA releases the GIL): on CPU the device runs its chains one at a time, unbatched; on an
accelerator one vectorised group.
"""

from __future__ import annotations

import functools
import os
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np

from ..checks import as_key, positive_int, seed_of
from ..datasets.data import as_data
from ..errors import ConfigError
from ..model.assembly import check_model
from ..results.posterior import Posterior, package_versions
from ..solving.failures import FailureLog
from . import programs
from .chains import CHAIN_METHODS, device_groups, resolve_chain_method
from .checkpoint import load_checkpoint, save_checkpoint
from .console import Progress, StopOnSigint
from .preflight import (
    chain_subset,
    check_inits,
    init_error,
    retry_nonfinite_starts,
    unconstrain_inits,
    warn_if_forward_mode_is_costly,
)
from .programs import get_sampler, latent_sites, unconstrained_size
from .stuck import move_stuck_chains, stuck_check_iteration

# Report solver failures from every iteration in the first pass (no replay): slower (a host
# callback per gradient); the reference the replay is tested against.
_REPORT_EVERY_ITERATION = False
# Runs at least this long (warmup + samples) sample with a program free of callbacks when JAX's
# persistent compilation cache is on, so a re-run finds it there; the reporting program for
# replays then compiles in the background while sampling goes on (see run_nuts). Shorter runs use
# one program for both (one compile, never cached): a second compile would not be hidden.
SEPARATE_REPORTING_MIN_ITERATIONS = 1000
_STAT_NAMES = ("diverging", "accept_prob", "num_steps", "potential_energy", "energy", "step_size")


def run_nuts(
    model,
    ts,
    ys=None,
    *,
    key,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    num_chains: int = 4,
    chain_method: str = "auto",
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 10,
    dense_mass: bool = False,
    init_params: dict | None = None,
    inverse_mass_matrix=None,
    chunk_size: int = 100,
    checkpoint_dir: str | None = None,
    progress: bool = True,
    chains=None,
    restart_stuck_chains: bool = True,
    **data_kwargs,
) -> Posterior:
    """Sample the posterior with NUTS.

    Parameters
    ----------
    model : from :func:`make_model`
    ts, ys : times and observations, or a :class:`Data` as ``ts`` (then no ``ys``).
    key : PRNG key or int seed (keyword-only). Same key, same settings, same
        machine: bit-identical draws.
    num_warmup, num_samples, num_chains : int
    chain_method : {"auto", "vectorized", "parallel", "sequential"}
        ``auto`` (default): on CPU, ``parallel`` with several devices (one per
        core: :func:`use_cpu_cores`) and ``sequential`` with one; on a GPU/TPU,
        ``vectorized`` (``parallel`` with several); ``vectorized`` with
        ``series_devices``. ``settings["chain_method"]`` records the choice.
        ``vectorized``: all chains in one ``vmap`` on one device (the choice
        on an accelerator). ``parallel``: chains spread over the JAX devices,
        one thread per device; on CPU each device runs its chains one at a
        time, unbatched (a batch waits for its longest tree and solve), the
        fastest choice there; on other devices one vectorised group each.
        ``sequential``: one chain at a time, unbatched. On CPU ``parallel``
        and ``sequential`` give the same draws, whatever the device count.
    target_accept_prob, max_tree_depth, dense_mass : NUTS settings.
    init_params : dict of site -> array with a leading (chain,) axis, optional
        Constrained starting values per chain (e.g. draws from an SVI fit).
        Default: each chain starts at the best (highest log density) of 16
        candidates, the median of 15 prior draws and 15 prior draws, drawn
        with the chain's own key, so chains start apart but not in a poor
        local mode by bad luck.
    inverse_mass_matrix : array, optional
        Starting (inverse) mass matrix over the flattened unconstrained
        parameters (sites in sorted order): (P,) for diagonal, (P, P) with
        ``dense_mass=True``. ``run_svi_nuts`` passes the SVI covariance.
    chunk_size : int
        Iterations per compiled call; also the checkpoint interval.
    checkpoint_dir : str, optional
        Write the sampler state here after every chunk; calling ``run_nuts``
        again with the same folder and settings resumes where it stopped.
    progress : bool
        Progress bar on stderr.
    chains : sequence of int, optional
        Run only these of the ``num_chains`` chains (increasing indices), e.g.
        one share per machine. Chain ``c`` gets the same key, start and draws
        whichever share it is in, so the shares' posteriors, concatenated along
        ``chain``, are the whole run (with ``chain_method="sequential"`` on
        every side, bit-identical on the same machine; vectorised chains share
        floating-point rounding with their group). :func:`run_nuts_distributed`
        does the split and the gathering in a ``jax.distributed`` job.
    restart_stuck_chains : bool
        At the first chunk boundary past half the warmup, a chain whose
        log density over the last chunk sits far below the best chain's
        (its median potential more than ``max(10, 10 x`` the best chain's
        spread``)`` nats higher: a poor local mode, which adaptation would
        tune the mass matrix to) restarts from a good chain's state with its
        own random key, and adapts on. Reported in
        ``settings["restarted_chains"]`` and by :meth:`Posterior.diagnostics`.
        Needs warmup in more than one chunk and the whole run's chains (not a
        ``chains`` share). ``False``: chains stay where they went (e.g. to
        look for modes with R-hat).

    Returns
    -------
    Posterior
    """
    check_model(model)
    data = as_data(ts, ys, **data_kwargs)
    model.spec.check_data(data)
    num_warmup = positive_int("num_warmup", num_warmup, allow_zero=True)
    num_samples = positive_int("num_samples", num_samples)
    num_chains = positive_int("num_chains", num_chains)
    chunk_size = positive_int("chunk_size", chunk_size)
    max_tree_depth = positive_int("max_tree_depth", max_tree_depth)
    if chain_method not in CHAIN_METHODS:
        raise ConfigError(f"`chain_method`={chain_method!r} is unknown; choose one of {CHAIN_METHODS}.")
    if chain_method == "parallel" and getattr(model.spec, "series_devices", None) is not None:
        raise ConfigError(
            "the model splits its series across devices (`series_devices`), so its chains cannot also take one "
            "device each: use chain_method='vectorized' (all chains on the devices that share the series)."
        )
    if not (0 < target_accept_prob < 1):
        raise ConfigError(f"`target_accept_prob` must be in (0, 1); got {target_accept_prob!r}.")
    chains = chain_subset(chains, num_chains)
    chain_method = resolve_chain_method(chain_method, model, len(chains))
    seed = seed_of(key)
    key = as_key(key)
    k_init, k_chains = jax.random.split(key)
    chain_keys = jax.random.split(k_chains, num_chains)
    md = data.model_data()
    settings = dict(
        num_warmup=num_warmup,
        target_accept_prob=float(target_accept_prob),
        max_tree_depth=max_tree_depth,
        dense_mass=bool(dense_mass),
        forward_mode=model.spec.solver.forward_mode,
    )
    if checkpoint_dir is not None and os.path.exists(checkpoint_dir) and not os.path.isdir(checkpoint_dir):
        raise ConfigError(f"`checkpoint_dir`={checkpoint_dir!r} is a file; give a folder (it is created if missing).")
    # Argument checks that need the model's sites run on shapes only (eval_shape), before compiling.
    if init_params is not None:
        check_inits(model, md, init_params, num_chains)
    if inverse_mass_matrix is not None:
        inverse_mass_matrix = jnp.asarray(inverse_mass_matrix)
        size = unconstrained_size(model, md)
        want = (size, size) if dense_mass else (size,)
        if inverse_mass_matrix.shape != want:
            raise ConfigError(
                f"`inverse_mass_matrix` has shape {inverse_mass_matrix.shape}; expected {want} "
                f"({'dense' if dense_mass else 'diagonal'} over the {size} unconstrained parameters)."
            )
    warn_if_forward_mode_is_costly(model, md)
    t_start = time.time()
    sampler = get_sampler(model, md, settings)
    if init_params is None:
        z0 = sampler.start(jax.random.split(k_init, num_chains), md, 0.0)
    else:
        z0 = unconstrain_inits(model, md, init_params)
    states, bad = retry_nonfinite_starts(
        z0,
        lambda z: sampler.init(z, chain_keys, md, inverse_mass_matrix),
        lambda attempt: sampler.start(jax.random.split(jax.random.fold_in(k_init, attempt), num_chains), md, 2.0),
    )
    if bad.any():
        raise init_error(model, data, key, RuntimeError("all 20 attempts per chain gave a non-finite log density"))
    t_compile_init = time.time() - t_start
    # Starts and initial states are made for all chains (each row as in a whole run), then this share kept.
    states = jax.tree.map(lambda x: np.asarray(x)[chains], states)

    total = num_warmup + num_samples
    meta = dict(settings, num_samples=num_samples, num_chains=num_chains, chain_method=chain_method, seed=seed,
                chunk_size=chunk_size, restart_stuck_chains=bool(restart_stuck_chains), iteration=0)
    if len(chains) < num_chains:
        meta["chains"] = chains.tolist()
    draws, stats, log, done, restarted = [], {}, FailureLog(), 0, []
    # Restarts need every chain of the run: a share (``chains``) must give the same chains whatever the split.
    check_at = stuck_check_iteration(num_warmup, chunk_size) if restart_stuck_chains else None
    if len(chains) < num_chains:
        check_at = None
    if checkpoint_dir is not None:
        loaded = load_checkpoint(checkpoint_dir, meta, states)
        if loaded is not None:
            done, states, saved_draws, stats, log, restarted = loaded
            draws = [saved_draws]  # one chunk holding every leaf drawn so far
            if progress:
                print(f"resuming from iteration {done} of {total} in {checkpoint_dir}", file=sys.stderr)
    groups = device_groups(len(chains), chain_method)
    bar = Progress(total, num_warmup, progress)
    interrupted = False
    z_leaves_def = jax.tree.structure(z0)

    length = min(chunk_size, total)  # iterations per compiled chunk call

    def group_inputs(dev, idx, st):
        """The chunk program's inputs for chains ``idx`` on ``dev`` (all but ``stop``)."""
        # States live on the host between chunks: NumPy indexing costs microseconds, an eager
        # JAX gather per state leaf about 2 ms (most of a small model's per-fit time in SBC).
        sub = jax.tree.map(lambda x: np.asarray(x)[idx], st)
        md_dev = md
        if len(groups) > 1:
            sub, md_dev = jax.device_put(sub, dev), jax.device_put(md, dev)
        return sub, jnp.asarray(idx), md_dev, jnp.full(length, _REPORT_EVERY_ITERATION)

    def run_group(dev, idx, n, st):
        """One chunk of ``n`` iterations for chains ``idx`` on ``dev``, without failure reports.

        One program of ``length`` iterations serves every chunk: a shorter last chunk runs its
        first ``n`` iterations and passes the state through the rest (a second program of ``n``
        iterations would cost a second compile, 7-11 s on 2 cores, for the same work).

        Returns the chunk's output and ``replay``: None, or (if any chain diverged: a failed
        solve always gives a divergence, its log density is -inf) a function that runs those
        iterations again with reports on, from the states they started from (kept by the
        chunk), to count the failures. The replay program is the fast one itself (reports off
        there) or the fast one plus the callback under a ``cond``: from the same inputs it
        retraces the same trajectories and only adds the counts (both tested against
        reporting from every iteration). A chain with more than
        ``REPLAY_SLOTS`` divergences in the chunk has the chunk replayed up to its last
        diverging iteration instead. Each chain stays in its own row of the batch: XLA's CPU
        code gives a row the same floats whatever the other rows hold, but not the same floats
        in another row (measured), so moving a chain would change its path.
        """
        sub, ids, md_dev, report = group_inputs(dev, idx, st)
        out_states, (z, chunk_stats), (kept, count) = sampler.chunk(length, fast_reports)(sub, ids, md_dev, report, n)
        out = jax.device_get((out_states, z, chunk_stats))
        out = (out[0], jax.tree.map(lambda v: v[:, :n], out[1]), jax.tree.map(lambda v: v[:, :n], out[2]))
        count = np.asarray(count)
        if not count.any() or _REPORT_EVERY_ITERATION:
            return out, None

        def replay():
            # The separate reporting program is compiled once, for the first group's device
            # (the same CPU code on every host device); otherwise this group's program, here.
            put = functools.partial(jax.device_put, device=groups[0][0]) if separate else (lambda x: x)
            fn = sampler.chunk(length, reports=True)
            sub_on, ids_on, md_on = put(sub), put(ids), put(md_dev)
            if count.max() > programs.REPLAY_SLOTS:
                again = np.asarray(out[2][0]).any(axis=0)  # (n,) iterations where any chain diverged
                fn(sub_on, ids_on, md_on, put(jnp.asarray(np.pad(again, (0, length - n)))), int(np.flatnonzero(again)[-1]) + 1)
            else:
                kept_host = jax.device_get(kept)
                first_only = put(jnp.asarray(np.arange(length) == 0))
                rows = np.arange(len(idx))
                for j in range(int(count.max())):
                    # Chains with fewer divergences repeat their last one: reports of the
                    # same point are de-duplicated, so this only costs the evaluation.
                    pick = np.clip(np.minimum(j, count - 1), 0, None)
                    fn(put(jax.tree.map(lambda b: b[rows, pick], kept_host)), ids_on, md_on, first_only, 1)

        return out, replay

    # The fast pass has no callback (cacheable) in long runs with the persistent cache on; there,
    # replays of diverged iterations wait for the reporting program, which compiles in the
    # background (sampling goes on meanwhile; vectorised chains use about one core). Otherwise
    # the fast pass is the reporting program with reports off, and replays run at once.
    separate = bool(jax.config.jax_compilation_cache_dir) and total >= SEPARATE_REPORTING_MIN_ITERATIONS
    fast_reports = _REPORT_EVERY_ITERATION or not separate
    reporting = {}  # chains in a group -> Future of the compile (on the first group's device)
    pending = []  # (that key, replay) not yet run
    compiler = ThreadPoolExecutor(1)

    def run_replays(wait: bool):
        nonlocal pending
        later = []
        for k, replay in pending:
            if not separate or wait or reporting[k].done():
                if separate:
                    reporting[k].result()  # a compile error surfaces here
                replay()
            else:
                later.append((k, replay))
        if len(later) < len(pending):
            jax.effects_barrier()
        pending = later

    stop_requested = StopOnSigint()
    with log, stop_requested:
        try:
            while done < total and not stop_requested:
                n = min(chunk_size, total - done)
                if len(groups) == 1:
                    results = [run_group(*groups[0], n, states)]
                elif chain_method == "parallel":
                    if (length, fast_reports) not in sampler.traced:
                        # Tracing runs the model, and NumPyro's effect handlers live on one global
                        # stack: two threads tracing at once mix their sites ("all sites must have
                        # unique names"). So the program is traced here, in this thread, for each
                        # group's inputs (the trace is cached by shapes: once); the threads then
                        # only lower and compile it for their own device, at the same time.
                        for dev, idx in groups:
                            sampler.chunk(length, fast_reports).trace(*group_inputs(dev, idx, states), n)
                        sampler.traced.add((length, fast_reports))
                    # One thread per device; a device's groups (on CPU: one chain each) run in turn.
                    by_device = {}
                    for i, (dev, _) in enumerate(groups):
                        by_device.setdefault(dev, []).append(i)
                    results = [None] * len(groups)

                    def run_device(group_ids):
                        for i in group_ids:
                            results[i] = run_group(*groups[i], n, states)

                    with ThreadPoolExecutor(len(by_device)) as ex:
                        list(ex.map(run_device, by_device.values()))  # list(): a thread's error surfaces here
                else:  # sequential: one chain per group, on one device
                    results = [run_group(dev, idx, n, states) for dev, idx in groups]
                for (dev, idx), (_, replay) in zip(groups, results):
                    if replay is None:
                        continue
                    k = len(idx)
                    if separate and k not in reporting:
                        fn = sampler.chunk(length, reports=True)
                        inputs = jax.device_put(group_inputs(dev, idx, states), groups[0][0])
                        fn.trace(*inputs, 0)  # here: tracing runs the model (see above)
                        reporting[k] = compiler.submit(fn, *inputs, 0)  # compiles; runs no iteration
                    pending.append((k, replay))
                # A checkpoint holds the failure log: it must include every replay up to there.
                run_replays(wait=checkpoint_dir is not None)
                results = [out for out, _ in results]
                cat = lambda *xs: np.concatenate(xs, axis=0)  # noqa: E731
                states = jax.tree.map(cat, *[r[0] for r in results])
                z = jax.tree.map(cat, *[r[1] for r in results])
                chunk_stats = [cat(*[r[2][j] for r in results]) for j in range(len(_STAT_NAMES))]
                draws.append(jax.tree.leaves(z))
                for name, v in zip(_STAT_NAMES, chunk_stats):
                    stats[name] = v if name not in stats else np.concatenate([stats[name], v], axis=1)
                done += n
                if done == check_at:
                    window = stats["potential_energy"][:, max(0, done - max(n, 50)) : done]
                    states, moved = move_stuck_chains(states, window, done)
                    restarted += moved
                jax.effects_barrier()
                fails = log.counts(stats["diverging"], stats["num_steps"], 0)["total"].sum()
                bar.update(done, stats["diverging"][:, num_warmup:].sum(), chunk_stats[5][:, -1], fails)
                if checkpoint_dir is not None:
                    save_checkpoint(checkpoint_dir, dict(meta, iteration=done, restarted_chains=restarted), states,
                                     _merge(draws), stats, log)  # fmt: skip
                    draws = [_merge(draws)]
        except KeyboardInterrupt:  # a second Ctrl-C, or one outside the main thread: the chunk in progress is lost
            interrupted = True
        finally:
            compiler.shutdown(wait=False)
        run_replays(wait=True)  # the chunks done are counted, interrupted or not
    if interrupted or (stop_requested and done < total):
        interrupted = True
        if progress:
            print(file=sys.stderr)
        warnings.warn(
            f"interrupted at iteration {done} of {total}; returning the {max(done - num_warmup, 0)} draws made"
            + (f"; run again with checkpoint_dir={checkpoint_dir!r} to resume" if checkpoint_dir else ""),
            stacklevel=2,
        )
    wall = time.time() - t_start
    n_kept = done - num_warmup
    if n_kept <= 0:
        raise KeyboardInterrupt("interrupted during warmup; no draws to return")
    z_all = jax.tree.unflatten(z_leaves_def, [leaf[:, num_warmup:done] for leaf in _merge(draws)])
    flat_z = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), z_all)
    constrained = jax.device_get(sampler.constrain(flat_z, md))
    samples = {
        k: np.asarray(v).reshape((len(chains), n_kept) + np.shape(v)[1:])
        for k, v in constrained.items()
        if k in latent_sites(model, md)
    }
    sstats = {k: np.asarray(v[:, num_warmup:done]) for k, v in stats.items()}
    sstats["tree_depth"] = np.floor(np.log2(np.maximum(sstats["num_steps"], 1))).astype(np.int64) + 1
    sstats["tree_depth_saturated"] = sstats["num_steps"] >= 2**max_tree_depth - 1
    fail = log.counts(stats["diverging"][:, num_warmup:done], stats["num_steps"][:, num_warmup:done], num_warmup)
    sstats["solver_failures"] = fail.pop("total")
    for cause, v in fail.items():
        sstats[f"solver_failures_{cause}"] = v
    warm = log.counts(stats["diverging"][:, :num_warmup], stats["num_steps"][:, :num_warmup], 0)
    settings_out = dict(
        meta,
        iteration=done,
        method="nuts",
        interrupted=interrupted,
        wall_time_s=wall,
        init_and_compile_s=t_compile_init,
        warmup_solver_failures={c: int(v.sum()) for c, v in warm.items()},
        warmup_divergences=int(stats["diverging"][:, :num_warmup].sum()),
        restarted_chains=restarted,
        versions=package_versions(),
    )
    return Posterior(samples=samples, sample_stats=sstats, data=data, model=model, settings=settings_out)



def _merge(draws):
    if len(draws) == 1:
        return draws[0]
    return [np.concatenate(parts, axis=1) for parts in zip(*draws)]

