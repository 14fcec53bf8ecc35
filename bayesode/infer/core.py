"""Fitting: NUTS, SVI, and SVI then NUTS. The single JIT boundary of bayesode.

NUTS is driven by NumPyro's functional kernel (``numpyro.infer.hmc.hmc``)
rather than ``numpyro.infer.MCMC`` because the loop here must:

- run in chunks, writing sampler state to disk after each so a run resumes
  (bit-identically) after a kill, and Ctrl-C keeps what was drawn;
- pass each chain's index to the model so failed solves are counted per
  chain and iteration (``sample_stats.solver_failures``);
- run chains in parallel across devices without ``pmap``. Reverse mode
  through ``diffeqsolve`` with the default checkpointed adjoint fails under
  ``pmap``/``shard_map`` (equinox closure conversion sees manually-sharded
  avals) and automatic SPMD sharding of a batched NUTS while-loop was 40x
  slower here, so ``chain_method="parallel"`` gives each device its own
  thread (XLA releases the GIL): on CPU the device runs its chains one at a
  time, unbatched; on an accelerator one vectorised group.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import signal
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import optax
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.infer import SVI, Trace_ELBO, autoguide
from numpyro.infer.hmc import hmc
from numpyro.infer.initialization import init_to_median, init_to_sample
from numpyro.infer.util import (
    _get_model_transforms,
    compute_log_probs,
    constrain_fn,
    get_potential_fn,
    potential_energy,
    unconstrain_fn,
)

from ..checks import as_key, positive_int, seed_of
from ..datasets.data import as_data
from ..errors import ConfigError, InitializationError
from ..model.assembly import check_model
from ..results.posterior import Posterior, package_versions
from ..solving.diffeq import FAILURE_ADVICE, FAILURE_CAUSES, STATUS_OK, ForwardSensitivity, vmap_unless_one
from ..solving.failures import FailureLog

CHAIN_METHODS = ("auto", "vectorized", "parallel", "sequential")
# Report solver failures from every iteration in the first pass (no replay): slower (a host
# callback per gradient); the reference the replay is tested against.
_REPORT_EVERY_ITERATION = False
# Per chain and chunk, the states before this many diverging iterations are kept, so the
# failure report replays just those iterations (more divergences: the chunk is replayed).
REPLAY_SLOTS = 8
# Runs at least this long (warmup + samples) sample with a program free of callbacks when JAX's
# persistent compilation cache is on, so a re-run finds it there; the reporting program for
# replays then compiles in the background while sampling goes on (see run_nuts). Shorter runs use
# one program for both (one compile, never cached): a second compile would not be hidden.
SEPARATE_REPORTING_MIN_ITERATIONS = 1000
# Starting points tried per chain (without init_params); the one with the highest log density is used.
NUM_START_CANDIDATES = 16
GUIDES = {
    "mean-field": autoguide.AutoNormal,
    "low-rank": autoguide.AutoLowRankMultivariateNormal,
    "full-rank": autoguide.AutoMultivariateNormal,
}
_STAT_NAMES = ("diverging", "accept_prob", "num_steps", "potential_energy", "energy", "step_size")


# ---------------------------------------------------------------- stress test
def prior_failure_rate(model, data, *, key, num_draws: int = 200) -> dict:
    """Prior-predictive stress test: fraction of prior draws whose solve fails, by cause.

    Run it before a fit: a prior that makes half the solves blow up will make
    NUTS crawl. Returns ``{"fraction": float, "draws": n, cause: count, ...}``.
    """
    check_model(model)
    data = as_data(data)
    model.spec.check_data(data)
    num_draws = positive_int("num_draws", num_draws)
    md = data.model_data()

    @jax.jit
    def statuses(keys):
        return jax.vmap(lambda k: handlers.trace(handlers.seed(model, k)).get_trace(md)["solver_status"]["value"])(keys)

    st = np.asarray(statuses(jax.random.split(as_key(key), num_draws)))  # (draws, series)
    worst = np.where((st != STATUS_OK).any(axis=1), st.max(axis=1), 0)
    out = {"draws": int(num_draws), "fraction": float(np.mean(worst != 0))}
    for code, cause in FAILURE_CAUSES.items():
        out[cause] = int(np.sum(worst == code))
    return out


def _init_error(model, data, key, original: Exception) -> InitializationError:
    try:
        rate = prior_failure_rate(model, data, key=key, num_draws=100)
    except Exception:  # the stress test itself must not hide the first error
        rate = None
    if rate is None:
        return InitializationError(f"no starting point with a finite log density was found: {original}")
    causes = {c: rate[c] for c in FAILURE_CAUSES.values() if rate[c]}
    advice = "; ".join(FAILURE_ADVICE[c] for c in causes) or (
        "solves succeed, so the likelihood is -inf/NaN: check data against the likelihood (e.g. zeros with "
        "LogNormalNoise) and the noise priors"
    )
    return InitializationError(
        f"no starting point with a finite log density was found. Of 100 prior draws, "
        f"{rate['fraction']:.0%} gave a failed solve; by cause: {causes or 'none'}. Fix: {advice}."
    )


# ---------------------------------------------------------------- NUTS driver
def _gradient_by_forward_mode(potential_fn):
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


class _Sampler:
    """Compiled NUTS pieces for one (model, data shapes, settings); cached on the model.

    Built without ``initialize_model`` (which re-traces and re-compiles the
    gradient on every call): the potential comes from one model trace, the
    starting points from a compiled prior-median draw.
    """

    def __init__(self, model, md, *, num_warmup, target_accept_prob, max_tree_depth, dense_mass, forward_mode):
        self.model = model
        seeded = handlers.seed(model, rng_seed=0)
        # The transforms need only the latent sites: no solve (which would compile eagerly here).
        # replay_model=True as for any bayesode model (it has deterministic sites after the solve).
        inv_transforms, _, _, _ = _get_model_transforms(seeded, (md,), {"latents_only": True})
        potential_fn_gen, postprocess_fn_gen = get_potential_fn(
            model, inv_transforms, replay_model=True, dynamic_args=True, model_args=(md,), model_kwargs={}
        )
        if forward_mode:
            plain_potential_fn_gen = potential_fn_gen

            def potential_fn_gen(*args, **kwargs):
                return _gradient_by_forward_mode(plain_potential_fn_gen(*args, **kwargs))

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
            return jax.tree.map(lambda v: v[best], zs)

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


def _by_radius(start_one, in_axes):
    """``start(keys, md, radius)``: ``start_one`` vmapped and compiled once per radius value."""
    programs = {}

    def start(keys, md, radius: float):
        radius = float(radius)
        if radius not in programs:
            programs[radius] = jax.jit(jax.vmap(functools.partial(start_one, radius=radius), in_axes=in_axes))
        return programs[radius](keys, md)

    return start


def get_sampler(model, md, settings) -> _Sampler:
    cache = model.__dict__.setdefault("_bayesode_samplers", {})
    shapes = md.shapes()
    k = (shapes, tuple(sorted(settings.items())))
    if k not in cache:
        cache[k] = _Sampler(model, md, **settings)
    return cache[k]


# Above this many unconstrained parameters run_nuts warns that forward-mode sensitivities
# (one solve direction per parameter) cost more than reverse mode. Measured here: the LV preset
# on 1000 series (2006 parameters) had not finished timing its forward-mode gradient after 10
# minutes; reverse mode, 52 ms per gradient.
FORWARD_MODE_MAX_PARAMETERS = 64


def _warn_if_forward_mode_is_costly(model, md) -> None:
    adjoint = model.spec.solver.adjoint
    if isinstance(adjoint, ForwardSensitivity):
        # One sensitivity column per field parameter and initial state; series add none.
        field = eqx.filter(model.spec.field, eqx.is_inexact_array)
        size = sum(x.size for x in jax.tree.leaves(field)) + model.spec.state_dim
        what = "`adjoint=ForwardSensitivity()`), which integrate one column per field parameter and initial state"
    elif model.spec.solver.forward_mode:
        size = _unconstrained_size(model, md)
        what = "`adjoint=ForwardMode()`), which cost about one solve per parameter (every series adds its initial state)"
    else:
        return
    if size > FORWARD_MODE_MAX_PARAMETERS:
        warnings.warn(
            f"the model's solver uses forward-mode sensitivities ({what}: {size} here. Above "
            f"~{FORWARD_MODE_MAX_PARAMETERS} reverse mode is cheaper: e.g. bayesode.models.lotka_volterra("
            "adjoint='checkpoint') or SolverConfig(adjoint=diffrax.RecursiveCheckpointAdjoint()). A few field "
            "parameters but many series: ForwardSensitivity (adjoint='sensitivity'), whose cost series do not raise.",
            stacklevel=3,
        )


def _resolve_chain_method(chain_method: str, model, num_chains: int) -> str:
    """``"auto"`` -> the fastest way to run ``num_chains`` chains on this process's devices.

    Accelerators: one vectorised batch per device (a batch of chains costs about one chain
    there). CPU: unbatched chains, one device per core when there are several (``parallel``),
    else one after another (``sequential``): a vmapped adaptive loop (solver steps, NUTS trees)
    makes every chain wait for the longest and selects its whole state at every step. LV, 4
    chains on one core: 18.6 ESS/s sequential vs 9.3 vectorised. Both CPU choices give the same
    draws, so a seed's draws do not depend on the device count.
    """
    if chain_method != "auto":
        return chain_method
    if getattr(model.spec, "series_devices", None) is not None:
        return "vectorized"  # the devices share the series; chains cannot take one each
    devices = jax.local_devices()
    if len(devices) >= 2 and num_chains >= 2:
        return "parallel"
    return "vectorized" if devices[0].platform != "cpu" else "sequential"


def _device_groups(num_chains: int, chain_method: str):
    # This process's own devices: in a multi-process (jax.distributed) job jax.devices() also
    # lists the other processes' devices, which this one cannot run on.
    if chain_method == "vectorized":
        return [(jax.local_devices()[0], np.arange(num_chains))]
    if chain_method == "sequential":
        return [(jax.local_devices()[0], np.array([c])) for c in range(num_chains)]
    devices = jax.local_devices()
    n = min(len(devices), num_chains)
    cpu = devices[0].platform == "cpu"
    if len(devices) < 2:
        warnings.warn(
            f"chain_method='parallel' found {len(devices)} device(s); running chains "
            + ("one after another (as 'sequential'). Call bayesode.use_cpu_cores() before JAX starts for one "
               "device per core." if cpu else "vectorized.")  # fmt: skip
            + " chain_method='auto' (the default) picks without a warning.",
            stacklevel=3,
        )
    split = np.array_split(np.arange(num_chains), n)
    if cpu:
        # On CPU each device runs its chains one at a time, unbatched (see vmap_unless_one): each
        # chain then pays for its own trees only, not the longest of its batch. LV, 4 chains on
        # 2 cores: 145 us per gradient unbatched vs about 290 us per chain in a batch.
        return [(devices[i], idx[j : j + 1]) for i, idx in enumerate(split) for j in range(len(idx))]
    return [(devices[i], idx) for i, idx in enumerate(split)]


# A chain is stuck when, over the last warmup chunk, its median potential energy (-log density)
# is above the best chain's by more than this many of the best chain's own spreads (and at
# least STUCK_MIN_GAP nats). LV on lynx-hare, seed 0: one chain spent its whole warmup in a
# mode 40 nats worse (the best chain's potential has spread ~2), then met the main mode in
# sampling with a mass matrix adapted to the other: 307 divergences, R-hat 1.33.
STUCK_SPREADS = 10.0
STUCK_MIN_GAP = 10.0


def _restart_check_iteration(num_warmup: int, chunk_size: int) -> int | None:
    """The chunk boundary (iteration count) at which stuck chains are looked for: the first at or
    after half the warmup, if warmup continues after it (the restarted chain then adapts on)."""
    at = -(-(num_warmup // 2) // chunk_size) * chunk_size
    return at if 0 < at < num_warmup else None


def _restart_stuck_chains(states, potential, iteration: int):
    """Restart chains stuck in a region of far lower density from a good chain's whole state.

    ``potential``: (chain, window) potential energies of the last warmup iterations. A stuck chain
    takes the state of a good chain (position, gradient, step size, mass matrix and its window
    sums) but keeps its own random key, so it follows its own path from there. Warmup draws are
    discarded, so this changes which region the chain samples, not the validity of the sampling
    that follows; it is reported in ``settings["restarted_chains"]`` and the diagnostics.
    Returns the states and a list of ``{chain, donor, iteration, potential, donor_potential}``.
    """
    med = np.nanmedian(np.where(np.isfinite(potential), potential, np.nan), axis=1)
    if len(med) < 2 or not np.isfinite(med).any():
        return states, []
    best = int(np.nanargmin(med))
    q25, q75 = np.nanpercentile(potential[best], [25, 75])
    gap = max(STUCK_MIN_GAP, STUCK_SPREADS * (q75 - q25) / 1.349)
    stuck = ~(med <= med[best] + gap)  # NaN (no finite potential in the window) counts as stuck
    if not stuck.any():
        return states, []
    good = np.flatnonzero(~stuck)
    source = np.arange(len(med))
    source[stuck] = good[np.arange(stuck.sum()) % len(good)]
    moved = jax.tree.map(lambda x: np.asarray(x)[source], states)._replace(rng_key=states.rng_key)
    report = [
        dict(chain=int(c), donor=int(source[c]), iteration=int(iteration), potential=float(med[c]),
             donor_potential=float(med[source[c]]))
        for c in np.flatnonzero(stuck)
    ]  # fmt: skip
    return moved, report


def _save_checkpoint(path, meta, states, draws, stats, failures):
    os.makedirs(path, exist_ok=True)
    tmp = os.path.join(path, "state.tmp.npz")
    leaves = jax.tree.leaves(states)
    np.savez(
        tmp,
        **{f"state_{i}": np.asarray(x) for i, x in enumerate(leaves)},
        **{f"draw_{i}": x for i, x in enumerate(draws)},
        **{f"stat_{k}": v for k, v in stats.items()},
        failures=np.array(json.dumps([[k[0], k[1], {str(a): b for a, b in v.items()}] for k, v in failures._seen.items()])),
        # The iteration lives with the state it belongs to: a kill between replacing
        # state.npz and meta.json must not pair a new state with an old count.
        iteration=np.array(meta["iteration"]),
    )
    os.replace(tmp, os.path.join(path, "state.npz"))
    with open(os.path.join(path, "meta.tmp.json"), "w") as fh:
        json.dump(meta, fh)
    os.replace(os.path.join(path, "meta.tmp.json"), os.path.join(path, "meta.json"))


def _load_checkpoint(path, meta, states_like):
    mpath = os.path.join(path, "meta.json")
    if not os.path.exists(mpath):
        return None
    with open(mpath) as fh:
        saved = json.load(fh)
    # On CPU, parallel and sequential chains run the same unbatched program (same draws): a run
    # started on two devices resumes on one and back.
    unbatched = jax.local_devices()[0].platform == "cpu"

    def settings(m):
        out = {k: v for k, v in m.items() if k not in ("iteration", "restarted_chains")}
        if unbatched and out.get("chain_method") in ("parallel", "sequential"):
            out["chain_method"] = "unbatched"
        return out

    same = settings(saved) == settings(meta)
    if not same:
        raise ConfigError(
            f"`checkpoint_dir`={path!r} holds a run with different settings; use a new folder or the same settings. "
            f"saved: {saved}; now: {meta}"
        )
    z = np.load(os.path.join(path, "state.npz"))
    treedef = jax.tree.structure(states_like)
    n_leaves = treedef.num_leaves
    states = jax.tree.unflatten(treedef, [jnp.asarray(z[f"state_{i}"]) for i in range(n_leaves)])
    draws = [z[f"draw_{i}"] for i in range(sum(k.startswith("draw_") for k in z.files))]
    stats = {k[5:]: z[k] for k in z.files if k.startswith("stat_")}
    log = FailureLog()
    for chain, it, fps in json.loads(str(z["failures"])):
        log._seen[(chain, it)] = {float(a): b for a, b in fps.items()}
    return int(z["iteration"]), states, draws, stats, log, saved.get("restarted_chains", [])


class _StopOnSigint:
    """Ctrl-C while sampling: finish the chunk in progress (and its checkpoint), then return the draws.

    A second Ctrl-C raises KeyboardInterrupt at once (losing that chunk). Why a
    flag: Python raises KeyboardInterrupt wherever the main thread happens to be,
    and it can land inside library code that swallows it (seen here: a run that
    kept sampling after Ctrl-C); a flag read between chunks is never lost. Only
    the main thread may install signal handlers; elsewhere this does nothing.
    """

    def __init__(self):
        self.requested, self._previous = False, None

    def __bool__(self) -> bool:
        return self.requested

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, self._previous)  # the next Ctrl-C interrupts at once
        print("\nCtrl-C: stopping after this chunk; press Ctrl-C again to stop now", file=sys.stderr, flush=True)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            self._previous = previous if previous is not None else signal.default_int_handler
            signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self._previous is not None and signal.getsignal(signal.SIGINT) == self._handle:
            signal.signal(signal.SIGINT, self._previous)


def _bar(done: int, total: int, width: int = 30) -> str:
    """``[#####.....]``: ``done`` of ``total`` as a text bar (the NUTS and SVI progress lines)."""
    fill = width * done // total
    return f"[{'#' * fill}{'.' * (width - fill)}]"


class _Progress:
    def __init__(self, total, num_warmup, enabled):
        self.total, self.num_warmup, self.enabled, self.t0 = total, num_warmup, enabled, time.time()

    def update(self, done, diverging, step_size, failures):
        if not self.enabled:
            return
        phase = "warmup" if done <= self.num_warmup else "sample"
        msg = (
            f"\r{phase} {_bar(done, self.total)} {done}/{self.total} "
            f"| {time.time() - self.t0:5.0f}s | step {float(np.mean(step_size)):.2g} "
            f"| divergences {int(diverging)} | solver failures {int(failures)}"
        )
        print(msg, end="", file=sys.stderr, flush=True)
        if done >= self.total:
            print(file=sys.stderr, flush=True)


def retry_nonfinite_starts(z, init, retry_starts, attempts: int = 20):
    """Sampler states for starts ``z`` (unconstrained, leading chain axis), where a chain whose
    start has a non-finite log density (e.g. a failed solve) retries from ``retry_starts(attempt)``
    (``attempt`` = 1, 2, ...: uniform(-2, 2) in unconstrained space, as Stan does) up to
    ``attempts`` times. ``init(z)`` gives the states. Returns ``(states, bad)``; ``bad`` (chain,)
    marks chains still without a finite start. Shared by ``run_nuts`` and vectorised SBC fits.
    """
    states = init(z)
    for attempt in range(1, attempts + 1):
        bad = ~np.isfinite(np.asarray(states.potential_energy))
        if not bad.any():
            break
        retry = retry_starts(attempt)
        z = jax.tree.map(lambda old, new: jnp.where(bad.reshape((-1,) + (1,) * (old.ndim - 1)), new, old), z, retry)  # noqa: B023
        states = init(z)
    return states, ~np.isfinite(np.asarray(states.potential_energy))


def run_nuts(
    model,
    ts,
    ys=None,
    *,
    key,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    num_chains: int = 4,
    chain_method: str = "auto",
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 10,
    dense_mass: bool = False,
    init_params: dict | None = None,
    inverse_mass_matrix=None,
    chunk_size: int = 100,
    checkpoint_dir: str | None = None,
    progress: bool = True,
    chains=None,
    restart_stuck_chains: bool = True,
    **data_kwargs,
) -> Posterior:
    """Sample the posterior with NUTS.

    Parameters
    ----------
    model : from :func:`make_model`
    ts, ys : times and observations, or a :class:`Data` as ``ts`` (then no ``ys``).
    key : PRNG key or int seed (keyword-only). Same key, same settings, same
        machine: bit-identical draws.
    num_warmup, num_samples, num_chains : int
    chain_method : {"auto", "vectorized", "parallel", "sequential"}
        ``auto`` (default): on CPU, ``parallel`` with several devices (one per
        core: :func:`use_cpu_cores`) and ``sequential`` with one; on a GPU/TPU,
        ``vectorized`` (``parallel`` with several); ``vectorized`` with
        ``series_devices``. ``settings["chain_method"]`` records the choice.
        ``vectorized``: all chains in one ``vmap`` on one device (the choice
        on an accelerator). ``parallel``: chains spread over the JAX devices,
        one thread per device; on CPU each device runs its chains one at a
        time, unbatched (a batch waits for its longest tree and solve), the
        fastest choice there; on other devices one vectorised group each.
        ``sequential``: one chain at a time, unbatched. On CPU ``parallel``
        and ``sequential`` give the same draws, whatever the device count.
    target_accept_prob, max_tree_depth, dense_mass : NUTS settings.
    init_params : dict of site -> array with a leading (chain,) axis, optional
        Constrained starting values per chain (e.g. draws from an SVI fit).
        Default: each chain starts at the best (highest log density) of 16
        candidates, the median of 15 prior draws and 15 prior draws, drawn
        with the chain's own key, so chains start apart but not in a poor
        local mode by bad luck.
    inverse_mass_matrix : array, optional
        Starting (inverse) mass matrix over the flattened unconstrained
        parameters (sites in sorted order): (P,) for diagonal, (P, P) with
        ``dense_mass=True``. ``run_svi_nuts`` passes the SVI covariance.
    chunk_size : int
        Iterations per compiled call; also the checkpoint interval.
    checkpoint_dir : str, optional
        Write the sampler state here after every chunk; calling ``run_nuts``
        again with the same folder and settings resumes where it stopped.
    progress : bool
        Progress bar on stderr.
    chains : sequence of int, optional
        Run only these of the ``num_chains`` chains (increasing indices), e.g.
        one share per machine. Chain ``c`` gets the same key, start and draws
        whichever share it is in, so the shares' posteriors, concatenated along
        ``chain``, are the whole run (with ``chain_method="sequential"`` on
        every side, bit-identical on the same machine; vectorised chains share
        floating-point rounding with their group). :func:`run_nuts_distributed`
        does the split and the gathering in a ``jax.distributed`` job.
    restart_stuck_chains : bool
        At the first chunk boundary past half the warmup, a chain whose
        log density over the last chunk sits far below the best chain's
        (its median potential more than ``max(10, 10 x`` the best chain's
        spread``)`` nats higher: a poor local mode, which adaptation would
        tune the mass matrix to) restarts from a good chain's state with its
        own random key, and adapts on. Reported in
        ``settings["restarted_chains"]`` and by :meth:`Posterior.diagnostics`.
        Needs warmup in more than one chunk and the whole run's chains (not a
        ``chains`` share). ``False``: chains stay where they went (e.g. to
        look for modes with R-hat).

    Returns
    -------
    Posterior
    """
    check_model(model)
    data = as_data(ts, ys, **data_kwargs)
    model.spec.check_data(data)
    num_warmup = positive_int("num_warmup", num_warmup, allow_zero=True)
    num_samples = positive_int("num_samples", num_samples)
    num_chains = positive_int("num_chains", num_chains)
    chunk_size = positive_int("chunk_size", chunk_size)
    max_tree_depth = positive_int("max_tree_depth", max_tree_depth)
    if chain_method not in CHAIN_METHODS:
        raise ConfigError(f"`chain_method`={chain_method!r} is unknown; choose one of {CHAIN_METHODS}.")
    if chain_method == "parallel" and getattr(model.spec, "series_devices", None) is not None:
        raise ConfigError(
            "the model splits its series across devices (`series_devices`), so its chains cannot also take one "
            "device each: use chain_method='vectorized' (all chains on the devices that share the series)."
        )
    if not (0 < target_accept_prob < 1):
        raise ConfigError(f"`target_accept_prob` must be in (0, 1); got {target_accept_prob!r}.")
    chains = _chain_subset(chains, num_chains)
    chain_method = _resolve_chain_method(chain_method, model, len(chains))
    seed = seed_of(key)
    key = as_key(key)
    k_init, k_chains = jax.random.split(key)
    chain_keys = jax.random.split(k_chains, num_chains)
    md = data.model_data()
    settings = dict(
        num_warmup=num_warmup,
        target_accept_prob=float(target_accept_prob),
        max_tree_depth=max_tree_depth,
        dense_mass=bool(dense_mass),
        forward_mode=model.spec.solver.forward_mode,
    )
    if checkpoint_dir is not None and os.path.exists(checkpoint_dir) and not os.path.isdir(checkpoint_dir):
        raise ConfigError(f"`checkpoint_dir`={checkpoint_dir!r} is a file; give a folder (it is created if missing).")
    # Argument checks that need the model's sites run on shapes only (eval_shape), before compiling.
    if init_params is not None:
        _check_inits(model, md, init_params, num_chains)
    if inverse_mass_matrix is not None:
        inverse_mass_matrix = jnp.asarray(inverse_mass_matrix)
        size = _unconstrained_size(model, md)
        want = (size, size) if dense_mass else (size,)
        if inverse_mass_matrix.shape != want:
            raise ConfigError(
                f"`inverse_mass_matrix` has shape {inverse_mass_matrix.shape}; expected {want} "
                f"({'dense' if dense_mass else 'diagonal'} over the {size} unconstrained parameters)."
            )
    _warn_if_forward_mode_is_costly(model, md)
    t_start = time.time()
    sampler = get_sampler(model, md, settings)
    if init_params is None:
        z0 = sampler.start(jax.random.split(k_init, num_chains), md, 0.0)
    else:
        z0 = _unconstrain_inits(model, md, init_params)
    states, bad = retry_nonfinite_starts(
        z0,
        lambda z: sampler.init(z, chain_keys, md, inverse_mass_matrix),
        lambda attempt: sampler.start(jax.random.split(jax.random.fold_in(k_init, attempt), num_chains), md, 2.0),
    )
    if bad.any():
        raise _init_error(model, data, key, RuntimeError("all 20 attempts per chain gave a non-finite log density"))
    t_compile_init = time.time() - t_start
    # Starts and initial states are made for all chains (each row as in a whole run), then this share kept.
    states = jax.tree.map(lambda x: np.asarray(x)[chains], states)

    total = num_warmup + num_samples
    meta = dict(settings, num_samples=num_samples, num_chains=num_chains, chain_method=chain_method, seed=seed,
                chunk_size=chunk_size, restart_stuck_chains=bool(restart_stuck_chains), iteration=0)
    if len(chains) < num_chains:
        meta["chains"] = chains.tolist()
    draws, stats, log, done, restarted = [], {}, FailureLog(), 0, []
    # Restarts need every chain of the run: a share (``chains``) must give the same chains whatever the split.
    check_at = _restart_check_iteration(num_warmup, chunk_size) if restart_stuck_chains else None
    if len(chains) < num_chains:
        check_at = None
    if checkpoint_dir is not None:
        loaded = _load_checkpoint(checkpoint_dir, meta, states)
        if loaded is not None:
            done, states, saved_draws, stats, log, restarted = loaded
            draws = [saved_draws]  # one chunk holding every leaf drawn so far
            if progress:
                print(f"resuming from iteration {done} of {total} in {checkpoint_dir}", file=sys.stderr)
    groups = _device_groups(len(chains), chain_method)
    bar = _Progress(total, num_warmup, progress)
    interrupted = False
    z_leaves_def = jax.tree.structure(z0)

    length = min(chunk_size, total)  # iterations per compiled chunk call

    def group_inputs(dev, idx, st):
        """The chunk program's inputs for chains ``idx`` on ``dev`` (all but ``stop``)."""
        # States live on the host between chunks: NumPy indexing costs microseconds, an eager
        # JAX gather per state leaf about 2 ms (most of a small model's per-fit time in SBC).
        sub = jax.tree.map(lambda x: np.asarray(x)[idx], st)
        md_dev = md
        if len(groups) > 1:
            sub, md_dev = jax.device_put(sub, dev), jax.device_put(md, dev)
        return sub, jnp.asarray(idx), md_dev, jnp.full(length, _REPORT_EVERY_ITERATION)

    def run_group(dev, idx, n, st):
        """One chunk of ``n`` iterations for chains ``idx`` on ``dev``, without failure reports.

        One program of ``length`` iterations serves every chunk: a shorter last chunk runs its
        first ``n`` iterations and passes the state through the rest (a second program of ``n``
        iterations would cost a second compile, 7-11 s on 2 cores, for the same work).

        Returns the chunk's output and ``replay``: None, or (if any chain diverged: a failed
        solve always gives a divergence, its log density is -inf) a function that runs those
        iterations again with reports on, from the states they started from (kept by the
        chunk), to count the failures. The replay program is the fast one itself (reports off
        there) or the fast one plus the callback under a ``cond``: from the same inputs it
        retraces the same trajectories and only adds the counts (both tested against
        reporting from every iteration). A chain with more than
        ``REPLAY_SLOTS`` divergences in the chunk has the chunk replayed up to its last
        diverging iteration instead. Each chain stays in its own row of the batch: XLA's CPU
        code gives a row the same floats whatever the other rows hold, but not the same floats
        in another row (measured), so moving a chain would change its path.
        """
        sub, ids, md_dev, report = group_inputs(dev, idx, st)
        out_states, (z, chunk_stats), (kept, count) = sampler.chunk(length, fast_reports)(sub, ids, md_dev, report, n)
        out = jax.device_get((out_states, z, chunk_stats))
        out = (out[0], jax.tree.map(lambda v: v[:, :n], out[1]), jax.tree.map(lambda v: v[:, :n], out[2]))
        count = np.asarray(count)
        if not count.any() or _REPORT_EVERY_ITERATION:
            return out, None

        def replay():
            # The separate reporting program is compiled once, for the first group's device
            # (the same CPU code on every host device); otherwise this group's program, here.
            put = functools.partial(jax.device_put, device=groups[0][0]) if separate else (lambda x: x)
            fn = sampler.chunk(length, reports=True)
            sub_on, ids_on, md_on = put(sub), put(ids), put(md_dev)
            if count.max() > REPLAY_SLOTS:
                again = np.asarray(out[2][0]).any(axis=0)  # (n,) iterations where any chain diverged
                fn(sub_on, ids_on, md_on, put(jnp.asarray(np.pad(again, (0, length - n)))), int(np.flatnonzero(again)[-1]) + 1)
            else:
                kept_host = jax.device_get(kept)
                first_only = put(jnp.asarray(np.arange(length) == 0))
                rows = np.arange(len(idx))
                for j in range(int(count.max())):
                    # Chains with fewer divergences repeat their last one: reports of the
                    # same point are de-duplicated, so this only costs the evaluation.
                    pick = np.clip(np.minimum(j, count - 1), 0, None)
                    fn(put(jax.tree.map(lambda b: b[rows, pick], kept_host)), ids_on, md_on, first_only, 1)

        return out, replay

    # The fast pass has no callback (cacheable) in long runs with the persistent cache on; there,
    # replays of diverged iterations wait for the reporting program, which compiles in the
    # background (sampling goes on meanwhile; vectorised chains use about one core). Otherwise
    # the fast pass is the reporting program with reports off, and replays run at once.
    separate = bool(jax.config.jax_compilation_cache_dir) and total >= SEPARATE_REPORTING_MIN_ITERATIONS
    fast_reports = _REPORT_EVERY_ITERATION or not separate
    reporting = {}  # chains in a group -> Future of the compile (on the first group's device)
    pending = []  # (that key, replay) not yet run
    compiler = ThreadPoolExecutor(1)

    def run_replays(wait: bool):
        nonlocal pending
        later = []
        for k, replay in pending:
            if not separate or wait or reporting[k].done():
                if separate:
                    reporting[k].result()  # a compile error surfaces here
                replay()
            else:
                later.append((k, replay))
        if len(later) < len(pending):
            jax.effects_barrier()
        pending = later

    stop_requested = _StopOnSigint()
    with log, stop_requested:
        try:
            while done < total and not stop_requested:
                n = min(chunk_size, total - done)
                if len(groups) == 1:
                    results = [run_group(*groups[0], n, states)]
                elif chain_method == "parallel":
                    if (length, fast_reports) not in sampler.traced:
                        # Tracing runs the model, and NumPyro's effect handlers live on one global
                        # stack: two threads tracing at once mix their sites ("all sites must have
                        # unique names"). So the program is traced here, in this thread, for each
                        # group's inputs (the trace is cached by shapes: once); the threads then
                        # only lower and compile it for their own device, at the same time.
                        for dev, idx in groups:
                            sampler.chunk(length, fast_reports).trace(*group_inputs(dev, idx, states), n)
                        sampler.traced.add((length, fast_reports))
                    # One thread per device; a device's groups (on CPU: one chain each) run in turn.
                    by_device = {}
                    for i, (dev, _) in enumerate(groups):
                        by_device.setdefault(dev, []).append(i)
                    results = [None] * len(groups)

                    def run_device(group_ids):
                        for i in group_ids:
                            results[i] = run_group(*groups[i], n, states)

                    with ThreadPoolExecutor(len(by_device)) as ex:
                        list(ex.map(run_device, by_device.values()))  # list(): a thread's error surfaces here
                else:  # sequential: one chain per group, on one device
                    results = [run_group(dev, idx, n, states) for dev, idx in groups]
                for (dev, idx), (_, replay) in zip(groups, results):
                    if replay is None:
                        continue
                    k = len(idx)
                    if separate and k not in reporting:
                        fn = sampler.chunk(length, reports=True)
                        inputs = jax.device_put(group_inputs(dev, idx, states), groups[0][0])
                        fn.trace(*inputs, 0)  # here: tracing runs the model (see above)
                        reporting[k] = compiler.submit(fn, *inputs, 0)  # compiles; runs no iteration
                    pending.append((k, replay))
                # A checkpoint holds the failure log: it must include every replay up to there.
                run_replays(wait=checkpoint_dir is not None)
                results = [out for out, _ in results]
                cat = lambda *xs: np.concatenate(xs, axis=0)  # noqa: E731
                states = jax.tree.map(cat, *[r[0] for r in results])
                z = jax.tree.map(cat, *[r[1] for r in results])
                chunk_stats = [cat(*[r[2][j] for r in results]) for j in range(len(_STAT_NAMES))]
                draws.append(jax.tree.leaves(z))
                for name, v in zip(_STAT_NAMES, chunk_stats):
                    stats[name] = v if name not in stats else np.concatenate([stats[name], v], axis=1)
                done += n
                if done == check_at:
                    window = stats["potential_energy"][:, max(0, done - max(n, 50)) : done]
                    states, moved = _restart_stuck_chains(states, window, done)
                    restarted += moved
                jax.effects_barrier()
                fails = log.counts(stats["diverging"], stats["num_steps"], 0)["total"].sum()
                bar.update(done, stats["diverging"][:, num_warmup:].sum(), chunk_stats[5][:, -1], fails)
                if checkpoint_dir is not None:
                    _save_checkpoint(checkpoint_dir, dict(meta, iteration=done, restarted_chains=restarted), states,
                                     _merge(draws), stats, log)  # fmt: skip
                    draws = [_merge(draws)]
        except KeyboardInterrupt:  # a second Ctrl-C, or one outside the main thread: the chunk in progress is lost
            interrupted = True
        finally:
            compiler.shutdown(wait=False)
        run_replays(wait=True)  # the chunks done are counted, interrupted or not
    if interrupted or (stop_requested and done < total):
        interrupted = True
        if progress:
            print(file=sys.stderr)
        warnings.warn(
            f"interrupted at iteration {done} of {total}; returning the {max(done - num_warmup, 0)} draws made"
            + (f"; run again with checkpoint_dir={checkpoint_dir!r} to resume" if checkpoint_dir else ""),
            stacklevel=2,
        )
    wall = time.time() - t_start
    n_kept = done - num_warmup
    if n_kept <= 0:
        raise KeyboardInterrupt("interrupted during warmup; no draws to return")
    z_all = jax.tree.unflatten(z_leaves_def, [leaf[:, num_warmup:done] for leaf in _merge(draws)])
    flat_z = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), z_all)
    constrained = jax.device_get(sampler.constrain(flat_z, md))
    samples = {
        k: np.asarray(v).reshape((len(chains), n_kept) + np.shape(v)[1:])
        for k, v in constrained.items()
        if k in _latent_sites(model, md)
    }
    sstats = {k: np.asarray(v[:, num_warmup:done]) for k, v in stats.items()}
    sstats["tree_depth"] = np.floor(np.log2(np.maximum(sstats["num_steps"], 1))).astype(np.int64) + 1
    sstats["tree_depth_saturated"] = sstats["num_steps"] >= 2**max_tree_depth - 1
    fail = log.counts(stats["diverging"][:, num_warmup:done], stats["num_steps"][:, num_warmup:done], num_warmup)
    sstats["solver_failures"] = fail.pop("total")
    for cause, v in fail.items():
        sstats[f"solver_failures_{cause}"] = v
    warm = log.counts(stats["diverging"][:, :num_warmup], stats["num_steps"][:, :num_warmup], 0)
    settings_out = dict(
        meta,
        iteration=done,
        method="nuts",
        interrupted=interrupted,
        wall_time_s=wall,
        init_and_compile_s=t_compile_init,
        warmup_solver_failures={c: int(v.sum()) for c, v in warm.items()},
        warmup_divergences=int(stats["diverging"][:, :num_warmup].sum()),
        restarted_chains=restarted,
        versions=package_versions(),
    )
    return Posterior(samples=samples, sample_stats=sstats, data=data, model=model, settings=settings_out)


def _chain_subset(chains, num_chains: int) -> np.ndarray:
    if chains is None:
        return np.arange(num_chains)
    arr = np.asarray(chains)
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise ConfigError(f"`chains` must be a non-empty sequence of chain indices (ints); got {chains!r}.")
    if arr.min() < 0 or arr.max() >= num_chains or np.any(np.diff(arr) <= 0):
        raise ConfigError(
            f"`chains` must be increasing indices in [0, num_chains={num_chains}) without repeats; got {arr.tolist()}."
        )
    return arr


def _merge(draws):
    if len(draws) == 1:
        return draws[0]
    return [np.concatenate(parts, axis=1) for parts in zip(*draws)]


def _latent_sites(model, md) -> set[str]:
    return set(_unconstrained_shapes(model, md))


def _unconstrained_size(model, md) -> int:
    """Number of unconstrained scalars NUTS moves in (shapes only, no solve)."""
    return sum(int(np.prod(s.shape)) for s in _unconstrained_shapes(model, md).values())


def _unconstrained_shapes(model, md) -> dict:
    """Shapes of the latent sites in unconstrained space, from an abstract trace (no compile)."""
    from numpyro import handlers
    from numpyro.distributions import biject_to

    cache = model.__dict__.setdefault("_bayesode_latents", {})
    # Per data shapes: every series adds its own initial state (and series parameters).
    key = ("unconstrained", tuple((tuple(x.shape), str(x.dtype)) for x in jax.tree.leaves(md)))
    if key not in cache:

        def latents():
            tr = handlers.trace(handlers.seed(model, 0)).get_trace(md, latents_only=True)
            return {
                k: biject_to(v["fn"].support).inv(v["value"])
                for k, v in tr.items()
                if v["type"] == "sample" and not v["is_observed"]
            }

        cache[key] = jax.eval_shape(latents)
    return cache[key]


def _check_inits(model, md, init_params, num_chains):
    if not isinstance(init_params, dict):
        raise ConfigError(f"`init_params` must be a dict of site -> array; got {type(init_params).__name__}.")
    sites = _latent_sites(model, md)
    missing = sorted(sites - set(init_params))
    if missing:
        raise ConfigError(f"`init_params` lacks site(s) {missing}; give a value (with a leading chain axis) for each.")
    for k in sorted(sites):
        shape = np.shape(init_params[k])
        if shape[:1] != (num_chains,):
            raise ConfigError(f"`init_params['{k}']` must have a leading axis of num_chains={num_chains}; got {shape}.")


def _unconstrain_inits(model, md, init_params):
    vals = {k: jnp.asarray(init_params[k]) for k in _latent_sites(model, md)}
    return jax.jit(jax.vmap(lambda p: unconstrain_fn(model, (md,), {}, p)))(vals)


# ---------------------------------------------------------------- SVI
SVI_CHUNK = 250  # optimisation steps per compiled call of `_optimise`
SVI_PROGRAMS_KEPT = 8  # compiled SVI programs cached per model (oldest dropped first)


def _svi_program(model, md, guide: str, rank, num_particles: int, optimizer, num_steps: int):
    """``(guide, svi, chunk, init)`` for one model, data shapes and settings; cached on the
    model, so a second fit of the same shapes traces and compiles nothing (``chunk`` is one
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
    try:
        hash(key)
    except TypeError:  # an optimizer that cannot be a dict key: build afresh (traces again)
        key = None
    cache = model.__dict__.setdefault("_bayesode_svi", {})
    if key is None or key not in cache:
        kw = {"init_loc_fn": init_to_median(num_samples=15)}
        if guide == "low-rank" and rank is not None:
            kw["rank"] = rank
        g = GUIDES[guide](functools.partial(model, latents_only=True), **kw)
        if default_optimizer:
            # Adam with a decaying step: fast early progress, then a settled optimum.
            schedule = optax.exponential_decay(0.01, transition_steps=num_steps, decay_rate=0.05)
            optimizer = optax.chain(optax.clip_by_global_norm(10.0), optax.adam(schedule))
        svi = SVI(model, g, numpyro.optim.optax_to_numpyro(optimizer), _TraceELBO(num_particles=num_particles))

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

        program = (g, svi, chunk, init)
        if key is None:
            return program
        if len(cache) >= SVI_PROGRAMS_KEPT:  # e.g. a loop over fresh optax objects: keep memory bounded
            cache.pop(next(iter(cache)))
        cache[key] = program
    g = cache[key][0]
    g.prototype_trace = None
    return cache[key]


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
    return init(key, md, init_params, g._init_locs)


def _optimise(chunk, svi_state, md, num_steps: int, progress: bool):
    """``num_steps`` SVI steps (``stable_update``: a step with a non-finite loss is skipped),
    run as compiled chunks of ``SVI_CHUNK`` steps; returns the final state and the losses.

    One program for every ``num_steps`` and both values of ``progress``: a chunk runs its
    first ``n`` steps and passes the state through the rest (``lax.cond``, so they cost
    nothing), and the progress line is drawn between chunks. NumPyro's ``SVI.run`` runs a
    Python loop of a jitted step with its progress bar and one ``lax.scan`` without it:
    two programs, whose floats differ (the main job's final loss was 174.39 with the bar
    and 175.80 without), so a fit depended on whether its progress was shown.
    """
    losses, t0 = [], time.time()
    for start in range(0, num_steps, SVI_CHUNK):
        n = min(SVI_CHUNK, num_steps - start)
        svi_state, chunk_losses = chunk(svi_state, md, n)
        losses.append(np.asarray(chunk_losses)[:n])
        if progress:
            done, last = start + n, losses[-1][np.isfinite(losses[-1])]
            print(f"\rsvi {_bar(done, num_steps)} {done}/{num_steps} | {time.time() - t0:5.0f}s "
                  f"| loss {float(np.mean(last)) if last.size else float('nan'):.4g}", end="", file=sys.stderr,
                  flush=True)
    if progress:
        print(file=sys.stderr, flush=True)
    return svi_state, np.concatenate(losses)


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
    **data_kwargs,
) -> Posterior:
    """Fit a variational approximation with SVI (ELBO), then draw from it.

    Parameters
    ----------
    guide : {"mean-field", "low-rank", "full-rank"}
        ``AutoNormal``, ``AutoLowRankMultivariateNormal`` (``rank``), ``AutoMultivariateNormal``.
    optimizer : optax optimizer, default ``optax.adam(0.01)`` with gradient clipping.
    num_steps : optimisation steps; ``num_particles``: ELBO samples per step.
    num_draws : draws from the fitted guide kept as the posterior (one chain).

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
    md = data.model_data()
    if guide == "low-rank" and rank is not None:
        rank = positive_int("rank", rank)
    if optimizer is not None and not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise ConfigError(
            f"`optimizer` must be an optax optimizer (a GradientTransformation such as optax.adam(0.01)); "
            f"got {optimizer!r}."
        )
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
            raise _init_error(model, data, key, e) from None
        raise
    svi_state, losses = _optimise(chunk, svi_state, md, num_steps, progress)
    params = svi.get_params(svi_state)
    draws = g.sample_posterior(k_draw, params, sample_shape=(num_draws,))
    sites = _latent_sites(model, md)
    samples = {k: np.asarray(v)[None] for k, v in draws.items() if k in sites}
    settings = dict(
        method="svi",
        guide=guide,
        num_steps=num_steps,
        num_particles=num_particles,
        num_draws=num_draws,
        num_chains=1,
        seed=seed,
        nonfinite_steps=int(np.sum(~np.isfinite(losses))),
        wall_time_s=time.time() - t0,
        versions=package_versions(),
    )
    return Posterior(samples=samples, sample_stats={}, data=data, model=model, settings=settings, losses=losses,
                     guide_state=(copy.copy(g), params))  # a copy: the cached guide is set up again by the next fit


def run_svi_nuts(
    model,
    ts,
    ys=None,
    *,
    key,
    svi_steps: int = 2000,
    guide: str = "full-rank",
    optimizer=None,
    num_warmup: int = 500,
    num_samples: int = 500,
    num_chains: int = 4,
    init_spread: float = 0.1,
    progress: bool = True,
    **nuts_kwargs,
) -> Posterior:
    """SVI first, then NUTS started near the SVI fit's centre (one start per chain).

    For neural fields NUTS from the prior median or random points often
    spends its warmup in tiny step sizes; starting near the mode, with the
    SVI covariance as the starting mass matrix (dense for ``full-rank`` and
    ``low-rank`` guides), removes most of that. The SVI losses are kept on
    the result.

    ``init_spread`` scales the guide's spread for the chain starts (in
    unconstrained space): ``1`` starts from plain guide draws, ``0`` starts
    every chain at the guide's centre. The default ``0.1`` keeps the chains in
    the mode SVI found: a neural ODE's posterior has many modes (hidden-unit
    permutations, and trajectories that fit the data in other ways), and a
    wide guide's draws scatter the chains over several of them, which NUTS
    cannot cross, so R-hat on the trajectories would report the scatter, not
    the sampler. The price: modes SVI did not find are not explored.
    """
    data = as_data(ts, ys, **{k: nuts_kwargs.pop(k) for k in ("state_names", "series_names", "t0") if k in nuts_kwargs})
    k_svi, k_nuts = jax.random.split(as_key(key))
    if not (isinstance(init_spread, (int, float)) and 0 <= init_spread <= 1):
        raise ConfigError(f"`init_spread` must be a number in [0, 1]; got {init_spread!r}.")
    svi = run_svi(model, data, key=k_svi, guide=guide, optimizer=optimizer, num_steps=svi_steps,
                  num_draws=num_chains, progress=progress)
    inits = _starts_near_mode(model, data.model_data(), svi, init_spread)
    dense = guide != "mean-field"
    nuts_kwargs.setdefault("dense_mass", dense)
    if nuts_kwargs["dense_mass"] == dense and "inverse_mass_matrix" not in nuts_kwargs:
        nuts_kwargs["inverse_mass_matrix"] = _guide_covariance(*svi.guide_state, dense)
    post = run_nuts(model, data, key=k_nuts, num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
                    init_params=inits, progress=progress, **nuts_kwargs)
    post.losses = svi.losses
    post.settings.update(method="svi+nuts", svi_steps=svi_steps, svi_guide=guide, seed=seed_of(key),
                         svi_wall_time_s=svi.settings["wall_time_s"])
    return post


def run_neural_linear(
    model,
    ts,
    ys=None,
    *,
    key,
    method: str = "svi+nuts",
    hidden_svi_steps: int = 2000,
    hidden_guide: str = "full-rank",
    statistic: str = "median",
    svi_steps: int | None = None,
    progress: bool = True,
    **kwargs,
) -> Posterior:
    """Fit a neural model as a neural-linear model: what ``bayesode fit`` does by default.

    Stage 1 fits every weight of ``model`` (from :func:`bayesode.models.neural`)
    by SVI (``hidden_guide``, ``hidden_svi_steps``); stage 2 fixes the hidden
    layers at that fit's ``statistic`` (:func:`bayesode.models.freeze_hidden`)
    and fits the output layer, ``y0`` and the noise by ``method``
    (``"svi+nuts"``, ``"nuts"`` or ``"svi"``), with ``svi_steps`` (default a
    third of ``hidden_svi_steps``: the stage-2 SVI only centres the chains and
    sets the mass matrix for a few weights). ``kwargs`` go to the stage-2 fit.

    Why: NUTS over every weight of even a width-8 network on lynx-hare does not
    mix in minutes (chains settle in different modes); the neural-linear
    posterior does, at the price of leaving out the hidden layers' own
    uncertainty (see ``freeze_hidden``). The stage-1 fit is kept as
    ``post.settings["hidden_fit"]`` (its guide, steps and final loss).
    """
    from ..model import presets as models

    if method not in ("svi+nuts", "nuts", "svi"):
        raise ConfigError(f"`method` must be one of ['svi+nuts', 'nuts', 'svi']; got {method!r}.")
    if not (isinstance(hidden_svi_steps, int) and hidden_svi_steps > 0):
        raise ConfigError(f"`hidden_svi_steps` must be a positive int; got {hidden_svi_steps!r}.")
    data = as_data(ts, ys, **{k: kwargs.pop(k) for k in ("state_names", "series_names", "t0") if k in kwargs})
    hidden = run_svi(model, data, key=key, guide=hidden_guide, num_steps=hidden_svi_steps, num_draws=100, progress=progress)
    frozen = models.freeze_hidden(model, hidden, statistic=statistic)
    steps = max(hidden_svi_steps // 3, 1) if svi_steps is None else svi_steps
    # The same key for both stages keeps `bayesode fit --seed S` reproducing earlier runs; the two
    # stages fit different parameter spaces, so sharing it couples nothing that matters.
    if method == "svi+nuts":
        post = run_svi_nuts(frozen, data, key=key, svi_steps=steps, progress=progress, **kwargs)
    elif method == "svi":
        post = run_svi(frozen, data, key=key, num_steps=steps, progress=progress, **kwargs)
    else:
        post = run_nuts(frozen, data, key=key, progress=progress, **kwargs)
    post.settings["hidden_fit"] = {"guide": hidden_guide, "svi_steps": hidden_svi_steps, "statistic": statistic,
                                   "final_loss": float(np.asarray(hidden.losses)[-1])}  # fmt: skip
    return post


def _starts_near_mode(model, md, svi, spread: float) -> dict:
    """Chain starts ``centre + spread * (draw - centre)`` in unconstrained space, constrained back."""
    guide, params = svi.guide_state
    centre = guide.median(params)
    draws = {k: jnp.asarray(v[0]) for k, v in svi.samples.items()}  # (chain, ...)
    latents = _latent_sites(model, md)
    centre = {k: jnp.asarray(centre[k]) for k in latents}
    draws = {k: draws[k] for k in latents}

    @jax.jit
    def shrink(centre, draws):
        z_c = unconstrain_fn(model, (md,), {}, centre)
        z_d = jax.vmap(lambda d: unconstrain_fn(model, (md,), {}, d))(draws)
        z = jax.tree.map(lambda c, d: c + spread * (d - c), z_c, z_d)
        return jax.vmap(lambda u: constrain_fn(model, (md,), {}, u))(z)

    return {k: np.asarray(v) for k, v in shrink(centre, draws).items()}


def _guide_covariance(guide, params, dense: bool):
    """The guide's covariance over the flattened unconstrained latents (NUTS's order)."""
    if isinstance(guide, autoguide.AutoContinuous):
        cov = guide.get_posterior(params).covariance_matrix
        return cov if dense else jnp.diag(cov)
    # AutoNormal: per-site scales, flattened in sorted site order like ravel_pytree.
    var = [jnp.ravel(params[f"{k}_auto_scale"]) ** 2 for k in sorted(guide.prototype_trace) if f"{k}_auto_scale" in params]
    diag = jnp.concatenate(var)
    return jnp.diag(diag) if dense else diag
