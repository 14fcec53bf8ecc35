"""The SVI stage of :func:`bayesode.infer.fit_events`: a mean-field Normal guide (NumPyro ``AutoNormal``)
centred at the MAP, fitted by Adam on a cosine schedule, and draws from it.

Each is one compiled program that takes the centre, the key and the data as arguments (the guide is
built inside it), kept in the inference wing's program cache (``programs.PROGRAMS``) by model,
shapes and settings: a refit with the same settings traces and compiles nothing. Why not
``SVI.run``: it traces the model eagerly in ``SVI.init`` (every loop inside the solve then compiles
as a program of its own) and builds its loop afresh on every call.
"""

from __future__ import annotations

import jax
import optax
from numpyro.infer import SVI, TraceMeanField_ELBO, autoguide, init_to_value

from .programs import PROGRAMS, shapes_key

# The guide's starting scale around the MAP (unconstrained space): narrow, so the first steps stay
# where the MAP's solves succeed.
INIT_SCALE = 0.02


def _svi(model, centre: dict, steps: int, learning_rate: float):
    guide = autoguide.AutoNormal(model, init_loc_fn=init_to_value(values=centre), init_scale=INIT_SCALE)
    optimizer = optax.chain(optax.clip_by_global_norm(10.0),
                            optax.adam(optax.cosine_decay_schedule(learning_rate, steps, 0.1)))  # fmt: skip
    return guide, SVI(model, guide, optimizer, TraceMeanField_ELBO())


def fit_svi(model, centre: dict, data: dict, key, steps: int, learning_rate: float) -> dict:
    """``steps`` Adam steps of SVI (``stable_update``: a step whose loss is not finite is not taken)
    from a guide centred at ``centre`` (site -> value).

    Returns ``{"params", "svi_loss", "start"}``: the guide's parameters, the loss per step (steps,),
    and the guide's median at the sites of ``centre`` (where NUTS starts).
    """

    def build():
        def run(centre, key, data):
            guide, svi = _svi(model, centre, steps, learning_rate)
            state = svi.init(key, **data)
            state, losses = jax.lax.scan(lambda st, _: svi.stable_update(st, **data), state, None, length=steps)
            params = svi.get_params(state)
            start = {k: v for k, v in guide.median(params).items() if k in centre}
            return {"params": params, "svi_loss": losses, "start": start}

        return jax.jit(run)

    settings = (shapes_key(data), shapes_key(centre), shapes_key(key), int(steps), float(learning_rate))
    return PROGRAMS.get(model, "event_svi", settings, build)(centre, key, data)


def draw_svi(model, centre: dict, params: dict, data: dict, key, num_draws: int, steps: int, learning_rate: float) -> dict:
    """``num_draws`` draws (site -> (draw, ...)) from the guide of :func:`fit_svi` with ``params``.

    ``centre``, ``steps`` and ``learning_rate`` as given to :func:`fit_svi`: they build the same guide,
    whose sites and transforms ``SVI.init`` sets up (its parameters are replaced by ``params``).
    """

    def build():
        def run(centre, params, key, data):
            guide, svi = _svi(model, centre, steps, learning_rate)
            svi.init(key, **data)  # sets up the guide's sites and transforms; its parameters are discarded
            return guide.sample_posterior(key, params, sample_shape=(num_draws,))

        return jax.jit(run)

    settings = (shapes_key(data), shapes_key(centre), shapes_key(params), shapes_key(key), int(num_draws), int(steps),
                float(learning_rate))  # fmt: skip
    return PROGRAMS.get(model, "event_svi_draws", settings, build)(centre, params, key, data)
