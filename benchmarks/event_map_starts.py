"""Multi-start MAP of a neural jump ODE: wall time of the starts one after another against side by side.

`fit_events(map_starts=K)` runs K MAP fits through one compiled program in a thread pool
(`bayesode.infer.event_map.fit_map`, `workers`). This prints, for the same K starts on the
bundled exponential-Hawkes events, the wall time with one worker and with one per core,
alternated `--repeats` times (shared machines are noisy: read the ratio), and each start's
final loss (the same in both, or the threads changed the result).

    python benchmarks/event_map_starts.py [--starts 4] [--steps 300] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.random as jr
import numpy as np

from bayesode.datasets import load_events
from bayesode.infer import EVENT_SOLVER, make_event_process
from bayesode.infer.event_map import fit_map, start_points
from bayesode.infer.point_process import _initial_values
from bayesode.model import Normal, event_arrays, point_process_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--starts", type=int, default=4)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    hist, _ = load_events("hawkes_exponential_events").split(80.0)
    process = make_event_process(hist, key=jr.key(0), latent_dim=2, width=8)
    prior = Normal(1.0)
    model = point_process_model(process, weight_prior=prior, config=EVENT_SOLVER)
    starts = start_points(_initial_values(process, prior), args.starts, jr.key(1))
    data = event_arrays(hist)
    cores = os.cpu_count() or 1
    print(f"jax {jax.__version__}, {cores} cores, {args.starts} starts x {args.steps} Adam steps, "
          f"{int(hist.mask.sum())} events in {hist.num_sequences} sequences")  # fmt: skip
    print(f"{'workers':>8}{'wall s':>9}  final loss per start")
    walls: dict = {1: [], cores: []}
    for _ in range(args.repeats):
        for workers in walls:
            t = time.perf_counter()
            _, _, final = fit_map(model, starts, data, jr.key(2), args.steps, 0.02, workers=workers)
            walls[workers].append(time.perf_counter() - t)
            print(f"{workers:>8}{walls[workers][-1]:>9.1f}  " + " ".join(f"{x:.2f}" for x in final), flush=True)
    ratio = np.median(walls[cores]) / np.median(walls[1])
    print(f"\nmedian wall, {cores} workers / 1 worker: {ratio:.2f} (each call compiles once: included)")


if __name__ == "__main__":
    main()
