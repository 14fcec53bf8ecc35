"""float32 against float64, per model kind: what each precision costs and whether the posteriors agree.

Models: the Lotka-Volterra preset on the bundled lynx-hare data; the one-compartment oral PK model
(a 100 mg dose into the gut at t0, first-order absorption) and the SIR influenza model of
``tests/published_models.py``; a small neural field (``bo.models.neural``, width 4) and the
Lotka-Volterra law with a neural correction (``bo.models.hybrid``, width 4) on lynx-hare.
For each model and precision (``run_nuts(..., precision=...)``; the global ``jax_enable_x64`` is
left alone):

- ``prior_fail``: fraction of ``--prior-draws`` prior draws whose solve fails
  (``prior_failure_rate`` in that precision's scope);
- ``wall_s`` (sampling, after compile), ``compile_s``, ``grads`` (gradient evaluations: leapfrog
  steps summed over chains, warmup excluded), ``ess_s`` (smallest bulk ESS over the scalar
  parameters, per second of sampling), ``div`` (divergent draws);
- on the float32 row, agreement with the float64 posterior: ``max_dmean`` (largest
  ``|mean32 - mean64| / sqrt(mcse32^2 + mcse64^2)`` over the scalar parameters: about N(0, 1)
  per parameter when both sample the same posterior) and ``sd_ratio`` (range of sd32 / sd64).

Small settings by default (2 chains x 150 + 150 iterations, sequential chains): a few minutes on
a 2-core CPU, enough to see a precision that breaks a model, not to resolve small biases (with
~100 effective draws an MCSE is ~10% of a posterior sd). The neural and hybrid models run at tree
depth 6 (as ``bayesode fit`` does for neural fields); NUTS over every weight of the neural model
mixes poorly at this size whatever the precision, so its agreement column mostly measures that;
it is the slowest case by far. Run: ``python benchmarks/precision.py [--warmup N --samples N
--chains N --seed S --models lotka-volterra pk sir neural hybrid]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import arviz as az
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from published_models import pk_one_compartment, sir_influenza  # noqa: E402

import bayesode as bo  # noqa: E402
from bayesode.solving.precision import precision_scope  # noqa: E402


def lynx_hare():
    return bo.datasets.load("lynx_hare").to_data()


def cases() -> dict:
    """name -> (model, data); the models are built with their kind's default precision."""
    lh = lynx_hare()
    return {
        "lotka-volterra": (bo.models.lotka_volterra(), lh),
        "pk": pk_one_compartment(),
        "sir": sir_influenza(),
        "neural": (bo.models.neural(data=lh, width=4), lh),
        "hybrid": (bo.models.hybrid(data=lh, width=4), lh),
    }


def scalars(samples: dict) -> dict:
    """site[index] -> (chain, draw) array for every scalar of every site."""
    out = {}
    for name, v in samples.items():
        v = np.asarray(v, dtype=np.float64)
        flat = v.reshape(v.shape[0], v.shape[1], -1)
        for j in range(flat.shape[-1]):
            out[f"{name}[{j}]" if flat.shape[-1] > 1 else name] = flat[..., j]
    return out


def measure(name, model, data, precision: str, args) -> dict:
    with precision_scope(precision):
        rate = bo.prior_failure_rate(model, data, key=1, num_draws=args.prior_draws)
    t = time.time()
    # The neural model at `bayesode fit`'s depth for neural fields (6): at NUTS's default 10 its
    # float64 and float32 fits did not finish within 30 minutes on the shared 2-core machine.
    depth = 6 if name in ("neural", "hybrid") else 10
    post = bo.run_nuts(model, data, key=args.seed, num_warmup=args.warmup, num_samples=args.samples, num_chains=args.chains,
                       chain_method="sequential", progress=False, on_failure="continue", precision=precision,
                       max_tree_depth=depth)  # fmt: skip
    total_s = time.time() - t
    sampling_s = total_s - post.settings["compile_s"]
    draws = scalars(post.samples)
    ess = min(float(az.ess(v)) for v in draws.values())
    return {
        "precision": post.settings["precision"],
        "prior_fail": rate["fraction"],
        "compile_s": post.settings["compile_s"],
        "wall_s": sampling_s,
        "grads": int(np.sum(post.sample_stats["num_steps"])),
        "ess_s": ess / sampling_s,
        "div": int(np.sum(post.sample_stats["diverging"])),
        "draws": draws,
    }


def agreement(low: dict, high: dict) -> tuple[float, float, float]:
    """(max |dmean| / combined MCSE, min sd ratio, max sd ratio) of ``low`` against ``high``."""
    z, ratios = [], []
    for name, a in low.items():
        b = high[name]
        se = np.hypot(float(az.mcse(a)), float(az.mcse(b)))
        z.append(abs(a.mean() - b.mean()) / se if se > 0 else 0.0)
        ratios.append(a.std() / b.std() if b.std() > 0 else np.nan)
    return max(z), float(np.nanmin(ratios)), float(np.nanmax(ratios))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--warmup", type=int, default=150)
    p.add_argument("--samples", type=int, default=150)
    p.add_argument("--chains", type=int, default=2)
    p.add_argument("--prior-draws", type=int, default=200)
    p.add_argument("--seed", type=int, default=0, help="seed of the NUTS fits (default 0)")
    p.add_argument("--models", nargs="*", default=None, help="subset of: lotka-volterra pk sir neural hybrid")
    args = p.parse_args(argv)
    print(f"# {args.chains} chains x {args.warmup} warmup + {args.samples} draws, sequential, seed {args.seed}; "
          f"{args.prior_draws} prior draws; {bo.__name__} {bo.__version__ if hasattr(bo, '__version__') else ''}")
    header = ("model", "precision", "prior_fail", "compile_s", "wall_s", "grads", "ess_s", "div", "max_dmean", "sd_ratio")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, (model, data) in cases().items():
        if args.models and name not in args.models:
            continue
        rows = {prec: measure(name, model, data, prec, args) for prec in ("float64", "float32")}
        z, lo, hi = agreement(rows["float32"]["draws"], rows["float64"]["draws"])
        for prec, r in rows.items():
            agree = (f"{z:.1f}", f"{lo:.2f}-{hi:.2f}") if prec == "float32" else ("-", "-")
            cells = (name, prec, f"{r['prior_fail']:.3f}", f"{r['compile_s']:.0f}", f"{r['wall_s']:.1f}", str(r["grads"]),
                     f"{r['ess_s']:.1f}", str(r["div"])) + agree  # fmt: skip
            print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
