"""The ArviZ export: InferenceData groups with readable names, dims and coordinates.

Group layout of ``Posterior.to_arviz(key=...)``:

- ``posterior`` and ``prior``: latent sites. ``y0`` (series, state), ``sigma`` (state),
  mechanistic parameters by name, neural weights as ``field.layer<i>.weight`` with dims
  ``(hidden<i+1>, hidden<i>)`` (units of the hidden layers; ``state`` at the input and the
  output, with the state names as coordinates) and biases ``field.layer<i>.bias``;
- ``posterior_predictive`` and ``prior_predictive``: ``trajectory`` (series, time, state) and
  one variable per observed column (``hare``, ``lynx``), noisy draws at the observed entries
  of that column, dim ``<column>_obs`` with non-index coords ``<column>_series`` and
  ``<column>_time``;
- ``observed_data``: the same per-column variables;
- ``log_likelihood``: ``obs`` (obs_id), every observed entry, columns one after another in
  state order (so ``az.loo`` and ``az.compare`` need no ``var_name``), coords ``obs_series``,
  ``obs_time``, ``obs_state``;
- ``constant_data``: ``ts`` (series, time), ``ys`` (series, time, state; NaN = missing);
- ``sample_stats``: ``diverging``, ``tree_depth``, ``n_steps``, ``lp``, ``energy``,
  ``acceptance_rate``, ``step_size``, ``solver_failures`` and ``solver_failures_<cause>``.

Observations are flat per column because missing values (NaN) cannot enter the log-likelihood;
one variable per column keeps ``az.plot_ppc`` from pooling states of different scales.
"""

from __future__ import annotations

import re

import arviz as az
import numpy as np

from ..model.priors import SITE_SIGMA, SITE_Y0

STATS_TO_ARVIZ = {
    "diverging": "diverging",
    "tree_depth": "tree_depth",
    "num_steps": "n_steps",
    "accept_prob": "acceptance_rate",
    "energy": "energy",
    "step_size": "step_size",
    "tree_depth_saturated": "tree_depth_saturated",
}
_LAYER = re.compile(r"^field\.(?P<module>(?:[A-Za-z_]\w*\.)*)layers\[(?P<i>\d+)\]\.(?P<leaf>weight|bias)$")


def state_names_of(spec, data) -> list[str]:
    return spec.trajectory_names(data)


def obs_dim_of(spec) -> str:
    return "state" if spec.observation_fn is None else "observable"


def _readable(site: str) -> str:
    """``field.layers[1].weight`` -> ``field.layer1.weight``; other names unchanged but for brackets."""
    m = _LAYER.match(site)
    if m:
        return f"field.{m['module']}layer{m['i']}.{m['leaf']}"
    return site.replace("[", "").replace("]", "")


def latent_layout(samples: dict, spec, data) -> tuple[dict, dict, dict]:
    """``(renamed, dims, coords)`` of the latent sites, and the map back to site names in ``renamed``.

    Returns
    -------
    variables : {variable name: site name}
    dims : {variable name: [dim, ...]} for the variables with named dims
    coords : {dim: values} the dims introduced here (hidden units)
    """
    states = state_names_of(spec, data)
    n_state, n_obs = len(states), data.num_observed
    variables, dims, coords = {}, {}, {}
    layers = {}  # module prefix -> {layer index: weight shape}
    for site, value in samples.items():
        name = _readable(site)
        variables[name] = site
        m = _LAYER.match(site)
        if m and m["leaf"] == "weight" and np.ndim(value) == 4:
            layers.setdefault(m["module"], {})[int(m["i"])] = np.shape(value)[2:]
    for name, site in variables.items():
        shape = np.shape(samples[site])[2:]
        m = _LAYER.match(site)
        if site == SITE_Y0 and shape == (data.num_series, n_state):
            dims[name] = ["series", "state"]
        elif site == SITE_SIGMA and shape == (n_obs,):
            dims[name] = [obs_dim_of(spec)]
        elif m and m["module"] in layers:
            i, last = int(m["i"]), max(layers[m["module"]])
            prefix = m["module"].replace(".", "_")
            out_dim = "state" if i == last and shape[0] == n_state else f"{prefix}hidden{i + 1}"
            in_dim = "state" if i == 0 and len(shape) == 2 and shape[1] == n_state else f"{prefix}hidden{i}"
            dims[name] = [out_dim, in_dim][: len(shape)]
            for d, size in zip(dims[name], shape):
                if d != "state":
                    coords[d] = np.arange(size)
    return variables, dims, coords


def column_names(data, reserved=()) -> list[str]:
    """One variable name per observed column: the column's name, or ``obs_<name>`` where that would read
    as another variable (``trajectory``, ``obs``, or a latent site in ``reserved``, e.g. a column ``y0``)."""
    taken = {"trajectory", "obs", *reserved}
    return [f"obs_{n}" if n in taken else str(n) for n in data.state_names]


def _per_column(values, data, reserved):
    """{column variable: (chain, draw, entries)} of a (chain, draw, series, time, column) array at observed entries."""
    mask = data.mask
    out = {}
    for k, name in enumerate(column_names(data, reserved)):
        s, t = np.nonzero(mask[:, :, k])
        out[name] = values[:, :, s, t, k]
    return out


def _column_dims_coords(data, reserved):
    dims, coords = {}, {}
    mask = data.mask
    for k, name in enumerate(column_names(data, reserved)):
        s, t = np.nonzero(mask[:, :, k])
        dims[name] = [f"{name}_obs"]
        coords[f"{name}_obs"] = np.arange(s.size)
    return dims, coords


def _column_coords(data, reserved):
    """Non-index coords: where each observed entry of each column sits."""
    out = {}
    for k, name in enumerate(column_names(data, reserved)):
        s, t = np.nonzero(data.mask[:, :, k])
        out[f"{name}_series"] = (f"{name}_obs", np.asarray(data.series_names)[s])
        out[f"{name}_time"] = (f"{name}_obs", data.to_dates(data.ts[s, t]))  # dates when the data had dates
    return out


def _joint(values, data):
    """(chain, draw, obs_id): every observed entry, columns one after another (state order)."""
    return np.concatenate(list(_per_column(values, data, ()).values()), axis=-1)


def _joint_coords(data):
    series, times, states = [], [], []
    for k, name in enumerate(data.state_names):
        s, t = np.nonzero(data.mask[:, :, k])
        series.append(np.asarray(data.series_names)[s])
        times.append(data.ts[s, t])
        states.append(np.full(s.size, name))
    return {
        "obs_series": ("obs_id", np.concatenate(series)),
        "obs_time": ("obs_id", data.to_dates(np.concatenate(times))),
        "obs_state": ("obs_id", np.concatenate(states)),
    }


def inference_data(samples, sample_stats, data, spec, derived, prior=None) -> az.InferenceData:
    """Build the InferenceData (layout in the module docstring).

    Parameters
    ----------
    samples : site -> (chain, draw, ...) posterior draws.
    sample_stats : stat -> (chain, draw) (NumPyro names; renamed to ArviZ's here).
    data : Data.
    spec : the model's ModelSpec.
    derived : ``model_draws`` output over the posterior, shaped (chain, draw, ...).
    prior : ``model_draws`` output over the prior, shaped (1, draw, ...), optional.
    """
    variables, latent_dims, latent_coords = latent_layout(samples, spec, data)
    reserved = set(variables)
    col_dims, col_coords = _column_dims_coords(data, reserved)
    obs_dim = obs_dim_of(spec)
    time_coord = data.to_dates(data.ts[0]) if data.shared_grid else np.arange(data.ts.shape[1])
    coords = {
        "series": list(data.series_names),
        "time": time_coord,
        "state": state_names_of(spec, data),
        obs_dim: list(data.state_names),
        "obs_id": np.arange(int(data.mask.sum())),
        **latent_coords,
        **col_coords,
    }
    dims = dict(
        latent_dims,
        **col_dims,
        trajectory=["series", "time", "state"],
        obs=["obs_id"],
        ts=["series", "time"],
        ys=["series", "time", obs_dim],
    )
    stats = {STATS_TO_ARVIZ.get(k, k): v for k, v in sample_stats.items()}
    if "potential_energy" in stats:
        stats["lp"] = -stats.pop("potential_energy")
    groups = dict(
        posterior={name: samples[site] for name, site in variables.items()},
        posterior_predictive={"trajectory": derived["trajectory"], **_per_column(derived["obs"], data, reserved)},
        # float64 whatever the fit's precision: ArviZ's PSIS-LOO on a float32 log-likelihood gave NaN where the
        # draws' densities spread widely (a Laplace mixture's lynx-hare fit), and the same values in float64 did not.
        log_likelihood={"obs": _joint(derived["log_lik"], data).astype(np.float64)},
        observed_data={name: v[0, 0] for name, v in _per_column(data.ys[None, None], data, reserved).items()},
        constant_data={"ts": data.ts, "ys": data.ys},
        sample_stats=stats or None,
    )
    if prior is not None:
        prior_vars = {name: prior["latents"][site] for name, site in variables.items() if site in prior["latents"]}
        groups["prior"] = prior_vars
        groups["prior_predictive"] = {"trajectory": prior["trajectory"], **_per_column(prior["obs"], data, reserved)}
    idata = az.from_dict(**groups, coords=coords, dims=dims)
    where = _column_coords(data, reserved)
    for group in ("posterior_predictive", "observed_data", "prior_predictive"):
        if group in idata.groups():
            setattr(idata, group, idata[group].assign_coords(where))
    idata.log_likelihood = idata.log_likelihood.assign_coords(_joint_coords(data))
    return idata


def site_names(idata) -> dict:
    """{posterior variable: model site} of an exported InferenceData (inverse of the readable names)."""
    import json

    attrs = idata.posterior.attrs
    if "bayesode_sites" in attrs:
        return json.loads(attrs["bayesode_sites"])
    return {v: v for v in idata.posterior.data_vars}
