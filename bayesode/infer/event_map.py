"""The MAP warm start of :func:`bayesode.infer.fit_events`: Adam on a cosine schedule, one compiled scan."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro.infer import SVI, Trace_ELBO, autoguide, init_to_value

from ..errors import FitFailedError


def fit_map(model, init_values: dict, data: dict, key, steps: int, learning_rate: float):
    """MAP by Adam on a cosine schedule (NumPyro ``AutoDelta``): site -> value, and the losses (steps,).

    Returns the last weights whose log density was finite: an update can step from a solvable
    point onto weights whose solve fails, and SVI or NUTS cannot start there. The loop runs as
    one compiled scan (no progress bar).
    """
    guide = autoguide.AutoDelta(model, init_loc_fn=init_to_value(values=init_values))
    optimizer = optax.chain(optax.clip_by_global_norm(10.0),
                            optax.adam(optax.cosine_decay_schedule(learning_rate, steps, 0.01)))  # fmt: skip
    svi = SVI(model, guide, optimizer, Trace_ELBO())
    state = svi.init(key, **data)

    @jax.jit
    def run(state, data):
        def body(carry, _):
            st, last_ok = carry
            new, loss = svi.stable_update(st, **data)  # loss at st's params
            ok = jnp.isfinite(loss)
            last_ok = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), svi.get_params(st), last_ok)
            return (new, last_ok), loss

        (state, last_ok), losses = jax.lax.scan(body, (state, svi.get_params(state)), None, length=steps)
        final_ok = jnp.isfinite(svi.evaluate(state, **data))
        params = jax.tree_util.tree_map(lambda a, b: jnp.where(final_ok, a, b), svi.get_params(state), last_ok)
        return params, losses, final_ok | jnp.any(jnp.isfinite(losses))

    params, losses, found = run(state, data)
    if not bool(found):
        raise FitFailedError("fit_events: the MAP warm start found no weights whose solve succeeds (the log density "
                             "was never finite); try a smaller `learning_rate`, `map_steps=0`, or a smaller network.")
    values = {k: v for k, v in guide.median(params).items() if k in init_values}
    return values, np.asarray(losses)
