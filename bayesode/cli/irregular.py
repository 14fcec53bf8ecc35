"""``bayesode irregular --csv FILE``: fit a neural jump ODE filter to an irregular CSV with missing entries.

The CSV is long: one row per observation time, a time column, optionally a
series column, and one column per observed coordinate with empty cells where an
entry is missing. Writes ``OUT/posterior.nc`` (InferenceData: weights, forecast
on a grid, per-observation log-likelihood) and ``OUT/forecast.png`` (the first
series' posterior forecast with bands, past the last observation). With ``--checkpoint`` the
MAP, Laplace and SVI fits and the NUTS state are saved in ``OUT/checkpoint``; after a kill or Ctrl-C the same
command continues from there.
"""

from __future__ import annotations

import argparse
import os
import sys

from .common import EXIT_INTERRUPTED, checkpoint_dir, resume_hint, resuming
from .outputs import check_out_dir, prepare_out_dir

EPILOG = """examples:
  bayesode irregular --csv data.csv --out njode_fit
  bayesode irregular --csv data.csv --time t --series patient --columns hr,bp --steps 3000
  bayesode irregular --csv data.csv --method svi+nuts --checkpoint --out njode_fit   # again after a kill: resumes

The forecast at any time is the posterior mean of E[x(t) | observations before t];
the band is the posterior predictive band (forecast spread and weight uncertainty)."""


def add_parser(subparsers):
    """Add the ``irregular`` command to ``subparsers`` (from ``ArgumentParser.add_subparsers``)."""
    p = subparsers.add_parser(
        "irregular",
        help="fit a neural jump ODE to an irregular CSV with missing entries",
        description="Fit a Bayesian neural jump ODE filter to irregular, partly observed series.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--csv", required=True, metavar="FILE", help="long CSV: time, optional series, one column per coordinate")
    p.add_argument("--time", default="time", help="time column (default time)")
    p.add_argument("--series", default=None, help="series column (default: one series)")
    p.add_argument("--columns", default=None, help="comma-separated observed columns (default: every other numeric one)")
    p.add_argument("--hidden", type=int, default=8, help="hidden state size (default 8)")
    p.add_argument("--width", type=int, default=16, help="hidden width of the networks (default 16)")
    p.add_argument("--unanchored", action="store_true",
                   help="do not pin the forecast to each observation at its time (for observations with measurement "
                        "noise; default: pinned, NeuralJumpODE(anchored=True))")  # fmt: skip
    p.add_argument("--method", choices=("laplace", "svi", "nuts", "svi+nuts"), default="laplace",
                   help="how to fit after the MAP: a Gaussian at it (laplace, the default), mean-field SVI, NUTS, "
                        "or SVI then NUTS")  # fmt: skip
    p.add_argument("--prior-precision", type=float, default=None,
                   help="laplace: the Gaussian's prior precision (default: tuned on held-out observations, every fifth "
                        "series or the last 20%% of each, with one more MAP fit)")  # fmt: skip
    p.add_argument("--map-steps", type=int, default=1000, help="Adam steps of the MAP fit that SVI or NUTS starts from (default 1000)")
    p.add_argument("--map-starts", type=int, default=1,
                   help="MAP fits from this many starting points, the one with the highest log density kept (default 1)")
    p.add_argument("--steps", type=int, default=1000, help="SVI steps (default 1000)")
    p.add_argument("--draws", type=int, default=200, help="posterior draws kept (default 200)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--prob", type=float, default=0.9, help="band probability (default 0.9)")
    p.add_argument("--out", default="njode_results", metavar="DIR", help="output folder (default njode_results)")
    p.add_argument("--overwrite", action="store_true", help="replace a previous fit in --out (default: refuse, before any work)")
    p.add_argument("--checkpoint", action="store_true",
                   help="save the MAP, Laplace and SVI fits and the NUTS state in OUT/checkpoint; running the same command again resumes")
    p.set_defaults(run=run)
    return p


def _check(args):
    from ..errors import ConfigError

    if not os.path.isfile(args.csv):
        raise FileNotFoundError(f"--csv {args.csv!r}: no such file")
    for name in ("hidden", "width", "steps", "draws", "map_starts"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer; got {getattr(args, name)}.")
    if args.map_steps < 0:
        raise ConfigError(f"--map-steps must be 0 (no MAP fit) or a positive integer; got {args.map_steps}.")
    if args.method == "laplace" and args.map_steps == 0:
        raise ConfigError("--method laplace is a Gaussian at the MAP: give --map-steps > 0.")
    if args.prior_precision is not None and not (0 < args.prior_precision < float("inf")):
        raise ConfigError(f"--prior-precision must be a positive number; got {args.prior_precision}.")
    if not 0 < args.prob < 1:
        raise ConfigError(f"--prob must be strictly between 0 and 1; got {args.prob}.")
    check_out_dir(args.out, overwrite=args.overwrite, resume=resuming(args))


def run(args) -> int:
    """Run the command (parsed ``args``); returns the exit status. Checks the file and data before any fit."""
    import jax.random as jr
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd

    from ..datasets import irregular_from_frame
    from ..infer import fit_jump_filter
    from ..plots import plot_jump_forecast
    from ..solving import NeuralJumpODE

    _check(args)
    frame = pd.read_csv(args.csv)
    columns = None if args.columns is None else [c.strip() for c in args.columns.split(",")]
    data = irregular_from_frame(frame, time=args.time, series=args.series, columns=columns)
    if not args.unanchored and args.hidden < data.obs_dim:
        from ..errors import ConfigError

        raise ConfigError(f"--hidden {args.hidden} is smaller than the {data.obs_dim} observed columns: the anchored "
                          "filter's state must hold each of them. Raise --hidden or pass --unanchored.")  # fmt: skip
    prepare_out_dir(args.out)
    gaps = np.diff(data.ts, axis=1)
    t_scale = float(np.median(gaps[gaps > 0])) if np.any(gaps > 0) else 1.0
    net = NeuralJumpODE(data.obs_dim, hidden_dim=args.hidden, width=args.width, key=jr.key(args.seed),
                        y_loc=np.nanmean(data.ys, axis=(0, 1)), y_scale=np.nanstd(data.ys, axis=(0, 1)) + 1e-6,
                        t_scale=t_scale, anchored=not args.unanchored)  # fmt: skip
    print(f"bayesode irregular: {len(data.series_names)} series, {data.num_observations} observation times, "
          f"{int(data.mask.sum())} observed entries of {data.obs_dim} coordinates; fitting ({args.method})...")  # fmt: skip
    checkpoint = checkpoint_dir(args)
    try:
        fit = fit_jump_filter(net, data, key=jr.key(args.seed + 1), method=args.method, map_steps=args.map_steps,
                              map_starts=args.map_starts, svi_steps=args.steps, num_draws=args.draws, num_samples=args.draws,
                              prior_precision=args.prior_precision, checkpoint_dir=checkpoint)  # fmt: skip
    except KeyboardInterrupt:
        print(f"bayesode irregular: interrupted before any draw was kept; {resume_hint(checkpoint)}.", file=sys.stderr)
        return EXIT_INTERRUPTED
    if fit.settings["method"] == "laplace":
        alpha, tuning = fit.settings["prior_precision"], dict(map(tuple, fit.settings["laplace_tuning"]))
        how = (f"tuned: 90% bands cover {tuning[alpha]:.2f} of held-out observations" if alpha in tuning
               else "given" if args.prior_precision is not None else "the weight prior's own: too few to tune on")  # fmt: skip
        print(f"Laplace at the MAP: {fit.num_draws} draws, prior precision {alpha:.3g} ({how})")
    idata = fit.to_arviz(max_draws=min(args.draws, 200))
    nc = os.path.join(args.out, "posterior.nc")
    idata.to_netcdf(nc)
    n = int(data.lengths[0])
    t0, t1 = data.ts[0, 0], data.ts[0, n - 1]
    grid = np.linspace(t0, t1 + 0.25 * max(t1 - t0, t_scale), 200)
    forecast = fit.forecast(grid, series=0, prob=args.prob)
    ax = plot_jump_forecast(forecast, data, series=0, prob=args.prob)
    png = os.path.join(args.out, "forecast.png")
    ax[0].figure.savefig(png, dpi=120)
    plt.close("all")
    print(f"wrote {nc} and {png} ({fit.settings['wall_time_s']:.0f} s fit)")
    if fit.settings.get("interrupted"):
        print(f"bayesode irregular: interrupted: the files hold the NUTS draws made so far; {resume_hint(checkpoint)}.", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0
