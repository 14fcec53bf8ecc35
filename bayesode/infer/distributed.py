"""NUTS across machines through JAX's own multi-process runtime (``jax.distributed``).

Each process (one per machine, or several on one machine) runs its share of
the chains on its own devices with :func:`run_nuts` (``chains=``), then the
draws and sampler statistics are gathered with JAX's cross-process
collectives, so every process returns the whole posterior. Chains do not talk
to each other while sampling: the only communication is the final gather
(and the start-up handshake), so a slow network costs nothing per iteration.

Usage (the same script on every process; see docs/architecture.md)::

    import jax, bayesode as bo
    jax.distributed.initialize(coordinator_address="host0:1234", num_processes=2, process_id=RANK)
    post = bo.run_nuts_distributed(model, data, key=1, num_chains=8)
    if jax.process_index() == 0:
        post.save("fit.nc", key=2)
"""

from __future__ import annotations

import os

import jax
import numpy as np

from ..errors import ConfigError
from ..results.posterior import Posterior
from .nuts import run_nuts


def _gather(x: np.ndarray) -> np.ndarray:
    """Concatenate every process's ``x`` along axis 0 (in process order)."""
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(np.asarray(x), tiled=True))


def run_nuts_distributed(model, ts, ys=None, *, key, num_chains: int = 4, checkpoint_dir=None, **kwargs) -> Posterior:
    """:func:`run_nuts` with the chains split over the processes of a ``jax.distributed`` job.

    Call it on every process, after ``jax.distributed.initialize(...)``, with the
    same arguments. Process ``p`` of ``P`` runs chains ``p*C/P ... (p+1)*C/P - 1``
    (``C = num_chains``, a multiple of ``P``) on its local devices (``chain_method``
    as in :func:`run_nuts`, within the process); chain ``c`` gets the same key,
    start and draws as in a one-process run. Returns the whole :class:`Posterior`
    (all chains, in order) on every process. With one process it is ``run_nuts``.

    ``checkpoint_dir``: each process writes its own sub-folder ``process-<p>``;
    re-running the job with the same folder resumes every share. If a process is
    interrupted (Ctrl-C), all return the draws every process has made.
    Progress is shown by process 0 only, unless ``progress`` is given.
    """
    num_procs, rank = jax.process_count(), jax.process_index()
    if not isinstance(num_chains, (int, np.integer)) or num_chains < num_procs or num_chains % num_procs:
        raise ConfigError(
            f"`num_chains`={num_chains!r} must be a positive multiple of the number of processes ({num_procs}), "
            "so every process runs the same number of chains."
        )
    per = num_chains // num_procs
    mine = np.arange(rank * per, (rank + 1) * per)
    if checkpoint_dir is not None and num_procs > 1:
        checkpoint_dir = os.path.join(checkpoint_dir, f"process-{rank}")
    kwargs.setdefault("progress", rank == 0)
    local = run_nuts(model, ts, ys, key=key, num_chains=num_chains, chains=mine, checkpoint_dir=checkpoint_dir,
                     **kwargs)  # fmt: skip
    if num_procs == 1:
        return local
    # An interrupted process has fewer draws: keep the draws every process has.
    n_kept = int(_gather(np.array([local.num_draws])).min())
    samples = {k: _gather(v[:, :n_kept]) for k, v in sorted(local.samples.items())}
    stats = {k: _gather(v[:, :n_kept]) for k, v in sorted(local.sample_stats.items())}
    st = {k: v for k, v in local.settings.items() if k != "chains"}
    warm = st["warmup_solver_failures"]
    st.update(
        processes=num_procs,
        interrupted=bool(_gather(np.array([st["interrupted"]])).any()),
        wall_time_s=float(_gather(np.array([st["wall_time_s"]])).max()),
        init_and_compile_s=float(_gather(np.array([st["init_and_compile_s"]])).max()),
        warmup_divergences=int(_gather(np.array([st["warmup_divergences"]])).sum()),
        warmup_solver_failures={c: int(v) for c, v in zip(sorted(warm), _sum_over_processes(warm), strict=True)},
    )
    return Posterior(samples=samples, sample_stats=stats, data=local.data, model=model, settings=st)


def _sum_over_processes(counts: dict) -> np.ndarray:
    values = np.array([counts[c] for c in sorted(counts)], dtype=np.int64)
    return _gather(values[None]).sum(axis=0)
