"""Exact posterior moments of ``pk_one_compartment`` by quadrature, a check on the Stan reference.

The one-compartment model with one oral dose has a closed form,
``central(t) = D ka / (ka - ke) (exp(-ke t) - exp(-ka t))``, so its 3-parameter posterior
can be integrated on a grid (log ka, log ke, sigma) with no sampler at all. It shows why
the natural-scale sd of ka is not compared: its right tail (ka up to ~20, held only by
the prior) makes the sd of ~1700 effective draws range widely, while log(ka)'s is tight.

Run: ``python tests/reference/pk_quadrature.py`` (NumPy only, ~10 s).
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import published_data  # noqa: E402


def main():
    d = published_data.pk()
    ts, y, dose = d["ts"], d["conc"], d["dose"]
    lka, lke, sig = np.linspace(-4, 5, 721), np.linspace(-4, 0.5, 361), np.linspace(0.005, 2.5, 500)
    LKA, LKE = np.meshgrid(lka, lke, indexing="ij")
    ka, ke = np.exp(LKA)[..., None], np.exp(LKE)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):  # ka == ke on the grid's diagonal: dropped below
        c = dose * ka / (ka - ke) * (np.exp(-ke * ts) - np.exp(-ka * ts))
        sq = np.where(np.all(c > 0, -1), ((np.log(y) - np.log(c)) ** 2).sum(-1), np.inf)
    # Priors as the Stan program: ka ~ LogNormal(0, 1), ke ~ LogNormal(log 0.2, 1), sigma ~ HalfNormal(0.5);
    # on (log ka, log ke) the LogNormals are Normals (the Jacobian cancels their 1/x).
    lp = (-0.5 * LKA**2 - 0.5 * (LKE - np.log(0.2)) ** 2)[..., None] - 2 * sig**2 - ts.size * np.log(sig)
    lp = lp - sq[..., None] / (2 * sig**2)
    w = np.exp(lp - lp.max())
    w /= w.sum()
    marginals = {"ka": (np.exp(lka), w.sum((1, 2))), "ke": (np.exp(lke), w.sum((0, 2))), "sigma": (sig, w.sum((0, 1)))}
    for name, (x, p) in marginals.items():
        for label, v in ((name, x), (f"log({name})", np.log(x))):
            m = (p * v).sum()
            print(f"{label:10s} mean {m:.4f}  sd {np.sqrt((p * (v - m) ** 2).sum()):.4f}")
    x, p = marginals["ka"]
    rng = np.random.default_rng(0)
    for label, v in (("ka", x), ("log(ka)", np.log(x))):
        sds = [v[rng.choice(x.size, 1700, p=p)].std() for _ in range(2000)]
        lo, hi = np.quantile(sds, [0.025, 0.975])
        print(f"sd of {label} from 1700 independent draws: 95% of runs in [{lo:.3f}, {hi:.3f}]")


if __name__ == "__main__":
    main()
