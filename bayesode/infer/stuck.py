"""Chains stuck in a poor local mode during warmup: how they are found and restarted."""

from __future__ import annotations

import jax
import numpy as np

from ..errors import ConfigError

# What run_nuts does with a stuck chain: "restart" (the default: from a good chain's state),
# "report" (leave it, record it), "drop" (leave it, record it, return the other chains' draws).
STUCK_POLICIES = ("restart", "report", "drop")

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


def find_stuck_chains(potential) -> tuple[np.ndarray, np.ndarray]:
    """``(stuck, median)``: which chains (chain,) sit in a region of far lower density, and each
    chain's median potential energy over ``potential`` (chain, window), the last warmup iterations.
    A chain without a finite potential in the window counts as stuck. No chain is stuck with
    fewer than two chains or none finite."""
    med = np.nanmedian(np.where(np.isfinite(potential), potential, np.nan), axis=1)
    if len(med) < 2 or not np.isfinite(med).any():
        return np.zeros(len(med), bool), med
    best = int(np.nanargmin(med))
    q25, q75 = np.nanpercentile(potential[best], [25, 75])
    gap = max(STUCK_MIN_GAP, STUCK_SPREADS * (q75 - q25) / 1.349)
    return ~(med <= med[best] + gap), med  # NaN counts as stuck


def move_stuck_chains(states, potential, iteration: int):
    """Restart chains stuck in a region of far lower density from a good chain's whole state.

    ``potential``: (chain, window) potential energies of the last warmup iterations. A stuck chain
    takes the state of a good chain (position, gradient, step size, mass matrix and its window
    sums) but keeps its own random key, so it follows its own path from there. Warmup draws are
    discarded, so this changes which region the chain samples, not the validity of the sampling
    that follows; it is reported in ``settings["restarted_chains"]`` and the diagnostics.
    Returns the states and a list of ``{chain, donor, iteration, potential, donor_potential}``.
    """
    stuck, med = find_stuck_chains(potential)
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


def stuck_records(potential, iteration: int) -> list[dict]:
    """The stuck chains (see ``find_stuck_chains``), left where they are:
    ``[{chain, iteration, potential, best_potential}]``."""
    stuck, med = find_stuck_chains(potential)
    best = float(np.nanmin(med)) if np.isfinite(med).any() else float("nan")
    return [dict(chain=int(c), iteration=int(iteration), potential=float(med[c]), best_potential=best)
            for c in np.flatnonzero(stuck)]  # fmt: skip


def resolve_policy(stuck_chains: str, restart_stuck_chains: bool | None) -> str:
    """The stuck-chain policy from ``stuck_chains`` and the older ``restart_stuck_chains`` alias
    (``True``: "restart"; ``False``: "report", which leaves every chain where it went, as
    ``False`` did, and records the stuck ones)."""
    if stuck_chains not in STUCK_POLICIES:
        raise ConfigError(f"`stuck_chains`={stuck_chains!r} is unknown; choose one of {STUCK_POLICIES}.")
    if restart_stuck_chains is None:
        return stuck_chains
    alias = "restart" if restart_stuck_chains else "report"
    if stuck_chains not in ("restart", alias):  # "restart" is the default: a given alias overrides it
        raise ConfigError(
            f"`restart_stuck_chains`={restart_stuck_chains!r} contradicts `stuck_chains`={stuck_chains!r}; "
            "give `stuck_chains` only (restart_stuck_chains is its older alias)."
        )
    return alias


def describe(policy: str, found: list[dict]) -> str:
    """One line for the console: which chains were found stuck and what was done."""
    chains = ", ".join(str(r["chain"]) for r in found)
    action = {"restart": "restarted from a good chain's state", "report": "left as they are (reported only)",
              "drop": "left out of the returned draws"}[policy]  # fmt: skip
    return (f"stuck chains (stuck_chains={policy!r}): chain(s) {chains} sat in a region of far lower density "
            f"at iteration {found[0]['iteration']}; {action}")
