"""Full-weight lynx-hare posterior: NumPyro NUTS against BlackJAX kernels, ESS per second (issue 22).

    python benchmarks/blackjax_kernels.py                       # 2 chains, 300 + 300 (~8 min on 2 shared cores)
    python benchmarks/blackjax_kernels.py --warmup 500 --draws 500 --chains 4
    python benchmarks/blackjax_kernels.py --kernels numpyro-nuts,mclmc --seed 1

Issue 22 samples every weight of the neural vector field with "NUTS or a BlackJAX kernel, chosen by
measured ESS per second"; this measures it. BlackJAX is optional (`pip install "blackjax==1.7.*"`,
not a bayesode dependency): without it the script says so and exits 0.

The posterior: `bayesode.models.neural(data=lynx_hare)` (width 8, depth 1: 42 weights, `y0`, the
noise; 46 unconstrained dimensions), every weight random (what `bayesode fit --bayesian-layers all`
samples), on all 21 years. Its potential on the unconstrained space comes from NumPyro
(`initialize_model` -> `potential_fn`, `postprocess_fn`); every kernel samples that same function.
Every chain of every kernel starts at the same point, one MAP fit (`bayesode.infer.map_points`, as
one member of `fit_full_weight` starts its chains), so the figures measure mixing within that
member's mode, not mode hopping. Chain c of every kernel gets key `split(key(seed), chains)[c]`
(NumPyro splits its key the same way). Chains run one after another, all kernels alike: every
chain's tuning, then every chain's sampling; each phase is one compiled program per kernel (the
first chain compiles it, the later ones reuse it).

Kernels:
  numpyro-nuts   numpyro.infer.NUTS on `potential_fn`: diagonal mass matrix, target accept 0.8,
                 max_tree_depth 6 (what `fit_full_weight` uses); Stan's windowed warmup
  blackjax-nuts  blackjax.nuts after blackjax.window_adaptation (diagonal, target 0.8,
                 max_num_doublings 6: at most 63 steps per draw, as NumPyro's depth 6)
  mclmc          unadjusted MCLMC (blackjax.mclmc), L, step size and diagonal preconditioner from
                 blackjax.mclmc_find_L_and_step_size (its defaults: 10% + 10% (+1/3 of that for
                 the preconditioner) + 10% of the sampling steps)
  mams           adjusted MCLMC with random trajectory lengths (blackjax.adjusted_mclmc_dynamic),
                 tuned by blackjax.adjusted_mclmc_find_L_and_step_size (target acceptance 0.9,
                 diagonal preconditioner, 10% + 10% of the sampling steps); in BlackJAX 1.7 the
                 tuner pins L = 2 x step size (2 integration steps per proposal on average).
                 Integration steps per proposal capped at 63 (NUTS's depth-6 maximum): the
                 tuner's first pass otherwise drew thousands per proposal here (see MAMS_MAX_STEPS)
Budgets: the NUTS kernels run --warmup + --draws iterations per chain. MCLMC and MAMS run as many
steps as give them the sampling-phase gradients per chain that NumPyro NUTS used (--grads sets it
instead; 40 x --draws when numpyro-nuts is not run), their tuning a fixed share of that.

Columns: warm_s, samp_s: wall seconds of tuning/warmup and of sampling, all chains, compile
included (compile_s: the part of both spent tracing and compiling, from jax.monitoring); grads_w,
grads_s: gradient evaluations of each phase, all chains (NUTS: leapfrog steps; MCLMC and MAMS:
2 per integrator step, McLachlan's integrator); draws: kept draws per chain; ess_par, rhat_par:
min bulk ESS and max R-hat over the 46 unconstrained parameters; ess_fs, rhat_fs: the same over
the function-space quantities (the trajectory, both states, at 6 of the observed years, computed
from each draw by the model's deterministic site; ess_fs_med: their median bulk ESS, steadier
when every minimum is near its floor); fs/s_samp, fs/s_tot: ess_fs per second of
sampling and of tuning + sampling; shift_z: largest |difference of a function-space posterior mean
from NumPyro NUTS's| / the combined Monte Carlo standard error (above ~3: the kernel's answer
differs, e.g. an unadjusted kernel's bias); bad: divergent transitions (NUTS, MAMS) or reverted
steps (MCLMC), sampling phase. A second table lists each chain's tuned settings.

All figures are from one run on this machine; with other load on the cores, compare ratios.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from _common import compile_seconds
from jax.flatten_util import ravel_pytree

import bayesode as bo
from bayesode.infer import map_points

KERNELS = ("numpyro-nuts", "blackjax-nuts", "mclmc", "mams")
MAX_TREE_DEPTH = 6  # what fit_full_weight / `bayesode fit` use for neural models
TARGET_ACCEPT = 0.8
MAMS_TARGET_ACCEPT = 0.9  # BlackJAX's documented MAMS target (its mclmc_lrd_warmup default)
# The tuner's first pass holds L at 2 x its initial step (2 x 0.2 sqrt(d) = 2.7 here) while it shrinks
# the step, so a proposal takes L / step integration steps: thousands here (steps near 1e-3) before the
# second pass pins L / step = 2. Capped at NUTS's depth-6 maximum; sampling (L / step = 2) never reaches it.
MAMS_MAX_STEPS = 2**MAX_TREE_DEPTH - 1
GRADS_PER_MCLACHLAN_STEP = 2  # two position updates, so two gradients per integrator step
FS_TIMES = 6  # observed years at which the trajectory is read


# ------------------------------------------------------------------ the posterior
class Target:
    """The full-weight model on lynx-hare, its potential and one MAP start (unconstrained)."""

    def __init__(self, seed: int, map_steps: int, width: int):
        from numpyro.infer import init_to_value
        from numpyro.infer.util import initialize_model

        data = bo.datasets.load("lynx_hare").to_data()
        self.model = bo.models.neural(data=data, width=width)  # every weight random
        md = data.model_data()
        t = time.perf_counter()
        params, potential, _ = map_points(self.model, data, key=seed, num_points=1, num_steps=map_steps)
        self.map_s = time.perf_counter() - t
        self.map_potential = float(potential[0])
        start = {k: jnp.asarray(v[0]) for k, v in params.items()}
        info = initialize_model(
            jax.random.PRNGKey(seed), self.model, model_args=(md,), init_strategy=init_to_value(values=start)
        )
        self.potential_fn = info.potential_fn
        self.postprocess_fn = info.postprocess_fn
        self.z0 = info.param_info.z
        self.dim = int(ravel_pytree(self.z0)[0].size)
        n_times = int(md.ts.shape[-1])
        self.fs_index = np.unique(np.linspace(0, n_times - 1, FS_TIMES).round().astype(int))
        self.fs_years = np.asarray(data.ts[0])[self.fs_index]

    def logdensity(self, z):
        return -self.potential_fn(z)

    def function_space(self, draws) -> np.ndarray:
        """(chain, draw, quantity): the trajectory at the chosen times, every state, per draw."""
        idx = jnp.asarray(self.fs_index)

        @jax.jit
        def one(z):
            return self.postprocess_fn(z)["trajectory"][0, idx].reshape(-1)

        flat = jax.tree.map(lambda v: v.reshape(-1, *v.shape[2:]), draws)
        out = jax.lax.map(one, flat, batch_size=512)
        n_chain, n_draw = jax.tree.leaves(draws)[0].shape[:2]
        return np.asarray(out).reshape(n_chain, n_draw, -1)


def flatten_draws(draws) -> np.ndarray:
    """(chain, draw, P) array of the unconstrained draws (sites in sorted order)."""
    leaves = [np.asarray(v).reshape(*np.shape(v)[:2], -1) for v in jax.tree.leaves(draws)]
    return np.concatenate(leaves, axis=-1)


# ------------------------------------------------------------------ kernels
def run_numpyro_nuts(target, key, args, budget):
    from numpyro.infer import MCMC, NUTS

    kernel = NUTS(potential_fn=target.potential_fn, target_accept_prob=TARGET_ACCEPT, max_tree_depth=MAX_TREE_DEPTH,
                  dense_mass=False)  # fmt: skip
    mcmc = MCMC(kernel, num_warmup=args.warmup, num_samples=args.draws, num_chains=args.chains,
                chain_method="sequential", progress_bar=False)  # fmt: skip
    init = jax.tree.map(lambda v: jnp.broadcast_to(v, (args.chains, *v.shape)), target.z0)
    t0 = time.perf_counter()
    mcmc.warmup(key, init_params=init, extra_fields=("num_steps",), collect_warmup=True)
    grads_w = int(np.sum(jax.block_until_ready(mcmc.get_extra_fields()["num_steps"])))
    t1 = time.perf_counter()
    mcmc.run(mcmc.post_warmup_state.rng_key, extra_fields=("num_steps", "diverging"))
    draws = jax.block_until_ready(mcmc.get_samples(group_by_chain=True))
    t2 = time.perf_counter()
    extra = mcmc.get_extra_fields(group_by_chain=True)
    adapt = mcmc.last_state.adapt_state
    steps = np.asarray(extra["num_steps"])
    tuned = [
        f"step {float(np.atleast_1d(adapt.step_size)[c]):.3g}, mean steps/draw {steps[c].mean():.1f}"
        for c in range(args.chains)
    ]
    return dict(draws=draws, t=(t0, t1, t2), grads_w=grads_w, grads_s=int(steps.sum()),
                bad=int(np.sum(extra["diverging"])), tuned=tuned)  # fmt: skip


def run_blackjax_nuts(target, key, args, budget):
    import blackjax
    from blackjax.adaptation.base import get_filter_adapt_info_fn

    logdensity = target.logdensity

    @jax.jit
    def tune(k, z):
        warmup = blackjax.window_adaptation(
            blackjax.nuts, logdensity, is_mass_matrix_diagonal=True, target_acceptance_rate=TARGET_ACCEPT,
            adaptation_info_fn=get_filter_adapt_info_fn(info_keys={"num_integration_steps"}),
            max_num_doublings=MAX_TREE_DEPTH,
        )  # fmt: skip
        (state, params), info = warmup.run(k, z, num_steps=args.warmup)
        return state, (params["step_size"], params["inverse_mass_matrix"]), info.info.num_integration_steps.sum()

    @jax.jit
    def sample(k, state, params):
        step_size, imm = params
        alg = blackjax.nuts(logdensity, step_size, imm, max_num_doublings=MAX_TREE_DEPTH)

        def one(state, k):
            state, info = alg.step(k, state)
            return state, (state.position, info.num_integration_steps, info.is_divergent)

        _, out = jax.lax.scan(one, state, jax.random.split(k, args.draws))
        return out

    def describe(p, steps):
        return f"step {float(p[0]):.3g}, mean steps/draw {steps.mean():.1f}"

    return _run_blackjax(target, key, args, tune, sample, grads_per_step=1, describe=describe)


def run_mclmc(target, key, args, budget):
    import blackjax

    logdensity = target.logdensity
    num_steps = max(int(round(budget / GRADS_PER_MCLACHLAN_STEP)), 50)
    kernel = blackjax.mcmc.mclmc.build_kernel()  # isokinetic McLachlan, the default

    @jax.jit
    def tune(k, z):
        k_init, k_tune = jax.random.split(k)
        state = blackjax.mcmc.mclmc.init(z, logdensity, k_init)
        state, params, n_steps = blackjax.mclmc_find_L_and_step_size(
            mclmc_kernel=kernel, num_steps=num_steps, state=state, rng_key=k_tune, logdensity_fn=logdensity,
            diagonal_preconditioning=True,
        )  # fmt: skip
        return state, (params.L, params.step_size, params.inverse_mass_matrix), n_steps

    @jax.jit
    def sample(k, state, params):
        L, step_size, imm = params
        alg = blackjax.mclmc(logdensity, L=L, step_size=step_size, inverse_mass_matrix=imm)

        def one(state, k):
            state, info = alg.step(k, state)
            return state, (state.position, jnp.ones((), jnp.int32), ~info.nonans, info.energy_change)

        _, out = jax.lax.scan(one, state, jax.random.split(k, num_steps))
        return out

    def describe(p, steps, energy):
        L, step, _ = p
        evpd = float(np.var(energy)) / target.dim
        return f"L {float(L):.3g}, step {float(step):.3g}, Var[E]/d {evpd:.2g} (tuned for 5e-4), steps {num_steps}"

    return _run_blackjax(target, key, args, tune, sample, grads_per_step=GRADS_PER_MCLACHLAN_STEP, describe=describe)


def run_mams(target, key, args, budget):
    import blackjax
    from blackjax.mcmc.adjusted_mclmc_dynamic import make_random_trajectory_length_fn

    logdensity = target.logdensity
    uncapped = make_random_trajectory_length_fn(random_trajectory_length=True)

    def steps_fn(k, avg):  # drawn independently of the state: capping keeps detailed balance
        return jnp.minimum(uncapped(k, avg), MAMS_MAX_STEPS)

    avg_steps = 2.0  # adjusted_mclmc_find_L_and_step_size's target_num_integration_steps default
    num_steps = max(int(round(budget / (GRADS_PER_MCLACHLAN_STEP * avg_steps))), 50)
    kernel = blackjax.mcmc.adjusted_mclmc_dynamic.build_kernel(integration_steps_fn=steps_fn)

    @jax.jit
    def tune(k, z):
        k_init, k_tune = jax.random.split(k)
        state = blackjax.mcmc.adjusted_mclmc_dynamic.init(z, logdensity, k_init)
        state, params, n_steps = blackjax.adjusted_mclmc_find_L_and_step_size(
            mclmc_kernel=kernel, logdensity_fn=logdensity, num_steps=num_steps, state=state, rng_key=k_tune,
            target=MAMS_TARGET_ACCEPT, diagonal_preconditioning=True, target_num_integration_steps=avg_steps,
        )  # fmt: skip
        return state, (params.L, params.step_size, params.inverse_mass_matrix), n_steps

    @jax.jit
    def sample(k, state, params):
        L, step_size, imm = params
        alg = blackjax.adjusted_mclmc_dynamic(logdensity, step_size, inverse_mass_matrix=imm,
                                              integration_steps_fn=steps_fn,
                                              integration_steps_params=(L / step_size,))  # fmt: skip

        def one(state, k):
            state, info = alg.step(k, state)
            return state, (state.position, info.num_integration_steps, info.is_divergent, info.acceptance_rate)

        _, out = jax.lax.scan(one, state, jax.random.split(k, num_steps))
        return out

    def describe(p, steps, accept):
        L, step, _ = p
        return (f"L {float(L):.3g}, step {float(step):.3g}, mean accept {float(np.mean(accept)):.2f} "
                f"(target {MAMS_TARGET_ACCEPT}), mean steps/draw {steps.mean():.2f}, draws {num_steps}")  # fmt: skip

    return _run_blackjax(target, key, args, tune, sample, grads_per_step=GRADS_PER_MCLACHLAN_STEP, describe=describe)


def _run_blackjax(target, key, args, tune, sample, *, grads_per_step, describe):
    """Tune every chain, then sample every chain, one after another; the phases timed apart.

    ``tune(key, z) -> (state, params, integrator steps)``; ``sample(key, state, params) ->
    (positions, integrator steps per draw, bad transitions, *diagnostics)``, each (draw, ...).
    """
    keys = [jax.random.split(k) for k in jax.random.split(key, args.chains)]  # (tuning, sampling) per chain
    t0 = time.perf_counter()
    tunes = [jax.block_until_ready(tune(keys[c][0], target.z0)) for c in range(args.chains)]
    t1 = time.perf_counter()
    outs = [jax.block_until_ready(sample(keys[c][1], tunes[c][0], tunes[c][1])) for c in range(args.chains)]
    t2 = time.perf_counter()
    draws = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *[o[0] for o in outs])
    steps = np.stack([np.asarray(o[1]) for o in outs])
    tuned = [describe(tunes[c][1], steps[c], *[np.asarray(x) for x in outs[c][3:]]) for c in range(args.chains)]
    return dict(draws=draws, t=(t0, t1, t2), grads_w=grads_per_step * int(sum(int(t[2]) for t in tunes)),
                grads_s=grads_per_step * int(steps.sum()), bad=int(sum(np.sum(o[2]) for o in outs)), tuned=tuned)  # fmt: skip


RUNNERS = {"numpyro-nuts": run_numpyro_nuts, "blackjax-nuts": run_blackjax_nuts, "mclmc": run_mclmc, "mams": run_mams}


# ------------------------------------------------------------------ figures
def _ess_rhat(x: np.ndarray):
    """(bulk ESS per quantity, max R-hat, means, mean MCSEs) of a (chain, draw, Q) array."""
    import arviz as az

    ds = az.convert_to_dataset({"x": x})
    ess = np.asarray(az.ess(ds, method="bulk")["x"].values)
    rhat = np.asarray(az.rhat(ds)["x"].values)
    mcse = np.asarray(az.mcse(ds, method="mean")["x"].values)
    return ess, float(np.nanmax(rhat)), x.mean(axis=(0, 1)), mcse


def figures(target, res) -> dict:
    t0, t1, t2 = res["t"]
    par = flatten_draws(res["draws"])
    fs = target.function_space(res["draws"])
    ess_par, rhat_par, _, _ = _ess_rhat(par)
    ess_fs, rhat_fs, fs_mean, fs_mcse = _ess_rhat(fs)
    return {
        "warm_s": t1 - t0,
        "samp_s": t2 - t1,
        "compile_s": compile_seconds(t0, t2),
        "grads_w": res["grads_w"],
        "grads_s": res["grads_s"],
        "draws": par.shape[1],
        "ess_par": float(np.nanmin(ess_par)),
        "rhat_par": rhat_par,
        "ess_fs": float(np.nanmin(ess_fs)),
        "ess_fs_med": float(np.nanmedian(ess_fs)),
        "rhat_fs": rhat_fs,
        "fs/s_samp": float(np.nanmin(ess_fs)) / (t2 - t1),
        "fs/s_tot": float(np.nanmin(ess_fs)) / (t2 - t0),
        "bad": res["bad"],
        "failed_fs": int(np.sum(~np.isfinite(fs).all(axis=-1))),
        "_fs_mean": fs_mean,
        "_fs_mcse": fs_mcse,
    }


COLUMNS = ("warm_s", "samp_s", "compile_s", "grads_w", "grads_s", "draws", "ess_par", "rhat_par", "ess_fs",
           "ess_fs_med", "rhat_fs", "fs/s_samp", "fs/s_tot", "shift_z", "bad")  # fmt: skip


def _fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        if v != v:
            return "nan"
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--warmup", type=int, default=300, help="NUTS warmup iterations per chain (both NUTS kernels)")
    p.add_argument("--draws", type=int, default=300, help="NUTS draws per chain (both NUTS kernels)")
    p.add_argument("--chains", type=int, default=2)
    p.add_argument("--kernels", default=",".join(KERNELS), help=f"comma-separated subset of {','.join(KERNELS)}")
    p.add_argument("--grads", type=int, default=None,
                   help="sampling-phase gradients per chain for mclmc and mams (default: NumPyro NUTS's, "
                        "or 40 x --draws without it)")  # fmt: skip
    p.add_argument("--map-steps", type=int, default=1000, help="Adam steps of the MAP fit every chain starts from")
    p.add_argument("--width", type=int, default=8, help="hidden width of the network (depth 1)")
    p.add_argument("--no-compile-cache", action="store_true", help="compile every program afresh")
    args = p.parse_args(argv)
    kernels = [k.strip() for k in args.kernels.split(",") if k.strip()]
    unknown = [k for k in kernels if k not in KERNELS]
    if unknown:
        p.error(f"unknown kernels {unknown}; choose from {list(KERNELS)}")
    try:
        import blackjax
    except ImportError:
        print("blackjax is not installed (it is no bayesode dependency): pip install 'blackjax==1.7.*' to run this "
              "benchmark. Nothing was measured.")  # fmt: skip
        return 0
    if not args.no_compile_cache:
        bo.enable_compilation_cache()
    # NumPyro NUTS first: its sampling gradients set the MCLMC/MAMS budget.
    kernels.sort(key=KERNELS.index)

    import numpyro

    target = Target(args.seed, args.map_steps, args.width)
    print(f"full-weight neural ODE (width {args.width}, depth 1), lynx_hare: {target.dim} unconstrained dims; "
          f"MAP start ({args.map_steps} Adam steps, {target.map_s:.1f} s, potential {target.map_potential:.1f}); "
          f"function space: trajectory at years {', '.join(f'{y:.0f}' for y in target.fs_years)}")  # fmt: skip
    print(f"{args.chains} chains, one after another; NUTS {args.warmup} warmup + {args.draws} draws per chain; "
          f"seed {args.seed}; jax {jax.__version__}, numpyro {numpyro.__version__}, blackjax {blackjax.__version__}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)  # fmt: skip
    budget = args.grads or 40 * args.draws
    rows, tuned, ref = {}, {}, None
    for name in kernels:
        key = jax.random.PRNGKey(args.seed)
        try:
            res = RUNNERS[name](target, key, args, budget)
            row = figures(target, res)
            tuned[name] = res["tuned"]
        except Exception as e:  # one failing kernel must not lose the table
            row = {"error": f"{type(e).__name__}: {e}"[:300]}
            print(f"{name}: {row['error']}", file=sys.stderr, flush=True)
        if name == "numpyro-nuts" and "grads_s" in row:
            ref = row
            if args.grads is None:
                budget = row["grads_s"] / args.chains
        rows[name] = row
        print(f"  {name} done ({time.strftime('%H:%M:%S')})", file=sys.stderr, flush=True)
    for row in rows.values():
        if ref is not None and "_fs_mean" in row and row is not ref:
            z = np.abs(row["_fs_mean"] - ref["_fs_mean"]) / np.sqrt(row["_fs_mcse"] ** 2 + ref["_fs_mcse"] ** 2)
            row["shift_z"] = float(np.nanmax(z))
    print()
    print("(seconds: wall, all chains, compile included; fs/s: function-space ESS per second)")
    print(f"{'kernel':<14} " + " ".join(f"{c:>9}" for c in COLUMNS))
    for name, row in rows.items():
        if "error" in row:
            print(f"{name:<14} error: {row['error']}")
            continue
        print(f"{name:<14} " + " ".join(f"{_fmt(row.get(c)):>9}" for c in COLUMNS))
    failed = {n: r["failed_fs"] for n, r in rows.items() if r.get("failed_fs")}
    if failed:
        print(f"draws whose trajectory failed to solve: {failed}")
    print()
    print("tuned settings, per chain:")
    for name, lines in tuned.items():
        for c, line in enumerate(lines):
            print(f"  {name:<14} chain {c}: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
