"""The ``bayesode`` command line.

``bayesode fit`` runs the main job (default: a Bayesian neural ODE fitted by
SVI then NUTS to the bundled lynx-hare data); ``summary`` and ``predict`` work
on a saved run; ``datasets`` lists the bundled data.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

EPILOG_FIT = """examples:
  bayesode fit                                   # neural ODE on lynx-hare, SVI then NUTS
  bayesode fit --model lotka-volterra --method nuts --chains 4 --warmup 1000 --samples 1000
  bayesode fit --csv mydata.csv --model neural --until 30 --out runs/mine
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bayesode", description="Bayesian neural ODEs: fit, summarise, forecast.")
    sub = p.add_subparsers(dest="command", required=True)

    f = sub.add_parser("fit", help="fit a model to a dataset and save the posterior", epilog=EPILOG_FIT,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    src = f.add_mutually_exclusive_group()
    src.add_argument("--dataset", default=None, help="bundled dataset name (default lynx_hare; see `bayesode datasets`)")
    src.add_argument("--csv", default=None, help="your CSV: a time column then one column per state; empty/NaN = missing")
    f.add_argument("--model", default="neural", choices=["neural", "lotka-volterra", "hybrid"],
                   help="vector field: neural (MLP), lotka-volterra (Stan case study priors), hybrid (LV + neural correction); default neural")
    f.add_argument("--method", default="svi+nuts", choices=["nuts", "svi", "svi+nuts"],
                   help="inference: NUTS, SVI (variational), or SVI then NUTS from the SVI fit (default)")
    f.add_argument("--chains", type=int, default=4, help="NUTS chains (default 4)")
    f.add_argument("--warmup", type=int, default=500, help="NUTS warmup iterations per chain (default 500)")
    f.add_argument("--samples", type=int, default=500, help="NUTS draws per chain kept (default 500)")
    f.add_argument("--svi-steps", type=int, default=3000, help="SVI optimisation steps (default 3000)")
    f.add_argument("--seed", type=int, default=0, help="random seed; same seed, same draws (default 0)")
    f.add_argument("--chain-method", default="parallel", choices=["vectorized", "parallel", "sequential"],
                   help="how NUTS chains run: parallel across devices (default; on CPU one device per core) "
                        "or vectorized on one device")
    f.add_argument("--max-tree-depth", type=int, default=None,
                   help="NUTS maximum tree depth (default 10 for lotka-volterra, 6 for neural/hybrid, which bounds "
                        "the cost of an iteration at 63 gradients)")
    f.add_argument("--until", type=float, default=None,
                   help="forecast up to this time in the plot (default: a quarter of the data span past the end)")
    f.add_argument("--out", default="results", help="output folder (default results/)")
    f.add_argument("--checkpoint", action="store_true", help="write NUTS state to OUT/checkpoint; re-running resumes")
    f.add_argument("--no-progress", action="store_true", help="hide progress bars")

    s = sub.add_parser("summary", help="re-print diagnostics of a saved run",
                       epilog="example:\n  bayesode summary results/", formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("dir", help="a folder written by `bayesode fit` (holds posterior.nc)")

    pr = sub.add_parser("predict", help="forecast from a saved run: writes forecast.csv and forecast.png",
                        epilog="example:\n  bayesode predict results/ --until 1930",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    pr.add_argument("dir", help="a folder written by `bayesode fit`")
    pr.add_argument("--until", type=float, required=True, help="forecast up to this time")
    pr.add_argument("--points", type=int, default=100, help="number of forecast times (default 100)")
    pr.add_argument("--prob", type=float, default=0.9, help="credible band probability (default 0.9)")

    sub.add_parser("datasets", help="list the bundled datasets", epilog="example:\n  bayesode datasets",
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    return p


def _diagnostics_table(post) -> str:
    d = post.diagnostics()
    rows = [
        ("chains x draws", f"{d['num_chains']} x {d['num_draws']}"),
        ("max R-hat", f"{d['rhat_max']:.3f}" if "rhat_max" in d else "n/a (one chain)"),
        ("min bulk ESS", f"{d['ess_bulk_min']:.0f}" if "ess_bulk_min" in d else "n/a"),
        ("min tail ESS", f"{d['ess_tail_min']:.0f}" if "ess_tail_min" in d else "n/a"),
        ("divergences", str(d.get("divergences", "n/a"))),
        ("tree depth saturated", f"{d['tree_depth_saturated']:.1%}" if "tree_depth_saturated" in d else "n/a"),
        ("min E-BFMI", f"{d['ebfmi_min']:.2f}" if "ebfmi_min" in d else "n/a"),
        ("solver failures (sampling)", f"{d.get('solver_failures', 'n/a')} {d.get('solver_failures_by_cause') or ''}".strip()),
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
    return "\n".join(lines)


def _load_data(args):
    from . import datasets

    if args.csv:
        return datasets.load_csv(args.csv).to_data()
    return datasets.load(args.dataset or "lynx_hare").to_data()


def cmd_fit(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np

    import bayesode as bo
    from bayesode import models

    bo.enable_compilation_cache()
    data = _load_data(args)
    model = models.for_data(args.model, data)
    progress = not args.no_progress
    t0 = time.time()
    common = dict(key=args.seed, progress=progress)
    depth = args.max_tree_depth or (10 if args.model == "lotka-volterra" else 6)
    nuts_kw = dict(num_warmup=args.warmup, num_samples=args.samples, num_chains=args.chains,
                   chain_method=args.chain_method, max_tree_depth=depth,
                   checkpoint_dir=os.path.join(args.out, "checkpoint") if args.checkpoint else None)
    if args.method == "nuts":
        post = bo.run_nuts(model, data, **common, **nuts_kw)
    elif args.method == "svi":
        post = bo.run_svi(model, data, num_steps=args.svi_steps, num_draws=args.samples * args.chains, **common)
    else:
        post = bo.run_svi_nuts(model, data, svi_steps=args.svi_steps, **common, **nuts_kw)
    os.makedirs(args.out, exist_ok=True)
    nc = os.path.join(args.out, "posterior.nc")
    post.save(nc)
    summary = os.path.join(args.out, "summary.csv")
    post.summary().to_csv(summary)
    span = float(np.max(data.ts) - np.min(data.t0))
    until = args.until if args.until is not None else float(np.max(data.ts)) + 0.25 * span
    fig, _ = bo.plot_trajectories(post, until=until)
    png = os.path.join(args.out, "trajectories.png")
    fig.savefig(png, dpi=120)
    print(_diagnostics_table(post))
    print(f"\nfit: {args.model} by {args.method} in {time.time() - t0:.0f} s")
    print(f"wrote {nc}\n      {summary}\n      {png}")
    return 0


def cmd_summary(args) -> int:
    import bayesode as bo

    post = bo.Posterior.load(_posterior_path(args.dir))
    print(post.summary().to_string())
    print()
    print(_diagnostics_table(post))
    return 0


def _posterior_path(d):
    path = os.path.join(d, "posterior.nc")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no posterior.nc in {d!r}; run `bayesode fit --out {d}` first.")
    return path


def cmd_predict(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np

    import bayesode as bo

    bo.enable_compilation_cache()
    post = bo.Posterior.load(_posterior_path(args.dir))
    d = post.data
    if args.until <= float(np.min(d.t0)):
        raise ValueError(f"--until {args.until} is before the data start {float(np.min(d.t0))}.")
    ts = np.linspace(float(np.min(d.t0)), args.until, args.points)
    pred = post.predict(ts)
    obs_dim = "state" if "state" in pred["obs"].dims else "observable"
    lo, hi = (1 - args.prob) / 2, 1 - (1 - args.prob) / 2
    q = pred["obs"].quantile([lo, 0.5, hi], dim=("chain", "draw"))
    path = os.path.join(args.dir, "forecast.csv")
    with open(path, "w") as fh:
        fh.write(f"series,{d.time_name},{obs_dim},lower,median,upper\n")
        for s in pred["series"].values:
            for i, t in enumerate(ts):
                for name in pred[obs_dim].values:
                    v = q.sel(series=s, **{obs_dim: name}).values[:, i]
                    fh.write(f"{s},{t:.6g},{name},{v[0]:.6g},{v[1]:.6g},{v[2]:.6g}\n")
    fig, _ = bo.plot_trajectories(post, ts=ts, prob=args.prob)
    png = os.path.join(args.dir, "forecast.png")
    fig.savefig(png, dpi=120)
    print(f"wrote {path}\n      {png}")
    return 0


def cmd_datasets(args) -> int:
    from . import datasets

    print(datasets.format_table(), end="")
    return 0


def _use_all_cores() -> None:
    """One JAX CPU device per core, so parallel chains use every core (must precede importing jax)."""
    if "jax" not in sys.modules and "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={n}").strip()


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.command in ("fit", "predict"):
        _use_all_cores()
    handlers = {"fit": cmd_fit, "summary": cmd_summary, "predict": cmd_predict, "datasets": cmd_datasets}
    try:
        return handlers[args.command](args)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as e:
        from ._errors import BayesODEError

        if isinstance(e, (BayesODEError, FileNotFoundError)) or args.command != "fit":
            print(f"bayesode {args.command}: error: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
