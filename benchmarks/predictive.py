"""Prior-predictive draws: bayesode's one runner (``results.model_draws``) against NumPyro's ``Predictive``.

Both run the same per-draw step, ``trace(seed(model, key))``, vectorised over draws and jitted;
``model_draws`` also keeps the log-likelihood and a fresh draw of the observed site from the same
solve (what the ArviZ export and SBC need), which ``Predictive`` cannot return. Prints the median of
``--repeats`` warm calls (after one compile call) for each, interleaved, on the Lotka-Volterra preset.

    python benchmarks/predictive.py --draws 500 --repeats 7
"""

import argparse
import time

import jax
import numpy as np
from numpyro.infer import Predictive

import bayesode as bo
from bayesode.results import model_draws


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--draws", type=int, default=500)
    p.add_argument("--repeats", type=int, default=7)
    a = p.parse_args()
    data = bo.datasets.load("lynx_hare").to_data()
    model = bo.models.lotka_volterra()
    md = data.model_data()
    keys = jax.random.split(jax.random.PRNGKey(0), a.draws)
    sites = ["trajectory", "solver_status"]
    predictive = jax.jit(
        lambda k, md: Predictive(model, num_samples=a.draws, return_sites=sites, parallel=True)(k, md)
    )

    def ours():
        return model_draws(model, md, keys)

    def theirs():
        return jax.device_get(predictive(jax.random.PRNGKey(0), md))

    fns = {"model_draws": ours, "numpyro Predictive": theirs}
    first = {}
    for name, fn in fns.items():
        t = time.perf_counter()
        fn()
        first[name] = time.perf_counter() - t
    times = {name: [] for name in fns}
    for _ in range(a.repeats):  # interleaved, so a busy machine slows both alike
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    for name in fns:
        print(f"{name:20s} first call {first[name]:6.2f} s, warm median {1e3 * np.median(times[name]):8.1f} ms "
              f"({a.draws} prior draws, {a.repeats} repeats)")

if __name__ == "__main__":
    main()
