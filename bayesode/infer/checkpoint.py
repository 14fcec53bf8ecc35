"""Checkpoints of a NUTS run: the sampler state, draws, statistics and failure log after each chunk.

Written atomically (a temporary file, then ``os.replace``), the iteration stored with the state
it belongs to, so a run killed at any point resumes bit-identically. The sampler states are
written with ``equinox.tree_serialise_leaves`` and read back against the run's own states
(``equinox.tree_deserialise_leaves``, which checks every leaf's type, shape and dtype), kept as
bytes inside the one ``state.npz`` so state and iteration are replaced together.
"""

from __future__ import annotations

import io
import json
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..errors import ConfigError
from ..solving.failures import FailureLog


def write_atomically(path: str, write) -> None:
    """Write ``path`` through ``write(binary_file)`` to a temporary name, then move it into place
    (``os.replace``): a kill at any moment leaves the old file or the new one, never half of one."""
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as fh:
        write(fh)
    os.replace(tmp, path)


def save_checkpoint(path, meta, states, draws, stats, failures):
    os.makedirs(path, exist_ok=True)
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, states)
    arrays = dict(
        states=np.frombuffer(buffer.getvalue(), dtype=np.uint8),
        **{f"draw_{i}": x for i, x in enumerate(draws)},
        **{f"stat_{k}": v for k, v in stats.items()},
        failures=np.array(json.dumps(failures.to_records())),
        # The iteration lives with the state it belongs to: a kill between replacing
        # state.npz and meta.json must not pair a new state with an old count.
        iteration=np.array(meta["iteration"]),
    )
    write_atomically(os.path.join(path, "state.npz"), lambda fh: np.savez(fh, **arrays))
    write_atomically(os.path.join(path, "meta.json"), lambda fh: fh.write(json.dumps(meta).encode()))


def load_checkpoint(path, meta, states_like):
    mpath = os.path.join(path, "meta.json")
    if not os.path.exists(mpath):
        return None
    with open(mpath) as fh:
        saved = json.load(fh)
    # On CPU, parallel and sequential chains run the same unbatched program (same draws): a run
    # started on two devices resumes on one and back.
    unbatched = jax.local_devices()[0].platform == "cpu"

    def settings(m):
        out = {k: v for k, v in m.items() if k not in ("iteration", "restarted_chains", "stuck_chains_found")}
        if "restart_stuck_chains" in out:  # a checkpoint written before `stuck_chains` (same draws)
            out["stuck_chains"] = "restart" if out.pop("restart_stuck_chains") else "report"
        if unbatched and out.get("chain_method") in ("parallel", "sequential"):
            out["chain_method"] = "unbatched"
        return out

    same = settings(saved) == settings(meta)
    if not same:
        raise ConfigError(
            f"`checkpoint_dir`={path!r} holds a run with different settings; use a new folder or the same settings. "
            f"saved: {saved}; now: {meta}"
        )
    z = np.load(os.path.join(path, "state.npz"))
    if "states" not in z.files:  # leaves as state_0, state_1, ...: written before the equinox format
        raise ConfigError(
            f"`checkpoint_dir`={path!r} holds a checkpoint written by an older version of bayesode, which this "
            "version cannot resume; start a new run with a new `checkpoint_dir` (or finish this one with the "
            "version that wrote it)."
        )
    try:
        states = eqx.tree_deserialise_leaves(io.BytesIO(z["states"].tobytes()), states_like)
    except RuntimeError as e:  # a leaf of another type, shape or dtype than this run's sampler state
        raise ConfigError(
            f"`checkpoint_dir`={path!r} holds a sampler state that does not match this run's ({e}); "
            "use a new folder."
        ) from e
    states = jax.tree.map(jnp.asarray, states)
    draws = [z[f"draw_{i}"] for i in range(sum(k.startswith("draw_") for k in z.files))]
    stats = {k[5:]: z[k] for k in z.files if k.startswith("stat_")}
    log = FailureLog.from_records(json.loads(str(z["failures"])))
    records = saved.get("restarted_chains", []), saved.get("stuck_chains_found", [])
    return int(z["iteration"]), states, draws, stats, log, *records

