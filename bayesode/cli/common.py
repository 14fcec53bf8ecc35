"""What every command shares: argument types, exit codes, the diagnostics table, reading a saved run.

Nothing heavy is imported at module level: ``bayesode --help`` and argument errors must answer
at once, so JAX, ArviZ and matplotlib are imported inside the functions that need them.
"""

from __future__ import annotations

import argparse
import math
import os
import re

from ..errors import ConfigError

EXIT_USAGE = 2  # an error the user can fix (bad data, bad setting, unusable path); argparse uses 2 too
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for a Ctrl-C'd program


def checkpoint_dir(args) -> str | None:
    """``OUT/checkpoint`` when the command was given ``--checkpoint``, else None."""
    return os.path.join(args.out, "checkpoint") if args.checkpoint else None


def resuming(args) -> bool:
    """Whether a ``--checkpoint`` run finds its checkpoint from an earlier run (and so may write over its files)."""
    checkpoint = checkpoint_dir(args)
    return checkpoint is not None and os.path.isdir(checkpoint)


def resume_hint(checkpoint: str | None) -> str:
    """What to do after an interrupted run, for its last line."""
    if checkpoint:
        return f"run the same command again to resume from {checkpoint}"
    return "add --checkpoint to make a run resumable"


def int_at_least(low: int):
    """argparse type: a whole number >= ``low``."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {low}, got {value}")
        return value

    return parse


def finite_float(text: str) -> float:
    """argparse type: a finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = finite_float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {value}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    value = finite_float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def probability(text: str) -> float:
    """argparse type: a number strictly between 0 and 1."""
    value = finite_float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a probability strictly between 0 and 1, got {value}")
    return value


def time_or_date(text: str) -> float | str:
    """argparse type: a time in the data's units (a number) or an ISO date (``2021-06-01``, kept as text).

    A date is turned into the data's time axis once the data (and its first date) is known.
    """
    try:
        return finite_float(text)
    except argparse.ArgumentTypeError:
        pass
    import datetime

    try:
        datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or an ISO date (YYYY-MM-DD), got {text!r}") from None
    return text


def time_of(value: float | str, data, flag: str) -> float:
    """A ``time_or_date`` value on the data's time axis (a date becomes days since the data's first date)."""
    if isinstance(value, str):
        return data.time_from_date(value, flag)
    return float(value)


def check_forecast_end(until: float, data, flag: str, text) -> None:
    """A forecast must end after the last observation (earlier, the plot would cut the data off)."""
    import numpy as np

    last = float(np.max(data.ts))
    if until <= last:
        shown = f"{last:g}"
        if data.time_origin:
            date = data.to_dates(last)
            shown = str(date.astype("datetime64[D]") if date == date.astype("datetime64[D]") else date)
        raise ConfigError(
            f"{flag} {text} is not after the end of the data ({data.time_name} {shown}); "
            "a forecast runs past the data: give a later time."
        )


def add_command(subparsers, name: str, help: str, epilog: str) -> argparse.ArgumentParser:
    """A sub-command's parser with its help as description and its examples as epilog."""
    return subparsers.add_parser(
        name,
        help=help,
        description=help[0].upper() + help[1:] + ".",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


# Python argument names in the library's diagnostic advice -> the flags that set them here.
FLAG_FOR = {
    "target_accept_prob": "--target-accept",
    "max_tree_depth": "--max-tree-depth",
    "num_warmup": "--warmup",
    "num_samples": "--samples",
    "num_chains": "--chains",
    "dense_mass": "--dense-mass",
}


def command_line_advice(text: str) -> str:
    """Reword advice written for Python callers (``raise target_accept_prob``) for the command line."""
    text = re.sub(r"\b(" + "|".join(FLAG_FOR) + r")\b", lambda m: FLAG_FOR[m.group(1)], text)
    text = text.replace("precision='float64'", "--precision float64")
    return text.replace("run longer", "run longer (--warmup, --samples)")


def diagnostics_table(post) -> str:
    """The plain-text diagnostics block that ``fit`` and ``summary`` print."""
    d = post.diagnostics()
    rows = [
        ("method", str(post.settings.get("method", "?"))),
        ("precision", post.precision),
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
    loo = _loo_row(post)
    if loo is not None:
        rows.append(loo)
    width = max(len(r[0]) for r in rows)
    lines = ["diagnostics", "-" * (width + 24)] + [f"{a:<{width}}  {b}" for a, b in rows]
    if d["warnings"]:
        lines += ["", "warnings:"] + [f"  - {command_line_advice(w)}" for w in d["warnings"]]
    else:
        lines += ["", "no diagnostic warnings."]
    for caveat in d.get("caveats", []):
        lines += [f"caveat: {caveat}"]
    if post.settings.get("method") == "svi":
        lines += ["(SVI: draws come from a variational approximation; R-hat, ESS and divergences do not apply.)"]
    if post.settings.get("method") == "laplace-mixture":
        info = post.settings.get("ensemble", {})
        lines += [f"(Laplace mixture: independent draws from Gaussians at {len(info.get('weights', []))} MAP members, "
                  f"Hessian eigenvalues floored at {info.get('floor', float('nan')):g}; R-hat and ESS do not judge it, "
                  "the function-space report above says how far the members differ.)"]  # fmt: skip
    if post.settings.get("method") == "ensemble":
        within = d.get("function_space_rhat_within_max")
        lines += ["(ensemble: R-hat and ESS above are of the pooled resample and say nothing of convergence; "
                  + (f"the function-space R-hat within members is {within:.3f}; " if within is not None else "")
                  + "divergences count every member's sampling.)"]  # fmt: skip
    return "\n".join(lines)


def _loo_row(post):
    """("PSIS-LOO elpd", value) from the fit's InferenceData where it has one (after saving, or loaded), else None."""
    import warnings

    import arviz as az
    import numpy as np

    try:
        idata = post.to_arviz()  # the one made when the fit was saved, or loaded; none yet: no row
    except ConfigError:
        return None
    if "log_likelihood" not in idata.groups():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ's Pareto-k warning: counted below instead
        res = az.loo(idata, pointwise=True)
    k = np.asarray(res.pareto_k)
    note = f"; {int((k > 0.7).sum())} of {k.size} points with Pareto k > 0.7" if np.any(k > 0.7) else ""
    if post.caveats():
        note += "; optimistic, see the caveat below"
    return ("PSIS-LOO elpd", f"{float(res.elpd_loo):.1f} (se {float(res.se):.1f}{note})")


def posterior_path(folder: str) -> str:
    """``folder/posterior.nc``, or a ConfigError saying how to make it."""
    path = os.path.join(folder, "posterior.nc")
    if not os.path.isfile(path):
        what = "no folder" if not os.path.isdir(folder) else "no posterior.nc in"
        raise ConfigError(f"{what} {folder!r}; run `bayesode fit --out {folder}` first.")
    return path


def load_posterior(folder: str):
    """The saved run in ``folder`` as a Posterior (its built-in model rebuilt from the stored recipe)."""
    path = posterior_path(folder)
    from ..results import Posterior

    try:
        return Posterior.load(path)
    except ConfigError:
        raise
    except (OSError, KeyError, ValueError) as e:
        raise ConfigError(f"could not read {path!r} as a saved bayesode run ({type(e).__name__}: {e}).") from None


def use_cores(count: int | None = None) -> None:
    """One JAX CPU device per core (or ``--devices``), so parallel chains use them (``--devices``).

    Possible only before JAX starts its backend (the first computation); a no-op
    afterwards (e.g. main() called from Python), or when the user set the count already.
    """
    import warnings

    from ..infer import use_cpu_cores

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the backend is already running
        use_cpu_cores(count)


def savefig(fig, folder: str, name: str) -> str:
    path = os.path.join(folder, name)
    fig.savefig(path, dpi=120)
    return path
