"""bayesode's Lotka-Volterra posterior on lynx-hare against an independent Stan reference.

``tests/reference/lv_reference.json`` comes from the Stan case study's own
program, run by Stan (rk45 at 1e-8 in float64, 4 x (1000 + 4000) draws) by
``tests/reference/make_lv_reference.py``: no bayesode code is involved. This
test fits ``bayesode.models.lotka_volterra()`` (Tsit5 at 1e-6 in float32,
forward-mode sensitivities) as `bayesode fit --model lotka-volterra --method nuts
--chains 4 --warmup 1000 --samples 1000` does, and checks every quantity.
"""

import json
import os

import arviz as az
import numpy as np
import pytest

import bayesode as bo

REFERENCE = os.path.join(os.path.dirname(__file__), "reference", "lv_reference.json")


@pytest.fixture(scope="module")
def fit():
    data = bo.datasets.load("lynx_hare").to_data()
    return bo.run_nuts(bo.models.lotka_volterra(), data, key=0, num_warmup=1000, num_samples=1000, num_chains=4,
                       progress=False)  # fmt: skip


def _draws(post) -> dict:
    s = {k: np.asarray(v) for k, v in post.samples.items()}  # (chain, draw, ...)
    return {
        "alpha": s["alpha"], "beta": s["beta"], "gamma": s["gamma"], "delta": s["delta"],
        "y0[hare]": s["y0"][..., 0, 0], "y0[lynx]": s["y0"][..., 0, 1],
        "sigma[hare]": s["sigma"][..., 0], "sigma[lynx]": s["sigma"][..., 1],
    }  # fmt: skip


@pytest.mark.slow
def test_lotka_volterra_matches_the_stan_reference(fit):
    with open(REFERENCE) as fh:
        ref = json.load(fh)["posterior"]
    draws = _draws(fit)
    assert set(draws) == set(ref)
    # Gate on the sampler first (the thresholds), so a failure below is about the answer.
    d = fit.diagnostics()
    assert d["rhat_max"] <= 1.01 and d["divergences"] == 0, d
    assert d["ess_bulk_min"] >= 400 and d["ess_tail_min"] >= 400, d  # >= 100 per chain
    for name, x in draws.items():
        r = ref[name]
        mcse = float(az.mcse(x, method="mean"))
        # Means: within 4 combined Monte Carlo standard errors (a two-sided 6e-5 false alarm per quantity
        # if both runs are right; 8 quantities, so < 0.1% for the test).
        z = (x.mean() - r["mean"]) / np.hypot(mcse, r["mcse_mean"])
        assert abs(z) < 4, (name, x.mean(), r["mean"], z)
        # Sds: within 15%. With bulk ESS >= 400 the sd estimate's own relative error is about
        # 1/sqrt(2 ESS) < 4%, so 15% only fails for a real difference in spread.
        assert abs(x.std() / r["sd"] - 1) < 0.15, (name, x.std(), r["sd"])
