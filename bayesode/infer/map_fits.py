"""MAP fits from diverse prior draws, all in one vmapped, compiled program: the starts of the full-weight
posterior's members (:func:`bayesode.infer.run_ensemble`, :mod:`bayesode.infer.laplace_mixture`) and a deep
ensemble's points."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.infer import Predictive
from numpyro.infer.util import constrain_fn, potential_energy, unconstrain_fn

from ..caching import ProgramCache
from ..checks import as_key, positive_int, positive_number
from ..datasets import as_data
from ..model import check_model
from .programs import latents_model

__all__ = ["MAP_PROGRAMS", "map_points"]


def map_points(model, data, *, key, num_points: int, num_steps: int = 2000, learning_rate: float = 0.01,
               candidates: int = 4):
    """``num_points`` MAP fits from diverse prior draws, all in one vmapped, compiled program.

    Each fit starts at the best (lowest potential) of ``candidates`` prior draws of its own and
    runs ``num_steps`` Adam steps on the potential energy (minus the log joint density in
    NumPyro's unconstrained space), the step size decaying from ``learning_rate`` to 5% of it,
    gradients clipped at norm 10. A step whose potential or gradient is not finite (a failed
    solve) is skipped. Prior draws, not the prior median, so the fits land in different basins.

    Returns
    -------
    params : dict site -> (point, ...) constrained values at the end of each fit.
    potential : (point,) potential energy there (``inf`` where the solve fails).
    losses : (point, num_steps) potential along each fit (NaN for skipped steps).
    """
    check_model(model)
    data = as_data(data)
    num_points = positive_int("num_points", num_points)
    num_steps = positive_int("num_steps", num_steps)
    candidates = positive_int("candidates", candidates)
    learning_rate = positive_number("learning_rate", learning_rate)
    md = data.model_data()
    draws = Predictive(latents_model(model), num_samples=num_points * candidates)(as_key(key), md)
    latents = _latent_names(model, md)
    draws = {k: v for k, v in draws.items() if k in latents}
    z = jax.vmap(lambda d: unconstrain_fn(latents_model(model), (md,), {}, d))(draws)
    potentials, fit_all = _map_programs(model, md.shapes(), num_steps, learning_rate)
    pe = np.asarray(potentials(z, md)).reshape(num_points, candidates)
    best = np.argmin(np.where(np.isfinite(pe), pe, np.inf), axis=1) + candidates * np.arange(num_points)
    z = jax.tree.map(lambda v: v[best], z)
    z_fit, pe_fit, losses = fit_all(z, md)
    params = jax.vmap(lambda u: constrain_fn(latents_model(model), (md,), {}, u))(z_fit)
    return {k: np.asarray(v) for k, v in params.items()}, np.asarray(pe_fit), np.asarray(losses)


# The compiled MAP programs, per (model, data shapes, steps, learning rate): the data are an argument, so
# fits of the same model on other values of the same shapes (the Laplace mixture's held-out origins:
# bayesode.infer.laplace_mixture) trace and compile nothing again.
MAP_PROGRAMS = ProgramCache()


def _map_programs(model, shapes, num_steps: int, learning_rate: float):
    """``(potentials(z, md), fit_all(z, md))``, vmapped over points and compiled, from ``MAP_PROGRAMS``."""

    def build():
        schedule = optax.exponential_decay(learning_rate, transition_steps=num_steps, decay_rate=0.05)
        opt = optax.chain(optax.clip_by_global_norm(10.0), optax.adam(schedule))

        def potential(u, md):
            return potential_energy(model, (md,), {}, u)

        def fit_one(u, md):
            def step(carry, _):
                u, state = carry
                value, grad = jax.value_and_grad(potential)(u, md)
                ok = jnp.isfinite(value) & jnp.all(jnp.isfinite(ravel_pytree(grad)[0]))
                grad = jax.tree.map(lambda g: jnp.where(ok, g, 0.0), grad)
                updates, new_state = opt.update(grad, state, u)
                new_u = optax.apply_updates(u, updates)
                keep = lambda a, b: jax.tree.map(lambda x, y: jnp.where(ok, x, y), a, b)  # noqa: E731
                return (keep(new_u, u), keep(new_state, state)), jnp.where(ok, value, jnp.nan)

            (u, _), losses = jax.lax.scan(step, (u, opt.init(u)), None, length=num_steps)
            return u, potential(u, md), losses

        return jax.jit(jax.vmap(potential, in_axes=(0, None))), jax.jit(jax.vmap(fit_one, in_axes=(0, None)))

    return MAP_PROGRAMS.get(model, "map_points", (shapes, num_steps, float(learning_rate)), build)


def _latent_names(model, md) -> set:
    tr = handlers.trace(handlers.seed(functools.partial(model, latents_only=True), 0)).get_trace(md)
    return {k for k, v in tr.items() if v["type"] == "sample" and not v["is_observed"]}


def _why_failed(potential: float) -> str | None:
    """None if the fit can start a member; else the reason it cannot."""
    if not np.isfinite(potential):
        return "the log density at the fitted point is not finite (the ODE solve fails there)"
    return None
