"""An independent reference posterior for the Lotka-Volterra model on lynx-hare (the Stan case study).

Independent of bayesode's whole stack: the model is the Stan case study's own
program (Carpenter 2018), compiled by Stan, solved by Stan's ``ode_rk45_tol``
(Dormand-Prince in float64 at rtol = atol = 1e-8, against bayesode's Tsit5 at
1e-6 in float32) and sampled by Stan's NUTS for 4 x (1000 + 4000) draws. So a
shared bug in bayesode's priors, likelihood, data handling, solve or sampler
cannot hide in both. Writes ``lv_reference.json`` next to this file: mean, sd,
Monte Carlo standard error of the mean, R-hat and bulk ESS per quantity.

Needs pystan 3 (``pip install pystan``; compiles with the machine's g++), which
is not a dependency of bayesode: the JSON is committed and the test
(``tests/test_lv_reference.py``) only reads it.

Run: ``python tests/reference/make_lv_reference.py`` (a few minutes on 2 cores).
"""

import json
import os
import sys
import time

import arviz as az
import numpy as np
import stan

HERE = os.path.dirname(os.path.abspath(__file__))
CSV = os.path.join(HERE, "..", "..", "data", "lynx_hare.csv")
NUM_CHAINS, NUM_WARMUP, NUM_SAMPLES, SEED = 4, 1000, 4000, 20261129
TOL = 1e-8

with open(os.path.join(HERE, "lotka_volterra.stan")) as fh:
    PROGRAM = fh.read()  # the case study's program


def main(out=os.path.join(HERE, "lv_reference.json")):
    raw = np.loadtxt(CSV, delimiter=",", skiprows=1)
    ts, ys = raw[:, 0] - raw[0, 0], raw[:, 1:]
    data = {"N": len(ts) - 1, "ts": ts[1:].tolist(), "y_init": ys[0].tolist(), "y": ys[1:].tolist(),
            "rtol": TOL, "atol": TOL, "max_steps": 100_000}  # fmt: skip
    for attempt in range(5):  # pystan's g++ call has a 1 s timeout that can fail on a loaded machine
        try:
            posterior = stan.build(PROGRAM, data=data, random_seed=SEED)
            break
        except Exception:  # noqa: BLE001  (pystan raises bare Exception/RuntimeError)
            if attempt == 4:
                raise
    t = time.time()
    fit = posterior.sample(num_chains=NUM_CHAINS, num_warmup=NUM_WARMUP, num_samples=NUM_SAMPLES)
    wall = time.time() - t

    def by_chain(name):  # (chains, draws, flat index)
        return np.transpose(fit._draws[list(fit._parameter_indexes(name))], (2, 1, 0))

    theta, z_init, sigma = by_chain("theta"), by_chain("z_init"), by_chain("sigma")
    quantities = {
        "alpha": theta[..., 0], "beta": theta[..., 1], "gamma": theta[..., 2], "delta": theta[..., 3],
        "y0[hare]": z_init[..., 0], "y0[lynx]": z_init[..., 1],
        "sigma[hare]": sigma[..., 0], "sigma[lynx]": sigma[..., 1],
    }  # fmt: skip
    ref = {}
    for name, x in quantities.items():
        ref[name] = {
            "mean": float(x.mean()), "sd": float(x.std()), "mcse_mean": float(az.mcse(x, method="mean")),
            "rhat": float(az.rhat(x)), "ess_bulk": float(az.ess(x, method="bulk")),
        }  # fmt: skip
    meta = {
        "draws": f"{NUM_CHAINS} chains x ({NUM_WARMUP} + {NUM_SAMPLES})", "seed": SEED,
        "solver": f"Stan ode_rk45_tol, rtol=atol={TOL}, float64", "sampler": f"Stan NUTS via pystan {stan.__version__}",
        "divergences": int(by_chain("divergent__").sum()), "wall_s": round(wall),
    }  # fmt: skip
    with open(out, "w") as fh:
        json.dump({"meta": meta, "posterior": ref}, fh, indent=1)
    print(json.dumps(meta), file=sys.stderr)
    for k, v in ref.items():
        print(f"{k:12s} mean {v['mean']:.5g}  sd {v['sd']:.4g}  mcse {v['mcse_mean']:.2g}  rhat {v['rhat']:.4f}")


if __name__ == "__main__":
    main()
