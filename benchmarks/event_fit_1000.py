"""Issue 24's scale goal: one sequence of about 1,000 events fitted with 90% intensity bands, timed.

One sequence of an inhomogeneous Poisson process (rate ``10 (1 + 0.5 sin(t / 8))`` on [0, 100],
simulated by thinning with a fixed seed: 998 events), fitted by :func:`bayesode.infer.fit_events`
with its defaults and the given method, then :func:`bayesode.infer.intensity_bands` on 200 times.
Prints one line per method: events, fit seconds, fit + bands seconds, draws, median band width.

    python benchmarks/event_fit_1000.py --methods svi svi+nuts
    python benchmarks/event_fit_1000.py --methods svi --solver fixed   # FixedSteps() between events
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bayesode.datasets import make_event_sequences
from bayesode.infer import EVENT_SOLVER, fit_events, intensity_bands
from bayesode.solving import FixedSteps


def one_sequence(seed: int = 7, t_end: float = 100.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    candidates = np.sort(rng.uniform(0, t_end, rng.poisson(15 * t_end)))
    keep = rng.uniform(size=candidates.size) < 10 * (1 + 0.5 * np.sin(candidates / 8)) / 15
    return candidates[keep]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="*", default=["svi", "svi+nuts"], choices=["svi", "svi+nuts", "nuts"])
    ap.add_argument("--seed", type=int, default=1, help="seed of the fit (default 1)")
    ap.add_argument("--solver", choices=["adaptive", "fixed"], default="adaptive",
                    help="EVENT_SOLVER (adaptive, the default) or FixedSteps()")  # fmt: skip
    args = ap.parse_args(argv)
    config = EVENT_SOLVER if args.solver == "adaptive" else FixedSteps()
    times = one_sequence()
    events = make_event_sequences([times], t_end=100.0)
    truth = 10 * (1 + 0.5 * np.sin(np.linspace(0.0, 100.0, 200) / 8))
    print(f"solver: {args.solver}")
    print(f"{'method':10s} {'events':>6s} {'fit_s':>7s} {'bands_s':>8s} {'draws':>9s} {'band_width_median':>18s} {'covers_truth':>12s} {'fixed_ll_err':>12s}")
    for method in args.methods:
        t = time.time()
        fit = fit_events(events, key=args.seed, method=method, config=config)
        fit_s = time.time() - t
        bands = intensity_bands(fit, np.linspace(0.0, 100.0, 200))
        width = float(np.median(bands["upper"] - bands["lower"]))
        covers = float(np.mean((bands["lower"][0, :, 0] <= truth) & (truth <= bands["upper"][0, :, 0])))
        print(f"{method:10s} {times.size:6d} {fit_s:7.1f} {time.time() - t:8.1f} "
              f"{fit.num_chains:>3d} x {fit.num_draws:<3d} {width:18.2f} {covers:12.2f} "
              f"{fit.stats.get('fixed_steps_ll_error', float('nan')):12.3f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
