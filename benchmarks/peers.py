"""Peer baselines for the Lotka-Volterra case: hand-written NumPyro + ``jax.experimental.ode.odeint``, and Stan.

Both fit the same model as ``bayesode.models.lotka_volterra()`` (the Stan case
study's priors and log-normal likelihood, the first observation a noisy
reading of the initial state) with the same tolerances (rtol = atol = 1e-6).
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from _common import compile_seconds, ess_figures
from cases import lv_sizes

RTOL = ATOL = 1e-6


def _lh_arrays():
    import bayesode as bo

    d = bo.datasets.load("lynx_hare")
    return (d.ts - d.ts[0]).astype(np.float32), d.ys.astype(np.float32)  # (21,), (21, 2) hare, lynx


# ---------------------------------------------------------------- NumPyro + odeint
def _dz_dt(z, t, theta):
    u, v = z[0], z[1]
    alpha, beta, gamma, delta = theta[0], theta[1], theta[2], theta[3]
    return jnp.stack([(alpha - beta * v) * u, (-gamma + delta * u) * v])


def numpyro_lv_model(ts, y=None):
    """NumPyro's own LV example, with the Stan case study's priors."""
    import numpyro
    import numpyro.distributions as dist
    from jax.experimental.ode import odeint

    z_init = numpyro.sample("z_init", dist.LogNormal(jnp.log(10.0), 1.0).expand([2]).to_event(1))
    theta = numpyro.sample(
        "theta",
        dist.TruncatedNormal(jnp.array([1.0, 0.05, 1.0, 0.05]), jnp.array([0.5, 0.05, 0.5, 0.05]), low=0.0).to_event(1),
    )
    z = odeint(_dz_dt, z_init, ts, theta, rtol=RTOL, atol=ATOL, mxstep=2048)
    sigma = numpyro.sample("sigma", dist.LogNormal(-1.0, 1.0).expand([2]).to_event(1))
    numpyro.sample("y", dist.LogNormal(jnp.log(z), sigma).to_event(2), obs=y)


def case_numpyro(quick):
    from numpyro.infer import MCMC, NUTS, init_to_median

    ts, ys = _lh_arrays()
    sz = lv_sizes(quick)
    # Start from the prior median, as bayesode.run_nuts does.
    kernel = NUTS(numpyro_lv_model, init_strategy=init_to_median(num_samples=15))
    mcmc = MCMC(
        kernel,
        num_warmup=sz["num_warmup"],
        num_samples=sz["num_samples"],
        num_chains=sz["num_chains"],
        chain_method="vectorized",
        progress_bar=False,
    )
    key = jax.random.PRNGKey(1)
    t0 = time.perf_counter()
    mcmc.warmup(key, ts, ys, extra_fields=("num_steps", "diverging"), collect_warmup=True)
    t1 = time.perf_counter()
    warm_steps = int(np.sum(mcmc.get_extra_fields()["num_steps"]))
    mcmc.run(mcmc.post_warmup_state.rng_key, ts, ys, extra_fields=("num_steps", "diverging"))
    jax.block_until_ready(mcmc.get_samples())
    t2 = time.perf_counter()
    c_warm, c_samp = compile_seconds(t0, t1), compile_seconds(t1, t2)
    extra = mcmc.get_extra_fields(group_by_chain=True)
    samples = mcmc.get_samples(group_by_chain=True)
    row = {
        "case": "lv",
        "tool": "numpyro+odeint",
        "variant": "MCMC(NUTS), vectorized chains",
        **sz,
        "compile_init_s": c_warm + c_samp,
        "warmup_s": t1 - t0 - c_warm,
        "sampling_s": t2 - t1 - c_samp,
        "total_s": t2 - t0,
    }
    row["grads_sampling"] = int(np.sum(extra["num_steps"]))
    row["grads"] = row["grads_sampling"] + warm_steps
    row["grads_counted"] = "warmup+sampling"
    row["time_per_grad_us"] = 1e6 * row["sampling_s"] / max(row["grads_sampling"], 1)
    row.update(ess_figures(samples))
    row["ess_per_s"] = row["ess_bulk_min"] / row["total_s"]
    row["divergences"] = int(np.sum(extra["diverging"]))
    row["solver_failures"] = float("nan")  # odeint has no failure report
    return [row]


# ---------------------------------------------------------------- Stan (pystan 3)
# The case study's program, shared with the Stan reference of tests/test_lv_reference.py.
STAN_LV_FILE = os.path.join(os.path.dirname(__file__), "..", "tests", "reference", "lotka_volterra.stan")


def case_stan(quick):
    try:
        import stan
    except ImportError:
        return [
            {"case": "lv", "tool": "stan", "variant": "skipped", "note": "pystan not installed (pip install pystan)"}
        ]
    ts, ys = _lh_arrays()
    data = {
        "N": len(ts) - 1,
        "ts": ts[1:].astype(float).tolist(),
        "y_init": ys[0].astype(float).tolist(),
        "y": ys[1:].astype(float).tolist(),
        "rtol": RTOL,
        "atol": ATOL,
        "max_steps": 2048,
    }
    sz = lv_sizes(quick)
    t0 = time.perf_counter()
    for _ in range(5):  # the g++ call has a short timeout that can fail under load
        try:
            with open(STAN_LV_FILE) as fh:
                posterior = stan.build(fh.read(), data=data, random_seed=1)
            break
        except Exception as e:  # noqa: BLE001  (pystan raises bare Exception/RuntimeError)
            err = e
    else:
        return [{"case": "lv", "tool": "stan", "variant": "skipped", "note": f"stan.build failed: {err}"}]
    t1 = time.perf_counter()
    fit = posterior.sample(
        num_chains=sz["num_chains"], num_warmup=sz["num_warmup"], num_samples=sz["num_samples"], save_warmup=True
    )
    t2 = time.perf_counter()
    w = sz["num_warmup"]

    def by_chain(name):  # (chains, draws, flat param)
        a = fit._draws[list(fit._parameter_indexes(name))]  # (flat param, draws, chains)
        return np.transpose(a, (2, 1, 0))

    leap = by_chain("n_leapfrog__")
    div = by_chain("divergent__")
    samples = {k: by_chain(k)[:, w:] for k in ("theta", "z_init", "sigma")}
    row = {
        "case": "lv",
        "tool": "stan",
        "variant": f"pystan {stan.__version__}, {sz['num_chains']} chains in processes",
        **sz,
        "compile_init_s": t1 - t0,
        "total_s": t2 - t0,
        "sampling_s": float("nan"),
        "warmup_s": float("nan"),
        "sample_call_s": t2 - t1,
    }
    row["grads_sampling"] = int(leap[:, w:].sum())
    row["grads"] = int(leap.sum())
    row["grads_counted"] = "warmup+sampling"
    # pystan reports no phase split; per-gradient time over both phases, in CPU-seconds of parallel chains.
    row["time_per_grad_us"] = 1e6 * (t2 - t1) / max(row["grads"], 1)
    row.update(ess_figures(samples))
    row["ess_per_s"] = row["ess_bulk_min"] / row["total_s"]
    row["divergences"] = int(div[:, w:].sum())
    row["solver_failures"] = float("nan")
    return [row]


PEER_CASES = {"lv-numpyro": case_numpyro, "lv-stan": case_stan}
