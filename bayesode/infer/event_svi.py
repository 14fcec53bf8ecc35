"""The SVI stage of the jump fits (:func:`bayesode.infer.fit_events`, :func:`bayesode.infer.fit_jump_filter`): a
mean-field Normal guide (NumPyro ``AutoNormal``) centred at given values, fitted by Adam, and draws from it.

Each is one compiled program that takes the centre, the key and the data as arguments (the guide is
built inside it), kept in the inference wing's program cache (``programs.PROGRAMS``) by model,
shapes and settings: a refit with the same settings traces and compiles nothing. Why not
``SVI.run``: it traces the model eagerly in ``SVI.init`` (every loop inside the solve then compiles
as a program of its own) and builds its loop afresh on every call.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from numpyro.infer import SVI, TraceMeanField_ELBO, autoguide, init_to_value

from .programs import PROGRAMS, latents_model, shapes_key
from .svi import _TraceELBO


class SviSettings(NamedTuple):
    """What the SVI program depends on besides the model and shapes (hashable: a program cache key).

    ``init_scale``: the guide's starting scale around the centre (unconstrained space); narrow, so the
    first steps stay where the centre's solves succeed. ``decay_to``: Adam's step size falls on a
    cosine schedule to this fraction of ``learning_rate`` (None: constant). ``mean_field_elbo``:
    the ELBO with the analytic KL to a Normal prior (``TraceMeanField_ELBO``), else the Monte Carlo
    one (NumPyro's ``Trace_ELBO``, summed in site order so the program is the same in every process).
    ``batch_size``: each step's ELBO from ``model(**data, batch_size=batch_size)``, a random subset of the
    sequences (a model with a subsampling plate, as :func:`~bayesode.model.point_process_model`'s); None: all.
    ``average_last``: the share of the steps, the last ones, whose iterates are averaged into the returned
    parameters (Polyak-Ruppert averaging: the mean of a noisy walk around the optimum, not wherever its last
    step left it); 0: the last iterate. ``loc_learning_rate``: Adam's peak step size for the guide's locations
    (``*_auto_loc``) where it differs from ``learning_rate`` (then the scales'): Adam moves a parameter by about
    its step size whatever the gradient's size, so a location's step must be small beside the posterior's
    width, while a scale (on a log-like axis) needs no such care. None: ``learning_rate`` for both.
    """

    steps: int
    learning_rate: float
    init_scale: float = 0.02
    decay_to: float | None = 0.1
    mean_field_elbo: bool = True
    batch_size: int | None = None
    average_last: float = 0.0
    loc_learning_rate: float | None = None


def width_factor(num_events: int) -> float:
    """How much narrower a posterior over the weights is expected to be than at 900 events (where the SVI
    defaults were chosen): ``min(1, sqrt(900 / num_events))``, as a posterior's spread shrinks like
    ``1 / sqrt(events)``. The SVI stage of :func:`~bayesode.infer.fit_events` multiplies both the guide's
    starting scale (:func:`initial_scale`) and the locations' Adam step size by it."""
    return min(1.0, math.sqrt(900 / max(int(num_events), 1)))


def initial_scale(num_events: int) -> float:
    """The guide's starting scale for a fit to ``num_events`` events: ``0.02 * width_factor(num_events)``
    (0.02 up to 900 events). Why: a guide started far wider than the posterior spends many noisy steps
    shrinking, while one started narrower widens quickly (the entropy's gradient is ``1 / scale``);
    docs/decisions.md, 2026-12-07 (fortieth session)."""
    return 0.02 * width_factor(num_events)


def _svi(model, centre: dict, settings: SviSettings):
    # Set up on the latent sites alone (see programs.latents_model).
    guide = autoguide.AutoNormal(latents_model(model), init_loc_fn=init_to_value(values=centre), init_scale=settings.init_scale)
    def adam(rate):
        if settings.decay_to is not None:
            rate = optax.cosine_decay_schedule(rate, settings.steps, settings.decay_to)
        return optax.adam(rate)

    if settings.loc_learning_rate is None:
        update = adam(settings.learning_rate)
    else:
        update = optax.multi_transform({"loc": adam(settings.loc_learning_rate), "scale": adam(settings.learning_rate)},
                                       lambda params: {k: "loc" if k.endswith("_auto_loc") else "scale" for k in params})  # fmt: skip
    optimizer = optax.chain(optax.clip_by_global_norm(10.0), update)
    return guide, SVI(model, guide, optimizer, TraceMeanField_ELBO() if settings.mean_field_elbo else _TraceELBO())


def fit_svi(model, centre: dict, data: dict, key, settings: SviSettings) -> dict:
    """``settings.steps`` Adam steps of SVI (``stable_update``: a step whose loss is not finite is not
    taken) from a guide centred at ``centre`` (site -> value); ``data``: the model's keyword arguments.

    Returns ``{"params", "svi_loss", "start"}``: the guide's parameters, the loss per step (steps,),
    and the guide's median at the sites of ``centre`` (where NUTS starts).
    """
    steps = settings.steps

    def build():
        def run(centre, key, data):
            guide, svi = _svi(model, centre, settings)
            state = svi.init(key, **data)
            step_kwargs = {} if settings.batch_size is None else {"batch_size": settings.batch_size}
            first = steps - int(round(settings.average_last * steps))  # the first step averaged

            def step(carry, i):
                state, mean = carry
                state, loss = svi.stable_update(state, **data, **step_kwargs)
                # Running mean of the iterates from `first` on (Polyak-Ruppert tail averaging).
                weight = jnp.where(i >= first, 1.0 / jnp.maximum(i - first + 1, 1), 0.0)
                mean = jax.tree.map(lambda m, p: m + weight * (p - m), mean, svi.get_params(state))
                return (state, mean), loss

            (state, mean), losses = jax.lax.scan(step, (state, svi.get_params(state)), jnp.arange(steps))
            params = mean if first < steps else svi.get_params(state)
            start = {k: v for k, v in guide.median(params).items() if k in centre}
            return {"params": params, "svi_loss": losses, "start": start}

        return jax.jit(run)

    shapes = (shapes_key(data), shapes_key(centre), shapes_key(key))
    # Blocked on: JAX returns before the work is done, and the stage's timing line would time the dispatch.
    return jax.block_until_ready(PROGRAMS.get(model, "event_svi", (shapes, settings), build)(centre, key, data))


def draw_svi(model, centre: dict, params: dict, data: dict, key, num_draws: int, settings: SviSettings) -> dict:
    """``num_draws`` draws (site -> (draw, ...)) from the guide of :func:`fit_svi` with ``params``.

    ``centre`` and ``settings`` as given to :func:`fit_svi`: they build the same guide, whose sites
    and transforms ``SVI.init`` sets up (its parameters are replaced by ``params``).
    """

    def build():
        def run(centre, params, key, data):
            guide, svi = _svi(model, centre, settings)
            svi.init(key, **data)  # sets up the guide's sites and transforms; its parameters are discarded
            return guide.sample_posterior(key, params, sample_shape=(num_draws,))

        return jax.jit(run)

    shapes = (shapes_key(data), shapes_key(centre), shapes_key(params), shapes_key(key), int(num_draws))
    return PROGRAMS.get(model, "event_svi_draws", (shapes, settings), build)(centre, params, key, data)
