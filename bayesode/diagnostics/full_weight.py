"""``fit_full_weight``: the full-weight posterior with its function-space report attached.

It lives in the diagnostics wing because it joins :func:`bayesode.infer.run_ensemble` (below)
with :func:`ensemble_report` (here); ``Posterior.diagnostics()`` (results, below both) reads the
report from ``settings["ensemble"]["report"]``, which survives ``save``/``load``.
"""

from __future__ import annotations

import json

from ..errors import ConfigError
from ..infer import run_ensemble
from ..infer.laplace_mixture import run_laplace_mixture
from .function_space import ensemble_report

__all__ = ["FULL_WEIGHT_METHODS", "fit_full_weight"]

FULL_WEIGHT_METHODS = ("laplace", "nuts")


def fit_full_weight(model, ts, ys=None, *, key, method: str = "laplace", num_members: int = 8,
                    validation: str | None = None, forecast_ts=None, progress: bool = True, **kwargs):  # fmt: skip
    """Every weight Bayesian: members from ``num_members`` MAP fits, each widened into a posterior, combined.

    What ``bayesode fit --bayesian-layers all`` runs (``--full-weight`` picks ``method``):

    - ``"laplace"`` (default): an equal-weight mixture of Laplace approximations at the members,
      their Hessians' eigenvalues floored at a precision chosen by leave-future-out
      (:func:`bayesode.infer.run_laplace_mixture`; ``kwargs``: ``map_steps``, ``floor``,
      ``floors``, ``origins``, ``draws_per_member``, ``forward_model``). Independent draws, not MCMC.
    - ``"nuts"``: each member sampled by NUTS, the members weighted by stacking on ``validation``
      (``"loo"``, the default, or ``"lfo"``) (:func:`bayesode.infer.run_ensemble`; ``kwargs``:
      ``num_warmup``, ``num_samples``, ``chains_per_member``, ``map_steps``, ``lfo_start``,
      ``chain_method``, ...).

    On the held-out futures of ``benchmarks/forecast.py`` the Laplace mixture was the only one of the
    two whose bands covered at least 8 in 10 held-out points on all four problems, in under a minute
    where NUTS members take several; neither beats the neural-linear default
    (:func:`bayesode.run_neural_linear`) on the bundled lynx-hare years (docs/decisions.md, 2026-12-07 (later)).

    Returns
    -------
    Posterior : the pooled posterior; ``post.settings["ensemble"]`` holds the weights, every start
    (kept or dropped, with the reason), the method's own record (NUTS: stacking and Pareto k;
    Laplace: the floor and its validation table) and ``report``: the function-space situation in
    plain words (also among ``post.diagnostics()["warnings"]`` unless it is "one mode that mixes").
    Its InferenceData layout is described in :mod:`bayesode.infer.ensemble`.
    """
    if method not in FULL_WEIGHT_METHODS:
        raise ConfigError(f"`method`={method!r} is unknown; choose one of {list(FULL_WEIGHT_METHODS)}.")
    if method == "laplace":
        if validation is not None:
            raise ConfigError("`validation` weights NUTS members by stacking (method='nuts'); the Laplace mixture "
                              "weights its members equally and chooses its floor by leave-future-out (`origins`).")  # fmt: skip
        ens = run_laplace_mixture(model, ts, ys, key=key, num_members=num_members, progress=progress, **kwargs)
    else:
        ens = run_ensemble(model, ts, ys, key=key, num_members=num_members, validation=validation or "loo",
                           progress=progress, **kwargs)  # fmt: skip
    report = ensemble_report(ens, forecast_ts=forecast_ts)
    post = ens.pooled
    info = post.settings["ensemble"]
    message = report["message"]
    if method == "laplace":
        message = _laplace_words(info) + " " + message
    elif info["points_pareto_k_high"]:
        message += (f" {info['points_pareto_k_high']} of the member-by-point predictive densities behind the weights "
                    f"have Pareto k > {info['pareto_k_threshold']:.2f} (importance sampling unreliable there with this many draws "
                    f"per member; more draws raise the bound to 0.7): treat the weights as rough.")
    info["report"] = {
        "situation": report["situation"],
        "message": message,
        "rhat_within_max": report["rhat_within_max"],
        "within": {str(k): v for k, v in report["within"].items()},
        "modes": report["modes"],
        "spread": report["spread"],
    }
    idata = post.to_arviz()  # cached: refresh the settings it stored
    for group in idata.groups():
        idata[group].attrs["bayesode_settings"] = json.dumps(post.settings, default=str)
    return post


def _laplace_words(info: dict) -> str:
    """What a Laplace mixture is and how its width was set, in plain words."""
    kept = [s for s in info["starts"] if s["kept"]]
    negative = [s["negative_eigenvalues"] for s in kept]
    if info["floor_chosen"]:
        best = max(info["validation"], key=lambda row: row[1])
        how = (f"chosen by leave-future-out over {len(info['origins'])} origins, best mean held-out log predictive "
               f"density {best[1]:.3g} per point")
    else:
        how = "given"
    return (f"A mixture of Laplace approximations at {len(kept)} MAP members (weights: {info.get('weighting', 'equal')}): "
            f"independent draws, "
            f"not MCMC, so R-hat and ESS do not judge it. Every Hessian eigenvalue below {info['floor']:g} was "
            f"raised to it ({how}); the members' Hessians had {min(negative)}-{max(negative)} negative "
            f"eigenvalues (the MAP points are not exact optima: the floor sets the width there). Check held-out "
            f"coverage before trusting the bands far from the data."
            + (f" {info['rejected_draws']} draws fell where the model does not solve on the data (or its likelihood "
               f"is not finite) and were redrawn." if info.get("rejected_draws") else ""))
