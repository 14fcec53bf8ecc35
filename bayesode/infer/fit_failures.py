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

A fourth case is not a share: a library's runtime check inside the compiled model (equinox's
``error_if``, which lineax and optimistix use) raises out of the program and would end the fit
with a traceback. Inside :func:`library_checks_stop_the_fit` it becomes a :class:`FitFailedError`
that names the check, where the fit was, and the fixes.
"""

from __future__ import annotations

import contextlib
import sys

import jax
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


LIBRARY_CHECK_ADVICE = (
    "bayesode counts its own failed solves; this check is another's (a library inside the solve, or your own "
    "code). If it names a linear solver, an implicit solver's Newton system was singular at extreme parameter "
    "values: tighter priors or starting values keep the sampler away from them, or set EQX_ON_ERROR=nan in the "
    "environment before Python starts (equinox's switch: such checks then give NaN, which bayesode counts as a "
    "failed solve)."
)


def library_check_error(error: Exception, where: str) -> FitFailedError | None:
    """A :class:`FitFailedError` for a library's runtime check raised inside the compiled model; else None.

    ``error`` is the ``jax.errors.JaxRuntimeError`` out of the program; ``where`` says what
    stopped and when (e.g. "run_nuts stopped at iteration 40 of 200"). Any other runtime
    error (out of memory, a device lost) gives None: the caller re-raises it unchanged.
    """
    text = str(error)
    marker = "EquinoxRuntimeError: "  # equinox's error, also as its private subclass's name
    if marker not in text:
        return None
    check = " ".join(text.split(marker, 1)[1].split("\n\n", 1)[0].split())
    return FitFailedError(
        f"{where}: a check inside the compiled model raised at run time: {check!r}. {LIBRARY_CHECK_ADVICE}"
    )


def stopped_in_chunk(done: int, n: int, total: int, checkpoint_dir) -> str:
    """Where ``run_nuts`` stopped, for :func:`library_checks_stop_the_fit`: the chunk, and where the draws before it are."""
    saved = f"; the {done} iterations before it are saved in {checkpoint_dir!r}" if checkpoint_dir and done else ""
    return f"run_nuts stopped in iterations {done}-{done + n - 1} of {total}{saved}"


@contextlib.contextmanager
def library_checks_stop_the_fit(where: str):
    """Re-raise a library's runtime check out of the compiled model as :func:`library_check_error`'s error."""
    try:
        yield
    except jax.errors.JaxRuntimeError as e:
        error = library_check_error(e, where)
        if error is None:
            raise
        raise error from e


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
