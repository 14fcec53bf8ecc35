"""The result of :func:`~bayesode.diagnostics.posterior_stability` as an ``xarray.Dataset``: dims, coords,
flag meanings and the posterior probabilities, with the definitions they rest on."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..solving import Status
from .fixed_points import KIND_NAMES, KIND_NONE

DEFINITIONS = (
    "stable fixed point: a fixed point whose Jacobian eigenvalues all have Re < 0 (stable node or focus); "
    "region: the bounding box of the data (of the draw's fitted trajectories when the model has an "
    "observation_fn), widened by `margin` times its width on each side (not below 0 for non-negative data); "
    "bounded: the Lyapunov run succeeded and every state after the burn-in stayed in the region widened to "
    "`bound_scale` times its width; chaos: largest exponent > lyapunov_tol along a bounded trajectory; "
    "stable limit cycle: no stable fixed point in the region AND |largest exponent| < lyapunov_tol along "
    "a bounded trajectory."
)


def stability_dataset(out, data, spec, draw_idx, num_burn, attrs) -> xr.Dataset:
    """The per-draw arrays of :func:`~bayesode.diagnostics.posterior_stability` as a Dataset.

    ``out`` maps names to (chain, draw, ...) arrays; ``draw_idx`` are the draws' indices in
    the posterior; ``attrs`` the settings of the run (kept as attributes). Fixed-point arrays
    are cut to the most fixed points any draw found; the attributes add the posterior
    probabilities of stability (and of chaos and a limit cycle when exponents were run).
    """
    keep = max(int(out["num_fixed_points"].max()), 1)
    state_names = list(data.state_names) if spec.observation_fn is None else [f"x{i}" for i in range(spec.state_dim)]
    dims = {
        "fixed_point": ("chain", "draw", "fixed_point_id", "state"),
        "fixed_point_valid": ("chain", "draw", "fixed_point_id"),
        "fixed_point_kind": ("chain", "draw", "fixed_point_id"),
        "fixed_point_in_region": ("chain", "draw", "fixed_point_id"),
        "eigenvalue_real": ("chain", "draw", "fixed_point_id", "eigen"),
        "eigenvalue_imag": ("chain", "draw", "fixed_point_id", "eigen"),
        "region_low": ("chain", "draw", "state"),
        "region_high": ("chain", "draw", "state"),
        "lyapunov_running": ("chain", "draw", "window"),
    }
    variables = {}
    for name, value in out.items():
        d = dims.get(name, ("chain", "draw"))
        if "fixed_point_id" in d:
            value = value[:, :, :keep]
        variables[name] = (d, value)
    coords = {
        "chain": np.arange(out["num_fixed_points"].shape[0]),
        "draw": draw_idx,
        "fixed_point_id": np.arange(keep),
        "state": state_names,
        "eigen": np.arange(spec.state_dim),
    }
    if "lyapunov_running" in out:
        dt = attrs["dt_renorm"]
        coords["window"] = dt * np.arange(num_burn + 1, num_burn + out["lyapunov_running"].shape[-1] + 1)
    ds = xr.Dataset(variables, coords=coords)
    ds["fixed_point_kind"].attrs["flag_values"] = [*range(len(KIND_NAMES) - 1), KIND_NONE]
    ds["fixed_point_kind"].attrs["flag_meanings"] = " ".join(k.replace(" ", "_") for k in KIND_NAMES)
    probs = {
        "p_stable_fixed_point": float(np.mean(out["has_stable_fixed_point"])),
        "p_stable_fixed_point_in_region": float(np.mean(out["stable_fixed_point_in_region"])),
    }
    if "lyapunov_exponent" in out:
        probs.update(
            p_chaos=float(np.mean(out["chaotic"])),
            p_limit_cycle=float(np.mean(out["limit_cycle"])),
            p_lyapunov_failed=float(np.mean(out["lyapunov_status"] != Status.OK)),
        )
    ds.attrs.update(probs)
    ds.attrs.update(attrs)
    ds.attrs["kind_names"] = list(KIND_NAMES)
    ds.attrs["definitions"] = DEFINITIONS
    return ds
