"""A NumPyro model for event sequences: a Bayesian neural jump ODE (Jia & Benson 2019).

Every inexact array of the process (flow, jump and readout weights, and ``z0``) gets
a prior through :func:`sample_field`, so its sites are ``field.flow.layers[0].weight``,
``field.jump.layers[0].weight``, ``field.readout.weight``, ``field.z0`` and so on.
The point-process log-likelihood enters through ``numpyro.factor`` (site ``events``,
one term per sequence, in the plate ``sequences``, which can subsample them); a failed
solve makes it ``-inf`` (a rejected proposal, never an exception). Deterministic sites:

- ``event_log_lik`` (sequence, event): per-event terms for LOO, 0 on padding
  (see :func:`bayesode.solving.per_event_log_likelihood`);
- ``solve_status`` (sequence,): 0 where the solve succeeded;
- ``intensity`` (sequence, save, mark): only when ``save_ts`` is given.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro

from ..caching import shared_by_structure
from ..datasets import EventSequences
from ..errors import ConfigError
from ..solving import SolverConfig, events_log_likelihood, per_event_log_likelihood, solve_event_jumps
from .priors import Normal, _random_leaves, sample_field

SITE_EVENTS = "events"
SITE_EVENT_LOG_LIK = "event_log_lik"
SITE_INTENSITY = "intensity"
SITE_STATUS = "solve_status"
SITE_SEQUENCES = "sequences"


def event_arrays(events: EventSequences, dtype=jnp.float32, *, origin: float | None = None) -> dict:
    """The model's data arguments from :class:`EventSequences`: times as time since ``origin``.

    ``origin`` defaults to the earliest window start (``events.t0.min()``); it is subtracted in
    float64 before the cast to ``dtype``. Why: absolute times such as calendar years (1851-1962)
    leave float32 a resolution of about 1e-4, and solves near a jump then fail on the step size
    (status ``dt_min``); relative times keep the resolution of the span. An autonomous process
    (the default :class:`~bayesode.solving.NeuralJumpProcess`) is unchanged by the shift; a
    time-dependent one sees time since ``origin``, so fit and prediction must share it (the
    functions of :mod:`bayesode.infer.point_process` use the training data's).
    """
    if not isinstance(events, EventSequences):
        raise ConfigError(f"`events` must be EventSequences (see make_event_sequences); got {type(events).__name__}.")
    origin = float(np.min(events.t0)) if origin is None else float(origin)
    return {
        "times": jnp.asarray(np.asarray(events.times, np.float64) - origin, dtype),
        "marks": jnp.asarray(events.marks, jnp.int32),
        "mask": jnp.asarray(events.mask),
        "t0": jnp.asarray(np.asarray(events.t0, np.float64) - origin, dtype),
        "t_end": jnp.asarray(np.asarray(events.t_end, np.float64) - origin, dtype),
    }


def point_process_model(process, *, weight_prior=None, config: SolverConfig | None = None):
    """Return a NumPyro model ``model(times, marks, mask, t0, t_end, save_ts=None, latents_only=False, batch_size=None)``.

    Parameters
    ----------
    process : NeuralJumpProcess (or any process module, see :mod:`bayesode.solving.event_jumps`)
        Its weights set shapes and the SVI start; the prior replaces them.
    weight_prior : Normal or HierarchicalNormal
        Prior on every weight and on ``z0``; default ``Normal(1.0)``, which suits the
        O(1) scaling of :class:`NeuralJumpProcess` (``rate_scale``, ``t_scale``).
    config : SolverConfig

    The model takes ``times, marks, mask`` (sequence, event), ``t0, t_end`` (sequence,)
    (:func:`event_arrays` builds them, as time since an origin) and optional ``save_ts`` (save,)
    shared by all sequences, on the same clock, where the intensity is recorded. ``latents_only=True``
    stops after the weights' sites (no solve, no likelihood): an autoguide or a sampler sets itself up
    on that, and NumPyro's set-up would otherwise trace and compile the gradient of the whole solve.
    ``batch_size``: solve that many sequences, a random subset drawn on each call (NumPyro's subsampling
    plate ``sequences``), their log-likelihood scaled up to all sequences: an unbiased estimate of the
    log density for stochastic optimisation (MAP, SVI); ``None`` (the default): every sequence, as a
    sampler and every score need. The deterministic sites are then over the subset.

    Examples
    --------
    >>> import jax.random as jr
    >>> from numpyro import handlers
    >>> from bayesode.datasets.events import make_event_sequences
    >>> from bayesode.solving import NeuralJumpProcess
    >>> model = point_process_model(NeuralJumpProcess(2, width=4, key=jr.key(0)))
    >>> data = event_arrays(make_event_sequences([[0.5, 1.0]], t_end=2.0))
    >>> tr = handlers.trace(handlers.seed(model, 0)).get_trace(**data)
    >>> tr["event_log_lik"]["value"].shape
    (1, 2)
    """
    weight_prior = Normal(1.0) if weight_prior is None else weight_prior
    config = SolverConfig() if config is None else config
    # The prior replaces the process's weights, so only their shapes matter: a process with the same
    # structure, settings and fixed arrays gets the same function (and so the same compiled programs).
    return shared_by_structure("point_process_model", process, _random_leaves(process), (weight_prior, config),
                               lambda: _make_model(process, weight_prior, config))  # fmt: skip


def _make_model(process, weight_prior, config: SolverConfig):
    def model(times, marks, mask, t0, t_end, save_ts=None, latents_only=False, batch_size=None):
        drawn = sample_field(process, weight_prior)
        if latents_only:  # the weights' sites alone: what a guide's or a sampler's set-up needs, without a solve
            return

        def one(times, marks, mask, t0, t_end):
            sol = solve_event_jumps(drawn, times, marks, mask, t_end, t0=t0, save_ts=save_ts, config=config)
            return events_log_likelihood(sol, mask), per_event_log_likelihood(sol, mask), sol.status, sol.rates

        # The sequences are independent given the weights: a subsampling plate solves `batch_size` of them, drawn
        # afresh on every call, and scales their log-likelihood by sequences / batch_size (an unbiased estimate).
        with numpyro.plate(SITE_SEQUENCES, times.shape[0], subsample_size=batch_size) as idx:
            arrays = (times, marks, mask, t0, t_end)
            if batch_size is not None:
                arrays = tuple(a[idx] for a in arrays)
            ll, per_event, status, rates = jax.vmap(one)(*arrays)
            numpyro.factor(SITE_EVENTS, ll)
        numpyro.deterministic(SITE_STATUS, status)
        numpyro.deterministic(SITE_EVENT_LOG_LIK, per_event)
        if save_ts is not None:
            numpyro.deterministic(SITE_INTENSITY, rates)

    return model
