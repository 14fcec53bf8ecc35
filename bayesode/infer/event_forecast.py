"""Forecasts of an event fit: future events simulated from posterior draws (Ogata thinning)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..checks import as_key, positive_int
from ..datasets import EventSequences
from ..errors import ConfigError
from ..solving import simulate_events
from .event_draws import _draw_process
from .point_process import EventFit, solve_draws


def forecast_events(fit: EventFit, horizon: float, *, key, max_events: int, window: float | None = None,
                    num_draws: int = 100, events: EventSequences | None = None):  # fmt: skip
    """Simulate events on ``(t_end, t_end + horizon]`` of every sequence from posterior draws.

    Each draw's state at the end of the history (``events``, default the training data) starts
    :func:`bayesode.solving.simulate_events` (Ogata thinning). ``window`` defaults to two mean
    gaps. Returns :class:`~bayesode.solving.SimulatedEvents` with leading (draw, sequence).
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
    t_end = jnp.asarray(np.asarray(events.t_end, np.float64) - fit.origin, jnp.float32)
    sim = _forecast(fit.process, fit.weight_prior, samples, ends.z_end, t_end, keys, float(horizon), max_events,
                    window, fit.config)  # fmt: skip
    return sim._replace(times=np.asarray(sim.times, np.float64) + fit.origin)  # back on the data's clock


@eqx.filter_jit
def _forecast(template, weight_prior, samples, z_end, t_end, keys, horizon, max_events, window, config):
    def one_draw(args):
        sample, z, k = args
        process = _draw_process(template, weight_prior, sample)
        return jax.vmap(lambda zz, te, kk: simulate_events(process, zz, te, te + horizon, key=kk, max_events=max_events,
                                                           window=window, config=config))(z, t_end, k)  # fmt: skip

    return jax.lax.map(one_draw, (samples, z_end, keys))
