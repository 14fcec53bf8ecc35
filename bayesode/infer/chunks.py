"""One chunk of NUTS iterations over a run's chains, and the state a run carries between chunks.

``ChunkRunner`` holds what stays fixed during a run (the compiled sampler, the data, the device
groups, the chunk program's length); ``NutsRunState`` holds what changes (sampler states,
draws, statistics, the failure log, the iteration count, restarts). ``run_nuts`` loops over
chunks: ``runner.run(n, state.states)``, then ``state.record(...)``, which stores the draws a
thinned run keeps (``stored_iterations``); ``state.draws_and_stats(...)`` gives the result's.

Failed solves are counted by replays: the fast pass samples without the model's failure
callback, keeps the states before diverging iterations (a failed solve always diverges: its
log density is -inf), and the replay runs those iterations again with reports on. From the
same inputs the program retraces the same trajectories and only adds the counts (tested
against reporting from every iteration).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..solving.failures import FailureLog
from ..solving.precision import in_current_precision
from . import programs

# Report solver failures from every iteration in the first pass (no replay): slower (a host
# callback per gradient); the reference the replay is tested against.
_REPORT_EVERY_ITERATION = False
# Runs at least this long (warmup + samples) sample with a program free of callbacks when JAX's
# persistent compilation cache is on, so a re-run finds it there; the reporting program for
# replays then compiles in the background while sampling goes on. Shorter runs use one program
# for both (one compile, never cached): a second compile would not be hidden.
SEPARATE_REPORTING_MIN_ITERATIONS = 1000
STAT_NAMES = ("diverging", "accept_prob", "num_steps", "potential_energy", "energy", "step_size")


def stored_iterations(iterations, num_warmup: int, num_samples: int, thinning: int) -> np.ndarray:
    """Mask over ``iterations`` (a run's iteration indices) of the draws the run stores.

    Every warmup iteration (the layout checkpoints have always had), and after warmup every
    ``thinning``-th draw, counted back from the last so that ``num_samples // thinning`` are kept
    and the last is one of them: NumPyro's ``MCMC(thinning=...)`` convention. The choice depends
    on the iteration index only, so a resumed run stores the draws an unbroken one does.
    """
    j = np.asarray(iterations) - num_warmup
    offset = num_samples % thinning
    return (j < 0) | ((j >= offset) & ((j - offset) % thinning == 0))


def merge_chunks(draws: list) -> list:
    """Per-chunk lists of draw leaves (chain, iteration, ...) -> one list, joined along iteration."""
    if len(draws) == 1:
        return draws[0]
    return [np.concatenate(parts, axis=1) for parts in zip(*draws)]


@dataclass
class NutsRunState:
    """What a NUTS run carries from one chunk to the next (host arrays, leading chain axis).

    ``states``: the sampler states; ``draws``: per chunk, the unconstrained draws' leaves
    (chain, stored iteration, ...), the iterations ``stored_iterations`` picks;
    ``stats``: name -> (chain, iteration) for ``STAT_NAMES``, every iteration (failure counts,
    stuck chains and the failure windows need them all); ``log``: solver failures by chain and
    iteration; ``done``: iterations run; ``restarted``, ``stuck_found``: the stuck-chain records
    (see ``bayesode.infer.stuck``); ``num_warmup``, ``num_samples``, ``thinning``: which draws
    are stored.
    """

    states: Any
    num_warmup: int
    num_samples: int
    thinning: int = 1
    draws: list = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    log: FailureLog = field(default_factory=FailureLog)
    done: int = 0
    restarted: list = field(default_factory=list)
    stuck_found: list = field(default_factory=list)

    def record(self, outputs: list, n: int) -> list:
        """Join the groups' chunk outputs (in chain order) and append them; returns the chunk's stats."""
        cat = lambda *xs: np.concatenate(xs, axis=0)  # noqa: E731
        self.states = jax.tree.map(cat, *[out[0] for out in outputs])
        z = jax.tree.map(cat, *[out[1] for out in outputs])
        chunk_stats = [cat(*[out[2][j] for out in outputs]) for j in range(len(STAT_NAMES))]
        keep = stored_iterations(np.arange(self.done, self.done + n), self.num_warmup, self.num_samples, self.thinning)
        self.draws.append([leaf[:, keep] for leaf in jax.tree.leaves(z)])
        for name, v in zip(STAT_NAMES, chunk_stats):
            self.stats[name] = v if name not in self.stats else np.concatenate([self.stats[name], v], axis=1)
        self.done += n
        return chunk_stats

    def compact(self) -> None:
        """Join the per-chunk draws into one chunk (before a checkpoint writes them)."""
        self.draws = [merge_chunks(self.draws)]

    def draws_and_stats(self, sampler, model, md, z_def, max_tree_depth: int):
        """The kept draws (constrained latent sites), their sample stats, and warmup failure counts.

        ``samples``: site -> (chain, kept draw, ...); ``sstats``: name -> (chain, kept draw),
        solver failures counted over every iteration and then kept like the draws; ``warm``:
        cause -> (chain, warmup iteration) failure counts. ``z_def``: the unconstrained draws'
        tree structure.
        """
        done, num_warmup = self.done, self.num_warmup
        kept = num_warmup + np.flatnonzero(
            stored_iterations(np.arange(num_warmup, done), num_warmup, self.num_samples, self.thinning)
        )
        z_all = jax.tree.unflatten(z_def, [leaf[:, num_warmup:] for leaf in merge_chunks(self.draws)])
        num_chains, n_kept = jax.tree.leaves(z_all)[0].shape[:2]
        assert n_kept == kept.size, (n_kept, kept.size)  # stored draws and the kept iterations agree
        flat_z = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), z_all)
        constrained = jax.device_get(sampler.constrain(flat_z, md))
        sites = programs.latent_sites(model, md)
        samples = {k: np.asarray(v).reshape((num_chains, n_kept) + np.shape(v)[1:]) for k, v in constrained.items()
                   if k in sites}  # fmt: skip
        stats = self.stats
        sstats = {k: np.asarray(v[:, kept]) for k, v in stats.items()}
        sstats["tree_depth"] = np.floor(np.log2(np.maximum(sstats["num_steps"], 1))).astype(np.int64) + 1
        sstats["tree_depth_saturated"] = sstats["num_steps"] >= 2**max_tree_depth - 1
        sampling = slice(num_warmup, done)
        fail = self.log.counts(stats["diverging"][:, sampling], stats["num_steps"][:, sampling], num_warmup)
        sstats["solver_failures"] = fail.pop("total")[:, kept - num_warmup]
        for cause, v in fail.items():
            sstats[f"solver_failures_{cause}"] = v[:, kept - num_warmup]
        warm = self.log.counts(stats["diverging"][:, :num_warmup], stats["num_steps"][:, :num_warmup], 0)
        return samples, sstats, warm


class Replays:
    """Failure-report replays waiting to run, and the background compiles of their program.

    With a separate reporting program (``separate``), a group's replays wait for its compile,
    which runs in a background thread while sampling goes on (vectorised chains use about one
    core); otherwise replays run at once with the fast program itself.
    """

    def __init__(self, separate: bool):
        self.separate = separate
        self.compiles: dict[int, Future] = {}  # chains in a group -> the compile (on the first group's device)
        self.pending: list[tuple[int, Callable]] = []
        self._compiler = ThreadPoolExecutor(1)

    def add(self, runner: ChunkRunner, dev, idx, states, replay: Callable) -> None:
        k = len(idx)
        if self.separate and k not in self.compiles:
            fn = runner.sampler.chunk(runner.length, reports=True)
            inputs = jax.device_put(runner.inputs(dev, idx, states), runner.groups[0][0])
            fn.trace(*inputs, 0)  # here, not in the thread: tracing runs the model (see ChunkRunner.run)
            # In this thread's precision (a fit's float64 scope does not reach the worker thread).
            self.compiles[k] = self._compiler.submit(in_current_precision(fn), *inputs, 0)  # compiles; runs no iteration
        self.pending.append((k, replay))

    def run(self, wait: bool) -> None:
        """Run the replays whose program is ready (all of them with ``wait``)."""
        later = []
        for k, replay in self.pending:
            if not self.separate or wait or self.compiles[k].done():
                if self.separate:
                    self.compiles[k].result()  # a compile error surfaces here
                replay()
            else:
                later.append((k, replay))
        if len(later) < len(self.pending):
            jax.effects_barrier()
        self.pending = later

    def close(self) -> None:
        self._compiler.shutdown(wait=False)


def execution_device(dev):
    """Where a group of chains on ``dev`` runs: on CPU, always the first device.

    An XLA executable belongs to one device, so chains spread over several host devices made
    each compile its own copy of the sampler (the compile then outweighed the parallel gain).
    Every host device is the same processor, and one CPU device runs calls from several
    threads at once; so parallel chains keep one thread per device (``dev`` names the thread)
    but all run the one program compiled for the first device.
    """
    return jax.local_devices()[0] if dev.platform == "cpu" else dev


@dataclass
class ChunkRunner:
    """Runs chunks of NUTS iterations for a run's chains on their device groups.

    ``groups``: (device, chain indices) pairs (see ``bayesode.infer.chains``). ``length``:
    iterations per compiled chunk call. One program of ``length`` iterations serves every
    chunk: a shorter last chunk runs its first ``n`` iterations and passes the state through
    the rest (a second program of ``n`` iterations would cost a second compile for the same
    work). ``separate``: sample with a program free of callbacks (cacheable on disk) and
    replay with a second one (see ``SEPARATE_REPORTING_MIN_ITERATIONS``).
    """

    sampler: Any
    md: Any
    groups: list
    chain_method: str
    length: int
    separate: bool
    compiled: bool = False  # whether a chunk has run (so its program is compiled)

    @classmethod
    def for_run(cls, sampler, md, groups, chain_method: str, chunk_size: int, total: int) -> ChunkRunner:
        separate = bool(jax.config.jax_compilation_cache_dir) and total >= SEPARATE_REPORTING_MIN_ITERATIONS
        return cls(sampler, md, groups, chain_method, min(chunk_size, total), separate)

    @property
    def fast_reports(self) -> bool:
        """Whether the fast pass's program has the failure callback (turned off per iteration)."""
        return _REPORT_EVERY_ITERATION or not self.separate

    def inputs(self, dev, idx, states):
        """The chunk program's inputs for chains ``idx`` on ``dev`` (all but ``stop``)."""
        # States live on the host between chunks: NumPy indexing costs microseconds, an eager
        # JAX gather per state leaf about 2 ms (most of a small model's per-fit time in SBC).
        sub = jax.tree.map(lambda x: np.asarray(x)[idx], states)
        md_dev = self.md
        if len(self.groups) > 1:
            dev = execution_device(dev)
            sub, md_dev = jax.device_put(sub, dev), jax.device_put(self.md, dev)
        return sub, jnp.asarray(idx), md_dev, jnp.full(self.length, _REPORT_EVERY_ITERATION)

    def run(self, n: int, states) -> list:
        """One chunk of ``n`` iterations for every group; ``[(output, replay or None)]`` in group order."""
        if len(self.groups) == 1:
            return [self.run_group(*self.groups[0], n, states)]
        if self.chain_method != "parallel":  # sequential: one chain per group, on one device
            return [self.run_group(dev, idx, n, states) for dev, idx in self.groups]
        if (self.length, self.fast_reports) not in self.sampler.traced:
            # Tracing runs the model, and NumPyro's effect handlers live on one global stack: two
            # threads tracing at once mix their sites ("all sites must have unique names"). So the
            # program is traced here, in this thread, for each group's inputs (the trace is cached
            # by shapes: once); the threads then only lower and compile it for their own device.
            for dev, idx in self.groups:
                self.sampler.chunk(self.length, self.fast_reports).trace(*self.inputs(dev, idx, states), n)
            self.sampler.traced.add((self.length, self.fast_reports))
        results: list = [None] * len(self.groups)
        first = 0
        if not self.compiled and self.groups[0][0].platform == "cpu":
            # The first group here, before the threads: it compiles the program, which the CPU
            # threads then share (see execution_device); two threads calling a program not yet
            # compiled might each compile it. (Accelerators compile their own copies at once.)
            results[0] = self.run_group(*self.groups[0], n, states)
            first = 1
        self.compiled = True
        # One thread per device; a device's groups (on CPU: one chain each) run in turn.
        by_device: dict = {}
        for i, (dev, _) in enumerate(self.groups[first:], start=first):
            by_device.setdefault(dev, []).append(i)

        def run_device(group_ids):
            for i in group_ids:
                results[i] = self.run_group(*self.groups[i], n, states)

        with ThreadPoolExecutor(max(len(by_device), 1)) as ex:
            # in_current_precision: the fit's precision scope is per thread.
            list(ex.map(in_current_precision(run_device), by_device.values()))  # list(): a thread's error surfaces here
        return results

    def run_group(self, dev, idx, n: int, states):
        """One chunk of ``n`` iterations for chains ``idx`` on ``dev``, without failure reports.

        Returns the chunk's output ``(states, z, stats)`` (host arrays) and ``replay``: None, or
        (if any chain diverged) a function that runs the diverged iterations again with reports
        on, from the states they started from (kept by the chunk), to count the failures. A
        chain with more than ``REPLAY_SLOTS`` divergences in the chunk has the chunk replayed
        up to its last diverging iteration instead. Each chain stays in its own row of the
        batch: XLA's CPU code gives a row the same floats whatever the other rows hold, but not
        the same floats in another row (measured), so moving a chain would change its path.
        """
        sub, ids, md_dev, report = self.inputs(dev, idx, states)
        program = self.sampler.chunk(self.length, self.fast_reports)
        out_states, (z, chunk_stats), (kept, count) = program(sub, ids, md_dev, report, n)
        out = jax.device_get((out_states, z, chunk_stats))
        out = (out[0], jax.tree.map(lambda v: v[:, :n], out[1]), jax.tree.map(lambda v: v[:, :n], out[2]))
        count = np.asarray(count)
        if not count.any() or _REPORT_EVERY_ITERATION:
            return out, None
        diverged = np.asarray(out[2][0]).any(axis=0)  # (n,) iterations where any chain diverged
        return out, functools.partial(self._replay, sub, ids, md_dev, kept, count, diverged, n)

    def _replay(self, sub, ids, md_dev, kept, count, diverged, n: int) -> None:
        # The separate reporting program is compiled once, for the first group's device (the
        # same CPU code on every host device); otherwise this group's program, here.
        put = functools.partial(jax.device_put, device=self.groups[0][0]) if self.separate else (lambda x: x)
        fn = self.sampler.chunk(self.length, reports=True)
        sub_on, ids_on, md_on = put(sub), put(ids), put(md_dev)
        if count.max() > programs.REPLAY_SLOTS:
            report = put(jnp.asarray(np.pad(diverged, (0, self.length - n))))
            fn(sub_on, ids_on, md_on, report, int(np.flatnonzero(diverged)[-1]) + 1)
            return
        kept_host = jax.device_get(kept)
        first_only = put(jnp.asarray(np.arange(self.length) == 0))
        rows = np.arange(len(count))
        for j in range(int(count.max())):
            # Chains with fewer divergences repeat their last one: reports of the same point are
            # de-duplicated, so this only costs the evaluation.
            pick = np.clip(np.minimum(j, count - 1), 0, None)
            fn(put(jax.tree.map(lambda b: b[rows, pick], kept_host)), ids_on, md_on, first_only, 1)
