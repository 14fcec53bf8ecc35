"""What a sampler's own statistics say about a fit: divergences, tree-depth saturation, E-BFMI and ODE solves
that failed during sampling, each with its plain-word warning (:meth:`bayesode.Posterior.diagnostics`)."""

from __future__ import annotations

import arviz as az
import numpy as np

from ..solving.diffeq import FAILURE_ADVICE, FAILURE_CAUSES

EBFMI_MIN = 0.2


def sampler_report(st: dict, settings: dict) -> tuple[dict, list[str]]:
    """``(entries, warnings)`` from the sample statistics ``st`` (name -> (chain, draw)) of a fit with
    ``settings``: ``divergences``, ``tree_depth_saturated``, ``ebfmi_min``, ``solver_failures`` (with
    ``solver_failures_by_cause`` and ``warmup_solver_failures``); a full-weight ensemble's counts are its members'."""
    out: dict = {"warnings": []}
    out["divergences"] = int(np.sum(st["diverging"]))
    # A full-weight ensemble's pooled draws are a resample holding only the chosen draws' statistics:
    # divergences count every member's own sampling.
    per_member = settings.get("ensemble", {}).get("member_divergences")
    if per_member is not None and settings.get("method") == "ensemble":
        out["divergences_in_pooled_draws"] = out["divergences"]
        out["divergences"] = int(sum(per_member))
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
        where = ""
        if "divergences_in_pooled_draws" in out:
            where = " in the members' sampling (" + ", ".join(
                f"member {m}: {n}" for m, n in enumerate(per_member) if n) + ")"  # fmt: skip
        out["warnings"].append(
            f"{out['divergences']} divergent transitions{where}: the sampler could not follow the posterior "
            "everywhere; raise target_accept_prob or reparametrise."
        )
    if out["tree_depth_saturated"] > 0.01:
        out["warnings"].append(
            f"{out['tree_depth_saturated']:.0%} of iterations hit the maximum tree depth: sampling is "
            "inefficient; raise max_tree_depth or rescale the model."
        )
    failures = {c: int(np.sum(st.get(f"solver_failures_{c}", 0))) for c in FAILURE_CAUSES.values()}
    out["solver_failures"] = int(np.sum(st["solver_failures"]))
    member_failures = settings.get("ensemble", {}).get("member_solver_failures")
    if member_failures is not None and settings.get("method") == "ensemble":  # as divergences
        failures = {c: int(sum(member_failures.get(c, [0]))) for c in FAILURE_CAUSES.values()}
        out["solver_failures"] = int(sum(member_failures["total"]))
    out["solver_failures_by_cause"] = {c: n for c, n in failures.items() if n}
    out["warmup_solver_failures"] = settings.get("warmup_solver_failures", {}).get("total", 0)
    if out["solver_failures"]:
        advice = "; ".join(FAILURE_ADVICE[c] for c in out["solver_failures_by_cause"])
        out["warnings"].append(
            f"{out['solver_failures']} ODE solves failed during sampling ({out['solver_failures_by_cause']}); "
            f"they were rejected, not used. If frequent: {advice}."
        )
    warnings = out.pop("warnings")
    return out, warnings
