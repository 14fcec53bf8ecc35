"""``run_svi``: a variational fit (ELBO) in compiled chunks, then draws from the guide."""

from __future__ import annotations

import copy
import functools
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import optax
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.infer import SVI, Trace_ELBO, autoguide
from numpyro.infer.initialization import init_to_median
from numpyro.infer.util import compute_log_probs, potential_energy

from ..checks import as_key, positive_int, seed_of
from ..datasets.data import as_data
from ..errors import ConfigError
from ..model.assembly import check_model
from ..results.posterior import Posterior, package_versions
from ..solving.precision import float_dtype
from .console import Progress, StopOnSigint, phase
from .fit_failures import library_checks_stop_the_fit
from .numpyro_adapter import guide_init_locs
from .precision import fits_in_precision
from .preflight import init_error
from .programs import PROGRAMS, latent_sites

GUIDES = {
    "mean-field": autoguide.AutoNormal,
    "low-rank": autoguide.AutoLowRankMultivariateNormal,
    "full-rank": autoguide.AutoMultivariateNormal,
}


class _TraceELBO(Trace_ELBO):
    """NumPyro's ``Trace_ELBO`` (no mutable state), summing the sites in trace order.

    NumPyro 0.22 sums over a Python ``set`` of site names, whose order follows the
    process's string-hash seed: the traced SVI program differs from one process to the
    next, so JAX's persistent compilation cache never hits and every run recompiles.
    Same estimator, same key use (model key, guide key = split(key)).
    """

    def loss_with_mutable_state(self, rng_key, param_map, model, guide, *args, **kwargs):
        def particle(key):
            model_key, guide_key = jax.random.split(key)
            guide_lp, guide_trace = compute_log_probs(handlers.seed(guide, guide_key), args, kwargs, param_map)
            replayed = handlers.replay(handlers.seed(model, model_key), guide_trace)
            model_lp, _ = compute_log_probs(replayed, args, kwargs, param_map)
            names = list(model_lp) + [k for k in guide_lp if k not in model_lp]
            return sum((model_lp.get(k, 0.0) - guide_lp.get(k, 0.0) for k in names), start=jnp.zeros(()))

        if self.num_particles == 1:
            return {"loss": -particle(rng_key), "mutable_state": None}
        elbos = self.vectorize_particles_fn(particle, jax.random.split(rng_key, self.num_particles))
        return {"loss": -jnp.mean(elbos), "mutable_state": None}



SVI_CHUNK = 250  # optimisation steps per compiled call of `_optimise`


def _svi_program(model, md, guide: str, rank, num_particles: int, optimizer, num_steps: int):
    """``(guide, svi, chunk, init)`` for one model, data shapes and settings; cached in
    ``PROGRAMS``, so a second fit of the same shapes traces and compiles nothing (``chunk`` is one
    jitted function, see ``_optimise``; ``init`` is ``svi.init`` jitted, see ``_svi_init``).

    The guide is built on the model's latent sites only (``latents_only=True``: no solve, no
    likelihood). It needs no more (its sites, shapes and initial locations), and NumPyro sets
    it up eagerly, op by op: with the whole model that was ~24 s of small compiles for the
    quickstart's neural model on 2 cores, ~11 s without the solve and likelihood.

    The guide object is reused, with its prototype cleared so it is set up again from the new
    data (its initial locations come from the data-dependent priors). The compiled update does
    not depend on the prototype beyond shapes: the param sites' values come from the SVI state
    (checked: a cached second fit equals a fresh model's fit bit for bit).
    """
    default_optimizer = optimizer is None
    key = (
        md.shapes(),
        guide,
        rank,
        num_particles,
        ("default", num_steps) if default_optimizer else ("given", optimizer),
    )
    def build():
        kw = {"init_loc_fn": init_to_median(num_samples=15)}
        if guide == "low-rank" and rank is not None:
            kw["rank"] = rank
        g = GUIDES[guide](functools.partial(model, latents_only=True), **kw)
        opt = optimizer
        if default_optimizer:
            # Adam with a decaying step: fast early progress, then a settled optimum.
            schedule = optax.exponential_decay(0.01, transition_steps=num_steps, decay_rate=0.05)
            opt = optax.chain(optax.clip_by_global_norm(10.0), optax.adam(schedule))
        svi = SVI(model, g, numpyro.optim.optax_to_numpyro(opt), _TraceELBO(num_particles=num_particles))

        @jax.jit
        def chunk(state, md, n):
            def body(state, i):
                return jax.lax.cond(i < n, lambda s: svi.stable_update(s, md), lambda s: (s, jnp.nan), state)

            return jax.lax.scan(body, state, jnp.arange(SVI_CHUNK))

        @jax.jit
        def init(key, md, init_params, init_locs):
            # NumPyro's own test of a start (find_valid_initial_params): the whole model's potential
            # energy and its gradient are finite at the guide's initial locations (unconstrained).
            pe, grad = jax.value_and_grad(lambda z: potential_energy(model, (md,), {}, z))(init_locs)
            valid = jnp.isfinite(pe) & jnp.all(jnp.isfinite(ravel_pytree(grad)[0]))
            return svi.init(key, md, init_params=init_params), valid

        return g, svi, chunk, init

    # An optimizer that cannot be a dict key is built afresh (traces again); the cache keeps the
    # most recent programs only (e.g. a loop over fresh optax objects stays bounded).
    program = PROGRAMS.get(model, "svi", key, build)
    program[0].prototype_trace = None
    return program


def _svi_init(g, svi, init, key, md):
    """``(svi.init(key, md), valid)``, compiled. The guide is set up first, eagerly, from
    ``key``'s guide seed as ``svi.init`` would (tracing the set-up inside ``jit`` would leave
    tracers on the guide), on the latent sites only; the rest of ``svi.init`` (a guide draw and
    the whole model, solve included) is then one compiled program instead of hundreds of eager
    ops. The guide's initial values are arguments, not constants of the program: they depend on
    the data's values (data-dependent priors), and the program is reused for other data of the
    same shapes. ``valid``: the whole model passes NumPyro's start test there (see ``run_svi``)."""
    _, _, guide_seed = jax.random.split(key, 3)
    with handlers.trace() as guide_trace:
        handlers.seed(g, rng_seed=guide_seed)(md)
    init_params = {name: site["value"] for name, site in guide_trace.items() if site["type"] == "param"}
    return init(key, md, init_params, guide_init_locs(g))


def _optimise(chunk, svi_state, md, num_steps: int, progress: bool):
    """``num_steps`` SVI steps (``stable_update``: a step with a non-finite loss is skipped),
    run as compiled chunks of ``SVI_CHUNK`` steps; returns the final state and the losses.

    Ctrl-C stops after the chunk in progress (see ``StopOnSigint``): the losses are then fewer
    than ``num_steps``. One program for every ``num_steps`` and both values of ``progress``: a chunk runs its
    first ``n`` steps and passes the state through the rest (``lax.cond``, so they cost
    nothing), and the progress line is drawn between chunks. NumPyro's ``SVI.run`` runs a
    Python loop of a jitted step with its progress bar and one ``lax.scan`` without it:
    two programs, whose floats differ (the main job's final loss was 174.39 with the bar
    and 175.80 without), so a fit depended on whether its progress was shown.
    """
    losses, bar = [], Progress(num_steps, 0, progress, desc="svi")
    with StopOnSigint(what="chunk of SVI steps") as stop_requested:
        try:
            for start in range(0, num_steps, SVI_CHUNK):
                if stop_requested:
                    break
                n = min(SVI_CHUNK, num_steps - start)
                with library_checks_stop_the_fit(f"run_svi stopped in steps {start}-{start + n - 1} of {num_steps}"):
                    svi_state, chunk_losses = chunk(svi_state, md, n)
                    losses.append(np.asarray(chunk_losses)[:n])
                last = losses[-1][np.isfinite(losses[-1])]
                bar.update(start + n, loss=f"{float(np.mean(last)) if last.size else float('nan'):.4g}")
        finally:
            bar.close()
    if not losses:
        raise KeyboardInterrupt("interrupted before the first SVI steps; nothing to return")
    return svi_state, np.concatenate(losses)


@fits_in_precision
def run_svi(
    model,
    ts,
    ys=None,
    *,
    key,
    guide: str = "mean-field",
    optimizer=None,
    num_steps: int = 2000,
    num_particles: int = 1,
    num_draws: int = 1000,
    rank: int | None = None,
    progress: bool = True,
    precision: str | None = None,
    **data_kwargs,
) -> Posterior:
    """Fit a variational approximation with SVI (ELBO), then draw from it.

    Parameters
    ----------
    model : from :func:`make_model`, a preset, or :func:`numpyro_model` (your own NumPyro function)
    guide : {"mean-field", "low-rank", "full-rank"}
        ``AutoNormal``, ``AutoLowRankMultivariateNormal`` (``rank``), ``AutoMultivariateNormal``.
    optimizer : optax optimizer, default ``optax.adam(0.01)`` with gradient clipping.
    num_steps : optimisation steps; ``num_particles``: ELBO samples per step.
    num_draws : draws from the fitted guide kept as the posterior (one chain).

    precision : {"float32", "float64"}, optional
        The fit's floating-point precision; default None: the model's
        (``model.spec.precision``). See :func:`run_nuts`; recorded in
        ``settings["precision"]``.

    Failed solves make a step's loss non-finite; those updates are skipped
    (``stable_update``) and counted in ``settings['nonfinite_steps']``.
    """
    check_model(model)
    data = as_data(ts, ys, **data_kwargs)
    model.spec.check_data(data)
    if guide not in GUIDES:
        raise ConfigError(f"`guide`={guide!r} is unknown; choose one of {list(GUIDES)}.")
    if model.spec.solver.forward_mode:
        raise ConfigError(
            "SVI needs reverse-mode gradients, but the model's solver uses diffrax.ForwardMode(); build it with a "
            "reverse adjoint, e.g. bayesode.models.lotka_volterra(adjoint='checkpoint')."
        )
    num_steps = positive_int("num_steps", num_steps)
    num_draws = positive_int("num_draws", num_draws)
    num_particles = positive_int("num_particles", num_particles)
    seed = seed_of(key)
    key = as_key(key)
    md = data.model_data(float_dtype(precision))
    if guide == "low-rank" and rank is not None:
        rank = positive_int("rank", rank)
    if optimizer is not None and not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise ConfigError(
            f"`optimizer` must be an optax optimizer (a GradientTransformation such as optax.adam(0.01)); "
            f"got {optimizer!r}."
        )
    t_compile = time.time()
    with phase("compiling SVI (once per model, data shapes and settings)", progress):
        g, svi, chunk, init = _svi_program(model, md, guide, rank if guide == "low-rank" else None, num_particles,
                                           optimizer, num_steps)  # fmt: skip
        k_fit, k_draw = jax.random.split(key)
        t0 = time.time()
        try:
            svi_state, valid = _svi_init(g, svi, init, k_fit, md)
            if not bool(valid):
                # The guide's start was checked against the prior only, and the whole model fails
                # there (a solve that fails, say). NumPyro's own set-up on the whole model tries that
                # start and then others, the same way, until its density and gradient are finite
                # (or raises): the start it would have picked had the guide been built on it.
                g.prototype_trace = None
                latents_model, g.model = g.model, model
                try:
                    svi_state = svi.init(k_fit, md)
                finally:
                    g.model = latents_model
        except RuntimeError as e:
            if "Cannot find valid initial parameters" in str(e):
                raise init_error(model, data, key, e) from None
            raise
        chunk(svi_state, md, 0)  # compiles the optimisation program; runs no step
    compile_s = time.time() - t_compile
    svi_state, losses = _optimise(chunk, svi_state, md, num_steps, progress)
    interrupted = len(losses) < num_steps
    if interrupted:
        warnings.warn(f"interrupted after {len(losses)} of {num_steps} SVI steps; returning draws from the guide "
                      "as fitted so far", stacklevel=3)  # fmt: skip
    params = svi.get_params(svi_state)
    with phase("drawing from the fitted guide", progress):
        draws = g.sample_posterior(k_draw, params, sample_shape=(num_draws,))
    sites = latent_sites(model, md)
    samples = {k: np.asarray(v)[None] for k, v in draws.items() if k in sites}
    settings = dict(
        method="svi",
        guide=guide,
        num_steps=num_steps,
        num_particles=num_particles,
        num_draws=num_draws,
        num_chains=1,
        seed=seed,
        precision=precision,
        nonfinite_steps=int(np.sum(~np.isfinite(losses))),
        interrupted=interrupted,
        wall_time_s=time.time() - t0,
        compile_s=compile_s,
        versions=package_versions(),
    )
    return Posterior(samples=samples, sample_stats={}, data=data, model=model, settings=settings, losses=losses,
                     guide_state=(copy.copy(g), params))  # a copy: the cached guide is set up again by the next fit

