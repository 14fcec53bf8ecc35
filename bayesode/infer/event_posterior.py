"""What follows from a point-process posterior (:class:`~bayesode.infer.EventFit`).

- :func:`solve_draws`: the jump ODE solved for every posterior draw (vmapped, one
  compiled program) on any event sequences: intensities, compensators, end states.
- :func:`intensity_bands`, :func:`to_inference_data` (intensity as a posterior-predictive variable with time
  coords, per-event log-likelihood for LOO; the fit's warnings in its attrs).
- Held-out likelihood and forecasts (Ogata thinning from each draw's state at the end of the history):
  :mod:`~bayesode.infer.event_forecast`.
"""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np

from ..datasets import EventSequences
from ..errors import ConfigError
from ..model import event_arrays
from .event_draws import _solve_all
from .point_process import EventFit


def solve_draws(fit: EventFit, events: EventSequences | None = None, *, save_ts=None, num_draws: int | None = None):
    """:class:`~bayesode.solving.EventJumpSolution` with leading axes (draw, sequence).

    ``events`` default the training data; ``save_ts`` (save,) where to record the intensity;
    ``num_draws`` thins the posterior evenly (default: all draws).
    """
    events = fit.events if events is None else events
    save = None if save_ts is None else jnp.asarray(np.asarray(save_ts, np.float64) - fit.origin, jnp.float32)
    samples = {k: jnp.asarray(v) for k, v in fit.flat_samples(num_draws).items()}
    return _solve_all(fit.process, fit.weight_prior, samples, event_arrays(events, origin=fit.origin), save, fit.config)


def intensity_bands(fit: EventFit, save_ts, *, prob: float = 0.9, events=None, num_draws=None) -> dict:
    """Posterior mean and central ``prob`` band of the intensity at ``save_ts``.

    Returns ``{"mean", "lower", "upper"}``, each (sequence, time, mark), and ``"draws"``
    (draw, sequence, time, mark).
    """
    if not 0 < prob < 1:
        raise ConfigError(f"`prob` must be in (0, 1); got {prob!r}.")
    rates = np.asarray(solve_draws(fit, events, save_ts=save_ts, num_draws=num_draws).rates)
    q = (1 - prob) / 2
    return {"mean": rates.mean(0), "lower": np.quantile(rates, q, axis=0), "upper": np.quantile(rates, 1 - q, axis=0),
            "draws": rates}  # fmt: skip


def to_inference_data(fit: EventFit, save_ts=None, *, num_draws=None):
    """ArviZ InferenceData: posterior weights; ``posterior_predictive.intensity`` (chain, draw, sequence,
    time, mark) at ``save_ts``; ``log_likelihood.events`` (chain, draw, event) over the real events
    (pointwise terms for ``az.loo``); ``constant_data`` event times and sequences; NUTS divergences."""
    import arviz as az

    ev = fit.events
    if save_ts is None:
        save_ts = np.linspace(float(ev.t0.min()), float(ev.t_end.max()), 200)
    save_ts = np.asarray(save_ts, np.float64)
    if num_draws is not None:
        raise ConfigError("to_inference_data keeps every draw (chain, draw); thin the fit's samples instead.")
    sol = solve_draws(fit, save_ts=save_ts)
    chains, draws = fit.num_chains, fit.num_draws
    per_event = np.asarray(sol.log_rates - sol.increments).reshape(chains, draws, *ev.mask.shape)[..., ev.mask]
    rates = np.asarray(sol.rates).reshape(chains, draws, ev.num_sequences, save_ts.size, ev.num_marks)
    seq_of_event = np.broadcast_to(np.arange(ev.num_sequences)[:, None], ev.mask.shape)[ev.mask]
    coords = {"sequence": list(ev.names), "time": save_ts, "mark": list(ev.mark_names),
              "event": np.arange(int(ev.mask.sum()))}  # fmt: skip
    sample_stats = {"diverging": fit.stats["diverging"]} if "diverging" in fit.stats else None
    return az.from_dict(
        posterior=dict(fit.samples),
        posterior_predictive={"intensity": rates},
        log_likelihood={"events": per_event},
        constant_data={"event_time": ev.times[ev.mask], "event_sequence": seq_of_event,
                       "event_mark": ev.marks[ev.mask]},  # fmt: skip
        sample_stats=sample_stats,
        coords=coords,
        dims={"intensity": ["sequence", "time", "mark"], "events": ["event"], "event_time": ["event"],
              "event_sequence": ["event"], "event_mark": ["event"]},  # fmt: skip
        attrs={"method": fit.method, "model": "bayesode neural jump ODE (Jia & Benson 2019)",
               "warnings": json.dumps(fit.stats.get("warnings", [])), "interrupted": int(bool(fit.stats.get("interrupted"))),
               **({"latent_decay": float(fit.process.decay)} if hasattr(fit.process, "decay") else {})},
    )
