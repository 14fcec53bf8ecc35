"""``fit_full_weight``: the full-weight posterior with its function-space report attached.

It lives in the diagnostics wing because it joins :func:`bayesode.infer.run_ensemble` (below)
with :func:`ensemble_report` (here); ``Posterior.diagnostics()`` (results, below both) reads the
report from ``settings["ensemble"]["report"]``, which survives ``save``/``load``.
"""

from __future__ import annotations

import json

from ..infer import run_ensemble
from .function_space import ensemble_report

__all__ = ["fit_full_weight"]


def fit_full_weight(model, ts, ys=None, *, key, num_members: int = 8, validation: str = "loo", forecast_ts=None,
                    progress: bool = True, **kwargs):  # fmt: skip
    """Every weight Bayesian: members from ``num_members`` MAP fits, each sampled by NUTS, stacked.

    What ``bayesode fit --bayesian-layers all`` runs. ``kwargs`` go to
    :func:`bayesode.infer.run_ensemble` (``num_warmup``, ``num_samples``, ``chains_per_member``,
    ``map_steps``, ``lfo_start``, ``chain_method``, ...).

    Returns
    -------
    Posterior : the pooled (stacking-weighted) posterior; ``post.settings["ensemble"]`` holds the
    weights, every start (kept or dropped, with the reason) and ``report``: the function-space
    situation in plain words (also among ``post.diagnostics()["warnings"]`` unless it is "one mode
    that mixes"). Its InferenceData layout is described in :mod:`bayesode.infer.ensemble`.
    """
    ens = run_ensemble(model, ts, ys, key=key, num_members=num_members, validation=validation, progress=progress,
                       **kwargs)  # fmt: skip
    report = ensemble_report(ens, forecast_ts=forecast_ts)
    post = ens.pooled
    info = post.settings["ensemble"]
    message = report["message"]
    if info["points_pareto_k_high"]:
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
