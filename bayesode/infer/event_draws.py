"""Solving an event fit's draws, and the checks on them: failed solves, and fixed steps against the adaptive solve.

Used by :mod:`bayesode.infer.point_process`; draws are ``site -> (draw, ...)`` dicts of a
:func:`bayesode.model.point_process_model`'s weights.
"""

from __future__ import annotations

import warnings

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers

from ..errors import FitFailedError
from ..model import event_arrays, sample_field
from ..solving import (
    FAILURE_ADVICE,
    FAILURE_CAUSES,
    FixedSteps,
    SolverConfig,
    Status,
    events_log_likelihood,
    solve_event_jumps,
)

# The reference a FixedSteps fit is checked against: adaptive, tolerances well below FixedSteps' error.
REFERENCE_SOLVER = SolverConfig(solver=diffrax.Tsit5(), rtol=1e-6, atol=1e-6, max_steps=4096)
# Draws checked, and the largest difference in a draw's log-likelihood (nats, summed over sequences) let pass.
CHECKED_DRAWS, FIXED_STEPS_NATS = 20, 1.0


def _draw_process(template, weight_prior, sample: dict):
    with handlers.seed(rng_seed=0), handlers.substitute(data=sample):
        return sample_field(template, weight_prior)


@eqx.filter_jit
def _solve_all(template, weight_prior, samples, arrays, save_ts, config):
    def one_draw(sample):
        process = _draw_process(template, weight_prior, sample)
        return jax.vmap(
            lambda t, m, k, t0, te: solve_event_jumps(process, t, m, k, te, t0=t0, save_ts=save_ts, config=config)
        )(arrays["times"], arrays["marks"], arrays["mask"], arrays["t0"], arrays["t_end"])

    return jax.lax.map(one_draw, samples)


def draws_log_likelihood(sol, mask) -> jax.Array:
    """(draw, sequence) log-likelihood of each sequence under each draw, from a solution with leading
    (draw, sequence) axes (:func:`_solve_all`) and the sequences' event mask (sequence, event)."""
    return jax.vmap(jax.vmap(events_log_likelihood))(sol, jnp.broadcast_to(jnp.asarray(mask), sol.log_rates.shape))


def _training_status(process, weight_prior, config, events, flat: dict) -> np.ndarray:
    """(draw,) worst solve status over the training sequences of each draw in ``flat`` (site -> (draw, ...))."""
    sol = _solve_all(process, weight_prior, {k: jnp.asarray(v) for k, v in flat.items()}, event_arrays(events), None,
                     config)  # fmt: skip
    return np.asarray(sol.status).max(axis=1)


def _failure_message(status: np.ndarray, what: str, method: str) -> str:
    failed = status != 0
    causes = {FAILURE_CAUSES[Status(c)]: int(np.sum(status == c)) for c in np.unique(status[failed])}
    main = max(causes, key=causes.get)
    return (
        f"{method}: the solve failed for {int(failed.sum())} of {status.size} {what} on the "
        f"events (causes: {causes}); nothing is returned. Likely fix for `{main}`: "
        f"{FAILURE_ADVICE[main]}; for event data also tighten `weight_prior` or rescale the times."
    )


def failed_message(status: np.ndarray, what: str) -> str | None:
    """What to say when some solves in ``status`` failed; None when none did."""
    failed = status != 0
    if not failed.any():
        return None
    causes = {FAILURE_CAUSES[Status(c)]: int(np.sum(status == c)) for c in np.unique(status[failed])}
    return f"the solve failed for {int(failed.sum())} of {status.size} {what} (causes: {causes})."


def nuts_start(process, weight_prior, config, events, candidates: list, name: str) -> tuple[dict, str | None]:
    """The first of ``candidates`` (``(label, site -> value)`` pairs, unbatched) whose solve succeeds on
    the training events, and what to say when it is not the first; :class:`FitFailedError` naming each
    candidate's cause when none does. Why: NumPyro's own refusal of a start ("Cannot find valid initial
    parameters") names neither the point nor the failed solve behind it."""
    failed, main = [], None  # "label: cause" of each start whose solve fails, in order; the first cause
    for label, values in candidates:
        status = int(_training_status(process, weight_prior, config, events, {k: np.asarray(v)[None] for k, v in values.items()})[0])
        if status == 0:
            note = (f"{name}: NUTS starts from {label}, because the solve fails at the earlier start(s) "
                    f"({'; '.join(failed)}).") if failed else None  # fmt: skip
            return {k: jnp.asarray(v) for k, v in values.items()}, note
        cause = FAILURE_CAUSES[Status(status)]
        main = main or cause  # the first start's cause names the fix
        failed.append(f"{label}: {cause}")
    raise FitFailedError(f"{name}: the solve fails at every point NUTS could start from ({'; '.join(failed)}); nothing "
                         f"is sampled. Likely fix for `{main}`: {FAILURE_ADVICE[main]}.")  # fmt: skip


def _warn_if_failed(status: np.ndarray, what: str) -> None:
    message = failed_message(status, what)
    if message:
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def check_fixed_steps(process, weight_prior, config, events, flat: dict, what: str) -> tuple[float, str | None]:
    """``(error, message)``: the largest |log-likelihood difference| (nats) between ``config`` and
    :data:`REFERENCE_SOLVER` over up to :data:`CHECKED_DRAWS` draws of ``flat`` (evenly spread) where
    both solves succeed (NaN for a ``SolverConfig``: nothing to check), and what to say, naming the
    fix, when it is above :data:`FIXED_STEPS_NATS` (else None)."""
    if not isinstance(config, FixedSteps):
        return float("nan"), None
    total = next(iter(flat.values())).shape[0]
    keep = np.unique(np.linspace(0, total - 1, min(CHECKED_DRAWS, total)).round().astype(int))
    draws = {k: jnp.asarray(v[keep]) for k, v in flat.items()}
    arrays = event_arrays(events)
    lls = []
    for solver in (config, REFERENCE_SOLVER):
        sol = _solve_all(process, weight_prior, draws, arrays, None, solver)
        lls.append(np.asarray(draws_log_likelihood(sol, arrays["mask"])).sum(axis=1))
    both = np.isfinite(lls[0]) & np.isfinite(lls[1])
    error = float(np.max(np.abs(lls[0] - lls[1])[both])) if both.any() else float("nan")
    if error <= FIXED_STEPS_NATS:
        return error, None
    return error, (f"{what}: with FixedSteps the log-likelihood differs from an adaptive solve by up to {error:.3g} "
                   f"nats at {int(both.sum())} of {keep.size} posterior draws checked (over {FIXED_STEPS_NATS} nats, "
                   "or none comparable): the posterior may be wrong. Raise FixedSteps(grid_size=...) or fit with an "
                   "adaptive SolverConfig.")  # fmt: skip
