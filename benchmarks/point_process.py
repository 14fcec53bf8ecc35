"""Neural jump ODE on the Jia & Benson synthetic suite, against the truth and parametric ML fits.

For each bundled process (``<kind>_events``: 10 sequences on [0, 100]) the model is fitted on
[0, 80] of every sequence and scored on (80, 100] given the history:

- held-out log-likelihood per event: the Bayesian neural jump ODE (log predictive density,
  log-mean-exp over draws), its MAP warm start alone (a point-estimate neural jump ODE of the
  same size, trained on the same data), the true process, the maximum-likelihood fit of the right
  parametric family, and of a Poisson process (a wrong family except for the Poisson case);
  and the best of the wrong parametric families (the other three of the suite, each fitted by
  maximum likelihood; the power-law family with its onset ``sigma`` fixed at 1);
  parametric likelihoods are the closed forms below (hand-written; the exponential Hawkes one
  is checked against the jump-ODE solve at start-up), maximised with ``scipy.optimize``;
- mean relative error of the posterior-mean intensity at held-out event times (left limits);
- coverage of the true intensity by the 90% posterior band at held-out event times, and
  ("right cov") by the right parametric family's own 90% posterior band (NUTS on its closed-form
  likelihood: ``_right_family_posterior.py``): what a correctly specified Bayesian model covers on
  this one realisation, for reading the neural model's figure.
- gap: the model's held-out log-likelihood per event minus the truth's, with its standard error
  from the per-sequence differences (10 independent sequences: se = sqrt(10) sd / held-out
  events), so a gap can be read against the noise of one held-out window;
- div: the share of NUTS draws that diverged (``--method nuts`` or ``svi+nuts``; nan for SVI).

Then the scale table: one likelihood and one gradient evaluation of a neural jump ODE
(latent 2, width 16) on one sequence of 100 .. 10,000 events.

    python benchmarks/point_process.py [--map-steps 1500] [--svi-steps 1000] [--method svi] [--scale-only]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from scipy import optimize

from bayesode.datasets import load_events
from bayesode.errors import FitFailedError
from bayesode.infer import (
    EVENT_SOLVER,
    EventFit,
    fit_events,
    held_out_log_likelihood,
    make_event_process,
    solve_draws,
)
from bayesode.solving import FixedSteps, NeuralJumpProcess, events_log_likelihood, solve_event_jumps

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data" / "scripts"))
from _point_processes import PARAMETERS, intensity  # noqa: E402
from _right_family_posterior import band_coverage  # noqa: E402

KINDS = ("poisson", "hawkes_exponential", "hawkes_power_law", "self_correcting")
T_SPLIT, T_END = 80.0, 100.0


# ------------------------------------------------------------------ closed-form log-likelihoods on [0, T]
def loglik(kind: str, p: dict, t: np.ndarray, T: float) -> float:
    t = np.asarray(t, np.float64)
    if kind == "poisson":
        return t.size * np.log(p["rate"]) - p["rate"] * T
    if kind == "hawkes_exponential":
        mu, a, b = p["mu"], p["alpha"], p["beta"]
        excite, lam, last = 0.0, [], 0.0
        for ti in t:  # recursion: excite(t_i-) = (excite(t_{i-1}-) + alpha) e^{-beta gap}
            excite = excite * np.exp(-b * (ti - last))
            lam.append(mu + excite)
            excite += a
            last = ti
        return float(np.sum(np.log(lam)) - mu * T - a / b * np.sum(1.0 - np.exp(-b * (T - t))))
    if kind == "hawkes_power_law":
        mu, a, b, s = p["mu"], p["alpha"], p["beta"], p["sigma"]
        lag = t[:, None] - t[None, :]
        on = lag > s
        lam = mu + np.sum(np.where(on, a * (b / s) * (np.where(on, lag, s) / s) ** (-b - 1), 0.0), 1)
        comp = mu * T + np.sum(a * (1.0 - (np.maximum(T - t, s) / s) ** (-b)))
        return float(np.sum(np.log(lam)) - comp)
    if kind == "self_correcting":
        mu, b = p["mu"], p["beta"]
        lam = np.exp(mu * t - b * np.arange(t.size))
        edges = np.concatenate([[0.0], t, [T]])
        # exp(mu a) expm1(mu (b - a)) / mu: the difference of exponentials cancels to 0 in floats for a tiny mu
        comp = np.sum(np.exp(-b * np.arange(t.size + 1) + mu * edges[:-1]) * np.expm1(mu * np.diff(edges)) / mu)
        return float(np.sum(np.log(lam)) - comp)
    raise ValueError(kind)


class Pooled:
    """Sequences on [0, T] pooled for the parametric likelihoods: every event, its sequence and rank, and every
    pair (earlier event, later event) of a sequence with their lag, computed once: :func:`loglik` summed over the
    sequences, vectorised (a Nelder-Mead fit on 300 sequences takes seconds; :func:`check_pooled`)."""

    def __init__(self, seqs: list, T: float):
        self.T, self.num = T, len(seqs)
        self.times = np.concatenate(seqs)
        self.rank = np.concatenate([np.arange(s.size) for s in seqs])
        starts = np.cumsum([0] + [s.size for s in seqs[:-1]])
        later, lag = [], []
        for s, first in zip(seqs, starts):
            i, j = np.tril_indices(s.size, -1)
            later.append(first + i)
            lag.append(s[i] - s[j])
        self.later, self.lag = np.concatenate(later), np.concatenate(lag)
        # self-correcting compensator: the intervals between events, each with its count of earlier events
        self.edge0 = np.concatenate([np.concatenate([[0.0], s]) for s in seqs])
        self.edge1 = np.concatenate([np.concatenate([s, [T]]) for s in seqs])
        self.count = np.concatenate([np.arange(s.size + 1) for s in seqs])

    def loglik(self, kind: str, p: dict) -> float:
        t, T = self.times, self.T
        if kind == "poisson":
            return t.size * np.log(p["rate"]) - p["rate"] * T * self.num
        if kind == "self_correcting":
            mu, b = p["mu"], p["beta"]
            comp = np.exp(-b * self.count + mu * self.edge0) * np.expm1(mu * (self.edge1 - self.edge0)) / mu
            return float(np.sum(mu * t - b * self.rank) - comp.sum())
        if kind == "hawkes_exponential":
            mu, a, b = p["mu"], p["alpha"], p["beta"]
            kernel = a * np.exp(-b * self.lag)
            comp = mu * T * self.num + a / b * np.sum(-np.expm1(-b * (T - t)))
        else:  # hawkes_power_law
            mu, a, b, s = p["mu"], p["alpha"], p["beta"], p["sigma"]
            on = self.lag > s
            kernel = np.where(on, a * (b / s) * (np.where(on, self.lag, s) / s) ** (-b - 1), 0.0)
            comp = mu * T * self.num + np.sum(a * (1.0 - (np.maximum(T - t, s) / s) ** (-b)))
        lam = mu + np.bincount(self.later, kernel, minlength=t.size)
        return float(np.sum(np.log(lam)) - comp)


def fit_ml(kind: str, seqs: list, T: float) -> dict:
    """ML parameters of ``kind`` over independent sequences on [0, T] (log-parameters, Nelder-Mead; the power
    law's onset ``sigma`` fixed at 1)."""
    pooled = Pooled(seqs, T)
    names = list(PARAMETERS[kind]) if kind != "hawkes_power_law" else ["mu", "alpha", "beta"]
    start = {"rate": 1.0, "mu": 0.5, "alpha": 0.5, "beta": 1.5}
    fixed = {"sigma": 1.0} if kind == "hawkes_power_law" else {}

    def nll(x):
        p = dict(zip(names, np.exp(x)), **fixed)
        if kind == "hawkes_exponential" and p["alpha"] >= p["beta"]:
            return 1e10  # explosive: outside the stationary family
        with np.errstate(all="ignore"):
            v = -pooled.loglik(kind, p)
        return v if np.isfinite(v) else 1e10

    res = optimize.minimize(nll, np.log([start[n] for n in names]), method="Nelder-Mead",
                            options={"maxiter": 4000, "xatol": 1e-6, "fatol": 1e-8})  # fmt: skip
    return dict(zip(names, np.exp(res.x)), **fixed)


def check_pooled(seqs: list, T: float) -> None:
    """The pooled likelihoods equal :func:`loglik` summed over the sequences (relative 1e-9), each family."""
    pooled = Pooled(seqs, T)
    for kind, p in PARAMETERS.items():
        one_by_one = sum(loglik(kind, p, s, T) for s in seqs)
        assert abs(pooled.loglik(kind, p) - one_by_one) <= 1e-9 * abs(one_by_one), (kind, pooled.loglik(kind, p), one_by_one)


def held_out_parametric(kind: str, p: dict, hist: list, full: list) -> float:
    return sum(loglik(kind, p, f, T_END) - loglik(kind, p, h, T_SPLIT) for h, f in zip(hist, full))


class HawkesODE(eqx.Module):
    mu: float
    alpha: float
    beta: float
    z0: jax.Array = eqx.field(default_factory=lambda: jnp.zeros(1))

    def field(self, t, z, args):
        return -self.beta * z

    def jump_size(self, z, mark):
        return jnp.full_like(z, self.alpha)

    def rates(self, z):
        return self.mu + z


def check_hawkes_closed_form(seq) -> None:
    p = PARAMETERS["hawkes_exponential"]
    with jax.enable_x64(True):
        sol = solve_event_jumps(HawkesODE(p["mu"], p["alpha"], p["beta"], jnp.zeros(1, jnp.float64)),
                                jnp.asarray(seq), jnp.zeros(seq.size, int), jnp.ones(seq.size, bool), T_END)  # fmt: skip
        ode = float(events_log_likelihood(sol, jnp.ones(seq.size, bool)))
    closed = loglik("hawkes_exponential", p, seq, T_END)
    assert abs(ode - closed) < 1e-6 * abs(closed), (ode, closed)


# ------------------------------------------------------------------ the suite
def run_case(kind: str, args) -> dict:
    events = load_events(f"{kind}_events")
    hist, fut = events.split(T_SPLIT)
    full_lists = [events.event_list(i)[0] for i in range(events.num_sequences)]
    hist_lists = [hist.event_list(i)[0] for i in range(events.num_sequences)]
    n_future = int(fut.mask.sum())
    start = time.perf_counter()
    # laplace without --decay: fit_events builds the process and chooses its decay (LAPLACE_DECAYS)
    process = None if args.method == "laplace" and args.decay is None else make_event_process(
        hist, key=jr.key(args.seed), latent_dim=args.latent_dim, width=args.width, decay=args.decay or 0.0,
        delayed=args.delayed)  # fmt: skip
    fit = fit_events(hist, key=args.seed, process=process, method=args.method, map_steps=args.map_steps, config=args.config,
                     latent_dim=args.latent_dim, width=args.width, delayed=args.delayed,
                     map_starts=args.map_starts, svi_steps=args.svi_steps, num_warmup=args.warmup, num_samples=args.samples, num_chains=1)  # fmt: skip
    fit_s = time.perf_counter() - start
    if args.delayed:  # what the MAP learned: the delay and the onset time (1 / rate), in the data's time units
        m = fit.stats["map"]
        at_map = eqx.tree_at(lambda p: (p.log_delay, p.log_onset), fit.process,
                             (jnp.asarray(m["field.log_delay"]), jnp.asarray(m["field.log_onset"])))  # fmt: skip
        print(f"  [{kind}] MAP delay {float(at_map.delay()):.3f}, onset time {float(1 / at_map.onset_rate()):.3f}",
              flush=True)  # fmt: skip
    scored = held_out_log_likelihood(fit, hist, fut, num_draws=args.draws)
    model = scored["per_event"]
    point = EventFit(fit.process, fit.weight_prior, fit.config, hist, {k: v[None, None] for k, v in fit.stats["map"].items()},
                     "map")  # fmt: skip
    try:
        map_score = held_out_log_likelihood(point, hist, fut)["per_event"]
    except FitFailedError:  # the point's solve failed on the future (e.g. an intensity underflowing to 0)
        map_score = -np.inf
    # Paired by sequence: the model's predictive density of each sequence's future against the truth's.
    truth_seq = np.array([held_out_parametric(kind, PARAMETERS[kind], [h], [f]) for h, f in zip(hist_lists, full_lists)])
    truth = float(truth_seq.sum()) / n_future
    # Every family of the suite fitted by maximum likelihood: the right one (kind) and the wrong ones.
    ml = {family: held_out_parametric(family, fit_ml(family, hist_lists, T_SPLIT), hist_lists, full_lists) / n_future
          for family in KINDS}  # fmt: skip
    right, poisson = ml[kind], ml["poisson"]
    best_wrong = max((family for family in KINDS if family != kind), key=ml.get)
    diff = np.asarray(scored["per_sequence"], np.float64) - truth_seq
    gap_se = float(np.sqrt(diff.size) * np.std(diff, ddof=1) / n_future)
    # Intensity just before each held-out event, given everything before it.
    sol = solve_draws(fit, events, num_draws=args.draws)
    lam = np.exp(np.asarray(sol.log_rates))  # (draw, sequence, event)
    held = events.mask & (events.times > T_SPLIT)
    true_lam = np.zeros(events.times.shape)
    for i, seq in enumerate(full_lists):
        true_lam[i, : seq.size] = intensity(kind, seq, seq)
    mean = lam.mean(0)
    lo, hi = np.quantile(lam, [0.05, 0.95], axis=0)
    rel_err = float(np.mean(np.abs(mean[held] - true_lam[held]) / true_lam[held]))
    coverage = float(np.mean((lo[held] <= true_lam[held]) & (true_lam[held] <= hi[held])))
    right_coverage = band_coverage(kind, hist, events, T_SPLIT, true_lam, held, seed=args.seed)
    return {"kind": kind, "events": int(events.mask.sum()), "held_out": n_future, "model": model, "map": map_score, "truth": truth,
            "right_ml": right, "poisson_ml": poisson,
            "wrong_ml": ml[best_wrong], "wrong_family": best_wrong, "gap_se": gap_se, "rel_err": rel_err, "coverage": coverage, "right_coverage": right_coverage, "fit_s": fit_s,
            "divergent": float(np.mean(fit.stats["diverging"])) if "diverging" in fit.stats else float("nan")}  # fmt: skip


def scale_table(sizes=(100, 1000, 10000), repeats=3) -> list:
    rows = []
    process = NeuralJumpProcess(2, 1, width=16, depth=1, key=jr.key(0))
    rng = np.random.default_rng(0)
    for n in sizes:
        times = jnp.asarray(np.sort(rng.uniform(0.0, float(n), n)), jnp.float32)
        marks, mask = jnp.zeros(n, jnp.int32), jnp.ones(n, bool)

        def ll(p, times=times, marks=marks, mask=mask, n=n):
            return events_log_likelihood(solve_event_jumps(p, times, marks, mask, float(n), config=EVENT_SOLVER), mask)

        value = eqx.filter_jit(ll)
        grad = eqx.filter_jit(eqx.filter_value_and_grad(ll))
        jax.block_until_ready(value(process))
        jax.block_until_ready(grad(process))
        timings = []
        for fn in (value, grad):
            best = np.inf
            for _ in range(repeats):
                t = time.perf_counter()
                jax.block_until_ready(fn(process))
                best = min(best, time.perf_counter() - t)
            timings.append(best)
        rows.append((n, *timings))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="svi", choices=["svi", "svi+nuts", "nuts", "laplace"])
    ap.add_argument("--map-steps", type=int, default=1500)
    ap.add_argument("--map-starts", type=int, default=1)
    ap.add_argument("--svi-steps", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--draws", type=int, default=100)
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--latent-dim", type=int, default=2)
    ap.add_argument("--decay", type=float, default=None,
                    help="the latent state's pull (default 0; for laplace, fit_events chooses among LAPLACE_DECAYS)")
    ap.add_argument("--delayed", action="store_true", help="a delayed jump per event (NeuralJumpProcess(delayed=True))")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kinds", nargs="*", default=list(KINDS))
    ap.add_argument("--scale-only", action="store_true")
    ap.add_argument("--sizes", type=int, nargs="*", default=[100, 1000, 10000])
    ap.add_argument("--solver", choices=["default", "adaptive", "fixed"], default="default",
                    help="the method's default (FixedSteps() for laplace, else EVENT_SOLVER), EVENT_SOLVER or FixedSteps()")
    args = ap.parse_args()
    args.config = {"default": None, "adaptive": EVENT_SOLVER, "fixed": FixedSteps()}[args.solver]
    print(f"jax {jax.__version__}, devices {jax.devices()}, method {args.method}, map_steps {args.map_steps}, "
          f"map_starts {args.map_starts}, svi_steps {args.svi_steps}, latent {args.latent_dim}, width {args.width}, decay {args.decay}, "
          f"delayed {args.delayed}")
    if not args.scale_only:
        check_hawkes_closed_form(load_events("hawkes_exponential_events").event_list(0)[0])
        check_pooled([s[0] for s in map(load_events("hawkes_power_law_events").event_list, range(10))], T_END)
        print("\nheld-out log-likelihood per event on (80, 100] (higher is better); intensity at held-out events")
        head = ("process", "events", "held", "model", "MAP", "truth", "gap", "+-se", "right ML", "Poisson ML",
                "best wrong ML", "rel.err", "cover90", "right cov", "fit s", "div")  # fmt: skip
        print("{:<20}{:>7}{:>6}{:>9}{:>9}{:>9}{:>9}{:>7}{:>10}{:>11}{:>30}{:>9}{:>9}{:>10}{:>7}{:>6}".format(*head))
        for kind in args.kinds:
            r = run_case(kind, args)
            wrong = f"{r['wrong_ml']:.4f} ({r['wrong_family']})"
            print(f"{r['kind']:<20}{r['events']:>7}{r['held_out']:>6}{r['model']:>9.4f}{r['map']:>9.4f}{r['truth']:>9.4f}"
                  f"{r['model'] - r['truth']:>9.4f}{r['gap_se']:>7.4f}{r['right_ml']:>10.4f}{r['poisson_ml']:>11.4f}{wrong:>30}{r['rel_err']:>9.3f}{r['coverage']:>9.2f}{r['right_coverage']:>10.2f}"
                  f"{r['fit_s']:>7.0f}{r['divergent']:>6.2f}", flush=True)  # fmt: skip
    print("\nscale: one sequence, neural jump ODE (latent 2, width 16), EVENT_SOLVER; best of 3")
    print(f"{'events':>8}{'loglik ms':>12}{'+grad ms':>12}{'grad us/event':>15}")
    for n, v, g in scale_table(tuple(args.sizes)):
        print(f"{n:>8}{1e3 * v:>12.1f}{1e3 * g:>12.1f}{1e6 * g / n:>15.1f}", flush=True)


if __name__ == "__main__":
    main()
