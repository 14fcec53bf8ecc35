"""Host-side count of failed solves during sampling.

A model evaluated by the sampler (``chain_id`` given, ``report`` on) reports
each solve's status through ``jax.debug.callback``. What is counted: a
transition whose trajectory ended at a failed solve, i.e. a divergence caused
by a failed solve (its log density is -inf, so NUTS stops there and rejects
the point); at most one per chain and iteration, with its cause.

Why the filter: under ``vmap`` a batched ``while_loop`` (NUTS tree building)
keeps running the body for chains that have finished, from their unchanged
state, and throws the result away. Those evaluations are real solves but no
part of any chain; they can fail, and counting them would make the failure
count depend on how chains are batched (measured: in a vectorised run the
points reported for a chain-iteration were as many as the *longest* tree among
the chains batched with it, not its own). A chain's own evaluations come first:
its tree is still being built while they happen, and the discarded ones start
only once it has stopped. So every evaluated point is logged in order, and
only a chain-iteration's first ``num_steps`` distinct points (its leapfrog
steps) count; a failure among them is the one that stopped its trajectory.
Reports of the same point are de-duplicated by a fingerprint of the evaluated
parameters. Only chain-iterations that diverged are counted.

This is the one piece of module-level state in bayesode: a stack of active
logs, because the callback target is fixed when the sampler is traced.
"""

from __future__ import annotations

import threading
from collections import defaultdict

import jax
import jax.numpy as jnp
import numpy as np

from .diffeq import FAILURE_CAUSES

_ACTIVE: list[FailureLog] = []
_LOCK = threading.Lock()


class FailureLog:
    """Every reported point per (chain, iteration), in the order evaluated, with its solve status."""

    def __init__(self):
        # (chain, iteration) -> {fingerprint: 0 (solved) or the first failure status}, insertion-ordered
        self._seen: dict[tuple[int, int], dict[float, int]] = defaultdict(dict)

    def record(self, chain, iteration, status, fingerprint):
        status = np.asarray(status).ravel()
        bad = status[status != 0]
        with _LOCK:
            self._seen[(int(chain), int(iteration))].setdefault(float(fingerprint), int(bad[0]) if bad.size else 0)

    def to_records(self) -> list:
        """The log as JSON-ready rows ``[chain, iteration, {str(fingerprint): status}]``, in the
        order logged (a checkpoint stores them; :meth:`from_records` reads them back)."""
        with _LOCK:
            return [[k[0], k[1], {str(a): b for a, b in v.items()}] for k, v in self._seen.items()]

    @classmethod
    def from_records(cls, records) -> FailureLog:
        """The log that :meth:`to_records` wrote as ``records``, point order kept."""
        log = cls()
        for chain, iteration, fps in records:
            log._seen[(int(chain), int(iteration))] = {float(a): int(b) for a, b in fps.items()}
        return log

    def counts(self, diverging: np.ndarray, num_steps: np.ndarray, start: int) -> dict[str, np.ndarray]:
        """``{cause: (chain, iteration) counts}`` plus ``total`` for the iterations ``start + j`` of
        ``diverging`` and ``num_steps`` (chain, iteration): 1 where that chain-iteration diverged
        at a failed solve, i.e. one of its first ``num_steps`` distinct evaluated points failed."""
        diverging = np.asarray(diverging, dtype=bool)
        num_chains, n = diverging.shape
        out = {c: np.zeros((num_chains, n), dtype=np.int64) for c in ["total", *FAILURE_CAUSES.values()]}
        for (chain, it), fps in self._seen.items():
            j = it - start
            if 0 <= j < n and chain < num_chains and diverging[chain, j]:
                failed = [s for s in list(fps.values())[: int(num_steps[chain, j])] if s != 0]
                if failed:
                    out[FAILURE_CAUSES.get(failed[0], "other")][chain, j] += 1
                    out["total"][chain, j] += 1
        return out

    def __enter__(self):
        with _LOCK:
            _ACTIVE.append(self)
        return self

    def __exit__(self, *exc):
        jax.effects_barrier()
        with _LOCK:
            _ACTIVE.remove(self)


def _dispatch(chain, iteration, status, fingerprint):
    with _LOCK:
        logs = list(_ACTIVE)
    for log in logs:
        log.record(chain, iteration, status, fingerprint)


def fingerprint(tree) -> jax.Array:
    """A scalar that differs between distinct parameter values (for de-duplication)."""
    total = jnp.zeros((), dtype=jnp.float32)
    for k, leaf in enumerate(jax.tree.leaves(tree)):
        flat = jnp.ravel(jnp.asarray(leaf, jnp.float32))
        total = total + jnp.sum(flat * jnp.sin(jnp.arange(flat.size, dtype=jnp.float32) * 0.7548 + k + 1.0))
    return total


def report(chain_id, iteration, status, params) -> None:
    """Inside a model run by the sampler: send solve statuses to the active log."""
    jax.debug.callback(_dispatch, chain_id, iteration, status, fingerprint(params))
