"""Point-process NUTS: bayesode's iteration-by-iteration driver against NumPyro's ``MCMC.run``.

``fit_events`` samples through :func:`bayesode.infer.event_nuts.sample_nuts` (one jitted NUTS
transition called from Python, so Ctrl-C keeps the draws) instead of ``MCMC.run`` (one compiled
loop). Same model, start, key and settings, run alternately ``--repeats`` times in one process;
the table gives each one's wall time (compile included: a fresh program each run) and whether
the draws agree.

    python benchmarks/event_nuts.py
    python benchmarks/event_nuts.py --dataset coal_explosions --warmup 100 --samples 100 --repeats 2
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
from numpyro.infer import MCMC, NUTS, init_to_value

from bayesode.datasets import load_events
from bayesode.infer.event_nuts import sample_nuts
from bayesode.infer.point_process import EVENT_SOLVER, _initial_values, make_event_process
from bayesode.model import Normal, event_arrays, point_process_model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="coal_explosions")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--chains", type=int, default=1)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--max-tree-depth", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    events = load_events(args.dataset)
    process = make_event_process(events, key=jax.random.key(args.seed), width=args.width)
    model = point_process_model(process, weight_prior=Normal(1.0), config=EVENT_SOLVER)
    data, init = event_arrays(events), _initial_values(process, Normal(1.0))
    key = jax.random.key(args.seed + 1)
    settings = dict(num_warmup=args.warmup, num_samples=args.samples, num_chains=args.chains)

    def driver():
        samples, _, _ = sample_nuts(model, init, data, key, max_tree_depth=args.max_tree_depth, progress=False,
                                    **settings)  # fmt: skip
        return samples

    def mcmc_run():
        kernel = NUTS(model, init_strategy=init_to_value(values=init), target_accept_prob=0.8,
                      max_tree_depth=args.max_tree_depth)  # fmt: skip
        mcmc = MCMC(kernel, chain_method="sequential", progress_bar=False, **settings)
        mcmc.run(key, **data)
        return {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}

    print(f"{args.dataset}: {int(events.mask.sum())} events, width {args.width}, {args.chains} chain(s) x "
          f"({args.warmup} + {args.samples}), tree depth <= {args.max_tree_depth}")  # fmt: skip
    print(f"{'repeat':>6s} {'sample_nuts s':>14s} {'MCMC.run s':>11s} {'ratio':>6s} {'max |draw diff|':>16s}")
    for r in range(args.repeats):
        times, draws = {}, {}
        for name, fn in (("driver", driver), ("mcmc", mcmc_run)) if r % 2 == 0 else (("mcmc", mcmc_run), ("driver", driver)):
            jax.clear_caches()  # each run compiles, as a new fit would
            t = time.perf_counter()
            draws[name] = fn()
            times[name] = time.perf_counter() - t
        diff = max(float(np.max(np.abs(draws["driver"][k] - draws["mcmc"][k]))) for k in init)
        print(f"{r:6d} {times['driver']:14.1f} {times['mcmc']:11.1f} {times['driver'] / times['mcmc']:6.2f} {diff:16.3g}")


if __name__ == "__main__":
    main()
