"""Forecasts of an event fit: future events simulated from posterior draws (Ogata thinning), and the
log predictive density of held-out future events."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from ..checks import as_key, positive_int
from ..datasets import EventSequences
from ..errors import ConfigError, FitFailedError
from ..model import event_arrays
from ..solving import Status, pending_arrivals, simulate_events
from ..solving.event_jumps import is_delayed
from .event_draws import _draw_process, _failure_message, _warn_if_failed, draws_log_likelihood
from .event_posterior import solve_draws
from .point_process import EventFit


def forecast_events(fit: EventFit, horizon: float, *, key, max_events: int, window: float | None = None,
                    num_draws: int = 100, events: EventSequences | None = None):  # fmt: skip
    """Simulate events on ``(t_end, t_end + horizon]`` of every sequence from posterior draws.

    Each draw's state at the end of the history (``events``, default the training data) starts
    :func:`bayesode.solving.simulate_events` (Ogata thinning). ``window`` defaults to two mean
    gaps. A delayed process (``delayed=True``) carries the history's arrivals still pending.
    Returns :class:`~bayesode.solving.SimulatedEvents` with leading (draw, sequence).
    """
    events = fit.events if events is None else events
    if not float(horizon) > 0:
        raise ConfigError(f"`horizon` must be positive; got {horizon!r}.")
    positive_int("max_events", max_events)
    window = 2.0 * fit.process.flow.t_scale if window is None else float(window)
    key = as_key(key)
    ends = solve_draws(fit, events, num_draws=num_draws)
    samples = {k: jnp.asarray(v) for k, v in fit.flat_samples(num_draws).items()}
    num = next(iter(samples.values())).shape[0]
    keys = jax.random.split(key, num * events.num_sequences).reshape(num, events.num_sequences, -1)
    history = event_arrays(events, origin=fit.origin)
    sim = _forecast(fit.process, fit.weight_prior, samples, ends.z_end, history, keys, float(horizon), max_events,
                    window, fit.config)  # fmt: skip
    return sim._replace(times=np.asarray(sim.times, np.float64) + fit.origin)  # back on the data's clock


@eqx.filter_jit
def _forecast(template, weight_prior, samples, z_end, history, keys, horizon, max_events, window, config):
    delayed = is_delayed(template)

    def one_draw(args):
        sample, z, k = args
        process = _draw_process(template, weight_prior, sample)

        def one_sequence(zz, times, marks, mask, te, kk):
            pending = pending_arrivals(process, times, marks, mask, te) if delayed else None
            return simulate_events(process, zz, te, te + horizon, key=kk, max_events=max_events, window=window,
                                   config=config, pending=pending)  # fmt: skip

        return jax.vmap(one_sequence)(z, history["times"], history["marks"], history["mask"], history["t_end"], k)

    return jax.lax.map(one_draw, (samples, z_end, keys))


def held_out_log_likelihood(fit: EventFit, history: EventSequences, future: EventSequences, *, num_draws=None) -> dict:
    """Log predictive density of ``future`` events given ``history`` (e.g. ``events.split(t)``).

    For each draw, ``log p(future | history) = loglik([t0, T]) - loglik([t0, t_split])``;
    the predictive density averages ``p`` over draws (log-mean-exp). Returns ``total``
    (float), ``per_event`` (total / number of future events), ``per_sequence``, and
    ``failed_draws``: draws left out because a solve failed (on the history: such a draw has
    no posterior mass; on the future: it cannot score it). A warning names them; if more than
    half the draws fail, FitFailedError.
    """
    whole = _join(history, future)
    full = solve_draws(fit, whole, num_draws=num_draws)
    past = solve_draws(fit, history, num_draws=num_draws)
    ll_full, ll_past = draws_log_likelihood(full, whole.mask), draws_log_likelihood(past, history.mask)
    status = np.maximum(np.asarray(full.status).max(axis=1), np.asarray(past.status).max(axis=1))  # (draw,)
    cond = np.asarray(ll_full - ll_past, np.float64)  # (draw, sequence)
    ok = (status == 0) & np.all(np.isfinite(cond), axis=1)
    if np.mean(~ok) > 0.5:
        raise FitFailedError(_failure_message(np.where(ok, 0, np.maximum(status, int(Status.NONFINITE))),
                                              "posterior draws", "held-out log likelihood"))  # fmt: skip
    _warn_if_failed(np.where(ok, 0, np.maximum(status, int(Status.NONFINITE))), "posterior draws (left out of the held-out score)")
    cond = cond[ok]
    per_sequence = np.asarray(logsumexp(cond, axis=0) - np.log(cond.shape[0]))
    total = float(logsumexp(cond.sum(axis=1)) - np.log(cond.shape[0]))
    return {"total": total, "per_event": total / max(int(future.mask.sum()), 1), "per_sequence": per_sequence,
            "failed_draws": int(np.sum(~ok))}  # fmt: skip


def _join(history: EventSequences, future: EventSequences) -> EventSequences:
    from ..datasets import make_event_sequences

    pairs = [(history.event_list(i), future.event_list(i)) for i in range(history.num_sequences)]
    return make_event_sequences([np.concatenate([a[0], b[0]]) for a, b in pairs],
                                [np.concatenate([a[1], b[1]]) for a, b in pairs], t0=history.t0, t_end=future.t_end,
                                num_marks=history.num_marks, names=history.names, mark_names=history.mark_names)  # fmt: skip
