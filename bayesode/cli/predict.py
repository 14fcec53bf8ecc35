"""``bayesode predict``: a forecast table (forecast.csv) and plot (forecast.png) from a saved run."""

from __future__ import annotations

import os
import sys

from .common import (
    add_command,
    check_forecast_end,
    int_at_least,
    load_posterior,
    posterior_path,
    probability,
    savefig,
    time_of,
    time_or_date,
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
        type=time_or_date,
        required=True,
        metavar="T",
        help="forecast up to time T, after the data's last time: a number in the data's time units (e.g. a "
        "year), or a date (2021-06-01) for data with dates",
    )
    pr.add_argument("--points", type=int_at_least(2), default=100, help="number of equally spaced times (default 100)")
    pr.add_argument("--prob", type=probability, default=0.9, help="credible band probability (default 0.9)")
    pr.add_argument("--seed", type=int, default=0, help="seed of the noisy predictive draws (default 0)")


def _time_labels(ts, data) -> list[str]:
    """Times as the data wrote them: numbers, or ISO dates (with the time of day when not midnight)."""
    import numpy as np

    if data.time_origin is None:
        return [f"{t:.6g}" for t in ts]
    dates = data.to_dates(ts)
    whole_days = bool(np.all(dates == dates.astype("datetime64[D]")))
    return list(np.datetime_as_string(dates, unit="D" if whole_days else "s"))


def write_forecast_csv(path, preds, prob: float, data) -> None:
    """Long table of predictive quantiles, one row per (series, time, column).

    ``preds``: the list from ``series_predictions`` (each series on its own grid).
    Columns: series, <time name>, <state or observable>, lower, median, upper, with the
    data's own names, and dates for data with dates. Draws whose solve failed are left out.
    """
    import numpy as np

    series_names, time_name = data.series_names, data.time_name

    lo, hi = (1 - prob) / 2, 1 - (1 - prob) / 2
    with open(path, "w") as fh:
        fh.write(f"series,{time_name},{preds[0]['obs_dim']},lower,median,upper\n")
        for p in preds:
            ok = ~p["failed"]
            if not ok.any():
                continue
            q = np.quantile(p["obs"][ok], [lo, 0.5, hi], axis=0)  # (3, time, column)
            for i, t in enumerate(_time_labels(p["ts"], data)):
                for k, name in enumerate(p["names"]):
                    v = q[:, i, k]
                    fh.write(f"{series_names[p['series']]},{t},{name},{v[0]:.6g},{v[1]:.6g},{v[2]:.6g}\n")


def run(args) -> int:
    posterior_path(args.dir)  # a missing run is said before anything is imported
    prepare_out_dir(args.dir, flag="DIR")  # forecast.csv and .png go there: writable before any work
    use_cores()
    import matplotlib

    from ..infer import enable_compilation_cache

    matplotlib.use("Agg")

    from ..plots import plot_trajectories
    from ..results import series_predictions

    enable_compilation_cache()
    post = load_posterior(args.dir)
    d = post.data
    until = time_of(args.until, d, "--until")
    check_forecast_end(until, d, "--until", args.until)
    kw = dict(until=until, num_points=args.points, key=args.seed)
    preds = series_predictions(post, list(range(d.num_series)), **kw)
    path = os.path.join(args.dir, "forecast.csv")
    write_forecast_csv(path, preds, args.prob, d)
    axes = plot_trajectories(post, prob=args.prob, **kw)
    png = savefig(axes[0].figure, args.dir, "forecast.png")
    n_fail = sum(int(p["failed"].sum()) for p in preds)
    if n_fail:
        print(f"note: {n_fail} draw(s) failed to solve up to {args.until} and were left out.", file=sys.stderr)
    print(f"wrote {path}\n      {png}")
    return 0
