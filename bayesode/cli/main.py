"""The ``bayesode`` command line.

``bayesode fit`` fits a model to a bundled dataset or to your own CSV and saves
the run in a folder; ``summary`` re-prints its diagnostics; ``predict`` writes
a forecast table and plot from it; ``datasets`` lists the bundled data.

Errors the user can fix (a malformed CSV, a bad setting, a missing folder)
print one line on stderr and exit with status 2; bugs keep their traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np

from . import jumps as events_command

EXIT_USAGE = 2
# Stage-1 fit whose median fixes a neural model's hidden layers (--bayesian-layers last).
HIDDEN_GUIDE = "full-rank"

EPILOG_MAIN = """examples:
  bayesode datasets                               # what data ship with bayesode
  bayesode fit --out runs/lh                      # neural ODE on lynx-hare (SVI then NUTS)
  bayesode fit --csv mydata.csv --model neural --out runs/mine
  bayesode summary runs/mine                      # diagnostics of a saved run
  bayesode predict runs/mine --until 30           # forecast.csv + forecast.png

`bayesode COMMAND --help` explains every option of COMMAND.
"""

EPILOG_FIT = """your own data (--csv): a header line naming the columns, then one row per time, e.g.

  t,prey,predator
  0,30,4
  1,47.2,6.1
  2,,9.8          <- an empty cell (or NA / nan) is a missing value

The time column comes first unless --time-column says otherwise; times are numbers or
ISO dates (YYYY-MM-DD, converted to days since the earliest). A --series-column splits
the rows into several series that share one vector field.

outputs in --out: posterior.nc (ArviZ InferenceData; reload with bayesode.Posterior.load),
summary.csv (az.summary), trajectories.png (bands over the data and a forecast),
phase.png (two states against each other) and, for neural and hybrid models,
vector_field.png (learned field and its posterior spread).

examples:
  bayesode fit                                   # neural ODE on lynx-hare, SVI then NUTS
  bayesode fit --model lotka-volterra --method nuts --chains 4 --warmup 1000 --samples 1000
  bayesode fit --csv mydata.csv --model neural --width 16 --depth 2 --until 30 --out runs/mine
  bayesode fit --csv counts.csv --columns in_bed --likelihood normal --method svi --svi-steps 2000
  bayesode fit --csv trial.csv --series-column subject --time-column hours
  bayesode fit --bayesian-layers all --warmup 1000 --samples 1000   # sample every weight (slow)
"""

EPILOG_SUMMARY = """example:
  bayesode summary runs/mine

Prints az.summary of the interpretable variables (not the neural weights) and a table of
R-hat, bulk/tail ESS, divergences, tree depth, E-BFMI and ODE solver failures, with
plain-word warnings. Nothing is recomputed.
"""

EPILOG_PREDICT = """example:
  bayesode predict runs/mine --until 1935 --points 200 --prob 0.8

forecast.csv has one row per (series, time, column) with the columns
  series,<time name>,<state or observable>,lower,median,upper
where lower/median/upper are quantiles of new noisy observations over the posterior
(lower <= median <= upper), from the first time of the data to --until.
forecast.png draws the same bands over the data.
"""

EPILOG_DATASETS = """example:
  bayesode datasets
  bayesode fit --dataset damped_pendulum --model neural --likelihood normal
"""


def _int_at_least(low):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {low}, got {value}")
        return value

    return parse


def _finite_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _probability(text):
    value = _finite_float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a probability strictly between 0 and 1, got {value}")
    return value


def _sub(sub, name, help, epilog):
    return sub.add_parser(
        name,
        help=help,
        description=help[0].upper() + help[1:] + ".",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bayesode",
        description="Bayesian neural ODEs: fit a vector field to time series, check the fit, forecast with honest bands.",
        epilog=EPILOG_MAIN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    f = _sub(sub, "fit", "fit a model to a dataset and save the posterior", EPILOG_FIT)
    g = f.add_argument_group("data")
    src = g.add_mutually_exclusive_group()
    src.add_argument(
        "--dataset",
        default=None,
        metavar="NAME",
        help="bundled dataset name (default lynx_hare; list them with `bayesode datasets`)",
    )
    src.add_argument(
        "--csv",
        default=None,
        metavar="FILE",
        help="your CSV file: a header line, a time column, one column per observed state",
    )
    g.add_argument(
        "--time-column", default=None, metavar="NAME", help="--csv: name of the time column (default the first)"
    )
    g.add_argument(
        "--columns",
        default=None,
        metavar="A,B",
        help="--csv: comma-separated observed columns, in order (default all but time/series)",
    )
    g.add_argument(
        "--series-column",
        default=None,
        metavar="NAME",
        help="--csv: column of series labels (e.g. subject); each label is one series",
    )
    g = f.add_argument_group("model")
    g.add_argument(
        "--model",
        default="neural",
        choices=["neural", "lotka-volterra", "hybrid"],
        help="vector field: neural (an MLP), lotka-volterra (the Stan case study's priors, 2 states), "
        "hybrid (Lotka-Volterra + a small neural correction); default neural",
    )
    g.add_argument(
        "--width", type=_int_at_least(1), default=8, help="neural/hybrid: hidden units per layer (default 8)"
    )
    g.add_argument(
        "--depth",
        type=_int_at_least(0),
        default=1,
        help="neural/hybrid: hidden layers (default 1; 0 = linear in log-state)",
    )
    g.add_argument(
        "--bayesian-layers",
        default="last",
        choices=["last", "all"],
        help="neural: last (default) fixes the hidden layers at a point fit of the whole network (SVI) and "
        "samples the output layer, y0 and noise (a neural-linear model: chains mix in minutes); all samples "
        "every weight (the full posterior; chains often disagree on small data sets)",
    )
    g.add_argument(
        "--likelihood",
        default="lognormal",
        choices=["lognormal", "normal", "student-t"],
        help="neural: observation noise; lognormal needs positive data (default lognormal; "
        "lotka-volterra and hybrid are always lognormal)",
    )
    g = f.add_argument_group("inference")
    g.add_argument(
        "--method",
        default="svi+nuts",
        choices=["nuts", "svi", "svi+nuts"],
        help="NUTS, SVI (fast variational approximation), or SVI then NUTS started from it (default)",
    )
    g.add_argument("--chains", type=_int_at_least(1), default=4, help="NUTS chains (default 4; >= 2 for R-hat)")
    g.add_argument(
        "--warmup", type=_int_at_least(0), default=500, help="NUTS warmup iterations per chain (default 500)"
    )
    g.add_argument(
        "--samples",
        type=_int_at_least(1),
        default=500,
        help="NUTS draws kept per chain (default 500); with --method svi, chains x samples draws are kept",
    )
    g.add_argument(
        "--svi-steps",
        type=_int_at_least(1),
        default=3000,
        help="SVI optimisation steps (default 3000); with --bayesian-layers last, the fit of every weight "
        "takes these and the output layer's fit a third of them",
    )
    g.add_argument(
        "--max-tree-depth",
        type=_int_at_least(1),
        default=None,
        help="NUTS tree depth limit (default 10 for lotka-volterra; 6 for neural/hybrid, which caps an "
        "iteration at 63 costly gradients); saturation is reported in the diagnostics",
    )
    g.add_argument("--seed", type=int, default=0, help="random seed; same seed and settings, same draws (default 0)")
    g.add_argument(
        "--chain-method",
        default="auto",
        choices=["auto", "vectorized", "parallel", "sequential"],
        help="auto (default): on CPU one chain at a time per core (parallel; the fit uses one JAX device per "
        "core), on a GPU all chains in one vectorised program; parallel: chains spread over devices; "
        "vectorized: all chains in one program on one device; sequential: one at a time on one device",
    )
    g.add_argument(
        "--checkpoint",
        action="store_true",
        help="save NUTS state in OUT/checkpoint after each chunk; running the same command again resumes",
    )
    g = f.add_argument_group("output")
    g.add_argument("--out", default="results", metavar="DIR", help="output folder, created if needed (default results)")
    g.add_argument(
        "--until",
        type=_finite_float,
        default=None,
        metavar="T",
        help="draw the forecast up to time T (default: a quarter of the data span past the end)",
    )
    g.add_argument(
        "--prob", type=_probability, default=0.9, help="credible band probability in the plots (default 0.9)"
    )
    g.add_argument("--no-progress", action="store_true", help="hide the progress bars (warmup, sampling, SVI)")

    s = _sub(sub, "summary", "re-print the diagnostics of a saved run", EPILOG_SUMMARY)
    s.add_argument("dir", metavar="DIR", help="a folder written by `bayesode fit` (holds posterior.nc)")

    pr = _sub(sub, "predict", "forecast from a saved run: write forecast.csv and forecast.png", EPILOG_PREDICT)
    pr.add_argument("dir", metavar="DIR", help="a folder written by `bayesode fit` (holds posterior.nc)")
    pr.add_argument(
        "--until",
        type=_finite_float,
        required=True,
        metavar="T",
        help="forecast up to time T, in the data's time units (e.g. a year)",
    )
    pr.add_argument("--points", type=_int_at_least(2), default=100, help="number of equally spaced times (default 100)")
    pr.add_argument("--prob", type=_probability, default=0.9, help="credible band probability (default 0.9)")
    pr.add_argument("--seed", type=int, default=0, help="seed of the noisy predictive draws (default 0)")

    _sub(sub, "datasets", "list the bundled datasets", EPILOG_DATASETS)
    events_command.add_parser(sub)  # bayesode events (cli/jumps.py)
    return p


def _chunk_size(num_warmup: int, num_samples: int) -> int:
    """Iterations per compiled NUTS call: divides warmup and sampling (a bar that switches
    phase exactly), and small enough for about 20 progress updates."""
    total = num_warmup + num_samples
    common = math.gcd(num_warmup, num_samples)
    limit = max(1, min(100, total // 20))
    return max(c for c in range(1, min(common, limit) + 1) if common % c == 0)


def _diagnostics_table(post) -> str:
    d = post.diagnostics()
    rows = [
        ("method", str(post.settings.get("method", "?"))),
        ("chains x draws", f"{d['num_chains']} x {d['num_draws']}"),
        ("max R-hat", f"{d['rhat_max']:.3f}" if "rhat_max" in d else "n/a (one chain)"),
        ("min bulk ESS", f"{d['ess_bulk_min']:.0f}" if "ess_bulk_min" in d else "n/a"),
        ("min tail ESS", f"{d['ess_tail_min']:.0f}" if "ess_tail_min" in d else "n/a"),
        ("divergences", str(d.get("divergences", "n/a"))),
        ("tree depth saturated", f"{d['tree_depth_saturated']:.1%}" if "tree_depth_saturated" in d else "n/a"),
        ("min E-BFMI", f"{d['ebfmi_min']:.2f}" if "ebfmi_min" in d else "n/a"),
        (
            "solver failures (sampling)",
            f"{d.get('solver_failures', 'n/a')} {d.get('solver_failures_by_cause') or ''}".strip(),
        ),
        ("solver failures (warmup)", str(d.get("warmup_solver_failures", "n/a"))),
    ]
    if post.losses is not None:
        rows.append(("final SVI loss", f"{float(post.losses[-1]):.2f}"))
    width = max(len(r[0]) for r in rows)
    lines = ["diagnostics", "-" * (width + 24)] + [f"{a:<{width}}  {b}" for a, b in rows]
    if d["warnings"]:
        lines += ["", "warnings:"] + [f"  - {w}" for w in d["warnings"]]
    else:
        lines += ["", "no diagnostic warnings."]
    if post.settings.get("method") == "svi":
        lines += ["(SVI: draws come from a variational approximation; R-hat, ESS and divergences do not apply.)"]
    return "\n".join(lines)


def _load_data(args):
    from ..datasets import bundled as datasets
    from ..errors import DataError

    if not args.csv:
        if args.time_column or args.columns or args.series_column:
            raise DataError("--time-column, --columns and --series-column apply to --csv files only.")
        return datasets.load(args.dataset or "lynx_hare").to_data()
    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    try:
        return datasets.load_csv(
            args.csv, time_column=args.time_column, state_columns=columns, series_column=args.series_column
        ).to_data()
    except DataError as e:
        msg = str(e).replace(f"load_csv({args.csv!r}): ", "")
        # make_data speaks of `ts`/`ys` arrays; say which file they came from.
        raise DataError(f"{args.csv}: {msg}") from None


def _model_for(args, data):
    from ..model import presets as models

    kw = {}
    if args.model in ("neural", "hybrid"):
        kw.update(width=args.width, depth=args.depth)
    if args.model == "neural":
        kw["likelihood"] = args.likelihood
    return models.for_data(args.model, data, **kw)


def _check_fit_input(args, model, data) -> None:
    """The model's checks of the data, before compiling, worded for the command line."""
    from ..errors import DataError

    try:
        model.spec.check_data(data)
    except DataError as e:
        msg = str(e)
        if "use bayesode.NormalNoise()" in msg:
            fix = "use --likelihood normal" if args.model == "neural" else "use --model neural --likelihood normal"
            msg = msg.replace("use bayesode.NormalNoise()", fix)
        raise DataError(f"{args.csv or args.dataset or 'lynx_hare'}: {msg}") from None


def _use_all_cores() -> None:
    """One JAX CPU device per core, so ``--chain-method auto`` (parallel there) uses every core.

    Possible only before JAX starts its backend (the first computation); a no-op
    afterwards, or when the user set the device count already.
    """
    import warnings

    from ..infer.runtime import use_cpu_cores

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the backend is already running (e.g. main() called from Python)
        use_cpu_cores()


def _save_plots(post, out, until, prob, *, field: bool) -> list[str]:
    import matplotlib.pyplot as plt

    from ..plots.core import plot_phase, plot_trajectories, plot_vector_field

    written = []
    fig, _ = plot_trajectories(post, until=until, prob=prob)
    written.append(_savefig(fig, out, "trajectories.png"))
    if post.model.spec.state_dim >= 2:
        fig, _ = plot_phase(post, until=until)
        written.append(_savefig(fig, out, "phase.png"))
        if field:
            fig, _ = plot_vector_field(post)
            written.append(_savefig(fig, out, "vector_field.png"))
    plt.close("all")
    return written


def _savefig(fig, out, name) -> str:
    path = os.path.join(out, name)
    fig.savefig(path, dpi=120)
    return path


def cmd_fit(args) -> int:
    import matplotlib

    matplotlib.use("Agg")

    import bayesode as bo

    bo.enable_compilation_cache()
    data = _load_data(args)
    model = _model_for(args, data)
    _check_fit_input(args, model, data)
    progress = not args.no_progress
    t0 = time.time()
    common = dict(key=args.seed, progress=progress)
    depth = args.max_tree_depth or (10 if args.model == "lotka-volterra" else 6)
    nuts_kw = dict(
        num_warmup=args.warmup,
        num_samples=args.samples,
        num_chains=args.chains,
        chain_method=args.chain_method,
        max_tree_depth=depth,
        chunk_size=_chunk_size(args.warmup, args.samples),
        checkpoint_dir=os.path.join(args.out, "checkpoint") if args.checkpoint else None,
    )
    if progress:
        what = args.csv or args.dataset or "lynx_hare"
        print(
            f"fitting {args.model} to {what} ({data.num_series} series, {data.ts.shape[1]} times, "
            f"{list(data.state_names)}) by {args.method}; compiling first (a minute or more on a small CPU)",
            file=sys.stderr,
        )
    svi_kw = dict(num_draws=args.samples * args.chains)
    if args.model == "neural" and args.bayesian_layers == "last" and args.depth > 0:
        if progress:
            print("stage 1: SVI over every weight, to fix the hidden layers; stage 2: the rest", file=sys.stderr)
        post = bo.run_neural_linear(model, data, method=args.method, hidden_svi_steps=args.svi_steps,
                                    hidden_guide=HIDDEN_GUIDE, **common,
                                    **(svi_kw if args.method == "svi" else nuts_kw))  # fmt: skip
    elif args.method == "nuts":
        post = bo.run_nuts(model, data, **common, **nuts_kw)
    elif args.method == "svi":
        post = bo.run_svi(model, data, num_steps=args.svi_steps, **common, **svi_kw)
    else:
        post = bo.run_svi_nuts(model, data, svi_steps=args.svi_steps, **common, **nuts_kw)
    fit_s = time.time() - t0
    os.makedirs(args.out, exist_ok=True)
    nc = os.path.join(args.out, "posterior.nc")
    post.save(nc)
    summary = os.path.join(args.out, "summary.csv")
    post.summary().to_csv(summary)
    span = float(np.max(data.ts) - np.min(data.t0))
    until = args.until if args.until is not None else float(np.max(data.ts)) + 0.25 * span
    pngs = _save_plots(post, args.out, until, args.prob, field=args.model != "lotka-volterra")
    print(_diagnostics_table(post))
    print(f"\nfit: {args.model} by {args.method} in {fit_s:.0f} s")
    print("wrote " + "\n      ".join([nc, summary, *pngs]))
    return 0


def _posterior_path(d):
    from ..errors import ConfigError

    path = os.path.join(d, "posterior.nc")
    if not os.path.isfile(path):
        what = "no folder" if not os.path.isdir(d) else "no posterior.nc in"
        raise ConfigError(f"{what} {d!r}; run `bayesode fit --out {d}` first.")
    return path


def _load_posterior(d):
    import bayesode as bo

    from ..errors import ConfigError

    path = _posterior_path(d)
    try:
        return bo.Posterior.load(path)
    except (OSError, KeyError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"could not read {path!r} as a saved bayesode run ({type(e).__name__}: {e}).") from None


def cmd_summary(args) -> int:
    post = _load_posterior(args.dir)
    print(post.summary().to_string())
    print()
    print(_diagnostics_table(post))
    return 0


def write_forecast_csv(path, preds, prob: float, series_names, time_name: str) -> None:
    """Long table of predictive quantiles, one row per (series, time, column).

    ``preds``: the list from ``series_predictions`` (each series on its own grid).
    Columns: series, <time name>, <state or observable>, lower, median, upper.
    Draws whose solve failed are left out.
    """
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


def cmd_predict(args) -> int:
    import matplotlib

    matplotlib.use("Agg")

    import bayesode as bo

    from ..errors import ConfigError
    from ..plots.core import series_predictions

    bo.enable_compilation_cache()
    post = _load_posterior(args.dir)
    d = post.data
    start = float(np.max(d.t0))
    if args.until <= start:
        raise ConfigError(f"--until {args.until:g} is not after the data start {start:g}; give a later time.")
    kw = dict(until=args.until, num_points=args.points, key=args.seed)
    preds = series_predictions(post, list(range(d.num_series)), **kw)
    path = os.path.join(args.dir, "forecast.csv")
    write_forecast_csv(path, preds, args.prob, d.series_names, d.time_name)
    fig, _ = bo.plot_trajectories(post, prob=args.prob, **kw)
    png = _savefig(fig, args.dir, "forecast.png")
    n_fail = sum(int(p["failed"].sum()) for p in preds)
    if n_fail:
        print(f"note: {n_fail} draw(s) failed to solve up to {args.until:g} and were left out.", file=sys.stderr)
    print(f"wrote {path}\n      {png}")
    return 0


def cmd_datasets(args) -> int:
    from ..datasets import bundled as datasets

    print(datasets.format_table(), end="")
    return 0


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def main(argv=None) -> int:
    """Entry point of the ``bayesode`` script; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command in ("fit", "predict"):
        _use_all_cores()
    handlers = {"fit": cmd_fit, "summary": cmd_summary, "predict": cmd_predict, "datasets": cmd_datasets}
    handlers["events"] = events_command.run  # minimal registration until the subcommand registry lands
    from ..errors import BayesODEError

    try:
        return handlers[args.command](args)
    except (BayesODEError, FileNotFoundError, PermissionError, IsADirectoryError) as e:
        print(f"bayesode {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"bayesode {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
