"""How far a point-estimate neural jump ODE is from the truth, against the amount of training data.

Separates the two things a held-out gap to the true process can be made of: the model class
(an approximation error, which more data does not shrink) and the estimate (which it does), and
tells apart a gap that comes from forecasting later in time (80 to 100) from one that comes
from new data. For one process of the Jia & Benson suite, a MAP fit (the warm start of
``fit_events``; ``--delayed`` and ``--decay`` as there) on the bundled sequences' histories
``[0, 80]`` plus ``--extra`` more sequences simulated from the true process (seed 999), then its
log-likelihood per event against the truth's (the "gap"; negative: worse than the truth):

- ``bundled (80,100]``: the benchmark's held-out window of the 10 bundled sequences, given their histories;
- ``fresh [0,80]``: 40 new sequences from the truth (seed 2024), the training window's time range,
  with the standard error over the 40 (se = sqrt(40) sd / events);
- ``fresh (80,100]``: the same sequences' later window given their histories;
- ``train``: the log-likelihood of the bundled histories, model minus truth, in nats (not per event).

    python benchmarks/event_data_size.py [--kind hawkes_power_law] [--extra 0 30] [--delayed] [--decay 0.1] [--prior-scale 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.random as jr
import numpy as np

from bayesode.datasets import load_events, make_event_sequences
from bayesode.infer import EVENT_SOLVER, EventFit, held_out_log_likelihood, make_event_process, solve_draws
from bayesode.infer.event_draws import draws_log_likelihood
from bayesode.infer.event_map import fit_map, start_points
from bayesode.infer.point_process import DELAYED_EVENT_SOLVER, _initial_values
from bayesode.model import Normal, event_arrays, point_process_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data" / "scripts"))
from _point_processes import PARAMETERS, simulate  # noqa: E402
from point_process import T_END, T_SPLIT, held_out_parametric, loglik  # noqa: E402

FRESH_SEQUENCES, FRESH_SEED, EXTRA_SEED = 40, 2024, 999


def sequences(lists: list, t_end: float):
    return make_event_sequences(lists, [np.zeros(s.size, int) for s in lists], t0=np.zeros(len(lists)),
                                t_end=np.full(len(lists), t_end))  # fmt: skip


def log_likelihoods(point: EventFit, events) -> np.ndarray:
    """(sequence,) the point's log-likelihood of each sequence of ``events``."""
    return np.asarray(draws_log_likelihood(solve_draws(point, events), events.mask))[0]


def run(kind: str, extra: int, args) -> dict:
    bundled = load_events(f"{kind}_events")
    hist, fut = bundled.split(T_SPLIT)
    hist_lists = [hist.event_list(i)[0] for i in range(hist.num_sequences)]
    full_lists = [bundled.event_list(i)[0] for i in range(bundled.num_sequences)]
    rng = np.random.default_rng(EXTRA_SEED)
    more = [s[s <= T_SPLIT] for s in (simulate(kind, rng) for _ in range(extra))]
    train = sequences(hist_lists + more, T_SPLIT)
    process = make_event_process(train, key=jr.key(args.seed), latent_dim=args.latent_dim, width=args.width,
                                 decay=args.decay, delayed=args.delayed)  # fmt: skip
    config = DELAYED_EVENT_SOLVER if args.delayed else EVENT_SOLVER
    prior = Normal(args.prior_scale)
    model = point_process_model(process, weight_prior=prior, config=config)
    start = time.perf_counter()
    values, _, _ = fit_map(model, start_points(_initial_values(process, prior), 1, jr.key(args.seed + 100)),
                           event_arrays(train), jr.key(args.seed + 7), args.steps, args.lr)  # fmt: skip
    fit_s = time.perf_counter() - start
    point = EventFit(process, prior, config, train, {k: np.asarray(v)[None, None] for k, v in values.items()}, "map")
    truth = PARAMETERS[kind]
    n_fut = int(fut.mask.sum())
    bundled_gap = (held_out_log_likelihood(point, hist, fut)["total"]
                   - held_out_parametric(kind, truth, hist_lists, full_lists)) / n_fut  # fmt: skip
    train_gap = float(log_likelihoods(point, hist).sum()) - sum(loglik(kind, truth, h, T_SPLIT) for h in hist_lists)
    rng = np.random.default_rng(FRESH_SEED)
    fresh = [simulate(kind, rng) for _ in range(FRESH_SEQUENCES)]
    f_hist, f_fut = sequences(fresh, T_END).split(T_SPLIT)
    n80 = int(f_hist.mask.sum())
    diff = log_likelihoods(point, f_hist) - np.array([loglik(kind, truth, s[s <= T_SPLIT], T_SPLIT) for s in fresh])
    later = (held_out_log_likelihood(point, f_hist, f_fut)["total"]
             - held_out_parametric(kind, truth, [s[s <= T_SPLIT] for s in fresh], fresh)) / int(f_fut.mask.sum())  # fmt: skip
    return {"extra": extra, "events": int(train.mask.sum()), "train": train_gap, "bundled": bundled_gap,
            "fresh": diff.sum() / n80, "fresh_se": np.sqrt(diff.size) * diff.std(ddof=1) / n80, "later": later,
            "fit_s": fit_s}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", default="hawkes_power_law", choices=list(PARAMETERS))
    ap.add_argument("--extra", type=int, nargs="*", default=[0, 30], help="more training sequences from the truth")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--latent-dim", type=int, default=2)
    ap.add_argument("--decay", type=float, default=0.0)
    ap.add_argument("--delayed", action="store_true")
    ap.add_argument("--prior-scale", type=float, default=1.0, help="the weights' Normal prior scale (fit_events' default 1)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(f"jax {jax.__version__}, {args.kind}, MAP {args.steps} steps at {args.lr}, latent {args.latent_dim}, "
          f"width {args.width}, decay {args.decay}, delayed {args.delayed}, prior {args.prior_scale}; gaps per event, model minus truth")  # fmt: skip
    head = ("extra seq", "train events", "train nats", "bundled (80,100]", "fresh [0,80]", "+-se", "fresh (80,100]", "fit s")
    print("{:>10}{:>14}{:>12}{:>18}{:>14}{:>8}{:>16}{:>7}".format(*head))
    for extra in args.extra:
        r = run(args.kind, extra, args)
        print(f"{r['extra']:>10}{r['events']:>14}{r['train']:>12.2f}{r['bundled']:>18.4f}{r['fresh']:>14.4f}"
              f"{r['fresh_se']:>8.4f}{r['later']:>16.4f}{r['fit_s']:>7.0f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
