"""Simulation-based calibration (SBC): does the whole fitting pipeline return calibrated posteriors?

Talts et al. (2018), "Validating Bayesian inference algorithms with
simulation-based calibration"; Modrák et al. (2023), "Simulation-based
calibration checking for Bayesian computation: the choice of test quantities
shapes sensitivity". For each replication:

1. draw parameters from the prior and simulate data of the template's shape;
2. fit the simulated data with :func:`bayesode.run_nuts`;
3. record where each true value falls among (thinned, roughly independent)
   posterior draws.

If the model, the solver and the sampler are right, every such rank is
uniform. A posterior that is too narrow piles ranks at both ends, one that
is too wide piles them in the middle, a biased one at one end.

Ranks are turned into randomised probability integral transforms
``u = (#draws below truth + V * (#ties + 1)) / (L + 1)``, ``V ~ Uniform(0, 1)``,
which are exactly uniform under calibration whatever the number ``L`` of kept
draws (it may differ between replications when thinning adapts to the ESS).
Uniformity is tested with a chi-square test over equal bins and, optionally,
with simultaneous ECDF-difference bands (Säilynoja, Bürkner and Vehtari 2022).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import jax
import numpy as np

from ..checks import as_key, positive_int
from ..datasets.data import Data, make_data
from ..errors import ConfigError
from ..model.assembly import check_model
from ..model.priors import FIELD_PREFIX
from ..results import model_draws
from .sbc_fits import VECTORISED_SETTINGS, fit_one, fit_replications, quiet_model, replication_diagnostics
from .uniformity import SBCResult, chi2_uniformity

_ELEMENT = re.compile(r"^(?P<site>[^\[\]]+)(\[(?P<index>[0-9, ]+)\])?$")
_MAX_SIMULATION_ATTEMPTS = 100


def _simulator(model, md):
    """``(key, md) -> (latents, trajectory, obs, status)``: one prior-predictive draw, through the
    results wing's runner (``model_draws``, compiled once per model and data shapes)."""

    def simulate(key, md):
        out = model_draws(model, md, key[None])
        return {k: v[0] for k, v in out["latents"].items()}, out["trajectory"][0], out["obs"][0], out["status"][0]

    return simulate


def _elements(name: str, value: np.ndarray) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{'y0[0,1]': ('y0', (0, 1)), ...}`` for every scalar element of a site."""
    if value.ndim == 0:
        return {name: (name, ())}
    return {f"{name}[{','.join(map(str, i))}]": (name, i) for i in np.ndindex(value.shape)}


def _default_quantities(latents: dict, trajectory: np.ndarray, lengths: np.ndarray) -> list[str]:
    names = [k for k in sorted(latents) if not k.startswith(FIELD_PREFIX)]
    out = [e for k in names for e in _elements(k, np.asarray(latents[k]))]
    if any(k.startswith(FIELD_PREFIX) for k in latents):
        # Neural weights are permutation-symmetric (their ranks test nothing useful);
        # the trajectory they produce is identified, so test it at three times per series.
        for s, n in enumerate(lengths):
            for t in sorted({int(n) // 3, (2 * int(n)) // 3, int(n) - 1}):
                out += [f"trajectory[{s},{t},{k}]" for k in range(trajectory.shape[-1])]
    return out


def _resolve_quantities(quantities, latents, trajectory, lengths) -> dict[str, tuple[str, tuple[int, ...]]]:
    available = {k: np.asarray(v) for k, v in latents.items()}
    available["trajectory"] = np.asarray(trajectory)
    if quantities is None:
        quantities = _default_quantities(latents, trajectory, lengths)
    if isinstance(quantities, str) or not isinstance(quantities, Sequence) or not quantities:
        raise ConfigError(
            f"`quantities` must be a non-empty list of names such as ['k', 'y0[0,0]']; got {quantities!r}."
        )
    out = {}
    for q in quantities:
        m = _ELEMENT.match(str(q).replace(" ", ""))
        site = m.group("site") if m else None
        if site not in available:
            raise ConfigError(
                f"`quantities` names {q!r}, which is not a latent site or 'trajectory'; "
                f"choose from {sorted(available)} (a whole site, or one element like 'y0[0,0]')."
            )
        value = available[site]
        if m.group("index") is None:
            out.update(_elements(site, value))
            continue
        idx = tuple(int(i) for i in m.group("index").split(","))
        if len(idx) != value.ndim or any(not 0 <= i < n for i, n in zip(idx, value.shape, strict=True)):
            raise ConfigError(f"`quantities` entry {q!r} is out of range: {site!r} has shape {value.shape}.")
        out[f"{site}[{','.join(map(str, idx))}]"] = (site, idx)
    return out


def _simulated_data(template: Data, obs: np.ndarray) -> Data:
    """``template`` with its observed entries replaced by ``obs`` (missing entries stay missing)."""
    ys = np.where(template.mask, obs, np.nan)
    ts_list = [template.series(i)[0] for i in range(template.num_series)]
    ys_list = [ys[i, : int(n)] for i, n in enumerate(template.lengths)]
    return make_data(
        ts_list,
        ys_list,
        state_names=template.state_names,
        series_names=template.series_names,
        t0=template.t0,
        time_name=template.time_name,
    )


def _check_prior_is_data_free(simulate, md, key):
    """SBC needs a prior that does not look at the data (the default y0 and sigma priors do)."""
    other = md._replace(ys=md.ys * 1.7 + 0.3)
    a, b = simulate(key, md)[0], simulate(key, other)[0]
    moved = sorted(k for k in a if not np.array_equal(np.asarray(a[k]), np.asarray(b[k])))
    if moved:
        raise ConfigError(
            f"the prior of site(s) {moved} depends on the data (the default y0 prior is centred on the first "
            "observation, and NormalNoise/StudentTNoise scale sigma by the data), so simulating from it is not "
            "drawing from a fixed prior. Give make_model an explicit `y0_prior=` and the likelihood a "
            "`sigma_prior=` for SBC."
        )


def sbc(
    model,
    data_template: Data,
    *,
    key,
    num_replications: int = 100,
    num_warmup: int = 200,
    num_samples: int = 100,
    num_chains: int = 2,
    quantities: Sequence[str] | None = None,
    thin: int | None = None,
    num_bins: int | None = None,
    simulate_model=None,
    count_failures: bool = False,
    vectorize: bool = False,
    **nuts_kwargs,
) -> SBCResult:
    """Simulation-based calibration of :func:`bayesode.run_nuts` on ``model``.

    Parameters
    ----------
    model : from :func:`bayesode.make_model` (or :func:`bayesode.numpyro_model`), with a data-free prior
        (explicit ``y0_prior=`` and, for ``NormalNoise``/``StudentTNoise``,
        ``sigma_prior=``); the model that is fitted.
    data_template : Data
        Times, series and missing-value pattern of every simulated data set;
        its observed values are ignored.
    key : PRNG key or int seed (keyword-only).
    num_replications : int
        Simulated data sets (default 100). With ``B`` bins, about ``10 B`` are
        needed for the chi-square test to see moderate miscalibration.
    num_warmup, num_samples, num_chains : passed to ``run_nuts``.
        The compiled sampler is reused across replications (same shapes).
    quantities : list of str, optional
        What to rank: latent sites (all elements) or elements (``'y0[0,0]'``),
        and ``'trajectory'`` / ``'trajectory[s,t,k]'``. Default: every element of
        the non-neural latent sites, plus, when the field has neural weights,
        the trajectory at three times per series (weights themselves are
        permutation-symmetric and are not tested).
    thin : int, optional
        Keep every ``thin``-th draw per chain. Default: ``floor(draws / ESS)``
        with the smallest bulk ESS over the quantities, so kept draws are
        roughly independent.
    num_bins : int, optional
        Chi-square bins; default ``clip(num_replications // 10, 2, 20)``.
    simulate_model : optional
        Model to draw parameters and data from, when it differs from the
        fitted ``model`` (to show that SBC detects a misspecified fit). Its
        latent site names must include the quantities.
    count_failures : bool
        Count failed solves per replication (``solver_failures``). Off by
        default: the count is a host callback per gradient evaluation,
        which costs several times the solve of a small model.
    vectorize : bool
        Fit the simulated data sets as one vectorised NUTS run per batch of 32
        (each chain with its own data), instead of one ``run_nuts`` call each
        (the default; always so with ``count_failures`` or ``run_nuts`` settings
        other than ``target_accept_prob``, ``max_tree_depth``, ``dense_mass``).
        Same starting points, keys and settings either way. Every iteration of a
        batch costs its longest trajectory, so on CPU this pays when trees are
        short: measured in two-worker test runs on 2 cores, the small neural SBC test (tree depth <= 6)
        ran in 238 s against 324 s, the decay SBC test (depth <= 10) in 157 s
        against 120 s. On an accelerator the batch is the natural unit.
    **nuts_kwargs : more ``run_nuts`` settings (``target_accept_prob``...).

    Returns
    -------
    SBCResult

    Notes
    -----
    Prior draws whose simulated solve fails are redrawn. This is exact: the
    fitted model gives those parameters zero posterior mass (``-inf``), so its
    effective prior is the same truncated prior.

    Examples
    --------
    >>> import numpyro.distributions as dist, numpy as np
    >>> from bayesode import MechanisticField, NormalNoise, make_data, make_model
    >>> field = MechanisticField(lambda t, y, p, a: -p["k"] * y, {"k": 0.5}, state_dim=1)
    >>> model = make_model(field, param_priors={"k": dist.LogNormal(np.log(0.5), 0.3)},
    ...                    y0_prior=dist.LogNormal(0.0, 0.3),
    ...                    likelihood=NormalNoise(sigma_prior=dist.LogNormal(np.log(0.1), 0.3)))
    >>> template = make_data(np.linspace(0.0, 4.0, 8), np.ones((8, 1)))
    >>> res = sbc(model, template, key=0, num_replications=2, num_warmup=50, num_samples=50,
    ...           progress=False)  # doctest: +SKIP
    >>> sorted(res.p_values)  # doctest: +SKIP
    ['k', 'sigma', 'y0[0,0]']
    """
    check_model(model)
    simulate_model = model if simulate_model is None else simulate_model
    check_model(simulate_model)
    if not isinstance(data_template, Data):
        raise ConfigError(
            f"`data_template` must be a bayesode Data (from make_data); got {type(data_template).__name__}."
        )
    model.spec.check_data(data_template)
    num_replications = positive_int("num_replications", num_replications)
    if num_replications < 2:
        raise ConfigError(f"`num_replications` must be at least 2; got {num_replications}.")
    if thin is not None:
        thin = positive_int("thin", thin)
    num_bins = int(np.clip(num_replications // 10, 2, 20)) if num_bins is None else positive_int("num_bins", num_bins)
    if num_bins < 2:
        raise ConfigError(f"`num_bins` must be at least 2; got {num_bins}.")
    nuts_kwargs.setdefault("progress", False)
    fit_model = model if count_failures else quiet_model(model)

    md = data_template.model_data()
    simulate = _simulator(simulate_model, md)
    key = as_key(key)
    _check_prior_is_data_free(simulate, md, key)

    # 1. simulate every data set (a prior draw whose solve fails is redrawn, see Notes)
    sims, datas, fit_keys, pit_keys = [], [], [], []
    for r in range(num_replications):
        k_sim, k_fit, k_pit = jax.random.split(jax.random.fold_in(key, r), 3)
        for attempt in range(_MAX_SIMULATION_ATTEMPTS):
            latents, traj, obs, status = jax.device_get(simulate(jax.random.fold_in(k_sim, attempt), md))
            if np.all(status == 0) and np.all(np.isfinite(obs)):
                break
        else:
            raise ConfigError(
                f"{_MAX_SIMULATION_ATTEMPTS} prior draws in a row gave a failed solve or non-finite data; "
                "tighten the priors (see bayesode.prior_failure_rate)."
            )
        sims.append((latents, traj, attempt + 1))
        datas.append(_simulated_data(data_template, np.asarray(obs, dtype=np.float64)))
        fit_keys.append(k_fit)
        pit_keys.append(k_pit)
    names = _resolve_quantities(quantities, sims[0][0], sims[0][1], data_template.lengths)
    ranks, pits, truths = ({q: [] for q in names} for _ in range(3))
    kept, diags = [], []

    # 2. fit them: vectorised over data sets, or one run_nuts call each (counting failures,
    # or with run_nuts settings the vectorised fit does not take)
    nuts = dict(num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains)
    if not vectorize or count_failures or set(nuts_kwargs) - VECTORISED_SETTINGS:
        with_trajectory = any(site == "trajectory" for site, _ in names.values())
        fits = (fit_one(fit_model, data, k, with_trajectory, **nuts, **nuts_kwargs) for data, k in zip(datas, fit_keys))
    else:
        fits = fit_replications(fit_model, datas, fit_keys, **nuts, **nuts_kwargs)

    # 3. rank each truth among its (thinned) posterior draws
    for (latents, traj, attempts), k_pit, (draws, sample_stats, seconds) in zip(sims, pit_keys, fits):
        chains = {q: np.asarray(draws[site])[(slice(None), slice(None), *idx)] for q, (site, idx) in names.items()}
        true = {
            q: (latents if site != "trajectory" else {"trajectory": traj})[site][idx]
            for q, (site, idx) in names.items()
        }
        d = replication_diagnostics(num_chains, sample_stats, chains, count_failures)
        step = thin or max(1, int(np.floor(num_chains * num_samples / max(d["ess_bulk_min"], 1.0))))
        u = np.asarray(jax.random.uniform(k_pit, (len(names),)))
        n_kept = None
        for j, q in enumerate(names):
            x = chains[q][:, ::step].ravel()
            below, ties = int(np.sum(x < true[q])), int(np.sum(x == true[q]))
            n_kept = x.size
            ranks[q].append(below)
            pits[q].append((below + u[j] * (ties + 1)) / (x.size + 1))
            truths[q].append(float(true[q]))
        kept.append(n_kept)
        d.update(thin=step, num_draws=n_kept, simulation_attempts=attempts, wall_time_s=seconds)
        diags.append(d)

    pit_arr = {q: np.asarray(v) for q, v in pits.items()}
    tests = {q: chi2_uniformity(v, num_bins) for q, v in pit_arr.items()}
    return SBCResult(
        quantities=tuple(names),
        ranks={q: np.asarray(v, dtype=np.int64) for q, v in ranks.items()},
        pit=pit_arr,
        truths={q: np.asarray(v) for q, v in truths.items()},
        num_draws=np.asarray(kept, dtype=np.int64),
        diagnostics=diags,
        num_bins=num_bins,
        chi2={q: t[0] for q, t in tests.items()},
        p_values={q: t[1] for q, t in tests.items()},
    )
