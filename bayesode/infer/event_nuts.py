"""NUTS for the jump fits (:func:`~bayesode.infer.fit_events`, :func:`~bayesode.infer.fit_jump_filter`), one compiled
transition driven from Python, so Ctrl-C keeps the draws and a checkpoint can resume them.

NumPyro's NUTS kernel (its functional form, ``numpyro.infer.hmc.hmc``, as ``NUTS`` runs it; see
``_nuts_programs``): the kernel's init for each chain, then its jitted sample step (warmup adaptation
included: the kernel adapts while its iteration count is below ``num_warmup``) called iteration by
iteration, each chain in turn, and the model's constrained values at the end. This is what ``MCMC`` itself does when
it shows a progress bar. Between iterations the progress line is drawn and a Ctrl-C request
(:class:`~bayesode.infer.console.StopOnSigint`) is honoured: the draws so far are kept (the same
number for every chain) and the fit says it was interrupted. Why not ``MCMC.run``: without a
progress bar it is a single compiled loop that Ctrl-C can only abandon, losing every draw; and
its chunked use (``post_warmup_state``) compiles warmup and sampling as two programs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np
from numpyro import handlers
from numpyro.infer.hmc import hmc
from numpyro.infer.util import get_potential_fn, get_transforms, initialize_model

from ..errors import FitFailedError
from .console import Progress, StopOnSigint
from .event_checkpoint import SAVE_EVERY, EventCheckpoint
from .fit_failures import library_checks_stop_the_fit
from .programs import PROGRAMS, latents_model, shapes_key

REPORT_EVERY = 10  # iterations between progress lines


def sample_nuts(model, init, data: dict, key, *, num_warmup: int, num_samples: int, num_chains: int,
                max_tree_depth: int, progress: bool, checkpoint: EventCheckpoint | None = None, name: str = "fit_events"):  # fmt: skip
    """NUTS from ``init`` for every chain: site -> constrained value, or a NumPyro init strategy.

    ``data``: the model's keyword arguments; ``name``: the fit named in messages.

    ``checkpoint``: where the states and draws are saved every ``SAVE_EVERY`` iterations and when
    sampling stops, and from where a run with the same settings continues.

    Returns ``(samples, diverging, interrupted)``: site -> (chain, draw, ...) arrays, (chain, draw)
    divergence flags, and whether Ctrl-C ended sampling early (then draw < ``num_samples``).
    Ctrl-C during warmup raises ``KeyboardInterrupt`` (no draw to keep).
    """
    programs = _nuts_programs(model, init, data, key, num_warmup=num_warmup, max_tree_depth=max_tree_depth)
    with library_checks_stop_the_fit(f"{name} (nuts) stopped at its starting point"):
        # One key per chain, as MCMC (which splits the key for several chains and uses it as it is for one);
        # one init per chain, as its sequential chains (a batch of keys would vectorise the kernel).
        keys = [key] if num_chains == 1 else list(jax.random.split(key, num_chains))
        values = init if isinstance(init, dict) else {}
        states = [programs.init(k, values, data) for k in keys]
    bad = [c for c, s in enumerate(states) if not np.isfinite(float(s.potential_energy))]
    if bad:
        raise FitFailedError(f"{name} (nuts): the log density is not finite at the starting point of chain(s) {bad}; "
                             "nothing is sampled. Try method='svi', more MAP steps, or a tighter weight prior.")  # fmt: skip
    step = programs.step
    total = num_warmup + num_samples
    z_draws: list[list] = [[] for _ in range(num_chains)]
    diverging = np.zeros((num_chains, num_samples), bool)
    checkpoint = EventCheckpoint(None, {}) if checkpoint is None else checkpoint
    done = 0
    saved = checkpoint.load_nuts(states)
    if saved is not None:
        done, states, z_draws, diverging[:, : saved[3].shape[1]] = saved
    bar = Progress(total, num_warmup, progress, initial=done)
    try:
        with StopOnSigint(what="NUTS iteration") as stop_requested:
            while done < total and not stop_requested:
                with library_checks_stop_the_fit(f"{name} (nuts) stopped at iteration {done} of {total}"):
                    states = [step(state, data) for state in states]
                    if done >= num_warmup:
                        for c, state in enumerate(states):
                            z_draws[c].append(jax.device_get(state.z))
                            diverging[c, done - num_warmup] = bool(state.diverging)
                done += 1
                if done % REPORT_EVERY == 0 or done == total:
                    bar.update(done, diverging=int(diverging.sum()))
                if done % SAVE_EVERY == 0:
                    checkpoint.save_nuts(done, states, z_draws, diverging)
            if done % SAVE_EVERY:  # the last iterations (not after a second Ctrl-C: a chain may be one ahead)
                checkpoint.save_nuts(done, states, z_draws, diverging)
    except KeyboardInterrupt:  # a second Ctrl-C: the iteration in progress is lost
        pass
    finally:
        bar.close()
    kept = min(len(z) for z in z_draws)  # whole iterations (a second Ctrl-C can land between chains)
    if kept == 0:
        raise KeyboardInterrupt(f"{name} interrupted before any NUTS draw was kept")
    per_chain = [programs.constrain(jax.tree.map(lambda *xs: np.stack(xs), *z[:kept]), data) for z in z_draws]
    samples = {k: np.stack([np.asarray(p[k]) for p in per_chain]) for k in per_chain[0]}
    return samples, diverging[:, :kept], kept < num_samples


class _NutsPrograms(NamedTuple):
    init: Callable  # (key, values, data) -> HMCState: one chain's start (values: site -> constrained value, or {})
    step: Callable  # (state, data) -> HMCState: one iteration (warmup adaptation while below num_warmup)
    constrain: Callable  # (z (draw, ...), data) -> site -> constrained value (draw, ...), deterministic sites too


def _nuts_programs(model, init, data: dict, key, *, num_warmup: int, max_tree_depth: int) -> _NutsPrograms:
    """The kernel's compiled pieces for ``model`` on data of ``data``'s shapes, built on the first call
    and kept in ``PROGRAMS``: the start values and the data are arguments, so a refit traces nothing.

    ``init`` a dict: each chain starts at these constrained values; else a NumPyro init strategy, from
    which each chain's start is found as ``NUTS.init`` finds it (``initialize_model`` on the chain's key),
    and which the cache keys on (its function and settings).

    NumPyro's NUTS as ``NUTS(model).init`` and ``.sample`` run it (the same potential, kernel settings
    and key use: a test compares the draws with ``MCMC``'s), through the functional kernel
    (``numpyro.infer.hmc.hmc``) with the potential from ``get_potential_fn``. Why: ``NUTS.init`` sets
    itself up by ``initialize_model``, which traces and compiles the gradient of the whole solve once
    more inside the start program; the transforms here come from the latent sites alone
    (:func:`~bayesode.infer.programs.latents_model`: no solve).
    """
    by_value = isinstance(init, dict)

    def build():
        inv_transforms = get_transforms(handlers.seed(latents_model(model), 0), (), data, params={})
        potential_fn_gen, postprocess_fn_gen = get_potential_fn(model, inv_transforms, replay_model=True,
                                                                dynamic_args=True)  # fmt: skip
        init_kernel, sample_kernel = hmc(potential_fn_gen=potential_fn_gen, algo="NUTS")

        def init_chain(key, values, data):
            key, key_start = jax.random.split(key)  # as NUTS.init: the second key finds the start
            if by_value:
                z = {name: inv_transforms[name].inv(value) for name, value in values.items()}
            else:  # NumPyro's own set-up, as NUTS.init runs it (its full cost, on this path only)
                z = initialize_model(key_start, model, init_strategy=init, dynamic_args=True, model_kwargs=data).param_info.z
            # NUTS's defaults, as NUTS(model) passes them (its diagonal mass matrix in the structured form, one
            # block per site: the float order of the model-built kernel).
            return init_kernel(z, num_warmup, target_accept_prob=0.8, max_tree_depth=max_tree_depth, dense_mass=[],
                               model_args=(), model_kwargs=data, rng_key=key)  # fmt: skip

        return _NutsPrograms(
            init=jax.jit(init_chain),
            step=jax.jit(lambda state, data: sample_kernel(state, model_args=(), model_kwargs=data)),  # every chain, iteration
            constrain=jax.jit(lambda z, data: jax.vmap(postprocess_fn_gen(**data))(z)),
        )

    # A strategy such as init_to_median() is a new functools.partial on every call: keyed by what it is.
    strategy = (init.func, tuple(sorted(init.keywords.items()))) if isinstance(init, functools.partial) else init
    how = ("values", shapes_key(init)) if by_value else ("strategy", strategy)
    settings = (shapes_key(data), shapes_key(key), how, int(num_warmup), int(max_tree_depth))
    return PROGRAMS.get(model, "event_nuts", settings, build)
