"""Chains stuck in a poor local mode during warmup: how they are found and restarted."""

from __future__ import annotations

import jax
import numpy as np

# A chain is stuck when, over the last warmup chunk, its median potential energy (-log density)
# is above the best chain's by more than this many of the best chain's own spreads (and at
# least STUCK_MIN_GAP nats). LV on lynx-hare, seed 0: one chain spent its whole warmup in a
# mode 40 nats worse (the best chain's potential has spread ~2), then met the main mode in
# sampling with a mass matrix adapted to the other: 307 divergences, R-hat 1.33.
STUCK_SPREADS = 10.0
STUCK_MIN_GAP = 10.0


def stuck_check_iteration(num_warmup: int, chunk_size: int) -> int | None:
    """The chunk boundary (iteration count) at which stuck chains are looked for: the first at or
    after half the warmup, if warmup continues after it (the restarted chain then adapts on)."""
    at = -(-(num_warmup // 2) // chunk_size) * chunk_size
    return at if 0 < at < num_warmup else None


def move_stuck_chains(states, potential, iteration: int):
    """Restart chains stuck in a region of far lower density from a good chain's whole state.

    ``potential``: (chain, window) potential energies of the last warmup iterations. A stuck chain
    takes the state of a good chain (position, gradient, step size, mass matrix and its window
    sums) but keeps its own random key, so it follows its own path from there. Warmup draws are
    discarded, so this changes which region the chain samples, not the validity of the sampling
    that follows; it is reported in ``settings["restarted_chains"]`` and the diagnostics.
    Returns the states and a list of ``{chain, donor, iteration, potential, donor_potential}``.
    """
    med = np.nanmedian(np.where(np.isfinite(potential), potential, np.nan), axis=1)
    if len(med) < 2 or not np.isfinite(med).any():
        return states, []
    best = int(np.nanargmin(med))
    q25, q75 = np.nanpercentile(potential[best], [25, 75])
    gap = max(STUCK_MIN_GAP, STUCK_SPREADS * (q75 - q25) / 1.349)
    stuck = ~(med <= med[best] + gap)  # NaN (no finite potential in the window) counts as stuck
    if not stuck.any():
        return states, []
    good = np.flatnonzero(~stuck)
    source = np.arange(len(med))
    source[stuck] = good[np.arange(stuck.sum()) % len(good)]
    moved = jax.tree.map(lambda x: np.asarray(x)[source], states)._replace(rng_key=states.rng_key)
    report = [
        dict(chain=int(c), donor=int(source[c]), iteration=int(iteration), potential=float(med[c]),
             donor_potential=float(med[source[c]]))
        for c in np.flatnonzero(stuck)
    ]  # fmt: skip
    return moved, report

