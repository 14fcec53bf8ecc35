"""``run_nuts``: NUTS in compiled chunks, over chains on this process's devices.

The loop runs in chunks because it must write the sampler state to disk after each (a run resumes
bit-identically after a kill, and Ctrl-C keeps what was drawn), and count failed solves per chain and
iteration (``sample_stats.solver_failures``) by replaying diverged iterations. Chains run in parallel
across devices without ``pmap``: reverse mode through ``diffeqsolve`` with the default checkpointed
adjoint fails under ``pmap``/``shard_map`` (equinox closure conversion sees manually-sharded avals) and
automatic SPMD sharding of a batched NUTS while-loop was 40x slower here, so ``chain_method="parallel"``
gives each device its own thread (XLA releases the GIL): on CPU the device runs its chains one at a
time, unbatched; on an accelerator one vectorised group.
"""

from __future__ import annotations

import os
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from ..checks import as_key, positive_int, seed_of
from ..datasets.data import as_data
from ..errors import ConfigError
from ..model.assembly import check_model
from ..results.posterior import Posterior, package_versions
from ..solving.diffeq import FAILURE_CAUSES
from ..solving.precision import cast_floats, float_dtype
from .chains import CHAIN_METHODS, device_groups, resolve_chain_method
from .checkpoint import load_checkpoint, save_checkpoint
from .chunks import ChunkRunner, NutsRunState, Replays
from .console import Progress, StopOnSigint, phase
from .fit_failures import (
    FAILURE_SHARE_MAX,
    PRIOR_CHECK_DRAWS,
    WINDOW_MIN,
    check_on_failure,
    handle,
    library_checks_stop_the_fit,
    prior_message,
    stopped_in_chunk,
    window_message,
)
from .precision import fits_in_precision
from .preflight import (
    chain_subset,
    check_inits,
    init_error,
    prior_failure_rate,
    retry_nonfinite_starts,
    unconstrain_inits,
    warn_if_forward_mode_is_costly,
)
from .programs import NUM_START_CANDIDATES, get_sampler, unconstrained_size
from .stuck import describe, move_stuck_chains, resolve_policy, stuck_check_iteration, stuck_records


@fits_in_precision
def run_nuts(
    model,
    ts,
    ys=None,
    *,
    key,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    num_chains: int = 4,
    thinning: int = 1,
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
    stuck_chains: str = "restart",
    restart_stuck_chains: bool | None = None,
    on_failure: str = "stop",
    precision: str | None = None,
    **data_kwargs,
) -> Posterior:
    """Sample the posterior with NUTS.

    Parameters
    ----------
    model : from :func:`make_model`, a preset, or :func:`numpyro_model` (your own NumPyro function)
    ts, ys : times and observations, or a :class:`Data` as ``ts`` (then no ``ys``).
    key : PRNG key or int seed (keyword-only). Same key, same settings, same
        machine: bit-identical draws.
    num_warmup, num_samples, num_chains : int
    thinning : int
        Keep every ``thinning``-th draw after warmup: ``num_samples // thinning`` per chain,
        counted back from the last (NumPyro's ``MCMC(thinning=...)``), with their sample
        stats; the chains themselves are unchanged. Only kept draws are held in memory and
        checkpoints. ``settings["thinning"]`` records it.
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
    stuck_chains : {"restart", "report", "drop"}
        What to do with a chain stuck in a poor local mode. At the first chunk
        boundary past half the warmup, a chain whose log density over the last
        chunk sits far below the best chain's (its median potential more than
        ``max(10, 10 x`` the best chain's spread``)`` nats higher: a mode that
        adaptation would tune the mass matrix to) is stuck. ``"restart"``
        (default): it restarts from a good chain's state with its own random
        key, and adapts on (``settings["restarted_chains"]``, and
        :meth:`Posterior.diagnostics`). ``"report"``: it stays where it went
        (e.g. to look for modes); ``"drop"``: it stays, runs to the end, and
        its draws are left out of the result (``settings["dropped_chains"]``;
        the other chains' draws are those of ``"report"``). Every policy
        records ``settings["stuck_chains"]`` and the chains found
        (``settings["stuck_chains_found"]``: chain, iteration, median
        potential, best chain's) and prints a line when ``progress`` is on.
        Needs warmup in more than one chunk and the whole run's chains (not a
        ``chains`` share); otherwise no chain is checked.
    restart_stuck_chains : bool, optional
        The older name: ``True`` is ``stuck_chains="restart"``, ``False`` is
        ``stuck_chains="report"`` (the same draws as before: no chain moved).
    on_failure : {"stop", "continue"}
        What to do when the fit mostly fails (see :mod:`bayesode.infer.fit_failures`): more
        than half of the prior draws fail to solve (checked before sampling, on the start's
        candidates; not with ``init_params``), more than half of the iterations of a window of
        at least 50 (warmup or sampling, chains pooled) diverge or fail to solve, or more than
        half of the kept draws diverged. ``"stop"`` (default) raises :class:`FitFailedError`
        naming the cause (``dt_min``, ``max_steps``, ``nonfinite``, ``blow_up``) and the likely
        fixes; ``"continue"`` prints that message, finishes, and the result carries it:
        ``settings["fit_failures"]``, first in ``diagnostics()["warnings"]``, and in the saved
        file.
    precision : {"float32", "float64"}, optional
        The floating-point precision of the whole fit; default None: the
        model's (``model.spec.precision``, per model kind for the presets).
        The fit runs inside ``jax.enable_x64(...)`` (the process-wide setting
        is unchanged), data, starts and mass matrix are cast to it, and
        ``settings["precision"]`` records it.

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
    thinning = positive_int("thinning", thinning)
    if thinning > num_samples:
        raise ConfigError(f"`thinning`={thinning} keeps no draw of num_samples={num_samples}; give at most num_samples.")
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
    policy = resolve_policy(stuck_chains, restart_stuck_chains)
    on_failure = check_on_failure(on_failure)
    chains = chain_subset(chains, num_chains)
    chain_method = resolve_chain_method(chain_method, model, len(chains))
    seed = seed_of(key)
    key = as_key(key)
    k_init, k_chains = jax.random.split(key)
    chain_keys = jax.random.split(k_chains, num_chains)
    md = data.model_data(float_dtype(precision))
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
        init_params = cast_floats(init_params, precision)
        check_inits(model, md, init_params, num_chains)
    if inverse_mass_matrix is not None:
        inverse_mass_matrix = jnp.asarray(inverse_mass_matrix, dtype=float_dtype(precision))
        size = unconstrained_size(model, md)
        want = (size, size) if dense_mass else (size,)
        if inverse_mass_matrix.shape != want:
            raise ConfigError(
                f"`inverse_mass_matrix` has shape {inverse_mass_matrix.shape}; expected {want} "
                f"({'dense' if dense_mass else 'diagonal'} over the {size} unconstrained parameters)."
            )
    warn_if_forward_mode_is_costly(model, md)
    t_start = time.time()
    total = num_warmup + num_samples
    meta = dict(settings, num_samples=num_samples, num_chains=num_chains, chain_method=chain_method, seed=seed,
                chunk_size=chunk_size, stuck_chains=policy, precision=precision, iteration=0)  # fmt: skip
    if len(chains) < num_chains:
        meta["chains"] = chains.tolist()
    if thinning > 1:  # the draws stored depend on it (a checkpoint without it is unthinned)
        meta["thinning"] = thinning
    # Stuck chains are looked for among every chain of the run only: a share (``chains``) must give
    # the same chains whatever the split.
    check_at = stuck_check_iteration(num_warmup, chunk_size) if len(chains) == num_chains else None
    fit_failures: list[str] = []
    with (phase("compiling the sampler (once per model, data shapes and settings)", progress),
          library_checks_stop_the_fit("run_nuts stopped before its first iteration (at the starting points)")):  # fmt: skip
        sampler = get_sampler(model, md, settings)
        if init_params is None:
            z0, failed = sampler.start(jax.random.split(k_init, num_chains), md, 0.0, with_failed=True)
            # The candidates screen the prior; only a mostly-failing one pays for the check that names causes.
            if np.mean(np.asarray(failed)) > FAILURE_SHARE_MAX * (NUM_START_CANDIDATES - 1):
                rate = prior_failure_rate(model, data, key=k_init, num_draws=PRIOR_CHECK_DRAWS)
                if on_failure == "stop" and np.all(np.asarray(failed) == NUM_START_CANDIDATES - 1):
                    # Not one prior draw of any chain solved: the error of a model without a start, at once.
                    raise init_error(model, data, key, RuntimeError("every prior draw failed"), rate=rate)
                handle(prior_message(rate), on_failure, fit_failures, "run_nuts")
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
        kept = dict(num_warmup=num_warmup, num_samples=num_samples, thinning=thinning)
        run = NutsRunState(jax.tree.map(lambda x: np.asarray(x)[chains], states), **kept)
        runner = ChunkRunner.for_run(sampler, md, device_groups(len(chains), chain_method), chain_method,
                                     chunk_size, total)  # fmt: skip
        runner.run(0, run.states)  # compiles the chunk program(s); runs no iteration
    compile_s = time.time() - t_start
    if checkpoint_dir is not None:
        loaded = load_checkpoint(checkpoint_dir, meta, run.states)
        if loaded is not None:
            done, states, saved_draws, stats, log, restarted, found = loaded
            # one chunk holding every leaf drawn so far
            run = NutsRunState(states, **kept, draws=[saved_draws], stats=stats, log=log, done=done,
                               restarted=restarted, stuck_found=found)  # fmt: skip
            if progress:
                print(f"resuming from iteration {done} of {total} in {checkpoint_dir}", file=sys.stderr)
    bar = Progress(total, num_warmup, progress, initial=run.done)
    try:
        interrupted = _sample(run, runner, total=total, chunk_size=chunk_size, num_warmup=num_warmup,
                              check_at=check_at, policy=policy, bar=bar, checkpoint_dir=checkpoint_dir, meta=meta,
                              on_failure=on_failure, fit_failures=fit_failures)  # fmt: skip
    finally:
        bar.close()
    if interrupted:
        warnings.warn(
            f"interrupted at iteration {run.done} of {total}; returning the {max(run.done - num_warmup, 0)} draws made"
            + (f"; run again with checkpoint_dir={checkpoint_dir!r} to resume" if checkpoint_dir else ""),
            stacklevel=3,  # past the precision wrapper, to the caller
        )
    wall = time.time() - t_start
    if run.done - num_warmup <= 0:
        raise KeyboardInterrupt("interrupted during warmup; no draws to return")
    with phase("collecting the draws", progress):
        samples, sstats, warm = run.draws_and_stats(sampler, model, md, jax.tree.structure(z0), max_tree_depth)
    if not fit_failures:  # runs too short for a window: judge the kept draws
        kept = window_message(sstats["diverging"], {c: sstats[f"solver_failures_{c}"] for c in FAILURE_CAUSES.values()},
                              num_warmup, num_warmup, "kept draws")  # fmt: skip
        handle(kept, on_failure, fit_failures, "run_nuts")
    dropped = sorted(r["chain"] for r in run.stuck_found) if policy == "drop" else []
    if dropped:
        keep = np.flatnonzero(~np.isin(chains, dropped))
        samples = {k: v[keep] for k, v in samples.items()}
        sstats = {k: v[keep] for k, v in sstats.items()}
    settings_out = dict(
        meta,
        iteration=run.done,
        thinning=thinning,
        method="nuts",
        interrupted=interrupted,
        wall_time_s=wall,
        init_and_compile_s=t_compile_init,
        compile_s=compile_s,
        warmup_solver_failures={c: int(v.sum()) for c, v in warm.items()},
        warmup_divergences=int(run.stats["diverging"][:, :num_warmup].sum()),
        restarted_chains=run.restarted,
        stuck_chains_found=run.stuck_found,
        dropped_chains=dropped,
        on_failure=on_failure,
        fit_failures=fit_failures,
        versions=package_versions(),
    )
    return Posterior(samples=samples, sample_stats=sstats, data=data, model=model, settings=settings_out)


def _sample(run: NutsRunState, runner: ChunkRunner, *, total, chunk_size, num_warmup, check_at, policy, bar,
            checkpoint_dir, meta, on_failure, fit_failures) -> bool:  # fmt: skip
    """Run chunks until ``total`` iterations or Ctrl-C, updating ``run``; returns whether it was interrupted.

    After each chunk: the failure replays that are ready, the stuck-chain check (at
    ``check_at``), the progress line, and the checkpoint. Ctrl-C (see ``StopOnSigint``) ends
    the loop after the chunk in progress; a second one loses that chunk.
    """
    replays = Replays(runner.separate)
    stop_requested = StopOnSigint()
    interrupted = False
    window_start = run.done  # the failure-share window (see bayesode.infer.fit_failures)
    with run.log, stop_requested:
        try:
            while run.done < total and not stop_requested:
                n = min(chunk_size, total - run.done)
                with library_checks_stop_the_fit(stopped_in_chunk(run.done, n, total, checkpoint_dir)):
                    results = jax.block_until_ready(runner.run(n, run.states))  # its runtime errors surface here
                for (dev, idx), (_, replay) in zip(runner.groups, results):
                    if replay is not None:
                        replays.add(runner, dev, idx, run.states, replay)
                # A checkpoint holds the failure log: it must include every replay up to there.
                replays.run(wait=checkpoint_dir is not None)
                chunk_stats = run.record([out for out, _ in results], n)
                if run.done == check_at:
                    _handle_stuck_chains(run, policy, n, bar)
                if run.done - window_start >= WINDOW_MIN:
                    _check_window(run, replays, window_start, num_warmup, on_failure, fit_failures)
                    window_start = run.done
                jax.effects_barrier()
                fails = run.log.counts(run.stats["diverging"], run.stats["num_steps"], 0)["total"].sum()
                bar.update(run.done, run.stats["diverging"][:, num_warmup:].sum(), chunk_stats[5][:, -1], fails)
                if checkpoint_dir is not None:
                    run.compact()
                    records = dict(restarted_chains=run.restarted, stuck_chains_found=run.stuck_found)
                    save_checkpoint(checkpoint_dir, dict(meta, iteration=run.done, **records), run.states, run.draws[0],
                                    run.stats, run.log)  # fmt: skip
        except KeyboardInterrupt:  # a second Ctrl-C, or one outside the main thread: the chunk in progress is lost
            interrupted = True
        finally:
            replays.close()
        if replays.pending:
            with phase("counting solver failures (replaying diverged iterations)", bar.enabled):
                replays.run(wait=True)  # the chunks done are counted, interrupted or not
    return interrupted or (bool(stop_requested) and run.done < total)


def _check_window(run: NutsRunState, replays: Replays, start: int, num_warmup: int, on_failure: str,
                  fit_failures: list) -> None:
    """Judge iterations ``start .. run.done - 1``: stop (or record) if most diverged or failed to solve."""
    diverging = run.stats["diverging"][:, start : run.done]
    if not np.mean(diverging) > FAILURE_SHARE_MAX:
        return
    replays.run(wait=True)  # every failed solve of the window counted, to name the causes
    jax.effects_barrier()
    failures = run.log.counts(diverging, run.stats["num_steps"][:, start : run.done], start)
    failures.pop("total")
    message = window_message(diverging, failures, start, num_warmup, "iterations")
    handle(message, on_failure, fit_failures, f"run_nuts at iteration {run.done}")


def _handle_stuck_chains(run: NutsRunState, policy: str, n: int, bar) -> None:
    """Look for stuck chains over the last chunk (at least 50 iterations) and apply ``policy``."""
    window = run.stats["potential_energy"][:, max(0, run.done - max(n, 50)) : run.done]
    found = stuck_records(window, run.done)
    if policy == "restart":
        run.states, moved = move_stuck_chains(run.states, window, run.done)
        run.restarted += moved
    run.stuck_found += found
    if found:
        bar.write(describe(policy, found))
