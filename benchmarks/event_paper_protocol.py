"""Neural jump ODE on the Jia & Benson synthetic suite at the paper's size: 300 training sequences, 100 test sequences.

The bundled suite (``benchmarks/point_process.py``) trains on [0, 80] of 10 sequences and scores
(80, 100]; the paper's reference code trains on 300 sequences of [0, 100] and tests on 100 more
(its data files, ``examples/data/point_processes/*_training.csv``; data/README.md). This benchmark
follows that protocol with sequences simulated here from the same processes (``data/scripts/_point_processes.py``,
exact simulation; training seed 2019, test seed 2020), so the figures are against the known truth:

- test log-likelihood per event of the 100 test sequences, each whole ([0, 100], no history): the
  Bayesian neural jump ODE (``fit_events`` with minibatches of ``--batch-size`` sequences per Adam
  step; its log predictive density, log-mean-exp over ``--draws`` draws, per sequence), its MAP
  alone, the true process, the maximum-likelihood fit of the right family and the best of the wrong
  families (closed forms and ``scipy.optimize``, as in ``point_process.py``), all fitted on the same 300;
- gap: model minus truth per event, and its standard error from the 100 paired per-sequence differences;
  ``gap %``: the gap as a share of the truth's log-likelihood per event (|truth|);
- mean relative error of the posterior-mean intensity at the test events (left limits) and the
  coverage of the true intensity there by the 90% posterior band.

    python benchmarks/event_paper_protocol.py [--kinds hawkes_power_law] [--batch-size 30] [--map-steps 3000] [--delayed]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import jax
import numpy as np
from scipy.special import logsumexp

from bayesode.errors import FitFailedError
from bayesode.infer import DELAYED_EVENT_SOLVER, EVENT_SOLVER, EventFit, fit_events, solve_draws
from bayesode.infer.event_draws import draws_log_likelihood

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data" / "scripts"))
from _point_processes import PARAMETERS, intensity, simulate  # noqa: E402
from event_data_size import sequences  # noqa: E402
from point_process import KINDS, T_END, Pooled, check_pooled, fit_ml, loglik  # noqa: E402

TRAIN_SEQUENCES, TEST_SEQUENCES, TRAIN_SEED, TEST_SEED = 300, 100, 2019, 2020
CHUNK = 20  # test sequences solved at once (memory: a delayed process's solve of every draw)


def scores(fit: EventFit, test: list, num_draws: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(draw, sequence) log-likelihoods of the test sequences and (draw, event) intensities at their events."""
    lls, rates = [], []
    for i in range(0, len(test), CHUNK):
        chunk = sequences(test[i : i + CHUNK], T_END)
        sol = solve_draws(fit, chunk, num_draws=num_draws)
        lls.append(np.asarray(draws_log_likelihood(sol, chunk.mask), np.float64))
        rates.append(np.exp(np.asarray(sol.log_rates, np.float64))[:, chunk.mask])
    return np.concatenate(lls, 1), np.concatenate(rates, 1)


def run_case(kind: str, args) -> dict:
    train_rng, test_rng = np.random.default_rng(TRAIN_SEED), np.random.default_rng(TEST_SEED)
    train = [simulate(kind, train_rng) for _ in range(TRAIN_SEQUENCES)]
    test = [simulate(kind, test_rng) for _ in range(TEST_SEQUENCES)]
    n_train, n_test = sum(s.size for s in train), sum(s.size for s in test)
    config = None
    if args.max_steps is not None:  # the default solver's step cap per segment between events, raised
        default = DELAYED_EVENT_SOLVER if args.delayed else EVENT_SOLVER
        config = dataclasses.replace(default, max_steps=args.max_steps)
    start = time.perf_counter()
    fit = fit_events(sequences(train, T_END), key=args.seed, method="svi", batch_size=args.batch_size, map_steps=args.map_steps,
                     svi_steps=args.svi_steps, learning_rate=args.lr, num_samples=args.draws, num_chains=1,
                     latent_dim=args.latent_dim, width=args.width, delayed=args.delayed, decay=args.decay,
                     config=config, progress=True)  # fmt: skip
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    ll, rates = scores(fit, test, None)
    score_s = time.perf_counter() - start
    model_seq = logsumexp(ll, axis=0) - np.log(ll.shape[0])
    point = EventFit(fit.process, fit.weight_prior, fit.config, fit.events,
                     {k: v[None, None] for k, v in fit.stats["map"].items()}, "map")  # fmt: skip
    try:
        map_score = float(scores(point, test, None)[0].sum()) / n_test
    except FitFailedError:
        map_score = -np.inf
    truth = PARAMETERS[kind]
    truth_seq = np.array([loglik(kind, truth, s, T_END) for s in test])
    check_pooled(test[:5], T_END)
    pooled_test = Pooled(test, T_END)
    ml = {family: pooled_test.loglik(family, fit_ml(family, train, T_END)) / n_test for family in KINDS}
    best_wrong = max((family for family in KINDS if family != kind), key=ml.get)
    diff = model_seq - truth_seq
    true_rates = np.concatenate([intensity(kind, s, s) for s in test])
    mean = rates.mean(0)
    lo, hi = np.quantile(rates, [0.05, 0.95], axis=0)
    model, truth_per_event = float(model_seq.sum()) / n_test, float(truth_seq.sum()) / n_test
    return {"kind": kind, "train": n_train, "test": n_test, "model": model, "map": map_score, "truth": truth_per_event,
            "gap": model - truth_per_event, "gap_se": float(np.sqrt(diff.size) * diff.std(ddof=1) / n_test),
            "gap_pct": 100 * (model - truth_per_event) / abs(truth_per_event), "right": ml[kind],
            "wrong": ml[best_wrong], "wrong_family": best_wrong,
            "rel_err": float(np.mean(np.abs(mean - true_rates) / true_rates)),
            "cover": float(np.mean((lo <= true_rates) & (true_rates <= hi))), "fit_s": fit_s, "score_s": score_s}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", nargs="*", default=list(KINDS), choices=list(KINDS))
    ap.add_argument("--batch-size", type=int, default=30, help="training sequences per Adam step (MAP and SVI)")
    ap.add_argument("--map-steps", type=int, default=3000)
    ap.add_argument("--svi-steps", type=int, default=1000)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--draws", type=int, default=100, help="draws from the SVI guide")
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--latent-dim", type=int, default=2)
    ap.add_argument("--decay", type=float, default=None)
    ap.add_argument("--delayed", action="store_true", help="a delayed jump per event (the power law's onset)")
    ap.add_argument("--max-steps", type=int, default=None, help="solver steps per segment between events (default: "
                    "fit_events' solver's); raise it where the guide's draws fail with max_steps")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(f"jax {jax.__version__}; {TRAIN_SEQUENCES} training / {TEST_SEQUENCES} test sequences on [0, {T_END:g}]; "
          f"fit_events(method='svi', batch_size={args.batch_size}, map_steps={args.map_steps}, svi_steps={args.svi_steps}, "
          f"learning_rate={args.lr}, latent_dim={args.latent_dim}, width={args.width}, delayed={args.delayed}, "
          f"decay={args.decay}, max_steps={args.max_steps}); {args.draws} draws")  # fmt: skip
    print("test log-likelihood per event (higher is better); intensity at the test events")
    head = ("process", "train ev", "test ev", "model", "MAP", "truth", "gap", "+-se", "gap %", "right ML",
            "best wrong ML", "rel.err", "cover90", "fit s", "score s")  # fmt: skip
    print("{:<20}{:>9}{:>8}{:>9}{:>9}{:>9}{:>9}{:>8}{:>7}{:>10}{:>30}{:>9}{:>9}{:>7}{:>8}".format(*head))
    for kind in args.kinds:
        r = run_case(kind, args)
        wrong = f"{r['wrong']:.4f} ({r['wrong_family']})"
        print(f"{r['kind']:<20}{r['train']:>9}{r['test']:>8}{r['model']:>9.4f}{r['map']:>9.4f}{r['truth']:>9.4f}"
              f"{r['gap']:>9.4f}{r['gap_se']:>8.4f}{r['gap_pct']:>7.1f}{r['right']:>10.4f}{wrong:>30}{r['rel_err']:>9.3f}"
              f"{r['cover']:>9.2f}{r['fit_s']:>7.0f}{r['score_s']:>8.0f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
