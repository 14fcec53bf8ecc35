"""``bayesode fit``: fit a model to a bundled dataset or the user's CSV and save the run in a folder.

The order is the point: arguments, then the output folder, then the data, are checked
before JAX is imported or anything compiled, so every mistake a user can fix costs
them a second, not a fit.
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings

from ..errors import ConfigError, DataError
from .common import (
    EXIT_INTERRUPTED,
    check_forecast_end,
    checkpoint_dir,
    diagnostics_table,
    resume_hint,
    resuming,
    time_of,
    use_cores,
)
from .data_in import check_positive, load_data, source_name
from .fit_flags import add_parser  # noqa: F401  (the command's flags live there; main.py reads it here)
from .outputs import check_out_dir, prepare_out_dir, write_fit

# Stage-1 fit whose median fixes a neural model's hidden layers (--bayesian-layers last).
HIDDEN_GUIDE = "full-rank"


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
    if args.weight_scale is not None:
        if args.model == "lotka-volterra":
            raise ConfigError("--weight-scale sets a network's weight prior: use it with --model neural or hybrid.")
        kw["weight_scale" if args.model == "neural" else "correction_scale"] = args.weight_scale
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
        checkpoint_dir=checkpoint_dir(args),
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
        raise ConfigError(
            "--thin thins the draws of --method nuts or svi+nuts; not --method svi or --bayesian-layers all."
        )


def check_full_weight(args) -> None:
    """--full-weight chooses how --bayesian-layers all builds its posterior; alone it would be ignored."""
    every_weight = args.model == "neural" and args.bayesian_layers == "all"
    if args.full_weight is not None and not every_weight:
        raise ConfigError("--full-weight chooses how --bayesian-layers all (with --model neural) builds the posterior "
                          "over every weight; add --bayesian-layers all, or leave --full-weight out.")  # fmt: skip
    if args.full_weight is None:
        args.full_weight = "laplace"


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

        if args.full_weight == "laplace":
            return fit_full_weight(model, data, method="laplace", draws_per_member=args.samples, **common)
        return fit_full_weight(model, data, method="nuts", num_warmup=args.warmup, num_samples=args.samples,
                               max_tree_depth=nuts_kw["max_tree_depth"], chain_method=args.chain_method,
                               **common)  # fmt: skip
    if args.method == "nuts":
        return bo.run_nuts(model, data, **common, **nuts_kw)
    if args.method == "svi":
        return bo.run_svi(model, data, num_steps=args.svi_steps, **common, **svi_kw)
    return bo.run_svi_nuts(model, data, svi_steps=args.svi_steps, **common, **nuts_kw)


def _how(args) -> str:
    """The fit method in words, as the console reports it."""
    if args.model == "neural" and args.bayesian_layers == "all":
        return {"laplace": "a mixture of Laplace approximations over every weight",
                "nuts": "NUTS members over every weight, stacked"}[args.full_weight]  # fmt: skip
    return args.method


def _interrupted_before_draws(args) -> int:
    saved = resuming(args)  # the checkpoint exists after a chunk of NUTS
    kept = "the warmup done so far is in the checkpoint" if saved else "nothing was written"
    print(f"bayesode fit: interrupted before any draw was kept; {kept}; {resume_hint(checkpoint_dir(args))}.", file=sys.stderr)
    return EXIT_INTERRUPTED


def run(args) -> int:
    check_thin(args)
    check_full_weight(args)
    resume = resuming(args)
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
            how = _how(args)
            print(
                f"fitting {args.model} to {source_name(args)} ({data.num_series} series, {data.ts.shape[1]} times, "
                f"{list(data.state_names)}) by {how}; compiling first (a minute or more on a small CPU)",
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
    compile_s = post.settings.get("compile_s")  # the sampler's (NUTS or SVI) compile, apart from running it
    compiling = f" ({compile_s:.0f} s of it compiling the sampler)" if compile_s is not None else ""
    print(f"\nfit: {args.model} by {_how(args)} ({post.precision}) in {fit_s:.0f} s{compiling}")
    print("wrote " + "\n      ".join(written))
    if post.settings.get("interrupted"):
        print(
            f"bayesode fit: interrupted: kept {post.num_chains} x {post.num_draws} draws (chains x draws) in "
            f"{written[0]}; {resume_hint(checkpoint_dir(args))}.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    return 0
