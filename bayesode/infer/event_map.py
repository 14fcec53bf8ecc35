"""The MAP warm start of the jump fits (:func:`bayesode.infer.fit_events`, :func:`bayesode.infer.fit_jump_filter`):
Adam on a cosine schedule, one compiled scan per start, several starts side by side on the CPU cores, the
start with the lowest loss kept.

The compiled program takes the start, the key and the data as arguments and is kept in the inference
wing's program cache (``programs.PROGRAMS``) by model, shapes and settings, so a refit traces nothing."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from numpyro.infer import SVI, autoguide, init_to_value

from ..errors import FitFailedError
from .programs import PROGRAMS, latents_model, shapes_key
from .svi import _TraceELBO


def start_points(template_values: dict, num_starts: int, key) -> list[dict]:
    """``num_starts`` starting points: the template's weights, then ``num_starts - 1`` redraws.

    A redraw replaces every array by ``Normal(0, rms)`` draws, ``rms`` the root mean square of the
    template's array: the same per-layer scale as the template's (fan-in scaled) initialisation,
    for any process, and arrays the template starts at zero (``z0``) stay at zero.
    """
    points = [dict(template_values)]
    for j in range(1, num_starts):
        keys = jr.split(jr.fold_in(key, j), len(template_values))
        points.append({name: jnp.sqrt(jnp.mean(jnp.square(v))) * jr.normal(k, jnp.shape(v), jnp.result_type(v))
                       for k, (name, v) in zip(keys, template_values.items())})  # fmt: skip
    return points


def map_stage(model, template: dict, data: dict, key, *, steps: int, starts: int, learning_rate: float, checkpoint,
              progress: bool, caller: str, stage: str = "map", batch_size: int | None = None):  # fmt: skip
    """The MAP stage of a jump fit: :func:`fit_map` from :func:`start_points` (``starts`` of them around
    ``template``, site -> value), saved to and loaded from ``checkpoint``
    (:class:`~bayesode.infer.event_checkpoint.EventCheckpoint`) as its ``stage`` (default ``"map"``);
    ``batch_size`` as :func:`fit_map`'s.

    Returns ``(values, losses, start_losses)``: site -> MAP value in ``template``'s order (the model's
    site order), the best start's losses (steps,) and every start's final loss (start,).
    """
    k_start, k_map = jr.split(key)
    points = start_points(template, starts, k_start)

    def run():
        values, losses, final = fit_map(model, points, data, k_map, steps, learning_rate, caller=caller,
                                        batch_size=batch_size)  # fmt: skip
        return {"values": values, "map_loss": losses, "map_start_loss": final}

    found = checkpoint.stage(stage, run, what=f"MAP warm start ({starts} start(s) x {steps} Adam steps, {{how}})",
                             progress=progress)  # fmt: skip
    values = {name: jnp.asarray(found["values"][name]) for name in template}
    # A jump-filter checkpoint written before this stage was shared kept no losses: empty, not a failure.
    return values, np.asarray(found.get("map_loss", np.zeros(0))), np.asarray(found["map_start_loss"])


def stalled_message(losses, caller: str) -> str | None:
    """What a result must say when the kept start's MAP steps mostly failed, or all of its last tenth did
    (``losses`` (steps,); NumPyro's ``stable_update`` reports NaN and does not take a step whose loss or gradient
    is not finite: a failed solve, or an overflow in the gradient); None otherwise. Such a start keeps its last
    finite point, which need not be near an optimum."""
    losses = np.asarray(losses)
    if losses.size == 0:
        return None
    failed = ~np.isfinite(losses)
    tail = failed[-max(losses.size // 10, 1):]
    if failed.mean() <= 0.5 and not tail.all():
        return None
    return (f"{caller}: {int(failed.sum())} of {losses.size} MAP steps had a non-finite loss (a failed solve or a "
            f"non-finite gradient; the step is not taken), {int(tail.sum())} of the last {tail.size}: the MAP stopped at its last finite "
            "point, which may be far from an optimum, and what follows starts there. Try a smaller "
            "`learning_rate`, a larger `batch_size`, or more solver steps (`config`).")  # fmt: skip


def fit_map(model, starts, data: dict, key, steps: int, learning_rate: float, *, workers: int | None = None,
            caller: str = "fit_events", batch_size: int | None = None):
    """MAP by Adam on a cosine schedule (NumPyro ``AutoDelta``) from each start; the best one.

    Parameters
    ----------
    model : a NumPyro model taking ``data`` as keywords; its guide sets itself up on
        :func:`~bayesode.infer.programs.latents_model` of it.
    starts : dict (site -> value) or a list of them (:func:`start_points`).
    workers : threads running starts side by side (default: the CPU count, at most the starts). One
        compiled program serves every start (the start is its argument); JAX releases the GIL while
        it runs, so starts on different cores run at the same time.
    caller : the function named in the error when no start finds a solvable point.
    batch_size : given, every step's loss and gradient come from ``model(**data, batch_size=batch_size)``
        (a model with a subsampling plate, as :func:`~bayesode.model.point_process_model`'s: a random
        subset of the sequences each step, its likelihood scaled up); the final losses, which choose the
        start, from all the data (so a point whose solve fails on a sequence no step drew is ``inf``).

    Returns ``(values, losses, final_losses)``: site -> value of the start with the lowest negative
    log density at its returned weights, that start's losses (steps,), and every start's final
    loss (start,) (``inf`` where a start never found a solvable point).

    Each start returns the last weights whose log density was finite: an update can step from a
    solvable point onto weights whose solve fails, and SVI or NUTS cannot start there.
    """
    starts = [starts] if isinstance(starts, dict) else list(starts)
    names = list(starts[0])

    keys = jr.split(key, len(starts))
    settings = (shapes_key(data), shapes_key(starts[0]), shapes_key(keys[0]), int(steps), float(learning_rate), batch_size)
    compiled = PROGRAMS.get(model, "event_map", settings,
                            lambda: _map_program(model, steps, learning_rate, batch_size).lower(starts[0], keys[0], data).compile())  # fmt: skip
    workers = min(len(starts), os.cpu_count() or 1) if workers is None else workers
    with ThreadPoolExecutor(max(workers, 1)) as pool:
        results = list(pool.map(lambda a: compiled(*a, data), zip(starts, keys)))
    final_losses = np.array([float(r[2]) for r in results])
    final_losses = np.where(np.isfinite(final_losses), final_losses, np.inf)  # NaN counts as never solvable
    best = int(np.argmin(final_losses))
    if not np.isfinite(final_losses[best]):
        raise FitFailedError(f"{caller}: the MAP warm start found no weights whose solve succeeds (the log density "
                             "was never finite); try a smaller `learning_rate`, `map_steps=0`, or a smaller network.")
    values, losses, _ = results[best]
    return {k: values[k] for k in names}, np.asarray(losses), final_losses


def _map_program(model, steps: int, learning_rate: float, batch_size: int | None = None):
    """``run(values, key, data) -> (point, losses, final_loss)``: one start's MAP fit, jitted."""
    step_kwargs = {} if batch_size is None else {"batch_size": batch_size}  # only a model with the keyword gets it

    def run(values, key, data):
        # The guide sets itself up on the latent sites alone: on the whole model NumPyro's set-up would trace
        # and compile the gradient of the solve once more (measured in docs/decisions.md, 2026-12-07).
        guide = autoguide.AutoDelta(latents_model(model), init_loc_fn=init_to_value(values=values))
        optimizer = optax.chain(optax.clip_by_global_norm(10.0),
                                optax.adam(optax.cosine_decay_schedule(learning_rate, steps, 0.01)))  # fmt: skip
        # NumPyro's Trace_ELBO in site order: the same program in every process, so JAX's disk cache serves it.
        svi = SVI(model, guide, optimizer, _TraceELBO())
        state = svi.init(key, **data)

        def body(carry, _):
            st, last_ok, last_loss = carry
            new, loss = svi.stable_update(st, **data, **step_kwargs)  # loss at st's params
            ok = jnp.isfinite(loss)
            last_ok = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), svi.get_params(st), last_ok)
            return (new, last_ok, jnp.where(ok, loss, last_loss)), loss

        init = (state, svi.get_params(state), jnp.full_like(svi.evaluate(state, **data), jnp.inf))  # loss's dtype (x64 too)
        (state, last_ok, last_loss), losses = jax.lax.scan(body, init, None, length=steps)
        final_loss = svi.evaluate(state, **data)
        if batch_size is not None:  # last_ok was finite on a subset of the sequences: all of them decide
            last_loss = svi.loss.loss(key, last_ok, svi.model, svi.guide, **data)
        final_ok = jnp.isfinite(final_loss)
        params = jax.tree_util.tree_map(lambda a, b: jnp.where(final_ok, a, b), svi.get_params(state), last_ok)
        point = {k: v for k, v in guide.median(params).items() if k in values}
        return point, losses, jnp.where(final_ok, final_loss, last_loss)

    return jax.jit(run)
