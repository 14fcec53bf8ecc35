"""Drawing of a posterior stability analysis (every number comes from :mod:`bayesode.diagnostics`)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..diagnostics import KIND_NAMES, KIND_NONE
from ..errors import ConfigError


def plot_stability(ds: xr.Dataset, ax=None, *, bins: int = 30):
    """Posterior histogram of the largest Lyapunov exponent and fixed-point eigenvalues in the complex plane.

    Parameters
    ----------
    ds : the Dataset from :func:`bayesode.diagnostics.posterior_stability`.
    ax : pair of matplotlib Axes, optional
        Where to draw (exponent histogram, eigenvalues); default a new 1x2 figure.
    bins : int
        Histogram bins (default 30).

    Returns
    -------
    NumPy array of the two Axes (as every bayesode plot: take ``ax``, return axes).
        The histogram has ``bins`` bars (none when exponents were not computed); the
        scatter has one point per eigenvalue of every valid fixed point of every draw,
        one colour per kind.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        axes = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")[1]
    else:
        axes = np.atleast_1d(ax).ravel()
        if len(axes) != 2:
            raise ConfigError(f"`ax` must be two matplotlib Axes (histogram, eigenvalues); got {len(axes)}.")
    hist_ax, eig_ax = axes[0], axes[1]

    if "lyapunov_exponent" in ds:
        lam = np.asarray(ds["lyapunov_exponent"]).ravel()
        lam = lam[np.isfinite(lam)]
        hist_ax.hist(lam, bins=bins, color="C0", alpha=0.8)
        tol = ds.attrs.get("lyapunov_tol")
        hist_ax.axvline(0.0, color="k", lw=1)
        if tol is not None and np.isfinite(tol):
            for x in (-tol, tol):
                hist_ax.axvline(x, color="grey", ls="--", lw=1)
        p = ds.attrs.get("p_chaos", float("nan"))
        hist_ax.set_title(f"largest Lyapunov exponent (P(chaos) = {p:.2f})")
        hist_ax.set_xlabel("exponent (1 / time)")
        hist_ax.set_ylabel("draws")
    else:
        hist_ax.text(0.5, 0.5, "Lyapunov exponents not computed", ha="center", va="center", transform=hist_ax.transAxes)

    kind = np.asarray(ds["fixed_point_kind"])
    re = np.asarray(ds["eigenvalue_real"])
    im = np.asarray(ds["eigenvalue_imag"])
    for code, name in enumerate(KIND_NAMES[:KIND_NONE]):
        sel = kind == code
        if sel.any():
            eig_ax.scatter(re[sel].ravel(), im[sel].ravel(), s=10, alpha=0.6, color=f"C{code}", label=name)
    eig_ax.axvline(0.0, color="k", lw=1)
    eig_ax.axhline(0.0, color="k", lw=1)
    eig_ax.set_xlabel("Re(eigenvalue)")
    eig_ax.set_ylabel("Im(eigenvalue)")
    eig_ax.set_title(f"fixed points (P(stable) = {ds.attrs.get('p_stable_fixed_point', float('nan')):.2f})")
    if eig_ax.collections:
        eig_ax.legend(fontsize="small")
    return np.asarray(axes)
