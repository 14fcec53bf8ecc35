"""A point-process fit run again in one process: what the cached programs of ``fit_events`` save.

``fit_events`` keeps its compiled stages (the MAP program, SVI, NUTS start, step and constrain) by
model, data shapes and settings, with the data and starting points as arguments; the model function
itself is shared by every template of one structure (``point_process_model``). So a refit in a
notebook, or the same fit on new data of the same shape, traces and compiles nothing. Three fits
with the same data and settings, one after another in this process:

1. cold: every program traced and compiled (JAX's disk cache off, so it is the same on every run);
2. again: the cached programs;
3. again after ``clear_program_caches()`` and ``jax.clear_caches()``: every program traced and compiled
   again (each refit's cost before the programs were kept, less the op-by-op start that was then compiled
   loop by loop).

The draws of all three must agree exactly (the table says so).

    python benchmarks/event_refit.py
    python benchmarks/event_refit.py --map-steps 300 --svi-steps 300 --warmup 50 --samples 50
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from bayesode.caching import clear_program_caches
from bayesode.datasets import load_events
from bayesode.infer import fit_events


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="coal_explosions")
    parser.add_argument("--method", default="svi+nuts", choices=["svi", "nuts", "svi+nuts"])
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--map-steps", type=int, default=100)
    parser.add_argument("--svi-steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_compilation_cache", False)  # cold means cold, on every run of this script
    events = load_events(args.dataset)
    settings = dict(method=args.method, width=args.width, map_steps=args.map_steps, svi_steps=args.svi_steps,
                    num_warmup=args.warmup, num_samples=args.samples, num_chains=args.chains)  # fmt: skip

    def timed():
        t0 = time.perf_counter()
        fit = fit_events(events, key=args.seed, **settings)
        print(f"  a fit took {time.perf_counter() - t0:.1f} s", flush=True)
        return fit, time.perf_counter() - t0

    cold, t_cold = timed()
    again, t_again = timed()
    clear_program_caches()
    jax.clear_caches()
    rebuilt, t_rebuilt = timed()
    same = all(np.array_equal(cold.samples[k], f.samples[k]) for f in (again, rebuilt) for k in cold.samples)
    print(f"{args.dataset}: {int(events.mask.sum())} events, {args.method}, width {args.width}, MAP {args.map_steps} "
          f"+ SVI {args.svi_steps} steps, {args.chains} chain(s) x ({args.warmup} + {args.samples})")  # fmt: skip
    print(f"{'fit':<46s} {'wall s':>7s} {'/ cold':>7s}")
    for label, t in (("cold (trace + compile every program)", t_cold), ("again (cached programs)", t_again),
                     ("again after clearing the caches", t_rebuilt)):  # fmt: skip
        print(f"{label:<46s} {t:7.1f} {t / t_cold:7.2f}")
    print(f"draws identical in all three: {same}")


if __name__ == "__main__":
    main()
