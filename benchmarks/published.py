"""Published ODE models: bayesode's posterior against the Stan references, per parameter.

Fits each model of ``tests/published_models.py`` with NUTS (4 x (1000 + 1000) by default)
and prints, per parameter, Stan's mean and sd (``tests/reference/published_reference.json``),
bayesode's, the z of the mean difference over the combined MCSE, the sd ratio and whether
the issue's criterion holds (|z| < 4, sd ratio in [0.85, 1.15]; a positive parameter's sd is
judged on its ``log(name)`` row where the reference has one, see ``published_models.passes``),
plus the fit's wall time, R-hat, divergences and failed solves.

    python benchmarks/published.py                       # every model
    python benchmarks/published.py --models sir_influenza --warmup 500 --samples 500
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from published_models import MODELS, compare, passes  # noqa: E402

import bayesode as bo  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=sorted(MODELS), choices=sorted(MODELS))
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    header = f"{'model':20s} {'param':10s} {'stan mean':>10s} {'mean':>10s} {'z':>6s} {'stan sd':>9s} {'sd':>9s} {'ratio':>6s} {'ess':>6s}  ok"
    print(header)
    for name in args.models:
        model, data = MODELS[name]()
        t = time.time()
        post = bo.run_nuts(model, data, key=args.seed, num_warmup=args.warmup, num_samples=args.samples,
                           num_chains=args.chains, progress=False)  # fmt: skip
        wall = time.time() - t
        for r in compare(name, post):
            print(f"{name:20s} {r['quantity']:10s} {r['stan_mean']:10.4g} {r['mean']:10.4g} {r['z']:6.2f} "
                  f"{r['stan_sd']:9.3g} {r['sd']:9.3g} {r['sd_ratio']:6.3f} {r['ess_bulk']:6.0f}  "
                  f"{'yes' if passes(r) else 'NO'}{'' if r['sd_judged'] else ' (sd judged on log scale)'}")  # fmt: skip
        d = post.diagnostics()
        print(f"{name:20s} wall {wall:.1f} s (compile included), rhat_max {d['rhat_max']:.3f}, "
              f"divergences {d['divergences']}, failed solves {d['solver_failures']} "
              f"(warmup {d['warmup_solver_failures']})")  # fmt: skip


if __name__ == "__main__":
    main()
