"""Issue 24's scale goal: one sequence of about 1,000 events fitted with 90% intensity bands, timed.

One sequence of an inhomogeneous Poisson process (rate ``10 (1 + 0.5 sin(t / 8))`` on [0, 100],
simulated by thinning with a fixed seed: 998 events), fitted by :func:`bayesode.infer.fit_events`
with its defaults and the given method, then :func:`bayesode.infer.intensity_bands` on 200 times.
Prints one line per method: events, fit seconds, fit + bands seconds, draws, median band width.

    python benchmarks/event_fit_1000.py --methods laplace svi svi+nuts
    python benchmarks/event_fit_1000.py --methods svi --solver fixed   # FixedSteps() between events
    python benchmarks/event_fit_1000.py --methods laplace --sequences 7 8 9   # other simulated sequences
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
    ap.add_argument("--methods", nargs="*", default=["svi", "svi+nuts"], choices=["laplace", "svi", "svi+nuts", "nuts"])
    ap.add_argument("--sequences", nargs="*", type=int, default=[7], help="seeds of the simulated sequences (default 7)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the fit (default 1)")
    ap.add_argument("--map-starts", type=int, default=1, help="fit_events' map_starts (default 1)")
    ap.add_argument("--solver", choices=["default", "adaptive", "fixed"], default="default",
                    help="the method's default (FixedSteps() for laplace, else EVENT_SOLVER), EVENT_SOLVER or FixedSteps()")  # fmt: skip
    args = ap.parse_args(argv)
    config = {"default": None, "adaptive": EVENT_SOLVER, "fixed": FixedSteps()}[args.solver]
    truth = 10 * (1 + 0.5 * np.sin(np.linspace(0.0, 100.0, 200) / 8))
    print(f"solver: {args.solver}")
    print(f"{'method':10s} {'seq':>3s} {'events':>6s} {'fit_s':>7s} {'bands_s':>8s} {'draws':>9s} {'band_width_median':>18s} "
          f"{'covers_truth':>12s} {'rel_err_median':>14s} {'fixed_ll_err':>12s} {'floor':>6s}")  # fmt: skip
    for sequence, method in [(s, m) for s in args.sequences for m in args.methods]:
        times = one_sequence(sequence)
        events = make_event_sequences([times], t_end=100.0)
        t = time.time()
        fit = fit_events(events, key=args.seed, method=method, config=config, map_starts=args.map_starts)
        fit_s = time.time() - t
        bands = intensity_bands(fit, np.linspace(0.0, 100.0, 200))
        width = float(np.median(bands["upper"] - bands["lower"]))
        covers = float(np.mean((bands["lower"][0, :, 0] <= truth) & (truth <= bands["upper"][0, :, 0])))
        median = np.median(bands["draws"][:, 0, :, 0], axis=0)
        floor = fit.stats.get("laplace", {}).get("floor", float("nan"))
        print(f"{method:10s} {sequence:3d} {times.size:6d} {fit_s:7.1f} {time.time() - t:8.1f} "
              f"{fit.num_chains:>3d} x {fit.num_draws:<3d} {width:18.2f} {covers:12.2f} {np.mean(np.abs(median - truth) / truth):14.3f} "
              f"{fit.stats.get('fixed_steps_ll_error', float('nan')):12.3f} {floor:6g}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
