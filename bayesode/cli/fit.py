"""``bayesode fit``: fit a model to a bundled dataset or the user's CSV and save the run in a folder.

The order is the point: arguments, then the output folder, then the data, are checked
before JAX is imported or anything compiled, so every mistake a user can fix costs
them a second, not a fit.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings

from ..errors import ConfigError, DataError
from .common import (
    EXIT_INTERRUPTED,
    add_command,
    check_forecast_end,
    diagnostics_table,
    int_at_least,
    probability,
    time_of,
    time_or_date,
    use_cores,
)
from .data_in import DEFAULT_DATASET, check_positive, load_data, source_name
from .outputs import check_out_dir, prepare_out_dir, write_fit

# Stage-1 fit whose median fixes a neural model's hidden layers (--bayesian-layers last).
HIDDEN_GUIDE = "full-rank"

EPILOG = """your own data (--csv): a header line naming the columns, then one row per time, e.g.

  t,prey,predator
  0,30,4
  1,47.2,6.1
  2,,9.8          <- an empty cell (or NA / nan) is a missing value

The time column comes first unless --time-column names another; times are numbers or
ISO dates (YYYY-MM-DD, optionally with a time): the model counts days since the earliest,
and posterior.nc, the plots, --until and `bayesode predict` keep the dates. A
--series-column splits the rows into several series that share one vector field.

outputs in --out: posterior.nc (ArviZ InferenceData; reload with bayesode.Posterior.load),
summary.csv (az.summary), trajectories.png (bands over the data and a forecast),
phase.png (two states against each other) and, for neural and hybrid models,
vector_field.png (learned field and its posterior spread). A folder holding a previous
fit is not overwritten unless you add --overwrite.

Ctrl-C: NUTS stops after the chunk in progress, the draws made so far are saved as above
and the exit status is 130; with --checkpoint, the same command resumes the run.

examples:
  bayesode fit                                   # neural ODE on lynx-hare, SVI then NUTS
  bayesode fit --model lotka-volterra --method nuts --chains 4 --warmup 1000 --samples 1000
  bayesode fit --csv mydata.csv --model neural --width 16 --depth 2 --until 30 --out runs/mine
  bayesode fit --csv counts.csv --columns in_bed --likelihood normal --method svi --svi-steps 2000
  bayesode fit --csv trial.csv --series-column subject --time-column hours
  bayesode fit --bayesian-layers all --warmup 1000 --samples 1000   # sample every weight (slow)
  bayesode fit --target-accept 0.95 --dense-mass --devices 2 --out runs/careful --overwrite
  bayesode fit --model lotka-volterra --precision float64          # float64 instead of the kind's default
"""


def add_parser(subparsers) -> None:
    f = add_command(subparsers, "fit", "fit a model to a dataset and save the posterior", EPILOG)
    g = f.add_argument_group("data")
    src = g.add_mutually_exclusive_group()
    src.add_argument(
        "--dataset",
        default=None,
        metavar="NAME",
        help=f"bundled dataset name (default {DEFAULT_DATASET}; list them with `bayesode datasets`)",
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
    g.add_argument("--width", type=int_at_least(1), default=8, help="neural/hybrid: hidden units per layer (default 8)")
    g.add_argument(
        "--depth",
        type=int_at_least(0),
        default=1,
        help="neural/hybrid: hidden layers (default 1; 0 = linear in log-state)",
    )
    g.add_argument(
        "--bayesian-layers",
        default="last",
        choices=["last", "all"],
        help="neural: last (default) fixes the hidden layers at a point fit of the whole network (SVI) "
        "and samples the output layer, y0 and noise (a neural-linear model: chains mix in minutes); all "
        "samples every weight: 8 members from MAP fits, each sampled by NUTS, weighted by stacking "
        "(--method is not used)",
    )
    g.add_argument(
        "--precision",
        default=None,
        choices=["float32", "float64"],
        help="floating-point precision of the fit (default: the model kind's, see docs/decisions.md); "
        "the summary line and the saved settings say which ran",
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
    g.add_argument("--chains", type=int_at_least(1), default=4, help="NUTS chains (default 4; >= 2 for R-hat)")
    g.add_argument("--warmup", type=int_at_least(0), default=500, help="NUTS warmup iterations per chain (default 500)")
    g.add_argument(
        "--samples",
        type=int_at_least(1),
        default=500,
        help="NUTS draws kept per chain (default 500); with --method svi, chains x samples draws are kept",
    )
    g.add_argument("--thin", type=int_at_least(1), default=1, metavar="N",
                   help="NUTS: keep every N-th draw, --samples // N per chain (default 1: all)")  # fmt: skip
    g.add_argument(
        "--svi-steps",
        type=int_at_least(1),
        default=3000,
        help="SVI optimisation steps (default 3000); with --bayesian-layers last, the fit of every weight "
        "takes these and the output layer's fit a third of them",
    )
    g.add_argument(
        "--max-tree-depth",
        type=int_at_least(1),
        default=None,
        help="NUTS tree depth limit (default 10 for lotka-volterra; 6 for neural/hybrid, which caps an "
        "iteration at 63 costly gradients); saturation is reported in the diagnostics",
    )
    g.add_argument(
        "--target-accept",
        type=probability,
        default=None,
        metavar="P",
        help="NUTS target acceptance probability (default 0.8); raise it (e.g. 0.95) when the "
        "diagnostics report divergences: smaller steps, slower sampling",
    )
    g.add_argument(
        "--dense-mass",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="NUTS mass matrix: --dense-mass adapts a dense one (correlated parameters), "
        "--no-dense-mass a diagonal one; default: nuts diagonal, svi+nuts dense from the SVI fit",
    )
    g.add_argument("--seed", type=int, default=0, help="random seed; same seed and settings, same draws (default 0)")
    g.add_argument(
        "--chain-method",
        default="auto",
        choices=["auto", "vectorized", "parallel", "sequential"],
        help="auto (default): on CPU one chain at a time per core (parallel; the fit uses one JAX device "
        "per core), on a GPU all chains in one vectorised program; parallel: chains spread over devices; "
        "vectorized: all chains in one program on one device; sequential: one at a time on one device",
    )
    g.add_argument(
        "--devices",
        type=int_at_least(1),
        default=None,
        metavar="N",
        help="CPU devices (JAX host devices) that parallel chains spread over (default one per core; "
        "ignored when XLA_FLAGS or JAX_NUM_CPU_DEVICES already set it)",
    )
    g.add_argument(
        "--on-failure",
        default="stop",
        choices=["stop", "continue"],
        help="NUTS: when most prior draws fail to solve, or most iterations of a window diverge or fail to "
        "solve: stop with the cause and fixes (default), or continue and keep that message in the results",
    )
    g.add_argument(
        "--stuck-chains",
        default="restart",
        choices=["restart", "report", "drop"],
        help="NUTS: a chain stuck far below the others half-way through warmup is restarted from a good "
        "chain's state (default), kept where it is and reported, or run on and left out of the result; "
        "every case is recorded in the results and printed",
    )
    g.add_argument(
        "--checkpoint",
        action="store_true",
        help="save NUTS state in OUT/checkpoint after each chunk; running the same command again resumes",
    )

    g = f.add_argument_group("output")
    g.add_argument(
        "--out",
        default="results",
        metavar="DIR",
        help="output folder, created if needed (default results); a previous fit there is kept unless --overwrite",
    )
    g.add_argument(
        "--overwrite", action="store_true", help="replace the previous fit in --out (default: refuse, before any work)"
    )
    g.add_argument(
        "--until",
        type=time_or_date,
        default=None,
        metavar="T",
        help="draw the forecast up to time T, a number in the data's time units or a date (2021-06-01) for "
        "data with dates (default: a quarter of the data span past the end)",
    )
    g.add_argument("--prob", type=probability, default=0.9, help="credible band probability in the plots (default 0.9)")
    g.add_argument("--no-progress", action="store_true", help="hide the progress bars (warmup, sampling, SVI)")


def chunk_size(num_warmup: int, num_samples: int) -> int:
    """Iterations per compiled NUTS call: divides warmup and sampling (a bar that switches
    phase exactly), and small enough for about 20 progress updates."""
    total = num_warmup + num_samples
    common = math.gcd(num_warmup, num_samples)
    limit = max(1, min(100, total // 20))
    return max(c for c in range(1, min(common, limit) + 1) if common % c == 0)


def _model_for(args, data):
    from ..model import presets

    kw = {}
    if args.model in ("neural", "hybrid"):
        kw.update(width=args.width, depth=args.depth)
    if args.model == "neural":
        kw["likelihood"] = args.likelihood
    kw["precision"] = args.precision  # None: the kind's default; the recipe keeps it for `bayesode predict`
    return presets.for_data(args.model, data, **kw)


def _check_model_input(args, model, data) -> None:
    """The model's own checks of the data, before compiling, worded for the command line."""
    try:
        model.spec.check_data(data)
    except DataError as e:
        msg = str(e)
        if "use bayesode.NormalNoise()" in msg:
            fix = "use --likelihood normal" if args.model == "neural" else "use --model neural --likelihood normal"
            msg = msg.replace("use bayesode.NormalNoise()", fix)
        raise DataError(f"{source_name(args)}: {msg}") from None


def nuts_settings(args) -> dict:
    kw = dict(
        num_warmup=args.warmup,
        num_samples=args.samples,
        num_chains=args.chains,
        chain_method=args.chain_method,
        max_tree_depth=args.max_tree_depth or (10 if args.model == "lotka-volterra" else 6),
        chunk_size=chunk_size(args.warmup, args.samples),
        thinning=args.thin,
        checkpoint_dir=os.path.join(args.out, "checkpoint") if args.checkpoint else None,
        on_failure=args.on_failure,
        stuck_chains=args.stuck_chains,
    )
    # Passed only when given, so each method keeps its own default (svi+nuts: dense, from the SVI fit).
    if args.target_accept is not None:
        kw["target_accept_prob"] = args.target_accept
    if args.dense_mass is not None:
        kw["dense_mass"] = args.dense_mass
    return kw


def check_thin(args) -> None:
    """--thin against the other flags: it thins NUTS draws, so it needs a NUTS fit with that many draws."""
    if args.thin > args.samples:
        raise ConfigError(f"--thin {args.thin} keeps no draw of --samples {args.samples}; give at most --samples.")
    if args.thin > 1 and (args.method == "svi" or (args.model == "neural" and args.bayesian_layers == "all")):
        raise ConfigError("--thin thins the draws of --method nuts or svi+nuts; not --method svi or --bayesian-layers all.")


def _fit(args, model, data):
    import bayesode as bo

    common = dict(key=args.seed, progress=not args.no_progress)
    nuts_kw = nuts_settings(args)
    svi_kw = dict(num_draws=args.samples * args.chains)
    if args.model == "neural" and args.bayesian_layers == "last" and args.depth > 0:
        if not args.no_progress:
            print("stage 1: SVI over every weight, to fix the hidden layers; stage 2: the rest", file=sys.stderr)
        return bo.run_neural_linear(model, data, method=args.method, hidden_svi_steps=args.svi_steps,
                                    hidden_guide=HIDDEN_GUIDE, **common,
                                    **(svi_kw if args.method == "svi" else nuts_kw))  # fmt: skip
    if args.model == "neural" and args.bayesian_layers == "all":
        from bayesode.diagnostics import fit_full_weight

        return fit_full_weight(model, data, num_warmup=args.warmup, num_samples=args.samples,
                               max_tree_depth=nuts_kw["max_tree_depth"], chain_method=args.chain_method,
                               **common)  # fmt: skip
    if args.method == "nuts":
        return bo.run_nuts(model, data, **common, **nuts_kw)
    if args.method == "svi":
        return bo.run_svi(model, data, num_steps=args.svi_steps, **common, **svi_kw)
    return bo.run_svi_nuts(model, data, svi_steps=args.svi_steps, **common, **nuts_kw)


def _resume_hint(args) -> str:
    if args.checkpoint:
        return f"run the same command again to resume from {os.path.join(args.out, 'checkpoint')}"
    return "add --checkpoint to make a run resumable"


def _interrupted_before_draws(args) -> int:
    saved = args.checkpoint and os.path.isdir(os.path.join(args.out, "checkpoint"))  # after a chunk of NUTS
    kept = "the warmup done so far is in the checkpoint" if saved else "nothing was written"
    print(f"bayesode fit: interrupted before any draw was kept; {kept}; {_resume_hint(args)}.", file=sys.stderr)
    return EXIT_INTERRUPTED


def run(args) -> int:
    check_thin(args)
    resume = args.checkpoint and os.path.isdir(os.path.join(args.out, "checkpoint"))
    check_out_dir(args.out, overwrite=args.overwrite, resume=resume)
    data = load_data(args)
    check_positive(args, data)
    until = None if args.until is None else time_of(args.until, data, "--until")
    if until is not None:
        check_forecast_end(until, data, "--until", args.until)
    created = not os.path.exists(args.out)
    prepare_out_dir(args.out)
    try:
        use_cores(args.devices)
        import matplotlib

        matplotlib.use("Agg")
        import bayesode as bo

        bo.enable_compilation_cache()
        model = _model_for(args, data)
        _check_model_input(args, model, data)
        if not args.no_progress:
            print(
                f"fitting {args.model} to {source_name(args)} ({data.num_series} series, {data.ts.shape[1]} times, "
                f"{list(data.state_names)}) by {args.method}; compiling first (a minute or more on a small CPU)",
                file=sys.stderr,
            )
        t0 = time.time()
        with warnings.catch_warnings():
            # An interrupted NUTS run warns; the command line says it in one line below instead.
            warnings.filterwarnings("ignore", message="interrupted at iteration")
            post = _fit(args, model, data)
    except BaseException as e:
        if created and not os.listdir(args.out):  # the fit failed before writing anything: leave no empty folder
            os.rmdir(args.out)
        if isinstance(e, KeyboardInterrupt):
            return _interrupted_before_draws(args)
        raise
    fit_s = time.time() - t0
    return _report(args, post, data, fit_s, until)


def _report(args, post, data, fit_s, until) -> int:
    """Write the run's files, print the diagnostics; exit 130 (files written) if NUTS was interrupted."""
    import numpy as np

    span = float(np.max(data.ts) - np.min(data.t0))
    until = until if until is not None else float(np.max(data.ts)) + 0.25 * span
    written = write_fit(post, args.out, until, args.prob, field=args.model != "lotka-volterra", key=args.seed + 1)
    print(diagnostics_table(post))
    print(f"\nfit: {args.model} by {args.method} ({post.precision}) in {fit_s:.0f} s")
    print("wrote " + "\n      ".join(written))
    if post.settings.get("interrupted"):
        print(
            f"bayesode fit: interrupted: kept {post.num_chains} x {post.num_draws} draws (chains x draws) in "
            f"{written[0]}; {_resume_hint(args)}.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    return 0
