"""The fit result: ArviZ export, prediction, diagnostics (the sampler's statistics read in :mod:`.sampler_report`), save/load.

The InferenceData layout is :mod:`.export`.
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

from ..checks import as_key, positive_int, seed_of
from ..datasets import Data, check_times
from ..errors import ConfigError, DataError
from ..solving.precision import float_dtype, precision_scope
from .export import STATS_TO_ARVIZ, inference_data, latent_layout, obs_dim_of, site_names, state_names_of
from .predictive import model_draws
from .sampler_report import sampler_report

RHAT_MAX = 1.01
ESS_MIN_PER_CHAIN = 100
NEURAL_LINEAR_CAVEAT = (
    "neural-linear posterior: the hidden layers are fixed at an SVI fit to every data point and only the output "
    "layer, y0 and the noise are sampled, so the bands leave out the hidden layers' uncertainty (too narrow away "
    "from the data) and az.loo / az.compare on this fit are optimistic (the hidden layers saw each point LOO leaves "
    "out). Every weight gets a posterior with `bayesode fit --bayesian-layers all` (bayesode.fit_full_weight)."
)


def package_versions() -> dict:
    out = {}
    for name in ("bayesode", "jax", "jaxlib", "numpyro", "diffrax", "equinox", "arviz", "numpy"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "unknown"
    return out


@dataclass(eq=False)
class Posterior:
    """Posterior draws with everything needed to predict, diagnose, plot and save.

    Attributes
    ----------
    samples : dict of site -> (chain, draw, ...) arrays (constrained latent sites).
    sample_stats : dict of stat -> (chain, draw) arrays (empty for SVI).
    data : the :class:`Data` fitted.
    model : the model function (``model.spec``); None after ``load`` without a model.
    settings : method, seed, chain method, sizes, timings, package versions, and
        ``precision`` (``"float32"`` or ``"float64"``: what the fit ran in; predictions
        and exports of this posterior run in it too).
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
    _idata_seed: object = dc_field(default=None, repr=False)

    @property
    def num_chains(self) -> int:
        return next(iter(self.samples.values())).shape[0]

    @property
    def num_draws(self) -> int:
        return next(iter(self.samples.values())).shape[1]

    @property
    def precision(self) -> str:
        """``"float32"`` or ``"float64"``: the precision the fit ran in (``settings["precision"]``;
        for a fit saved before that was recorded, the draws' dtype)."""
        recorded = self.settings.get("precision")
        if recorded is not None:
            return recorded
        first = np.asarray(next(iter(self.samples.values())))
        return "float64" if first.dtype == np.float64 else "float32"

    def _flat_samples(self):
        return {k: jnp.asarray(v.reshape((-1,) + v.shape[2:])) for k, v in self.samples.items()}

    def require_model(self):
        """Raise a ConfigError naming the fix when the model is missing (a fit loaded without ``model=``)."""
        if self.model is None:
            raise ConfigError(
                "this Posterior was loaded without its model; pass `model=` to Posterior.load (the same "
                "make_model(...) call used for the fit)."
            )

    def _run_derived(self, key, predict_ts=None):
        """Per-draw trajectory, log-likelihood and noisy draws (see ``model_draws``), shaped (chain, draw, ...)."""
        self.require_model()
        n = self.num_chains * self.num_draws
        with precision_scope(self.precision):
            keys = jax.random.split(as_key(key), n)
            out = model_draws(self.model, self.data.model_data(), keys, self._flat_samples(), predict_ts=predict_ts)
        return {k: v.reshape((self.num_chains, self.num_draws) + v.shape[1:]) for k, v in out.items()}

    # ------------------------------------------------------------ ArviZ
    def to_arviz(self, *, key=None, prior_draws: int = 500) -> az.InferenceData:
        """InferenceData with readable names, named dims and real coordinates (layout: :mod:`.export`).

        Parameters
        ----------
        key : PRNG key or int seed
            Seed of the draws made here: the noisy posterior predictive and the prior
            (``prior``, ``prior_predictive``). Required the first time; without it a later
            call returns the InferenceData already made (or loaded); a new key makes new draws.
        prior_draws : int
            Draws in the ``prior`` and ``prior_predictive`` groups (default 500; 0 leaves
            them out). One vectorised, compiled pass, cached with the model like the others.
        """
        if key is None:
            if self._idata is None:
                raise ConfigError(
                    "`key` is required: Posterior.to_arviz(key=...) draws the noisy posterior predictive "
                    "and the prior; pass e.g. key=jax.random.key(0) or an int seed."
                )
            return self._idata
        prior_draws = positive_int("prior_draws", prior_draws, allow_zero=True)
        seed = (seed_of(key), prior_draws)
        if self._idata is not None and self._idata_seed == seed:
            return self._idata
        d = self.data
        spec = self.model.spec
        k_post, k_prior = jax.random.split(as_key(key))
        derived = self._run_derived(k_post)
        prior = None
        if prior_draws:
            keys = jax.random.split(k_prior, prior_draws)
            with precision_scope(self.precision):
                out = model_draws(self.model, d.model_data(), keys)
            prior = jax.tree_util.tree_map(lambda v: v[None], out)  # one chain
        idata = inference_data(self.samples, self.sample_stats, d, spec, derived, prior)
        variables, _, _ = latent_layout(self.samples, spec, d)
        attrs = {
            "bayesode_settings": json.dumps(self.settings, default=str),
            "bayesode_time_name": d.time_name,
            "bayesode_time_origin": d.time_origin or "",  # netCDF attrs hold no None
            "bayesode_t0": json.dumps(d.t0.tolist()),
            "bayesode_lengths": json.dumps(d.lengths.tolist()),
            "bayesode_sites": json.dumps(variables),
            # Also inside bayesode_settings; on its own so that a reader of the file sees it.
            "bayesode_precision": self.precision,
            # Also inside bayesode_settings; on its own so that a reader of the file sees it.
            "bayesode_fit_failures": json.dumps(self.settings.get("fit_failures", [])),
        }
        if spec.recipe is not None:
            attrs["bayesode_recipe"] = json.dumps(spec.recipe)
        if self.losses is not None:
            idata.add_groups({"svi": xr.Dataset({"loss": ("step", np.asarray(self.losses))})}, warn_on_custom_groups=False)
        for group in idata.groups():
            idata[group].attrs.update(attrs)
        if self.caveats():  # where az.loo / az.compare read from, for whoever opens the file
            idata.log_likelihood.attrs["bayesode_caveat"] = " ".join(self.caveats())
        self._idata, self._idata_seed = idata, seed
        return idata

    # ------------------------------------------------------------ prediction
    def predict(self, ts, *, key) -> xr.Dataset:
        """Posterior predictive at new times (raw time units), for every series.

        Parameters
        ----------
        ts : (time',) increasing times; each must be >= the series' ``t0``.
            Times past the data forecast; times inside interpolate. For data with
            dates, dates too (ISO text, ``datetime64``, a pandas ``DatetimeIndex``).
        key : PRNG key or int seed (required, keyword-only)
            Seed of the noisy draws; the same key gives the same draws.

        Returns
        -------
        xarray.Dataset with ``trajectory`` and noisy ``obs`` (chain, draw, series,
        time, state) and ``failed`` (chain, draw, series) for draws whose solve failed.
        The ``time`` coordinate holds dates when the data came with dates (as in
        :meth:`to_arviz`), else the times.
        """
        d = self.data
        ts = check_times(d.as_times(ts, "ts"), "ts")
        early = np.flatnonzero(ts[0] < d.t0)
        if early.size:
            start, first = d.to_dates(np.array([ts[0], d.t0[early[0]]]))
            raise DataError(
                f"`ts` starts at {start}, before the start t0={first} of series {d.series_names[early[0]]!r}; "
                "predictions run forward from each series' t0."
            )
        rel = np.broadcast_to(ts - d.t_ref, (d.num_series, ts.size))
        with precision_scope(self.precision):
            der = self._run_derived(key, jnp.asarray(rel, dtype=float_dtype(self.precision)))
        spec = self.model.spec
        obs_dim = "state" if spec.observation_fn is None else "observable"
        coords = {"series": list(d.series_names), "time": d.to_dates(ts), "state": state_names_of(spec, d), obs_dim: list(d.state_names)}
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
    def caveats(self) -> list[str]:
        """What this kind of posterior leaves out, in plain words (not a failure of this run)."""
        if "hidden_fit" in self.settings:  # run_neural_linear: `bayesode fit`'s default
            return [NEURAL_LINEAR_CAVEAT]
        return []

    def diagnostics(self) -> dict:
        """R-hat, bulk/tail ESS, divergences, tree-depth saturation, E-BFMI, solver failures; plus plain-word warnings.

        R-hat and ESS are taken over the interpretable quantities: every
        non-neural posterior variable and the trajectories (neural weights
        are permutation-symmetric, so their R-hat says little).
        """
        # A fit that mostly failed (run_nuts(on_failure="continue")) says so first.
        fit_failures = list(self.settings.get("fit_failures", []))
        out: dict = {"num_chains": self.num_chains, "num_draws": self.num_draws, "fit_failures": fit_failures,
                     "warnings": [f"FIT FAILED: {m}" for m in fit_failures]}  # fmt: skip
        if self.num_chains >= 2 and self.num_draws >= 4:
            ds = self._convergence_dataset()
            rhat = az.rhat(ds)
            bulk = az.ess(ds, method="bulk")
            tail = az.ess(ds, method="tail")
            out["rhat_max"] = float(max(float(rhat[v].max()) for v in rhat.data_vars))
            out["ess_bulk_min"] = float(min(float(bulk[v].min()) for v in bulk.data_vars))
            out["ess_tail_min"] = float(min(float(tail[v].min()) for v in tail.data_vars))
            # Independent draws (a Laplace mixture's): R-hat and ESS only restate the number of draws.
            independent = self.settings.get("method") == "laplace-mixture"
            if not out["rhat_max"] <= RHAT_MAX and not independent:
                out["warnings"].append(
                    f"R-hat is {out['rhat_max']:.3f} (> {RHAT_MAX}): chains disagree; run longer or reparametrise."
                )
            need = ESS_MIN_PER_CHAIN * self.num_chains
            if not min(out["ess_bulk_min"], out["ess_tail_min"]) >= need and not independent:
                out["warnings"].append(
                    f"effective sample size is low (bulk {out['ess_bulk_min']:.0f}, tail {out['ess_tail_min']:.0f}; "
                    f"want >= {need}): draw more samples before trusting intervals."
                )
        st = self.sample_stats
        if "diverging" in st:  # a sampler's statistics (a Laplace mixture's draws carry only their member)
            entries, warnings = sampler_report(st, self.settings)
            out.update(entries)
            out["warnings"].extend(warnings)
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
        out["caveats"] = self.caveats()
        return out

    def summary(self, **kwargs):
        """``az.summary`` of the non-neural posterior variables (a pandas DataFrame)."""
        posterior = self._idata.posterior if self._idata is not None else self._posterior_group()
        names = [v for v in posterior.data_vars if not v.startswith("field.")]
        return az.summary(posterior, var_names=names, **kwargs)

    def _posterior_group(self) -> xr.Dataset:
        """The ``posterior`` group alone, with its dims and coords (no model run, nothing drawn)."""
        variables, dims, coords = latent_layout(self.samples, self.model.spec, self.data)
        d = self.data
        coords = dict(coords, series=list(d.series_names), state=state_names_of(self.model.spec, d))
        coords[obs_dim_of(self.model.spec)] = list(d.state_names)
        posterior = {name: self.samples[site] for name, site in variables.items()}
        return az.from_dict(posterior=posterior, coords=coords, dims=dims).posterior

    def fitted(self) -> dict:
        """The noise-free fit at the data times: nothing random is drawn, so no key.

        Returns
        -------
        dict with ``trajectory`` (chain, draw, series, time, state) and ``status``
        (chain, draw, series), the solver status of each draw (0 = solved).
        """
        self.require_model()
        n = self.num_chains * self.num_draws
        # every latent is substituted and only deterministic outputs are kept, so the keys change nothing
        zeros = jnp.zeros((n, 2), dtype=jnp.uint32)
        with precision_scope(self.precision):
            der = model_draws(self.model, self.data.model_data(), zeros, self._flat_samples())
        lead = (self.num_chains, self.num_draws)
        return {k: der[k].reshape(lead + der[k].shape[1:]) for k in ("trajectory", "status")}

    def _convergence_dataset(self) -> xr.Dataset:
        """Non-neural posterior variables and the trajectories: what R-hat and ESS are judged on."""
        if self._idata is not None:
            posterior, trajectory = self._idata.posterior, self._idata.posterior_predictive["trajectory"]
        else:
            posterior = self._posterior_group()
            dims = ("chain", "draw", "series", "time", "state")
            trajectory = xr.DataArray(self.fitted()["trajectory"], dims=dims)
        names = [v for v in posterior.data_vars if not v.startswith("field.")]
        return xr.merge([posterior[names], trajectory.rename("trajectory").to_dataset()])

    # ------------------------------------------------------------ persistence
    def save(self, path, *, key=None) -> None:
        """Write the InferenceData (every group, settings in attrs) to netCDF.

        ``key`` as in :meth:`to_arviz`: required unless ``to_arviz`` already ran (or the fit was loaded).
        """
        self.to_arviz(key=key).to_netcdf(str(path))

    @classmethod
    def load(cls, path, model=None) -> Posterior:
        """Read a saved fit. ``model``: the same ``make_model(...)`` (or ``numpyro_model(fn)``) result, or None
        to rebuild a built-in model from its stored recipe (``bayesode fit`` models)."""
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
            time_origin=attrs.get("bayesode_time_origin") or None,
        )
        sites = site_names(idata)
        samples = {sites.get(k, k): np.asarray(v.values) for k, v in idata.posterior.data_vars.items()}
        inv = {v: k for k, v in STATS_TO_ARVIZ.items()}
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
