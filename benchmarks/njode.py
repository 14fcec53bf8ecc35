"""Neural jump ODE filter against known conditional expectations (Herrera, Krach & Teichmann 2021 suite).

For Black-Scholes, Ornstein-Uhlenbeck and Heston (2 independent coordinates,
observed at random times, each coordinate missing with probability 0.3; see
``bayesode.datasets.njode_synthetic``) it fits, on the same training paths and
with the same network size:

- the Bayesian filter (``fit_jump_filter``: a MAP warm start, then SVI by default; ``--method``),
  its net anchored (``NeuralJumpODE(anchored=True)``, the default; ``--unanchored``: not);
- the point-estimate NJ-ODE trained with Adam on the paper's loss (``fit_njode_point``) with the
  paper's architecture (``anchored=False``: its loss's second term asks for the anchor instead),

and prints one table over held-out paths:

- ``metric``: the paper's evaluation metric, mean over paths and grid times of
  ``|E[X_t | observations up to t] - forecast(t)|^2`` (summed over coordinates),
  for the Bayesian posterior-mean forecast and for the point fit, and, as the
  scale of the problem, for the naive forecast "last observed value";
- ``cover90``: the share of held-out observed entries inside the 90% posterior
  predictive band of the forecast made just before them;
- wall times of the two fits.

Run: ``python benchmarks/njode.py`` (defaults sized to run in a few minutes on an idle
2-core CPU; ``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from bayesode.datasets import njode_synthetic as syn
from bayesode.infer import fit_jump_filter, fit_njode_point
from bayesode.model import net_from_draw, net_sites, one_step_forecasts
from bayesode.results import mixture_quantiles
from bayesode.solving import NeuralJumpODE, filter_config, hidden_at


def evaluate(net, draws: dict, data, grid, config):
    """Per draw: forecast mean on ``grid`` (draw, series, G, D) and one-step mean/sd (draw, series, obs, D)."""
    ts, ys, mask = jnp.asarray(data.ts), jnp.asarray(np.nan_to_num(data.ys)), jnp.asarray(data.mask)
    grid = jnp.asarray(grid, ts.dtype)

    @jax.jit
    def per_draw(w):
        n = net_from_draw(net, w)
        mean, sd, _, filtered = one_step_forecasts(n, ts, ys, mask, config)
        h = jax.vmap(lambda f, t: hidden_at(n, f, t, grid, config=config)[0])(filtered, ts)
        return jax.vmap(jax.vmap(n.readout))(h), mean, sd

    outs = [per_draw({k: v[i] for k, v in draws.items()}) for i in range(next(iter(draws.values())).shape[0])]
    return [np.stack([np.asarray(o[j]) for o in outs]) for j in range(3)]


def metric(forecast, truth):
    """The paper's metric: mean over paths and grid times of the squared distance (summed over coordinates)."""
    return float(np.mean(np.sum((forecast - truth) ** 2, axis=-1)))


def one_case(kind, args, seed):
    sp = syn.simulate_paths(kind, args.train + args.test, seed=seed)
    train, test = syn.to_irregular(sp, slice(0, args.train)), syn.to_irregular(sp, slice(args.train, None))
    truth = syn.conditional_expectation(sp)[args.train :]
    config = filter_config()
    size = dict(hidden_dim=args.hidden, width=args.width, key=jr.key(seed + args.init_seed), y_loc=np.nanmean(train.ys),
                y_scale=np.nanstd(train.ys), t_scale=0.1)  # fmt: skip
    net = NeuralJumpODE(2, anchored=not args.unanchored, **size)
    paper_net = NeuralJumpODE(2, anchored=False, **size)  # the paper's architecture: its loss asks for the anchor

    t = time.time()
    fit = fit_jump_filter(net, train, key=jr.key(seed + 100), method=args.method, map_steps=args.map_steps,
                          map_starts=args.map_starts,
                          svi_steps=args.steps, num_draws=args.draws, num_warmup=args.draws,
                          num_samples=args.draws)  # fmt: skip
    bayes_s = time.time() - t
    flat = {k: v.reshape((-1,) + v.shape[2:])[: args.draws] for k, v in fit.samples.items()}
    grid_fc, mean, sd = evaluate(net, flat, test, sp.grid, config)
    bayes_metric = metric(grid_fc.mean(0), truth)
    lo, hi = mixture_quantiles(jnp.asarray(mean), jnp.asarray(sd), (0.05, 0.95))
    y = np.nan_to_num(test.ys)
    first = np.zeros_like(test.mask)
    first[:, 0] = True  # the first observation is forecast from nothing: left out of the coverage
    held = test.mask & ~first
    inside = (np.asarray(lo) <= y) & (y <= np.asarray(hi))
    cover = float(inside[held].mean())

    t = time.time()
    point_net, _ = fit_njode_point(paper_net, train, steps=args.steps, learning_rate=0.01, config=config)
    point_s = time.time() - t
    weights = jax.tree.leaves(eqx.filter(point_net, eqx.is_inexact_array))
    point_draw = {name: w[None] for (name, _), w in zip(net_sites(paper_net), weights)}
    point_fc, _, _ = evaluate(paper_net, point_draw, test, sp.grid, config)
    point_metric = metric(point_fc[0], truth)

    # The naive forecast: each coordinate's last observed value.
    g = sp.grid.size
    idx = np.where(sp.mask[args.train :], np.arange(g)[None, :, None], 0)
    last = np.take_along_axis(sp.paths[args.train :], np.maximum.accumulate(idx, axis=1), axis=1)
    return dict(kind=kind, bayes=bayes_metric, alpha=fit.settings.get("prior_precision", float("nan")), point=point_metric, naive=metric(last, truth), cover=cover,
                bayes_s=bayes_s, point_s=point_s, n_obs=int(train.mask.any(-1).sum()))  # fmt: skip


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", type=int, default=40, help="training paths (default 40)")
    p.add_argument("--test", type=int, default=20, help="held-out paths (default 20)")
    p.add_argument("--steps", type=int, default=500, help="SVI and point-fit Adam steps (default 500)")
    p.add_argument("--map-steps", type=int, default=500,
                   help="Adam steps of the Bayesian fit's MAP warm start (default 500; 0: SVI from the template's weights)")
    p.add_argument("--map-starts", type=int, default=1, help="MAP starting points of the Bayesian fit (default 1)")
    p.add_argument("--draws", type=int, default=50, help="posterior draws (default 50)")
    p.add_argument("--hidden", type=int, default=8)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--method", default="laplace", choices=("laplace", "svi", "nuts", "svi+nuts"))
    p.add_argument("--unanchored", action="store_true",
                   help="the Bayesian fit's net without the anchor (NeuralJumpODE(anchored=False), the paper's architecture)")
    p.add_argument("--init-seed", type=int, default=0, help="added to each process's seed for both nets' initial weights")
    p.add_argument("--kinds", default=",".join(syn.PROCESSES))
    p.add_argument("--quick", action="store_true", help="smoke run: 10 + 5 paths, 50 steps, 10 draws")
    args = p.parse_args(argv)
    if args.quick:
        args.train, args.test, args.steps, args.map_steps, args.draws = 10, 5, 50, 50, 10
    rows = [one_case(kind, args, seed) for seed, kind in enumerate(args.kinds.split(","))]
    print(f"\nNJ-ODE suite: {args.train} training / {args.test} held-out paths, hidden {args.hidden}, width "
          f"{args.width}, {args.steps} steps (Bayesian fit: {args.map_starts} x {args.map_steps} MAP steps first), method {args.method}, "
          f"{args.draws} draws, {'un' if args.unanchored else ''}anchored, init seed {args.init_seed}")  # fmt: skip
    print(f"{'process':<20}{'train obs':>10}{'metric bayes':>14}{'metric point':>14}{'metric naive':>14}"
          f"{'cover90':>9}{'alpha':>9}{'bayes s':>9}{'point s':>9}")  # fmt: skip
    for r in rows:
        print(f"{r['kind']:<20}{r['n_obs']:>10}{r['bayes']:>14.4f}{r['point']:>14.4f}{r['naive']:>14.4f}"
              f"{r['cover']:>9.2f}{r['alpha']:>9.3g}{r['bayes_s']:>9.1f}{r['point_s']:>9.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
