"""An independent reference posterior for the Lotka-Volterra model on lynx-hare (the Stan case study).

Independent of bayesode's code path: the model is written by hand in NumPyro
(no bayesode priors, likelihood, data handling or solve wrapper), solved with
a different solver (diffrax ``Dopri8`` at rtol = atol = 1e-10 in float64,
against bayesode's ``Tsit5`` at 1e-6 in float32), and sampled with NumPyro's
own ``MCMC`` for many more draws. Writes ``lv_reference.json`` next to this
file: mean, sd and Monte Carlo standard error (of the mean) per quantity.

Run: ``python tests/reference/make_lv_reference.py`` (about 10 minutes on 2 cores).
"""

import json
import os
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import arviz as az  # noqa: E402
import diffrax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
from numpyro.infer import MCMC, NUTS  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CSV = os.path.join(HERE, "..", "..", "data", "lynx_hare.csv")
NUM_CHAINS, NUM_WARMUP, NUM_SAMPLES, SEED = 4, 1000, 5000, 20261129


def lv(t, z, theta):
    alpha, beta, gamma, delta = theta
    u, v = z
    return jnp.stack([(alpha - beta * v) * u, (-gamma + delta * u) * v])


def model(ts, ys):
    """The Stan case study, written out: rates, initial state, noise, log-normal likelihood."""
    alpha = numpyro.sample("alpha", dist.TruncatedNormal(1.0, 0.5, low=0.0))
    beta = numpyro.sample("beta", dist.TruncatedNormal(0.05, 0.05, low=0.0))
    gamma = numpyro.sample("gamma", dist.TruncatedNormal(1.0, 0.5, low=0.0))
    delta = numpyro.sample("delta", dist.TruncatedNormal(0.05, 0.05, low=0.0))
    z_init = numpyro.sample("z_init", dist.LogNormal(jnp.log(10.0), 1.0).expand([2]).to_event(1))
    sigma = numpyro.sample("sigma", dist.LogNormal(-1.0, 1.0).expand([2]).to_event(1))
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(lv),
        diffrax.Dopri8(),
        t0=ts[0],
        t1=ts[-1],
        dt0=0.01,
        y0=z_init,
        args=(alpha, beta, gamma, delta),
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-10),
        adjoint=diffrax.ForwardMode(),
        max_steps=20_000,
        throw=False,  # a failed solve (wild early-warmup proposals) is a rejection, not a crash
    )
    ok = sol.result == diffrax.RESULTS.successful
    numpyro.factor("solve_failed", jnp.where(ok, 0.0, -jnp.inf))
    pred = jnp.where(ok & jnp.all(sol.ys > 0), sol.ys, 1.0)
    numpyro.sample("y", dist.LogNormal(jnp.log(pred), sigma).to_event(2), obs=ys)


def main(out=os.path.join(HERE, "lv_reference.json")):
    raw = np.loadtxt(CSV, delimiter=",", skiprows=1)
    ts, ys = raw[:, 0] - raw[0, 0], raw[:, 1:]
    kernel = NUTS(model, forward_mode_differentiation=True, target_accept_prob=0.9,
                  init_strategy=numpyro.infer.init_to_median(num_samples=15))
    mcmc = MCMC(kernel, num_warmup=NUM_WARMUP, num_samples=NUM_SAMPLES, num_chains=NUM_CHAINS,
                chain_method="sequential", progress_bar=False)
    t = time.time()
    mcmc.run(jax.random.PRNGKey(SEED), jnp.asarray(ts), jnp.asarray(ys))
    wall = time.time() - t
    s = mcmc.get_samples(group_by_chain=True)
    quantities = {
        "alpha": s["alpha"], "beta": s["beta"], "gamma": s["gamma"], "delta": s["delta"],
        "y0[hare]": s["z_init"][..., 0], "y0[lynx]": s["z_init"][..., 1],
        "sigma[hare]": s["sigma"][..., 0], "sigma[lynx]": s["sigma"][..., 1],
    }
    ref = {}
    for name, x in quantities.items():
        x = np.asarray(x)
        ref[name] = {
            "mean": float(x.mean()), "sd": float(x.std()), "mcse_mean": float(az.mcse(x, method="mean")),
            "rhat": float(az.rhat(x)), "ess_bulk": float(az.ess(x, method="bulk")),
        }
    divergences = int(np.sum(mcmc.get_extra_fields(group_by_chain=True)["diverging"]))
    meta = {"draws": f"{NUM_CHAINS} chains x ({NUM_WARMUP} + {NUM_SAMPLES})", "seed": SEED,
            "solver": "Dopri8, rtol=atol=1e-10, float64, ForwardMode", "sampler": "numpyro.infer.MCMC(NUTS)",
            "divergences": divergences, "wall_s": round(wall), "versions": {
                "jax": jax.__version__, "numpyro": numpyro.__version__, "diffrax": diffrax.__version__}}
    with open(out, "w") as fh:
        json.dump({"meta": meta, "posterior": ref}, fh, indent=1)
    print(json.dumps(meta), file=sys.stderr)
    for k, v in ref.items():
        print(f"{k:12s} mean {v['mean']:.5g}  sd {v['sd']:.4g}  mcse {v['mcse_mean']:.2g}  rhat {v['rhat']:.4f}")


if __name__ == "__main__":
    main()
