"""Output folders checked before any work (so a finished fit is never lost to its path), and what a fit writes there.

Two steps: :func:`check_out_dir` (before reading the data: only looks) and
:func:`prepare_out_dir` (after the data passed its checks, before the fit: creates the
folder and writes a probe file, which catches what a look cannot, e.g. a read-only mount
or a root-owned folder, since ``os.access`` answers yes to root everywhere).
"""

from __future__ import annotations

import os
import tempfile

from ..errors import ConfigError
from .common import savefig

FIT_OUTPUTS = ("posterior.nc", "summary.csv", "trajectories.png", "phase.png", "vector_field.png")


def _free_name(out: str) -> str:
    """``out-2``, ``out-3``, ...: the first that does not exist (suggested in the refusal)."""
    base = out.rstrip("/" + os.sep) or out
    n = 2
    while os.path.exists(f"{base}-{n}"):
        n += 1
    return f"{base}-{n}"


def _nearest_existing(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def check_out_dir(out: str, *, overwrite: bool, resume: bool, flag: str = "--out") -> None:
    """Refuse an output folder that cannot take this fit's results, before anything is computed.

    Refused: an existing file; a folder holding a previous fit (``posterior.nc``) unless
    ``overwrite`` or ``resume`` (a ``--checkpoint`` run picking up where it stopped); an output
    name taken by a folder; a folder (or, for a new one, its nearest existing parent) that is
    not writable.
    """
    if os.path.exists(out) and not os.path.isdir(out):
        raise ConfigError(f"{flag} {out!r} is an existing file, not a folder; choose a folder (created if needed).")
    if os.path.isdir(out):
        previous = os.path.join(out, "posterior.nc")
        if os.path.exists(previous) and not (overwrite or resume):
            raise ConfigError(
                f"{flag} {out!r} holds a previous fit ({previous}); add --overwrite to replace it, "
                f"or choose another folder, e.g. {flag} {_free_name(out)}."
            )
        for name in FIT_OUTPUTS:
            if os.path.isdir(os.path.join(out, name)):
                raise ConfigError(f"{flag} {out!r}: {name!r} there is a folder; the fit writes a file of that name.")
        where = out
    else:
        where = _nearest_existing(out)
        if not os.path.isdir(where):
            raise ConfigError(f"{flag} {out!r} cannot be created: {where!r} is a file, not a folder.")
    if not os.access(where, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {out!r}: the folder {where!r} is not writable; choose a folder you can write to.")


def prepare_out_dir(out: str, flag: str = "--out") -> None:
    """Create ``out`` and prove it takes a file (written and removed), or raise a ConfigError."""
    try:
        os.makedirs(out, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".bayesode-write-test-", dir=out)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise ConfigError(
            f"{flag} {out!r} is not writable ({e.strerror or e}); choose a folder you can write to."
        ) from None


def write_fit(post, out: str, until: float, prob: float, *, field: bool, key) -> list[str]:
    """Write posterior.nc, summary.csv and the plots of ``post`` into ``out``; returns the paths written.

    ``key`` seeds the predictive draws (the saved posterior predictive and the plots' bands).
    """
    nc = os.path.join(out, "posterior.nc")
    post.save(nc, key=key)
    summary = os.path.join(out, "summary.csv")
    post.summary().to_csv(summary)
    return [nc, summary, *_save_plots(post, out, until, prob, field=field, key=key)]


def _save_plots(post, out, until, prob, *, field: bool, key) -> list[str]:
    import matplotlib.pyplot as plt

    from ..plots import plot_phase, plot_trajectories, plot_vector_field

    written = []
    axes = plot_trajectories(post, until=until, prob=prob, key=key)
    written.append(savefig(axes[0].figure, out, "trajectories.png"))
    if post.model.spec.state_dim >= 2:
        ax = plot_phase(post, until=until, key=key)
        written.append(savefig(ax.figure, out, "phase.png"))
        if field:
            ax = plot_vector_field(post)
            written.append(savefig(ax.figure, out, "vector_field.png"))
    plt.close("all")
    return written
