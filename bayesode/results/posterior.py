"""The fit result: ArviZ export with dims and coords, prediction, diagnostics, save/load.

The only module that imports ArviZ. Group layout of ``to_arviz()``:

- ``posterior``: latent sites; ``y0`` (series, state), ``sigma`` (state), mechanistic
  parameters by name, neural weights ``field.*``;
- ``posterior_predictive``: ``trajectory`` (series, time, state) and ``obs``
  (obs_id) noisy draws at each observed entry;
- ``log_likelihood``: ``obs`` (obs_id), so ``az.loo`` works;
- ``observed_data``: ``obs`` (obs_id); non-index coords ``obs_series``,
  ``obs_time``, ``obs_state`` say where each entry sits;
- ``constant_data``: ``ts`` (series, time), ``ys`` (series, time, state; NaN = missing);
- ``sample_stats``: ``diverging``, ``tree_depth``, ``n_steps``, ``lp``, ``energy``,
  ``acceptance_rate``, ``step_size``, ``solver_failures`` and ``solver_failures_<cause>``.

``obs`` is flat over observed entries because missing values (NaN) cannot
enter ``log_likelihood`` and ArviZ requires the three ``obs`` to match.
"""

from __future__ import annotations

import importlib.metadata
import json
from dataclasses import dataclass
from dataclasses import field as dc_field

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from numpyro import handlers

from ..datasets.data import Data, check_times
from ..errors import ConfigError, DataError
from ..solving.diffeq import FAILURE_ADVICE, FAILURE_CAUSES

_STATS_TO_ARVIZ = {
    "diverging": "diverging",
    "tree_depth": "tree_depth",
    "num_steps": "n_steps",
    "accept_prob": "acceptance_rate",
    "energy": "energy",
    "step_size": "step_size",
    "tree_depth_saturated": "tree_depth_saturated",
}
RHAT_MAX = 1.01
ESS_MIN_PER_CHAIN = 100
EBFMI_MIN = 0.2


def package_versions() -> dict:
    out = {}
    for name in ("bayesode", "jax", "jaxlib", "numpyro", "diffrax", "equinox", "arviz", "numpy"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "unknown"
    return out


def _derived_fn(model, md_shapes, predict_shape):
    """Compiled, vectorised: per draw -> trajectory, pointwise log-lik, noisy obs (+ predictions)."""
    cache = model.__dict__.setdefault("_bayesode_derived", {})
    k = (md_shapes, predict_shape)
    if k not in cache:

        def one(params, key, md, predict_ts):
            seeded = handlers.seed(handlers.substitute(model, data=params), key)
            tr = handlers.trace(seeded).get_trace(md, predict_ts=predict_ts)
            site = tr["obs"]
            out = {
                "trajectory": tr["trajectory"]["value"],
                "log_lik": site["fn"].log_prob(site["value"]),
                "obs": site["fn"].sample(jax.random.fold_in(key, 1)),
                "status": tr["solver_status"]["value"],
            }
            if predict_ts is not None:
                out["trajectory_predict"] = tr["trajectory_predict"]["value"]
                out["obs_predict"] = tr["obs_predict"]["value"]
                out["predict_status"] = tr["predict_status"]["value"]
            return out

        def many(params, keys, md, predict_ts):
            return jax.lax.map(lambda pk: one(pk[0], pk[1], md, predict_ts), (params, keys), batch_size=256)

        cache[k] = jax.jit(many)
    return cache[k]


@dataclass(eq=False)
class Posterior:
    """Posterior draws with everything needed to predict, diagnose, plot and save.

    Attributes
    ----------
    samples : dict of site -> (chain, draw, ...) arrays (constrained latent sites).
    sample_stats : dict of stat -> (chain, draw) arrays (empty for SVI).
    data : the :class:`Data` fitted.
    model : the model function (``model.spec``); None after ``load`` without a model.
    settings : method, seed, chain method, sizes, timings, package versions.
    losses : SVI loss history, if SVI was run.
    """

    samples: dict
    sample_stats: dict
    data: Data
    model: object
    settings: dict
    losses: np.ndarray | None = None
    guide_state: object = None
    _idata: az.InferenceData | None = dc_field(default=None, repr=False)

    @property
    def num_chains(self) -> int:
        return next(iter(self.samples.values())).shape[0]

    @property
    def num_draws(self) -> int:
        return next(iter(self.samples.values())).shape[1]

    def _flat_samples(self):
        return {k: jnp.asarray(v.reshape((-1,) + v.shape[2:])) for k, v in self.samples.items()}

    def _require_model(self):
        if self.model is None:
            raise ConfigError(
                "this Posterior was loaded without its model; pass `model=` to Posterior.load (the same "
                "make_model(...) call used for the fit)."
            )

    def _run_derived(self, predict_ts=None, key=0):
        self._require_model()
        md = self.data.model_data()
        shapes = md.shapes()
        fn = _derived_fn(self.model, shapes, None if predict_ts is None else predict_ts.shape)
        flat = self._flat_samples()
        n = self.num_chains * self.num_draws
        keys = jax.random.split(jax.random.PRNGKey(key), n)
        out = jax.device_get(fn(flat, keys, md, predict_ts))
        return {k: np.asarray(v).reshape((self.num_chains, self.num_draws) + v.shape[1:]) for k, v in out.items()}

    # ------------------------------------------------------------ ArviZ
    def to_arviz(self) -> az.InferenceData:
        """InferenceData with named dims and real coordinates (computed once, then cached)."""
        if self._idata is not None:
            return self._idata
        d = self.data
        der = self._run_derived()
        mask = d.mask
        S, T, K = d.ys.shape
        spec = self.model.spec
        state_names = list(d.state_names) if spec.observation_fn is None else [f"x{i}" for i in range(spec.state_dim)]
        obs_dim = "state" if spec.observation_fn is None else "observable"
        time_coord = d.ts[0] if d.shared_grid else np.arange(T)
        coords = {"series": list(d.series_names), "time": time_coord, "state": state_names, obs_dim: list(d.state_names)}
        idx = np.nonzero(mask)  # observed entries, in (series, time, column) order
        n_obs = idx[0].size
        dims = {k: None for k in self.samples}
        if "y0" in self.samples:
            dims["y0"] = ["series", "state"]
        if "sigma" in self.samples and self.samples["sigma"].shape[2:] == (K,):
            dims["sigma"] = [obs_dim]
        posterior = {k: v for k, v in self.samples.items()}
        post_dims = {k: v for k, v in dims.items() if v is not None}

        flat = lambda a: a[:, :, idx[0], idx[1], idx[2]]  # noqa: E731
        ppc = {"trajectory": der["trajectory"], "obs": flat(der["obs"])}
        loglik = {"obs": flat(der["log_lik"])}
        observed = {"obs": d.ys[idx]}
        constant = {"ts": d.ts, "ys": d.ys}
        all_dims = dict(
            post_dims,
            trajectory=["series", "time", "state"],
            obs=["obs_id"],
            ts=["series", "time"],
            ys=["series", "time", obs_dim],
        )
        stats = {}
        for k, v in self.sample_stats.items():
            stats[_STATS_TO_ARVIZ.get(k, k)] = v
        if "potential_energy" in stats:
            stats["lp"] = -stats.pop("potential_energy")
        idata = az.from_dict(
            posterior=posterior,
            posterior_predictive=ppc,
            log_likelihood=loglik,
            observed_data=observed,
            constant_data=constant,
            sample_stats=stats or None,
            coords=dict(coords, obs_id=np.arange(n_obs)),
            dims=all_dims,
        )
        obs_coords = {
            "obs_series": ("obs_id", np.asarray(d.series_names)[idx[0]]),
            "obs_time": ("obs_id", d.ts[idx[0], idx[1]]),
            "obs_state": ("obs_id", np.asarray(d.state_names)[idx[2]]),
        }
        for group in ("posterior_predictive", "log_likelihood", "observed_data"):
            setattr(idata, group, getattr(idata, group).assign_coords(obs_coords))
        attrs = {
            "bayesode_settings": json.dumps(self.settings, default=str),
            "bayesode_time_name": d.time_name,
            "bayesode_t0": json.dumps(d.t0.tolist()),
            "bayesode_lengths": json.dumps(d.lengths.tolist()),
        }
        if spec.recipe is not None:
            attrs["bayesode_recipe"] = json.dumps(spec.recipe)
        if self.losses is not None:
            idata.add_groups({"svi": xr.Dataset({"loss": ("step", np.asarray(self.losses))})}, warn_on_custom_groups=False)
        for group in idata.groups():
            idata[group].attrs.update(attrs)
        self._idata = idata
        return idata

    # ------------------------------------------------------------ prediction
    def predict(self, ts, *, key: int = 0) -> xr.Dataset:
        """Posterior predictive at new times (raw time units), for every series.

        Parameters
        ----------
        ts : (time',) increasing times; each must be >= the series' ``t0``.
            Times past the data forecast; times inside interpolate.

        Returns
        -------
        xarray.Dataset with ``trajectory`` and noisy ``obs`` (chain, draw, series,
        time, state) and ``failed`` (chain, draw, series) for draws whose solve failed.
        """
        ts = check_times(ts, "ts")
        d = self.data
        early = np.flatnonzero(ts[0] < d.t0)
        if early.size:
            raise DataError(
                f"`ts` starts at {ts[0]}, before the start t0={d.t0[early[0]]} of series {d.series_names[early[0]]!r}; "
                "predictions run forward from each series' t0."
            )
        rel = np.broadcast_to(ts - d.t_ref, (d.num_series, ts.size))
        der = self._run_derived(jnp.asarray(rel, dtype=d.model_data().ts.dtype), key=key)
        spec = self.model.spec
        state_names = list(d.state_names) if spec.observation_fn is None else [f"x{i}" for i in range(spec.state_dim)]
        obs_dim = "state" if spec.observation_fn is None else "observable"
        coords = {"series": list(d.series_names), "time": ts, "state": state_names, obs_dim: list(d.state_names)}
        dims5 = ("chain", "draw", "series", "time")
        return xr.Dataset(
            {
                "trajectory": (dims5 + ("state",), der["trajectory_predict"]),
                "obs": (dims5 + (obs_dim,), der["obs_predict"]),
                "failed": (("chain", "draw", "series"), der["predict_status"] != 0),
            },
            coords=coords,
        )

    # ------------------------------------------------------------ diagnostics
    def diagnostics(self) -> dict:
        """R-hat, bulk/tail ESS, divergences, tree-depth saturation, E-BFMI, solver failures; plus plain-word warnings.

        R-hat and ESS are taken over the interpretable quantities: every
        non-neural posterior variable and the trajectories (neural weights
        are permutation-symmetric, so their R-hat says little).
        """
        idata = self.to_arviz()
        out: dict = {"num_chains": self.num_chains, "num_draws": self.num_draws, "warnings": []}
        if self.num_chains >= 2 and self.num_draws >= 4:
            names = [v for v in idata.posterior.data_vars if not v.startswith("field.")]
            ds = xr.merge([idata.posterior[names], idata.posterior_predictive[["trajectory"]]])
            rhat = az.rhat(ds)
            bulk = az.ess(ds, method="bulk")
            tail = az.ess(ds, method="tail")
            out["rhat_max"] = float(max(float(rhat[v].max()) for v in rhat.data_vars))
            out["ess_bulk_min"] = float(min(float(bulk[v].min()) for v in bulk.data_vars))
            out["ess_tail_min"] = float(min(float(tail[v].min()) for v in tail.data_vars))
            if not out["rhat_max"] <= RHAT_MAX:
                out["warnings"].append(
                    f"R-hat is {out['rhat_max']:.3f} (> {RHAT_MAX}): chains disagree; run longer or reparametrise."
                )
            need = ESS_MIN_PER_CHAIN * self.num_chains
            if not min(out["ess_bulk_min"], out["ess_tail_min"]) >= need:
                out["warnings"].append(
                    f"effective sample size is low (bulk {out['ess_bulk_min']:.0f}, tail {out['ess_tail_min']:.0f}; "
                    f"want >= {need}): draw more samples before trusting intervals."
                )
        st = self.sample_stats
        if st:
            out["divergences"] = int(np.sum(st["diverging"]))
            out["tree_depth_saturated"] = float(np.mean(st["tree_depth_saturated"]))
            energy = st["energy"]
            if energy.shape[1] > 2:
                out["ebfmi_min"] = float(np.min(az.bfmi(energy)))
                if out["ebfmi_min"] < EBFMI_MIN:
                    out["warnings"].append(
                        f"E-BFMI is {out['ebfmi_min']:.2f} (< {EBFMI_MIN}): momentum resampling explores energy "
                        "poorly; the posterior may have heavy tails or a funnel."
                    )
            if out["divergences"]:
                out["warnings"].append(
                    f"{out['divergences']} divergent transitions: the sampler could not follow the posterior "
                    "everywhere; raise target_accept_prob or reparametrise."
                )
            if out["tree_depth_saturated"] > 0.01:
                out["warnings"].append(
                    f"{out['tree_depth_saturated']:.0%} of iterations hit the maximum tree depth: sampling is "
                    "inefficient; raise max_tree_depth or rescale the model."
                )
            failures = {c: int(np.sum(st.get(f"solver_failures_{c}", 0))) for c in FAILURE_CAUSES.values()}
            out["solver_failures"] = int(np.sum(st["solver_failures"]))
            out["solver_failures_by_cause"] = {c: n for c, n in failures.items() if n}
            out["warmup_solver_failures"] = self.settings.get("warmup_solver_failures", {}).get("total", 0)
            if out["solver_failures"]:
                advice = "; ".join(FAILURE_ADVICE[c] for c in out["solver_failures_by_cause"])
                out["warnings"].append(
                    f"{out['solver_failures']} ODE solves failed during sampling ({out['solver_failures_by_cause']}); "
                    f"they were rejected, not used. If frequent: {advice}."
                )
        for r in self.settings.get("restarted_chains", []):
            out["warnings"].append(
                f"chain {r['chain']} was stuck in warmup where the log density is {r['potential'] - r['donor_potential']:.0f} "
                f"lower than chain {r['donor']}'s (a poor local mode) and restarted from that chain's state at "
                f"iteration {r['iteration']}; restart_stuck_chains=False keeps chains where they go."
            )
        report = self.settings.get("ensemble", {}).get("report")
        if report is not None:  # a full-weight fit: its function-space situation (diagnostics.fit_full_weight)
            out["situation"] = report["situation"]
            out["function_space_rhat_within_max"] = report["rhat_within_max"]
            if report["situation"] != "one mode that mixes":
                out["warnings"].append(report["message"])
        if self.settings.get("interrupted"):
            out["warnings"].append("the run was interrupted: these draws are partial.")
        return out

    def summary(self, **kwargs):
        """``az.summary`` of the non-neural posterior variables (a pandas DataFrame)."""
        idata = self.to_arviz()
        names = [v for v in idata.posterior.data_vars if not v.startswith("field.")]
        return az.summary(idata, var_names=names, **kwargs)

    # ------------------------------------------------------------ persistence
    def save(self, path) -> None:
        """Write the InferenceData (every group, settings in attrs) to netCDF."""
        self.to_arviz().to_netcdf(str(path))

    @classmethod
    def load(cls, path, model=None) -> Posterior:
        """Read a saved fit. ``model``: the same ``make_model(...)`` result, or None to rebuild a
        built-in model from its stored recipe (``bayesode fit`` models)."""
        idata = az.from_netcdf(str(path))
        attrs = idata.posterior.attrs
        settings = json.loads(attrs["bayesode_settings"])
        if model is None and "bayesode_recipe" in attrs:
            from ..model.presets import from_recipe

            model = from_recipe(json.loads(attrs["bayesode_recipe"]))
        cd = idata.constant_data
        lengths = np.asarray(json.loads(attrs["bayesode_lengths"]))
        obs_dim = "state" if "state" in cd["ys"].dims else "observable"
        data = Data(
            ts=np.asarray(cd["ts"].values, dtype=np.float64),
            ys=np.asarray(cd["ys"].values, dtype=np.float64),
            lengths=lengths,
            t0=np.asarray(json.loads(attrs["bayesode_t0"]), dtype=np.float64),
            state_names=tuple(str(s) for s in cd[obs_dim].values),
            series_names=tuple(str(s) for s in cd["series"].values),
            time_name=attrs.get("bayesode_time_name", "time"),
        )
        samples = {k: np.asarray(v.values) for k, v in idata.posterior.data_vars.items()}
        inv = {v: k for k, v in _STATS_TO_ARVIZ.items()}
        stats = {}
        if "sample_stats" in idata.groups():
            for k, v in idata.sample_stats.data_vars.items():
                if k == "lp":
                    stats["potential_energy"] = -np.asarray(v.values)
                else:
                    stats[inv.get(k, k)] = np.asarray(v.values)
        losses = np.asarray(idata.svi["loss"].values) if "svi" in idata.groups() else None
        post = cls(samples=samples, sample_stats=stats, data=data, model=model, settings=settings, losses=losses)
        post._idata = idata
        return post
