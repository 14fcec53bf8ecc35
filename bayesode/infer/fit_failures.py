"""Loud failure: stop a fit (or finish it with a message) when its solves or transitions mostly fail.

Three checks, each against ``FAILURE_SHARE_MAX`` (more than half):

- before sampling, the share of prior draws whose solve fails (the start's candidates screen it
  for free; :func:`prior_failure_rate` on 100 draws confirms it and names the causes, only then);
- after each window of at least ``WINDOW_MIN`` iterations (warmup or sampling, all chains
  pooled), the share of iterations that diverged (a failed solve always diverges: its log
  density is -inf), with the failed solves among them by cause;
- at the end, the share of kept draws that diverged (also for runs too short for a window).

``on_failure="stop"`` (default) raises :class:`FitFailedError` at the first check that trips;
``"continue"`` prints the message, finishes, and the result carries it
(``settings["fit_failures"]``, ``Posterior.diagnostics()["warnings"]``, the saved file's attrs).
"""

from __future__ import annotations

import sys

import numpy as np

from ..errors import ConfigError, FitFailedError
from ..solving.diffeq import FAILURE_ADVICE, FAILURE_CAUSES

ON_FAILURE = ("stop", "continue")
# "Mostly failed": more than this share of prior draws, or of a window's iterations.
FAILURE_SHARE_MAX = 0.5
# Iterations (per chain) a window needs before its divergence share is judged: fewer say little.
WINDOW_MIN = 50
# Prior draws of the confirming check (compiled only when the start's candidates mostly fail).
PRIOR_CHECK_DRAWS = 100

# Fixes that hold whatever the cause, after the per-cause ones.
GENERAL_ADVICE = (
    "tighter priors (weights, parameters, y0) keep the sampler where the ODE is well behaved; "
    "SolverConfig(rtol=..., atol=...) looser for speed or tighter for accuracy; float64 "
    "(precision='float64') when steps collapse in float32"
)
DIVERGENCE_ADVICE = (
    "the solves succeed, so the posterior's geometry is hard: raise target_accept_prob (e.g. 0.95), "
    "reparametrise (non-centred), or rescale the data and priors"
)
CONTINUE_HINT = (
    "To finish anyway and keep this message with the result: run_nuts(..., on_failure='continue') "
    "(command line: --on-failure continue)."
)


def check_on_failure(on_failure) -> str:
    if on_failure not in ON_FAILURE:
        raise ConfigError(f"`on_failure`={on_failure!r} is unknown; choose one of {ON_FAILURE}.")
    return on_failure


def advice(causes: dict) -> str:
    """The fixes for failed-solve ``causes`` (cause -> count), most frequent first, then the general ones."""
    named = [FAILURE_ADVICE[c] for c, _ in sorted(causes.items(), key=lambda kv: -kv[1]) if c in FAILURE_ADVICE]
    return "; ".join(named + [GENERAL_ADVICE]) if named else DIVERGENCE_ADVICE


def prior_message(rate: dict) -> str | None:
    """The message for a ``prior_failure_rate`` result whose failing share is above the threshold; else None."""
    if not rate["fraction"] > FAILURE_SHARE_MAX:
        return None
    causes = {c: rate[c] for c in FAILURE_CAUSES.values() if rate[c]}
    return (
        f"the ODE solve fails for {rate['fraction']:.0%} of {rate['draws']} prior draws (more than "
        f"{FAILURE_SHARE_MAX:.0%}), by cause: {causes}; the sampler would spend its time rejecting them. "
        f"Likely fixes: {advice(causes)}."
    )


def window_message(diverging: np.ndarray, failures: dict, start: int, num_warmup: int, what: str) -> str | None:
    """The message for iterations ``start .. start + n - 1`` whose divergent share is above the threshold.

    ``diverging`` (chain, n) bool; ``failures``: cause -> (chain, n) counts of failed solves
    (``FailureLog.counts``, without ``total``); ``what``: "iterations" or "kept draws".
    """
    share = float(np.mean(diverging))
    if not share > FAILURE_SHARE_MAX:
        return None
    stop = start + diverging.shape[1] - 1
    phase = "warmup" if stop < num_warmup else ("sampling" if start >= num_warmup else "warmup and sampling")
    causes = {c: int(np.sum(v)) for c, v in failures.items() if np.sum(v)}
    n_failed = sum(causes.values())
    if n_failed:
        solved = f"{n_failed} of {int(np.sum(diverging))} divergent transitions ended at a failed ODE solve, by cause: {causes}"
    else:
        solved = "no solve failed"
    return (
        f"{share:.0%} of {what} {start}-{stop} ({phase}, {diverging.shape[0]} chain(s)) diverged (more than "
        f"{FAILURE_SHARE_MAX:.0%}); {solved}. Draws from such a run are not a posterior. Likely fixes: {advice(causes)}."
    )


def handle(message: str | None, on_failure: str, found: list, where: str) -> None:
    """Raise (``stop``) or print and record in ``found`` (``continue``) a failure ``message``."""
    if message is None:
        return
    if on_failure == "stop":
        raise FitFailedError(f"{where} stopped: {message} {CONTINUE_HINT}")
    found.append(message)
    print(f"bayesode: fit failed (continuing, on_failure='continue'): {message}", file=sys.stderr)
