"""Compiled programs for NUTS and their cache: starts, initial states, chunks of iterations.

NUTS is driven by NumPyro's functional kernel (``numpyro.infer.hmc.hmc``) rather than
``numpyro.infer.MCMC``: the chunk program passes each chain's index and iteration to the model,
so failed solves are counted per chain and iteration, and keeps the states before diverging
iterations so the failure report replays only those (see ``bayesode.infer.nuts``).
"""

from __future__ import annotations

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.distributions import biject_to
from numpyro.infer.hmc import hmc
from numpyro.infer.initialization import init_to_median, init_to_sample
from numpyro.infer.util import constrain_fn, get_potential_fn, get_transforms, unconstrain_fn

from ..caching import ProgramCache
from ..solving.diffeq import vmap_unless_one

# Per chain and chunk, the states before this many diverging iterations are kept, so the
# failure report replays just those iterations (more divergences: the chunk is replayed).
REPLAY_SLOTS = 8
# Starting points tried per chain (without init_params); the one with the highest log density is used.
NUM_START_CANDIDATES = 16


def gradient_by_forward_mode(potential_fn):
    """``potential_fn`` whose reverse-mode gradient is computed in one forward-mode pass.

    For solvers with ``diffrax.ForwardMode()``. NumPyro's own forward-mode option evaluates
    ``f(z)`` and then ``jax.jacfwd(f)(z)``, which solves the ODE once more for the value: here the
    value is the primal output of the batched JVP (the same floats). Measured on Lotka-Volterra
    (8 parameters, 2-core CPU): 246 vs 299 us per gradient, 367 vs 561 us for 4 vectorised chains.
    """

    @jax.custom_vjp
    def potential(z):
        return potential_fn(z)

    def forward(z):
        flat, unravel = ravel_pytree(z)
        basis = jnp.eye(flat.size, dtype=flat.dtype)
        # The value does not depend on the tangent direction: computed once (out_axes None).
        value, grad = jax.vmap(lambda t: jax.jvp(lambda v: potential_fn(unravel(v)), (flat,), (t,)),
                               out_axes=(None, 0))(basis)  # fmt: skip
        return value, unravel(grad)

    def backward(grad, cotangent):
        return (jax.tree.map(lambda g: cotangent * g, grad),)

    potential.defvjp(forward, backward)
    return potential


# The inference wing's compiled programs (NUTS samplers, SVI programs), and the latent sites'
# shapes (cheap to keep, kept apart so they never push a compiled program out).
PROGRAMS = ProgramCache()
SHAPES = ProgramCache(max_entries=128)


class Sampler:
    """Compiled NUTS pieces for one (model, data shapes, settings); cached in ``PROGRAMS``.

    Built without ``initialize_model`` (which re-traces and re-compiles the
    gradient on every call): the potential comes from one model trace, the
    starting points from a compiled prior-median draw.
    """

    def __init__(self, model, md, *, num_warmup, target_accept_prob, max_tree_depth, dense_mass, forward_mode):
        self.model = model
        seeded = handlers.seed(model, rng_seed=0)
        # The transforms need only the latent sites: no solve (which would compile eagerly here).
        # replay_model=True as for any bayesode model (it has deterministic sites after the solve).
        inv_transforms = get_transforms(seeded, (md,), {"latents_only": True}, params={})
        potential_fn_gen, postprocess_fn_gen = get_potential_fn(
            model, inv_transforms, replay_model=True, dynamic_args=True, model_args=(md,), model_kwargs={}
        )
        if forward_mode:
            plain_potential_fn_gen = potential_fn_gen

            def potential_fn_gen(*args, **kwargs):
                return gradient_by_forward_mode(plain_potential_fn_gen(*args, **kwargs))

        self.init_kernel, self.sample_kernel = hmc(potential_fn_gen=potential_fn_gen, algo="NUTS")
        kw = dict(
            num_warmup=num_warmup,
            target_accept_prob=target_accept_prob,
            max_tree_depth=max_tree_depth,
            dense_mass=dense_mass,
            # Forward-mode models differentiate inside the potential (one pass, above), so the
            # kernel's own value_and_grad is reverse mode over that.
            forward_mode_differentiation=False,
            # find_heuristic_step_size=True would capture the init-time data tracer in the
            # warmup adapter (leaking it into later chunks); the SVI mass matrix makes the
            # default start (step 1) reasonable instead.
            find_heuristic_step_size=False,
        )

        def init_one(z, key, md, inverse_mass_matrix):
            return self.init_kernel(
                z, model_args=(md,), model_kwargs={}, rng_key=key, inverse_mass_matrix=inverse_mass_matrix, **kw
            )

        def candidate(key, md, radius, strategy):
            # latents_only: the model stops before the solve (the potential below solves once)
            tr = handlers.trace(handlers.substitute(handlers.seed(model, key), substitute_fn=strategy))
            tr = tr.get_trace(md, latents_only=True)
            params = {k: v["value"] for k, v in tr.items() if v["type"] == "sample" and not v["is_observed"]}
            z = unconstrain_fn(model, (md,), {"latents_only": True}, params)
            if radius == 0:
                return z
            keys = jax.random.split(jax.random.fold_in(key, 7), len(z))
            return {k: jax.random.uniform(kk, jnp.shape(v), minval=-radius, maxval=radius) for kk, (k, v) in zip(keys, z.items())}

        def start_one(key, md, radius: float):
            # The best (lowest potential) of NUM_START_CANDIDATES points: the median of 15 prior
            # draws per site and prior draws (with radius > 0, uniform(-radius, radius) in
            # unconstrained space instead: the fallback when every candidate fails; a Python
            # number, so the fallback is a program of its own, compiled only when needed). One start
            # per chain left 1 of 4 Lotka-Volterra chains in a poor local mode for good
            # (sigma 0.6 against 0.25 on lynx-hare); the best of several does not.
            k_median, k_draws = jax.random.split(key)
            first = candidate(k_median, md, radius, init_to_median(num_samples=15))
            rest = jax.vmap(lambda k: candidate(k, md, radius, init_to_sample()))(
                jax.random.split(k_draws, NUM_START_CANDIDATES - 1)
            )
            zs = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, rest)
            potential = jax.vmap(potential_fn_gen(md))(zs)
            best = jnp.argmin(jnp.where(jnp.isfinite(potential), potential, jnp.inf))
            # How many of the prior draws (not the median) have no finite log density: the
            # prior's failure screen of run_nuts, at no extra compile.
            failed = jnp.sum(~jnp.isfinite(potential[1:]))
            return jax.tree.map(lambda v: v[best], zs), failed

        self.init = jax.jit(jax.vmap(init_one, in_axes=(0, 0, None, None)))
        self.start = _by_radius(start_one, in_axes=(0, None))
        self._init_one, self._start_one = init_one, start_one
        self._postprocess_one = lambda z, md: postprocess_fn_gen(md)(z)
        self._per_chain = {}
        self._chunks = {}
        # (chunk size, reports) of the programs traced, so threads may call them (see run_nuts).
        self.traced: set[tuple[int, bool]] = set()
        # Draws -> constrained latent sites (run_nuts keeps no other): no solve per draw.
        self.constrain = jax.jit(
            jax.vmap(lambda z, md: constrain_fn(model, (md,), {"latents_only": True}, z), in_axes=(0, None))
        )

    def per_chain_data(self, total: int):
        """Compiled ``(start, init, run, postprocess)`` for chains that each have their own
        data: every ``md`` leaf has a leading (chain,) axis. SBC fits many simulated data sets
        this way, as one vectorised run of ``total`` iterations (no chunks, no failure report).

        ``start(keys, md, radius) -> z``, ``init(z, keys, md) -> states``,
        ``run(states, md) -> (z, (diverging, num_steps, energy))`` with (chain, iteration)
        leading axes, ``postprocess(z, md)``: constrained sites and deterministics.
        """
        if total not in self._per_chain:

            def run(states, md):
                def one(state, md):
                    def body(s, _):
                        s = self.sample_kernel(s, model_args=(md,), model_kwargs={})
                        return s, (s.z, (s.diverging, s.num_steps, s.energy))

                    return jax.lax.scan(body, state, None, length=total)[1]

                return vmap_unless_one(one)(states, md)

            self._per_chain[total] = (
                _by_radius(self._start_one, in_axes=(0, 0)),
                jax.jit(jax.vmap(lambda z, key, md: self._init_one(z, key, md, None))),
                jax.jit(run),
                jax.jit(jax.vmap(jax.vmap(self._postprocess_one, in_axes=(0, None)))),
            )
        return self._per_chain[total]

    def chunk(self, n: int, reports: bool = False):
        """Compiled ``(states, chain_ids, md, report, stop) -> (states, (z, stats), (kept, count))`` for ``n`` iterations.

        ``reports=True`` turns the model's solver-failure callback on where
        ``report`` (n,) is True: with ``report`` all False it is the fast pass of a
        short run, and it replays the iterations that diverged. ``reports=False``
        has no callback in it at all (``report`` is ignored), so JAX's persistent
        compilation cache can keep it (a host callback makes JAX recompile a
        program in every process): the fast pass of long runs with the cache on
        (``SEPARATE_REPORTING_MIN_ITERATIONS``).
        Iterations ``>= stop`` are skipped (state unchanged). ``kept`` holds, per
        chain, the states before its first ``REPLAY_SLOTS`` diverging iterations
        (leading axes (chain, slot)); ``count`` (chain,) how many diverged.
        """
        if (n, REPLAY_SLOTS, reports) not in self._chunks:

            def run(states, chain_ids, md, report, stop):
                def one(state, cid):
                    def body(carry, x):
                        s, kept, count = carry
                        k, report_k = x

                        def step(s):
                            # report=False (a Python bool): the model traces no callback.
                            kwargs = {"chain_id": cid, "iteration": s.i, "report": report_k if reports else False}
                            return self.sample_kernel(s, model_args=(md,), model_kwargs=kwargs)

                        new = jax.lax.cond(k < stop, step, lambda s: s, s)
                        # Keep the state this iteration started from if it diverged (in place, one slot).
                        slot = jnp.minimum(count, REPLAY_SLOTS - 1)
                        keep = (k < stop) & new.diverging & (count < REPLAY_SLOTS)
                        kept = jax.tree.map(
                            lambda buf, v: jax.lax.dynamic_update_index_in_dim(buf, jnp.where(keep, v, buf[slot]), slot, 0),
                            kept,
                            s,
                        )
                        count = count + ((k < stop) & new.diverging).astype(jnp.int32)
                        stats = (new.diverging, new.accept_prob, new.num_steps, new.potential_energy, new.energy, new.adapt_state.step_size)
                        return (new, kept, count), (new.z, stats)

                    kept = jax.tree.map(lambda v: jnp.repeat(v[None], REPLAY_SLOTS, axis=0), state)
                    (s, kept, count), out = jax.lax.scan(body, (state, kept, jnp.int32(0)), (jnp.arange(n), report))
                    return s, out, (kept, count)

                return vmap_unless_one(one)(states, chain_ids)

            self._chunks[n, REPLAY_SLOTS, reports] = jax.jit(run)
        return self._chunks[n, REPLAY_SLOTS, reports]



def _by_radius(start_one, in_axes):
    """``start(keys, md, radius, with_failed=False)``: ``start_one`` vmapped and compiled once per
    radius value. Returns the starts ``z``; with ``with_failed``, ``(z, failed)`` where ``failed``
    (chain,) counts each chain's prior-draw candidates without a finite log density (one program
    either way)."""
    programs = {}

    def start(keys, md, radius: float, with_failed: bool = False):
        radius = float(radius)
        if radius not in programs:
            programs[radius] = jax.jit(jax.vmap(functools.partial(start_one, radius=radius), in_axes=in_axes))
        z, failed = programs[radius](keys, md)
        return (z, failed) if with_failed else z

    return start


def get_sampler(model, md, settings, cache: ProgramCache | None = None) -> Sampler:
    """The compiled NUTS pieces for ``model`` on data of ``md``'s shapes with ``settings``
    (``num_warmup``, ``target_accept_prob``, ``max_tree_depth``, ``dense_mass``,
    ``forward_mode``), built on the first call and kept in ``cache`` (default ``PROGRAMS``)."""
    cache = PROGRAMS if cache is None else cache
    key = (md.shapes(), tuple(sorted(settings.items())))
    return cache.get(model, "nuts", key, lambda: Sampler(model, md, **settings))


def latents_model(model):
    """``model`` stopped after its latent sites (``latents_only=True``: no solve, no likelihood) where it
    takes that keyword, as bayesode's models do; else ``model`` itself. What an autoguide or a
    sampler sets itself up on: NumPyro's set-up (``initialize_model``) traces and compiles the gradient
    of the model it is given, and on the whole model that is the gradient of every solve once more."""
    try:
        takes_it = "latents_only" in inspect.signature(model).parameters
    except (TypeError, ValueError):  # no signature to read (a builtin, some callables)
        takes_it = False
    return functools.partial(model, latents_only=True) if takes_it else model


def shapes_key(tree) -> tuple:
    """A program cache key part for the arrays of ``tree`` (a dict of data or site values): each
    leaf's path, shape and dtype, which a compiled program is specialised to (values are its arguments)."""
    return tuple((jax.tree_util.keystr(path), np.shape(v), str(jnp.result_type(v)))
                 for path, v in jax.tree_util.tree_flatten_with_path(tree)[0])  # fmt: skip


def latent_sites(model, md) -> set[str]:
    return set(unconstrained_shapes(model, md))


def unconstrained_size(model, md) -> int:
    """Number of unconstrained scalars NUTS moves in (shapes only, no solve)."""
    return sum(int(np.prod(s.shape)) for s in unconstrained_shapes(model, md).values())


def unconstrained_shapes(model, md) -> dict:
    """Shapes of the latent sites in unconstrained space, from an abstract trace (no compile)."""

    def latents():
        tr = handlers.trace(handlers.seed(model, 0)).get_trace(md, latents_only=True)
        return {
            k: biject_to(v["fn"].support).inv(v["value"])
            for k, v in tr.items()
            if v["type"] == "sample" and not v["is_observed"]
        }

    # Per data shapes: every series adds its own initial state (and series parameters).
    key = tuple((tuple(x.shape), str(x.dtype)) for x in jax.tree.leaves(md))
    return SHAPES.get(model, "unconstrained shapes", key, lambda: jax.eval_shape(latents))
