"""Checkpoints of :func:`bayesode.infer.fit_events`: each finished stage, and NUTS as it samples.

A folder holds ``meta.json`` (the run's settings and a fingerprint of its data and template
process), ``map.npz`` and ``svi.npz`` (a stage's results, written when it ends) and ``nuts.npz``
(every chain's sampler state, the draws so far and their divergence flags, with the iteration
they belong to, rewritten every :data:`SAVE_EVERY` iterations and when sampling stops). Every file
is written to a temporary name and moved into place (``os.replace``), so a run killed at any
point leaves the last complete checkpoint. A run given the same folder and settings loads the
finished stages and continues NUTS from the saved states; NUTS keeps its random key in its
state, so the result equals an uninterrupted run's draw for draw. A folder holding another
run's checkpoint is refused (:class:`~bayesode.errors.ConfigError`) before any work.
"""

from __future__ import annotations

import hashlib
import io
import json
import os

import equinox as eqx
import jax
import numpy as np

from ..errors import ConfigError
from .checkpoint import write_atomically
from .console import phase

SAVE_EVERY = 10  # NUTS iterations between checkpoints


def fingerprint(data: dict, process, weight_prior, config, key) -> dict:
    """What identifies a run besides its numeric settings: digests of the event arrays and of the
    template process's array leaves (and their shapes), the prior, the solver and the key."""
    data_digest = hashlib.sha256()
    for name in sorted(data):
        data_digest.update(name.encode() + np.ascontiguousarray(np.asarray(data[name])).tobytes())
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, process)
    shapes = [list(np.shape(x)) for x in jax.tree_util.tree_leaves(eqx.filter(process, eqx.is_array))]
    return {
        "data": data_digest.hexdigest(),
        "process": f"{type(process).__qualname__}:{hashlib.sha256(buffer.getvalue()).hexdigest()}:{shapes}",
        "weight_prior": repr(weight_prior),
        "config": repr(config),
        "key": [int(x) for x in np.asarray(key).ravel()],
    }


class EventCheckpoint:
    """The checkpoint folder of one fit; ``path=None``: no checkpoint (every method a no-op)."""

    def __init__(self, path: str | None, settings: dict):
        self.path = path
        if path is None:
            return
        if os.path.exists(path) and not os.path.isdir(path):
            raise ConfigError(f"`checkpoint_dir`={path!r} is a file, not a folder; choose a folder (created if needed).")
        meta = os.path.join(path, "meta.json")
        if os.path.exists(meta):
            with open(meta, encoding="utf-8") as fh:
                saved = json.load(fh)
            if saved != settings:
                changed = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
                raise ConfigError(
                    f"`checkpoint_dir`={path!r} holds another run's checkpoint (different {', '.join(changed)}); "
                    "use a new folder, or the same data and settings to resume it."
                )
        else:
            os.makedirs(path, exist_ok=True)
            write_atomically(meta, lambda fh: fh.write(json.dumps(settings, sort_keys=True).encode()))

    def has(self, name: str) -> bool:
        """Whether stage ``name`` ("map", "svi", "nuts") has saved results here."""
        return self.path is not None and os.path.exists(os.path.join(self.path, f"{name}.npz"))

    def stage(self, name: str, compute, *, what: str, progress: bool):
        """``compute()``'s result (a dict whose values are arrays or dicts of arrays), from the folder when
        the stage was saved there, else computed and saved. Shown as a phase line (``progress``): ``what``
        with ``{how}`` replaced by where the result comes from (the checkpoint, or programs compiled on first use)."""
        file = None if self.path is None else os.path.join(self.path, f"{name}.npz")
        if self.has(name):
            with phase(what.replace("{how}", "from the checkpoint"), progress), np.load(file) as z:
                return _unflatten({k: z[k] for k in z.files})
        with phase(what.replace("{how}", "compiled on first use"), progress):
            result = compute()
        if file is not None:
            write_atomically(file, lambda fh: np.savez(fh, **_flatten(result)))
        return result

    def load_nuts(self, states_like: list):
        """``(done, states, draws, diverging)`` as saved (``draws``: per chain, a list of site -> value),
        or None when NUTS has not saved yet."""
        if not self.has("nuts"):
            return None
        with np.load(os.path.join(self.path, "nuts.npz")) as z:
            done, diverging = int(z["done"]), z["diverging"]
            stacked = _unflatten({k: z[k] for k in z.files if k.startswith("draws/")})["draws"] if diverging.shape[1] else {}
            try:
                states = eqx.tree_deserialise_leaves(io.BytesIO(z["states"].tobytes()), states_like)
            except RuntimeError as e:  # a leaf of another type, shape or dtype
                raise ConfigError(f"`checkpoint_dir`={self.path!r}: its NUTS state does not match this run's ({e}); "
                                  "use a new folder.") from e  # fmt: skip
        kept = diverging.shape[1]
        draws = [[{k: v[c, i] for k, v in stacked.items()} for i in range(kept)] for c in range(len(states_like))]
        return done, states, draws, diverging

    def save_nuts(self, done: int, states: list, draws: list, diverging: np.ndarray):
        """Save NUTS after ``done`` iterations: ``draws`` per chain, a list of site -> value (unconstrained);
        ``diverging`` (chain, draw) flags of those draws."""
        if self.path is None:
            return
        buffer = io.BytesIO()
        eqx.tree_serialise_leaves(buffer, states)
        kept = min(len(d) for d in draws)
        arrays = {"done": np.array(done), "diverging": diverging[:, :kept],
                  "states": np.frombuffer(buffer.getvalue(), dtype=np.uint8)}  # fmt: skip
        if kept:
            stacked = {k: np.stack([np.stack([np.asarray(d[k]) for d in chain[:kept]]) for chain in draws]) for k in draws[0][0]}
            arrays.update(_flatten({"draws": stacked}))
        write_atomically(os.path.join(self.path, "nuts.npz"), lambda fh: np.savez(fh, **arrays))


def _flatten(tree: dict) -> dict:
    """``{"a": x, "b": {"c": y}}`` -> ``{"a": x, "b/c": y}`` (site names hold dots, never slashes)."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update({f"{k}/{kk}": vv for kk, vv in v.items()})
        else:
            out[k] = np.asarray(v)
    return out


def _unflatten(flat: dict) -> dict:
    out: dict = {}
    for k, v in flat.items():
        head, _, tail = k.partition("/")
        if tail:
            out.setdefault(head, {})[tail] = v
        else:
            out[head] = v
    return out
