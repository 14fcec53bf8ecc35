"""Fitting event sequences with a Bayesian neural jump ODE.

- :func:`fit_events`: a MAP fit (NumPyro ``SVI`` with an ``AutoDelta`` guide, Adam on a cosine
  schedule), then SVI (an ``AutoNormal`` guide centred at the MAP), then NUTS started at the SVI
  fit (``method="svi+nuts"``, the default), or SVI or NUTS alone after the MAP, or a Laplace
  approximation at the MAP (``method="laplace"``: :mod:`~bayesode.infer.event_laplace`).
- What follows from the posterior: :mod:`~bayesode.infer.event_posterior` (the draws solved, intensity
  bands, InferenceData) and :mod:`~bayesode.infer.event_forecast` (held-out likelihood, forecasts).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers

from ..checks import as_key, positive_int, positive_number
from ..datasets import EventSequences
from ..errors import ConfigError, DataError, FitFailedError
from ..model import Normal, event_arrays, point_process_model, sample_field
from ..solving import (
    FixedSteps,
    NeuralJumpProcess,
    SolverConfig,
)
from ..solving.event_jumps import check_delayed_solver, is_delayed
from .event_checkpoint import EventCheckpoint, fingerprint
from .event_draws import (
    _failure_message,
    _training_status,
    check_fixed_steps,
    failed_message,
    nuts_start,
)
from .event_laplace import laplace_fit, validation_splits
from .event_map import map_stage, stalled_message
from .event_nuts import sample_nuts
from .event_svi import SviSettings, draw_svi, fit_svi, initial_scale, width_factor

METHODS = ("svi", "nuts", "svi+nuts", "laplace")
# The latent state's pulls towards 0 (``make_event_process(decay=)``) a Laplace fit of the default process tries, the
# leave-future-out validation choosing: on a 1,000-event sequence without a pull the draws drift over hundreds of
# events and the validation picks floors too narrow to cover; on the exponential Hawkes suite the pull costs the
# MAP (measured: docs/decisions.md, 2026-12-07 (events)).
LAPLACE_DECAYS = (0.0, 0.1)
# Segments between events are short: a 3rd-order solver at 1e-4 is accurate enough for a
# likelihood (relative error ~1e-6 of the log-likelihood) and halves the gradient cost
# against Tsit5 at 1e-6 (see benchmarks/point_process.py); 64 steps bound a failed segment.
EVENT_SOLVER = SolverConfig(solver=diffrax.Bosh3(), rtol=1e-4, atol=1e-4, max_steps=64)
# A delayed process's sharp onset (``NeuralJumpProcess(delayed=True)``) needs more steps in the segment after an
# arrival: on the power-law benchmark the SVI guide's median failed at 64 steps and solved at 256 (docs/decisions.md).
DELAYED_EVENT_SOLVER = SolverConfig(solver=diffrax.Bosh3(), rtol=1e-4, atol=1e-4, max_steps=256)


@dataclass(frozen=True, eq=False)
class EventFit:
    """A fitted point-process model.

    ``samples``: site name -> (chain, draw, ...) posterior draws of the weights (and ``z0``);
    ``process``: the template (shapes, static settings); ``events``: the training data;
    ``stats``: ``map_loss`` (steps,) and ``map`` (site -> MAP value) of the warm start's best start,
    ``map_start_loss`` (start,) every start's final loss, ``diverging``
    (chain, draw) and ``interrupted`` (Ctrl-C kept fewer draws) for NUTS, ``svi_loss`` (steps,) for
    SVI, ``laplace`` for ``method="laplace"`` (the floor, its validation scores (origin, floor), the
    Hessian's negative eigenvalues, the redrawn draws), ``fixed_steps_ll_error`` (nats; NaN unless ``config`` is ``FixedSteps``), ``warnings``: what
    a reader of the result must be told (failed solves, divergences, an interruption, a fixed-step
    error), also warned by ``fit_events`` and kept in :func:`to_inference_data`'s attrs.
    """

    process: NeuralJumpProcess
    weight_prior: object
    config: SolverConfig
    events: EventSequences
    samples: dict
    method: str
    stats: dict = field(default_factory=dict)

    @property
    def origin(self) -> float:
        """The clock's zero: the process sees time since the training data's earliest window start
        (see :func:`bayesode.model.event_arrays`); every solve of this fit uses it."""
        return float(np.min(self.events.t0))

    @property
    def num_chains(self) -> int:
        return int(next(iter(self.samples.values())).shape[0])

    @property
    def num_draws(self) -> int:
        return int(next(iter(self.samples.values())).shape[1])

    def flat_samples(self, num_draws: int | None = None) -> dict:
        """Site -> (draw, ...) over all chains; ``num_draws`` evenly thinned if given."""
        flat = {k: np.reshape(v, (-1,) + v.shape[2:]) for k, v in self.samples.items()}
        total = next(iter(flat.values())).shape[0]
        if num_draws is not None and num_draws < total:
            keep = np.linspace(0, total - 1, num_draws).round().astype(int)
            flat = {k: v[keep] for k, v in flat.items()}
        return flat


def make_event_process(events: EventSequences, *, key, latent_dim: int = 2, width: int = 16, depth: int = 1,
                       decay: float = 0.0, delayed: bool = False):  # fmt: skip
    """A :class:`NeuralJumpProcess` scaled to the data: ``rate_scale`` = events per time unit,
    ``t_scale`` = mean gap between events. ``delayed=True`` adds a learned delayed effect of each
    event (one that starts after a lag; experimental: see :class:`NeuralJumpProcess`)."""
    duration = float(np.sum(events.t_end - events.t0))
    count = max(int(events.mask.sum()), 1)
    return NeuralJumpProcess(latent_dim, events.num_marks, width=width, depth=depth, key=key,
                             rate_scale=count / duration, t_scale=duration / count, decay=decay,
                             delayed=delayed)  # fmt: skip


def fit_events(
    events: EventSequences,
    *,
    key,
    process=None,
    latent_dim: int = 2,
    width: int = 16,
    depth: int = 1,
    delayed: bool = False,
    decay: float | None = None,
    weight_prior=None,
    config: SolverConfig | None = None,
    method: str = "svi+nuts",
    map_steps: int = 1500,
    map_starts: int = 1,
    batch_size: int | None = None,
    svi_steps: int = 1000,
    learning_rate: float = 0.02,
    num_warmup: int = 200,
    num_samples: int = 200,
    num_chains: int = 2,
    max_tree_depth: int = 6,
    progress: bool = False,
    checkpoint_dir: str | None = None,
) -> EventFit:
    """Fit a Bayesian neural jump ODE to event sequences.

    Parameters
    ----------
    events : EventSequences (:func:`bayesode.datasets.make_event_sequences`)
    key : PRNG key or int seed (required, keyword-only).
    process : NeuralJumpProcess, optional
        Default :func:`make_event_process` with ``latent_dim, width, depth, delayed``.
    delayed : bool
        Experimental: each event also acts after a learned delay (:class:`NeuralJumpProcess`), for
        effects that start after a lag (an incubation period; a kernel that is 0 below its onset,
        as the power-law Hawkes benchmark's). Needs the adaptive solver; ``method="svi"`` is the one
        measured (NUTS on it is slow: docs/decisions.md). With your own ``process``, set it there.
    decay : float, optional
        The default process's pull of the latent state towards 0 (:class:`NeuralJumpProcess`); default 0, and
        for ``method="laplace"`` each of :data:`LAPLACE_DECAYS` fitted, the one whose leave-future-out score is
        best kept (``stats["laplace"]["decay_scores"]``). With your own ``process``, set it there.
    weight_prior : default ``Normal(1.0)`` on every weight and ``z0``.
    config : SolverConfig or FixedSteps, default :data:`EVENT_SOLVER` (adaptive; :data:`DELAYED_EVENT_SOLVER`,
        with more steps per segment, for a delayed process; ``FixedSteps()`` for ``method="laplace"``'s MAP
        fits and Hessians, its cost, whose draws are then scored and solved by :data:`EVENT_SOLVER`: the fit's
        ``config``).
        ``FixedSteps()`` is several times cheaper per gradient on long sequences (see
        :mod:`bayesode.solving.event_grid`); the fit then checks up to 20 of its draws against an
        adaptive solve, keeps the largest difference in ``stats["fixed_steps_ll_error"]`` (nats)
        and warns above 1 nat.
    method : {"svi+nuts", "svi", "nuts", "laplace"}
        Every method starts with ``map_steps`` of MAP optimisation from the template's weights.
        ``"svi"`` then fits a mean-field Normal guide centred at the MAP and keeps ``num_samples``
        draws per chain from it; ``"svi+nuts"`` starts every NUTS chain at the guide's median;
        ``"nuts"`` at the MAP. ``"laplace"``: a Gaussian at the MAP with the potential's exact Hessian,
        its eigenvalues floored at a precision chosen by leave-future-out (the MAP refitted with the
        last 40%, 30% and 20% of every window held out; :mod:`~bayesode.infer.event_laplace`):
        ``num_chains x num_samples`` independent draws, the fast route for long sequences.
    map_steps : Adam steps of the MAP warm start (0: none), on a cosine schedule from ``learning_rate``
        to 1% of it. Why: a constant step size leaves the fit oscillating around the optimum, and SVI
        or NUTS started from an unconverged point spend their budget on getting there.
    map_starts : MAP fits from this many starting points (the template's weights, then redraws at
        the same per-layer scale: :func:`~bayesode.infer.event_map.start_points`), run side by side
        on the CPU cores; the one with the lowest training loss (negative log density) is kept. Why:
        a neural jump ODE's optimisation has local optima (one start can plateau far from the
        others), and the data, not the luck of one initialisation, should pick the point. Caution: the
        lowest training loss can be the point that forecasts worst where the network can overfit (a
        delayed power-law fit: docs/decisions.md, 2026-12-07 (night)).
    batch_size : sequences per Adam step of the MAP and SVI stages: each step solves a random subset
        of this many sequences and scales their log-likelihood up to all of them (NumPyro's
        subsampling plate, see :func:`~bayesode.model.point_process_model`), an unbiased estimate of
        the full gradient for less. Why: with hundreds of sequences a full-batch step solves every one
        of them (costs and the paper-size benchmark: docs/decisions.md, 2026-12-07 (evening)). The
        steps are noisy: read ``stats["map_loss"]``; the fit warns when the MAP's steps mostly failed or
        ended failing. Default ``None``: every sequence each step. The starts' final losses, NUTS and
        every score use all sequences; ``method="laplace"`` does not take it.
    svi_steps, learning_rate : Adam steps of SVI (cosine schedule to 10% of ``learning_rate``; the
        ELBO's KL to the Normal prior is analytic, ``TraceMeanField_ELBO``; the guide starts at the MAP with
        the scale :func:`~bayesode.infer.event_svi.initial_scale`, narrower the more events, its locations
        step at ``learning_rate`` times :func:`~bayesode.infer.event_svi.width_factor`, and the guide
        returned is the mean of the last half of the iterates) and the peak step size.
    num_warmup, num_samples, num_chains : NUTS (NumPyro's kernel; the chains take turns, iteration by
        iteration: :mod:`~bayesode.infer.event_nuts`). Ctrl-C while it samples keeps the draws made so
        far (the same number per chain) and warns; ``stats["interrupted"]`` says so.
    max_tree_depth : NUTS tree depth cap (default 6, at most 63 gradients per draw): a posterior
        over all network weights is rough, and depth 10 can cost 1023 solves per draw.
    progress : print each stage on stderr (the MAP and SVI stages as a line before and after, NUTS
        as a progress line every few iterations, a bar on a terminal).
    checkpoint_dir : a folder where each finished stage and, every few iterations, the NUTS state and
        draws are saved (:mod:`~bayesode.infer.event_checkpoint`). Run the same fit (same data,
        key and settings) with the same folder after a kill or Ctrl-C and it continues where the
        checkpoint ends, with the draws an uninterrupted run gives; another run's folder is refused.

    Examples
    --------
    >>> from bayesode.datasets import make_event_sequences
    >>> ev = make_event_sequences([[0.4, 1.1, 1.3, 2.8]], t_end=3.0)
    >>> fit = fit_events(ev, key=0, method="svi", map_steps=20, svi_steps=5, num_samples=3, num_chains=1, width=4)
    >>> fit.samples["field.z0"].shape
    (1, 3, 2)
    """
    if not isinstance(events, EventSequences):
        raise ConfigError(f"`events` must be EventSequences (make_event_sequences); got {type(events).__name__}.")
    if method not in METHODS:
        raise ConfigError(f"`method`={method!r} is unknown; choose one of {METHODS}.")
    if int(events.mask.sum()) == 0:
        raise DataError("`events` holds no event; a point-process fit needs at least one.")
    for name, v in (("svi_steps", svi_steps), ("num_samples", num_samples), ("num_chains", num_chains)):
        positive_int(name, v)
    positive_int("num_warmup", num_warmup, allow_zero=True)
    positive_int("map_steps", map_steps, allow_zero=True)
    positive_int("map_starts", map_starts)
    if batch_size is not None:
        positive_int("batch_size", batch_size)
        if batch_size > events.num_sequences:
            raise ConfigError(f"`batch_size`={batch_size} is more than the {events.num_sequences} sequences of `events`.")
        if method == "laplace":
            raise ConfigError("`batch_size` subsamples the MAP and SVI stages of methods 'svi', 'svi+nuts' and "
                              "'nuts'; `method='laplace'` fits its MAP on all sequences: leave `batch_size` out.")  # fmt: skip
        batch_size = None if batch_size == events.num_sequences else int(batch_size)
    learning_rate = positive_number("learning_rate", learning_rate)
    key = as_key(key)
    k_init, k_map, k_svi, k_draw, k_nuts = jax.random.split(key, 5)
    if not isinstance(delayed, bool):
        raise ConfigError(f"`delayed` must be True or False; got {delayed!r}.")
    if method == "laplace" and map_steps == 0:
        raise ConfigError("`method='laplace'` builds its Gaussian at the MAP: `map_steps` must be positive.")
    if decay is not None:
        decay = 0.0 if decay == 0 and not isinstance(decay, bool) else positive_number("decay", decay)
        if process is not None:
            raise ConfigError("`decay` sets the default process's pull; with your own `process`, set it there "
                              "(make_event_process(..., decay=)) and leave `decay` out.")  # fmt: skip
    decays = (LAPLACE_DECAYS if method == "laplace" else (0.0,)) if decay is None else (decay,)

    def build(decay):
        return make_event_process(events, key=k_init, latent_dim=latent_dim, width=width, depth=depth,
                                  delayed=delayed, decay=decay)  # fmt: skip

    if process is not None:
        if delayed and not is_delayed(process):
            raise ConfigError("`delayed=True` builds the default process; with your own `process`, make it delayed "
                              "(make_event_process(..., delayed=True)) and leave `delayed` out.")  # fmt: skip
        decays, build = (None,), lambda _: process  # noqa: E731  (the user's process, as given)
    process = build(decays[0])
    weight_prior = Normal(1.0) if weight_prior is None else weight_prior
    if config is None:
        config = DELAYED_EVENT_SOLVER if is_delayed(process) else FixedSteps() if method == "laplace" else EVENT_SOLVER
    check_delayed_solver(process, config)  # before any work
    if method == "laplace" and is_delayed(process):  # its Hessian: the delayed timeline's nextafter has no derivative rule
        raise ConfigError("`method='laplace'` does not take a delayed process (no second derivatives through its "
                          "arrivals' timeline); use method='svi'.")  # fmt: skip
    model = point_process_model(process, weight_prior=weight_prior, config=config)
    data = event_arrays(events)
    if method == "laplace":
        validation_splits(data)  # enough events for the floor's validation, before any fit
    stats: dict = {}
    notes: list = []  # what the result must say (stats["warnings"])
    settings = dict(method=method, map_steps=map_steps, map_starts=map_starts, svi_steps=svi_steps,
                    learning_rate=float(learning_rate), num_warmup=num_warmup, num_samples=num_samples,
                    num_chains=num_chains, max_tree_depth=max_tree_depth)  # fmt: skip
    if method == "laplace" and len(decays) > 1:
        settings["decays"] = [float(d) for d in decays]
    if batch_size is not None:  # (only when given: earlier checkpoints keep their fingerprint)
        settings["batch_size"] = batch_size
    checkpoint = EventCheckpoint(checkpoint_dir, {**settings, **fingerprint(data, process, weight_prior, config, key)})
    if method == "laplace":
        reference = config if isinstance(config, SolverConfig) else EVENT_SOLVER
        process, samples, found, notes = laplace_fit(
            {d: build(d) for d in decays}, weight_prior, config, reference, events, data, (k_map, k_draw), settings,
            checkpoint, progress, initial_values=_initial_values,
        )  # fmt: skip
        # The draws are solved by the adaptive reference from here on (bands, LOO, forecasts): see event_laplace.
        return _finished(EventFit(process, weight_prior, reference, events, samples, method, found), notes)
    init_values = _initial_values(process, weight_prior)
    if map_steps:
        init_values, stats["map_loss"], stats["map_start_loss"] = map_stage(
            model, init_values, data, k_map, steps=map_steps, starts=map_starts, learning_rate=learning_rate,
            checkpoint=checkpoint, progress=progress, caller="fit_events", batch_size=batch_size)  # fmt: skip
        stats["map"] = {k: np.asarray(v) for k, v in init_values.items()}
        notes.append(stalled_message(stats["map_loss"], "fit_events"))
    if method in ("svi", "svi+nuts"):
        centre = dict(init_values)
        # The guide starts at the MAP as wide as the posterior is expected to be, its locations step in
        # proportion, and the last half of the iterates is averaged (docs/decisions.md, 2026-12-08).
        num_events = int(events.mask.sum())
        svi_settings = SviSettings(svi_steps, float(learning_rate), init_scale=initial_scale(num_events),
                                   batch_size=batch_size, average_last=0.5,
                                   loc_learning_rate=float(learning_rate) * width_factor(num_events))  # fmt: skip

        def run_svi():
            return fit_svi(model, centre, data, k_svi, svi_settings)

        found = checkpoint.stage("svi", run_svi, what=f"SVI ({svi_steps} Adam steps, {{how}})", progress=progress)
        stats["svi_loss"] = np.asarray(found["svi_loss"])
        params = {k: jnp.asarray(v) for k, v in found["params"].items()}
        if method == "svi":
            # Twice the draws asked for, then the first ones whose solve succeeds: the posterior has
            # no mass where the solve fails (the model's log density is -inf there), the Gaussian
            # guide does; so the guide is truncated to the support (rejection).
            total = num_chains * num_samples
            draws = draw_svi(model, centre, params, data, k_draw, 2 * total, svi_settings)
            flat = {k: np.asarray(v) for k, v in draws.items() if k in init_values}
            status = _training_status(process, weight_prior, config, events, flat)
            ok = np.flatnonzero(status == 0)
            if ok.size < total:
                raise FitFailedError(_failure_message(status, "of the SVI guide's draws", "fit_events (svi)"))
            keep = ok[:total]
            stats["svi_draws_rejected"] = int(keep[-1] + 1 - total)  # failed draws passed over to keep `total`
            stats["solve_status"] = np.zeros((num_chains, num_samples), np.int32)
            notes.append(failed_message(status[: keep[-1] + 1], "of the SVI guide's draws (rejected, replaced by further draws)"))
            samples = {k: v[keep].reshape((num_chains, num_samples) + v.shape[1:]) for k, v in flat.items()}
            stats["fixed_steps_ll_error"], note = check_fixed_steps(process, weight_prior, config, events,
                                                                    {k: v[keep] for k, v in flat.items()}, "fit_events (svi)")  # fmt: skip
            return _finished(EventFit(process, weight_prior, config, events, samples, method, stats), notes + [note])
        candidates = [("the SVI guide's median", {k: found["start"][k] for k in init_values})]
        candidates += [("the MAP point", stats["map"])] if map_steps else []
    else:
        candidates = [("the MAP point" if map_steps else "the template's weights", init_values)]
    init_values, note = nuts_start(process, weight_prior, config, events, candidates, "fit_events (nuts)")
    notes.append(note)
    samples, stats["diverging"], stats["interrupted"] = sample_nuts(
        model, init_values, data, k_nuts, num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
        max_tree_depth=max_tree_depth, progress=progress, checkpoint=checkpoint,
    )  # fmt: skip
    samples = {k: v for k, v in samples.items() if k in init_values}
    flat = {k: v.reshape((-1,) + v.shape[2:]) for k, v in samples.items()}
    status = _training_status(process, weight_prior, config, events, flat)
    stats["solve_status"] = status.reshape(stats["diverging"].shape)
    # NUTS never accepts a failed solve after warmup; a chain that never left a failing start would.
    if np.mean(status != 0) > 0.5:
        raise FitFailedError(_failure_message(status, "of the NUTS draws", "fit_events (nuts)"))
    notes.append(failed_message(status, "of the NUTS draws"))
    stats["fixed_steps_ll_error"], note = check_fixed_steps(process, weight_prior, config, events, flat, "fit_events (nuts)")
    notes.append(note)
    divergent = float(np.mean(stats["diverging"]))
    if divergent > 0.5:
        notes.append(f"fit_events: {divergent:.0%} of the NUTS draws are divergent; the posterior is not to be trusted "
                     "(raise num_warmup, lower the step size with a higher target, or use method='svi').")  # fmt: skip
    if stats["interrupted"]:
        notes.append(f"fit_events interrupted: kept {num_chains} x {stats['diverging'].shape[1]} NUTS draws (chains x "
                     f"draws) of {num_chains} x {num_samples}.")  # fmt: skip
    return _finished(EventFit(process, weight_prior, config, events, samples, method, stats), notes)


def _finished(fit: EventFit, notes: list) -> EventFit:
    """``fit`` with ``stats["warnings"]``: the messages a reader of the result must see (console, summary,
    saved file), each also warned once."""
    fit.stats["warnings"] = [n for n in notes if n]
    for message in fit.stats["warnings"]:
        warnings.warn(message, RuntimeWarning, stacklevel=3)
    return fit


def _initial_values(process, weight_prior) -> dict:
    """Site -> value of the template's weights: the SVI start (and the list of latent sites)."""
    tr = handlers.trace(handlers.seed(lambda: sample_field(process, weight_prior), 0)).get_trace()
    values = {name: site["value"] for name, site in tr.items() if site["type"] == "sample"}
    params, _ = eqx.partition(process, eqx.is_inexact_array)
    leaves = jax.tree_util.tree_leaves(params)
    if len(values) == len(leaves):  # Normal prior: one site per leaf, start at the template's weights
        values = dict(zip(values, leaves))
    return values
