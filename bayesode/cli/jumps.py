"""``bayesode events``: fit a Bayesian neural jump ODE to an event file.

Reads one row per event (``time[,mark][,sequence]``), checks it before any work, fits
(:func:`bayesode.infer.fit_events`) and writes to ``--out``: ``posterior.nc`` (ArviZ
InferenceData: weights, the intensity as a posterior-predictive variable with time
coords, per-event log-likelihood), ``intensity.png`` (posterior intensity with its band,
one panel per sequence, at most 6), ``time_rescaling.png`` and ``time_rescaling.txt``
(the KS check of the compensator increments against Exp(1)). Ctrl-C while NUTS samples keeps
the draws made so far: the files are written from them and the exit status is 130. With
``--checkpoint`` each stage and the NUTS state are saved in ``OUT/checkpoint``; after a kill or
Ctrl-C the same command continues from there (same draws as an unbroken run).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from .common import EXIT_INTERRUPTED, checkpoint_dir, int_at_least, non_negative_float, resume_hint, resuming
from .outputs import check_out_dir, prepare_out_dir

EPILOG = """your events (--csv): a header line, then one row per event, e.g.

  time,mark,sequence
  0.52,0,a
  1.37,1,a
  0.91,0,b

`mark` and `sequence` are optional (any labels). The window is [--t0, --t-end]; by default
from one gap before the first event to the last event.

examples:
  bayesode events --dataset coal_explosions --out runs/coal
  bayesode events --csv events.csv --t0 0 --t-end 100 --method svi --out runs/mine
  bayesode events --dataset coal_explosions --out runs/coal --checkpoint   # again after a kill: resumes
  bayesode events --csv quakes.csv --delayed --method svi --out runs/lagged   # effects after a learned delay
  bayesode events --csv long.csv --method laplace --out runs/long   # 1,000s of events: minutes, not hours
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``events`` on an ``argparse`` subparsers object; returns its parser."""
    p = subparsers.add_parser(
        "events",
        help="fit a neural jump ODE (point process) to event times",
        description="Fit a Bayesian neural jump ODE (Jia & Benson 2019) to event times and check it.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--csv", help="event file: one row per event, columns time[,mark][,sequence]")
    src.add_argument("--dataset", default=None, help="a bundled event dataset (default coal_explosions)")
    p.add_argument("--time-column", default="time", help="column of event times (default time)")
    p.add_argument("--mark-column", default=None, help="column of event types (default: `mark` if present)")
    p.add_argument("--sequence-column", default=None, help="column naming the sequence (default: `sequence` if present)")
    p.add_argument("--t0", type=float, default=None, help="start of the observation window")
    p.add_argument("--t-end", type=float, default=None, help="end of the observation window")
    p.add_argument("--out", default="runs/events", help="output folder (default runs/events)")
    p.add_argument("--overwrite", action="store_true", help="replace a previous fit in --out (default: refuse, before any work)")
    p.add_argument("--method", choices=["svi+nuts", "svi", "nuts", "laplace"], default="svi+nuts",
                   help="after the MAP warm start: SVI then NUTS from it (default), SVI alone, NUTS alone, or a Laplace "
                        "approximation at the MAP with its width chosen by leave-future-out (the fast route for long "
                        "sequences; the same validation chooses the latent state's decay, see fit_events)")
    p.add_argument("--map-steps", type=int_at_least(0), default=1500, help="Adam steps of the MAP warm start (default 1500; 0: none)")
    p.add_argument("--map-starts", type=int_at_least(1), default=1,
                   help="MAP fits from this many starting points, side by side on the cores; the lowest loss is kept (default 1)")
    p.add_argument("--batch-size", type=int_at_least(1), default=None,
                   help="sequences per Adam step of the MAP and SVI stages, a random subset each step (default: all; "
                        "for files of many sequences; not with --method laplace)")
    p.add_argument("--svi-steps", type=int_at_least(1), default=1000, help="Adam steps of SVI (default 1000)")
    p.add_argument("--warmup", type=int_at_least(0), default=200, help="NUTS warmup iterations per chain (default 200)")
    p.add_argument("--samples", type=int_at_least(1), default=200, help="draws kept per chain (default 200)")
    p.add_argument("--chains", type=int_at_least(1), default=2, help="NUTS chains, taking turns on one core (default 2)")
    p.add_argument("--latent-dim", type=int_at_least(1), default=2, help="size of the latent state z (default 2)")
    p.add_argument("--width", type=int_at_least(1), default=16, help="hidden width of the flow and jump networks (default 16)")
    p.add_argument("--delayed", action="store_true",
                   help="experimental: each event also acts after a learned delay (effects that start after a lag); "
                        "measured with --method svi, NUTS on it is slow (docs/decisions.md)")
    p.add_argument("--decay", type=non_negative_float, default=None,
                   help="pull of the latent state towards 0, per mean gap between events: keeps the intensity bounded "
                        "where the data do not pin the weights (default 0; with --method laplace, 0 or 0.1 chosen by "
                        "leave-future-out)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--points", type=int_at_least(1), default=200, help="times at which the intensity is saved")
    p.add_argument("--no-progress", action="store_true", help="hide the progress lines (MAP, SVI, NUTS)")
    p.add_argument("--checkpoint", action="store_true",
                   help="save each stage and the NUTS state in OUT/checkpoint; running the same command again resumes")
    return p


def _events(args):
    from ..datasets import load_events, read_events_csv
    from ..errors import DataError

    if args.csv is None:
        return load_events(args.dataset or "coal_explosions")
    if not os.path.isfile(args.csv):
        raise DataError(f"--csv {args.csv!r}: no such file.")
    return read_events_csv(args.csv, time_column=args.time_column, mark_column=args.mark_column,
                           sequence_column=args.sequence_column, t0=args.t0, t_end=args.t_end)  # fmt: skip


def run(args) -> int:
    """Run ``bayesode events``; returns the exit status."""
    import matplotlib

    matplotlib.use("Agg")
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import matplotlib.pyplot as plt
    import numpy as np

    from ..diagnostics import posterior_time_rescaling
    from ..infer import fit_events, intensity_bands, to_inference_data
    from ..plots import plot_intensity, plot_time_rescaling

    checkpoint = checkpoint_dir(args)
    # A finished fit is never lost to its path; a --checkpoint run may write over the files it wrote before.
    check_out_dir(args.out, overwrite=args.overwrite, resume=resuming(args))
    events = _events(args)  # checked before any tracing
    prepare_out_dir(args.out)
    print(f"{events.num_sequences} sequence(s), {int(events.mask.sum())} events, {events.num_marks} mark(s)")
    try:
        with warnings.catch_warnings():
            # The fit's warnings are also in fit.stats["warnings"]: printed once below, in the summary.
            warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"bayesode\.cli\.jumps")
            fit = fit_events(events, key=args.seed, method=args.method, map_steps=args.map_steps,
                             map_starts=args.map_starts, batch_size=args.batch_size, svi_steps=args.svi_steps,
                             num_warmup=args.warmup, num_samples=args.samples, num_chains=args.chains,
                             latent_dim=args.latent_dim, width=args.width, delayed=args.delayed, decay=args.decay, progress=not args.no_progress,
                             checkpoint_dir=checkpoint)  # fmt: skip
    except KeyboardInterrupt:  # before any NUTS draw (MAP, SVI or warmup)
        print(f"bayesode events: interrupted before any draw was kept; {resume_hint(checkpoint)}.", file=sys.stderr)
        return EXIT_INTERRUPTED
    save_ts = np.linspace(float(events.t0.min()), float(events.t_end.max()), args.points)
    idata = to_inference_data(fit, save_ts)
    idata.to_netcdf(os.path.join(args.out, "posterior.nc"))
    bands = intensity_bands(fit, save_ts, num_draws=200)
    shown = min(events.num_sequences, 6)
    fig, axes = plt.subplots(shown, 1, figsize=(8, 2.5 * shown), squeeze=False)
    for i in range(shown):
        plot_intensity(axes[i, 0], save_ts, bands, events=events.event_list(i)[0], sequence=i)
        axes[i, 0].set_title(f"sequence {events.names[i]}")
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "intensity.png"), dpi=100)
    plt.close(fig)
    check = posterior_time_rescaling(fit)
    fig, ax = plt.subplots(figsize=(4, 4))
    plot_time_rescaling(ax, check)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "time_rescaling.png"), dpi=100)
    plt.close(fig)
    with open(os.path.join(args.out, "time_rescaling.txt"), "w", encoding="utf-8") as f:
        f.write(str(check) + "\n")
    if "diverging" in fit.stats:
        print(f"NUTS divergences: {int(fit.stats['diverging'].sum())}")
    if "laplace" in fit.stats:
        info = fit.stats["laplace"]
        decay = f", latent decay {info['decay']:g}" if "decay" in info else ""
        print(f"Laplace at the MAP: {fit.num_chains * fit.num_draws} independent draws; precision floor {info['floor']:g}{decay}, "
              f"chosen by leave-future-out at {', '.join(f'{o:.0%}' for o in info['origins'])} of the window; the "
              f"Hessian had {info['negative_eigenvalues']} negative eigenvalues; {info['redrawn']} draws redrawn")  # fmt: skip
    if args.delayed:
        log_delays = jnp.asarray(fit.flat_samples()["field.log_delay"])  # the process's own delay() per draw
        delay = np.asarray(jax.vmap(lambda v: eqx.tree_at(lambda p: p.log_delay, fit.process, v).delay())(log_delays))
        lo, mid, hi = np.quantile(delay, [0.05, 0.5, 0.95])
        print(f"learned delay: {mid:.4g} (90% interval {lo:.4g} to {hi:.4g}; the data's time units)")
    print(check)
    for message in fit.stats["warnings"]:  # also in posterior.nc's attrs
        if not message.startswith("fit_events interrupted"):  # said in the last line instead
            print(f"bayesode events: warning: {message}", file=sys.stderr)
    print(f"wrote {args.out}/posterior.nc, intensity.png, time_rescaling.png, time_rescaling.txt")
    if fit.stats.get("interrupted"):
        print(f"bayesode events: interrupted: kept {fit.num_chains} x {fit.num_draws} draws (chains x draws) in "
              f"{os.path.join(args.out, 'posterior.nc')}; {resume_hint(checkpoint)}.", file=sys.stderr)  # fmt: skip
        return EXIT_INTERRUPTED
    return 0
