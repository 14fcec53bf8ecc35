"""``bayesode predict``: a forecast table (forecast.csv) and plot (forecast.png) from a saved run."""

from __future__ import annotations

import os
import sys

from ..errors import ConfigError
from .common import (
    add_command,
    finite_float,
    int_at_least,
    load_posterior,
    posterior_path,
    probability,
    savefig,
    use_cores,
)
from .outputs import prepare_out_dir

EPILOG = """example:
  bayesode predict runs/mine --until 1935 --points 200 --prob 0.8

forecast.csv has one row per (series, time, column) with the columns
  series,<time name>,<state or observable>,lower,median,upper
where lower/median/upper are quantiles of new noisy observations over the posterior
(lower <= median <= upper), from the first time of the data to --until.
forecast.png draws the same bands over the data.
"""


def add_parser(subparsers) -> None:
    pr = add_command(subparsers, "predict", "forecast from a saved run: write forecast.csv and forecast.png", EPILOG)
    pr.add_argument("dir", metavar="DIR", help="a folder written by `bayesode fit` (holds posterior.nc)")
    pr.add_argument(
        "--until",
        type=finite_float,
        required=True,
        metavar="T",
        help="forecast up to time T, in the data's time units (e.g. a year)",
    )
    pr.add_argument("--points", type=int_at_least(2), default=100, help="number of equally spaced times (default 100)")
    pr.add_argument("--prob", type=probability, default=0.9, help="credible band probability (default 0.9)")
    pr.add_argument("--seed", type=int, default=0, help="seed of the noisy predictive draws (default 0)")
    pr.set_defaults(run=run)


def write_forecast_csv(path, preds, prob: float, series_names, time_name: str) -> None:
    """Long table of predictive quantiles, one row per (series, time, column).

    ``preds``: the list from ``series_predictions`` (each series on its own grid).
    Columns: series, <time name>, <state or observable>, lower, median, upper.
    Draws whose solve failed are left out.
    """
    import numpy as np

    lo, hi = (1 - prob) / 2, 1 - (1 - prob) / 2
    with open(path, "w") as fh:
        fh.write(f"series,{time_name},{preds[0]['obs_dim']},lower,median,upper\n")
        for p in preds:
            ok = ~p["failed"]
            if not ok.any():
                continue
            q = np.quantile(p["obs"][ok], [lo, 0.5, hi], axis=0)  # (3, time, column)
            for i, t in enumerate(p["ts"]):
                for k, name in enumerate(p["names"]):
                    v = q[:, i, k]
                    fh.write(f"{series_names[p['series']]},{t:.6g},{name},{v[0]:.6g},{v[1]:.6g},{v[2]:.6g}\n")


def run(args) -> int:
    posterior_path(args.dir)  # a missing run is said before anything is imported
    prepare_out_dir(args.dir, flag="DIR")  # forecast.csv and .png go there: writable before any work
    use_cores()
    import matplotlib

    from ..infer import enable_compilation_cache

    matplotlib.use("Agg")
    import numpy as np

    from ..plots import plot_trajectories, series_predictions

    enable_compilation_cache()
    post = load_posterior(args.dir)
    d = post.data
    start = float(np.max(d.t0))
    if args.until <= start:
        raise ConfigError(f"--until {args.until:g} is not after the data start {start:g}; give a later time.")
    kw = dict(until=args.until, num_points=args.points, key=args.seed)
    preds = series_predictions(post, list(range(d.num_series)), **kw)
    path = os.path.join(args.dir, "forecast.csv")
    write_forecast_csv(path, preds, args.prob, d.series_names, d.time_name)
    fig, _ = plot_trajectories(post, prob=args.prob, **kw)
    png = savefig(fig, args.dir, "forecast.png")
    n_fail = sum(int(p["failed"].sum()) for p in preds)
    if n_fail:
        print(f"note: {n_fail} draw(s) failed to solve up to {args.until:g} and were left out.", file=sys.stderr)
    print(f"wrote {path}\n      {png}")
    return 0
