"""The flags of ``bayesode fit``, grouped as ``bayesode fit --help`` shows them.

Each flag's value reaches the fit in :mod:`bayesode.cli.fit` (``nuts_settings``, ``run``),
which passes it on to :mod:`bayesode.infer`; the defaults shown in the help are the ones used.
"""

from __future__ import annotations

import argparse

from .common import add_command, int_at_least, positive_float, probability, time_or_date
from .data_in import DEFAULT_DATASET

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
  bayesode fit --bayesian-layers all --weight-scale 0.3          # every weight, a tighter weight prior
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
        "--weight-scale",
        type=positive_float,
        default=None,
        metavar="S",
        help="neural: prior N(0, S^2) on every network weight (default 1); hybrid: on the correction's weights "
        "(default 0.1). Smaller S: smoother fields and a larger noise estimate (see docs/decisions.md)",
    )
    g.add_argument(
        "--bayesian-layers",
        default="last",
        choices=["last", "all"],
        help="neural: last (default) fixes the hidden layers at a point fit of the whole network (SVI) "
        "and samples the output layer, y0 and noise (a neural-linear model: chains mix in minutes); all "
        "gives every weight a posterior: 8 members from MAP fits, combined as --full-weight says "
        "(--method is not used)",
    )
    g.add_argument(
        "--full-weight",
        default=None,
        choices=["laplace", "nuts"],
        help="with --bayesian-layers all: laplace (default) mixes Laplace approximations at the members, their "
        "width chosen by leave-future-out (minutes; --samples draws per member); nuts samples each member by "
        "NUTS (--warmup, --samples per member) and weights them by stacking (slower; narrower held-out "
        "coverage in benchmarks/forecast.py)",
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
