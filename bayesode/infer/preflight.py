"""Checks before a fit: the prior's solver-failure rate, starting points, argument shapes.

Everything here runs before the sampler is compiled (or on shapes only), so a bad argument
or a model that cannot start fails in seconds with a message that names the cause.
"""

from __future__ import annotations

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.infer.util import unconstrain_fn

from ..checks import as_key, positive_int
from ..datasets.data import as_data
from ..errors import ConfigError, InitializationError
from ..model.assembly import check_model
from ..solving.diffeq import FAILURE_ADVICE, FAILURE_CAUSES, STATUS_OK, ForwardSensitivity
from .programs import latent_sites, unconstrained_size


def prior_failure_rate(model, data, *, key, num_draws: int = 200) -> dict:
    """Prior-predictive stress test: fraction of prior draws whose solve fails, by cause.

    Run it before a fit: a prior that makes half the solves blow up will make
    NUTS crawl. Returns ``{"fraction": float, "draws": n, cause: count, ...}``.
    """
    check_model(model)
    data = as_data(data)
    model.spec.check_data(data)
    num_draws = positive_int("num_draws", num_draws)
    md = data.model_data()

    @jax.jit
    def statuses(keys):
        return jax.vmap(lambda k: handlers.trace(handlers.seed(model, k)).get_trace(md)["solver_status"]["value"])(keys)

    st = np.asarray(statuses(jax.random.split(as_key(key), num_draws)))  # (draws, series)
    worst = np.where((st != STATUS_OK).any(axis=1), st.max(axis=1), 0)
    out = {"draws": int(num_draws), "fraction": float(np.mean(worst != 0))}
    for code, cause in FAILURE_CAUSES.items():
        out[cause] = int(np.sum(worst == code))
    return out


def init_error(model, data, key, original: Exception, rate: dict | None = None) -> InitializationError:
    """The error for a model without a finite start; ``rate``: a ``prior_failure_rate`` result of
    100 draws already made (else it is made here)."""
    if rate is None:
        try:
            rate = prior_failure_rate(model, data, key=key, num_draws=100)
        except Exception:  # the stress test itself must not hide the first error
            rate = None
    if rate is None:
        return InitializationError(f"no starting point with a finite log density was found: {original}")
    causes = {c: rate[c] for c in FAILURE_CAUSES.values() if rate[c]}
    advice = "; ".join(FAILURE_ADVICE[c] for c in causes) or (
        "solves succeed, so the likelihood is -inf/NaN: check data against the likelihood (e.g. zeros with "
        "LogNormalNoise) and the noise priors"
    )
    return InitializationError(
        f"no starting point with a finite log density was found. Of 100 prior draws, "
        f"{rate['fraction']:.0%} gave a failed solve; by cause: {causes or 'none'}. Fix: {advice}."
    )



# Above this many unconstrained parameters run_nuts warns that forward-mode sensitivities
# (one solve direction per parameter) cost more than reverse mode. Measured here: the LV preset
# on 1000 series (2006 parameters) had not finished timing its forward-mode gradient after 10
# minutes; reverse mode, 52 ms per gradient.
FORWARD_MODE_MAX_PARAMETERS = 64


def warn_if_forward_mode_is_costly(model, md) -> None:
    adjoint = model.spec.solver.adjoint
    if isinstance(adjoint, ForwardSensitivity):
        # One sensitivity column per field parameter and initial state; series add none.
        field = eqx.filter(model.spec.field, eqx.is_inexact_array)
        size = sum(x.size for x in jax.tree.leaves(field)) + model.spec.state_dim
        what = "`adjoint=ForwardSensitivity()`), which integrate one column per field parameter and initial state"
    elif model.spec.solver.forward_mode:
        size = unconstrained_size(model, md)
        what = "`adjoint=ForwardMode()`), which cost about one solve per parameter (every series adds its initial state)"
    else:
        return
    if size > FORWARD_MODE_MAX_PARAMETERS:
        warnings.warn(
            f"the model's solver uses forward-mode sensitivities ({what}: {size} here. Above "
            f"~{FORWARD_MODE_MAX_PARAMETERS} reverse mode is cheaper: e.g. bayesode.models.lotka_volterra("
            "adjoint='checkpoint') or SolverConfig(adjoint=diffrax.RecursiveCheckpointAdjoint()). A few field "
            "parameters but many series: ForwardSensitivity (adjoint='sensitivity'), whose cost series do not raise.",
            stacklevel=4,  # past run_nuts and its precision wrapper, to the caller
        )



def retry_nonfinite_starts(z, init, retry_starts, attempts: int = 20):
    """Sampler states for starts ``z`` (unconstrained, leading chain axis), where a chain whose
    start has a non-finite log density (e.g. a failed solve) retries from ``retry_starts(attempt)``
    (``attempt`` = 1, 2, ...: uniform(-2, 2) in unconstrained space, as Stan does) up to
    ``attempts`` times. ``init(z)`` gives the states. Returns ``(states, bad)``; ``bad`` (chain,)
    marks chains still without a finite start. Shared by ``run_nuts`` and vectorised SBC fits.
    """
    states = init(z)
    for attempt in range(1, attempts + 1):
        bad = ~np.isfinite(np.asarray(states.potential_energy))
        if not bad.any():
            break
        retry = retry_starts(attempt)
        z = jax.tree.map(lambda old, new: jnp.where(bad.reshape((-1,) + (1,) * (old.ndim - 1)), new, old), z, retry)  # noqa: B023
        states = init(z)
    return states, ~np.isfinite(np.asarray(states.potential_energy))



def chain_subset(chains, num_chains: int) -> np.ndarray:
    if chains is None:
        return np.arange(num_chains)
    arr = np.asarray(chains)
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise ConfigError(f"`chains` must be a non-empty sequence of chain indices (ints); got {chains!r}.")
    if arr.min() < 0 or arr.max() >= num_chains or np.any(np.diff(arr) <= 0):
        raise ConfigError(
            f"`chains` must be increasing indices in [0, num_chains={num_chains}) without repeats; got {arr.tolist()}."
        )
    return arr



def check_inits(model, md, init_params, num_chains):
    if not isinstance(init_params, dict):
        raise ConfigError(f"`init_params` must be a dict of site -> array; got {type(init_params).__name__}.")
    sites = latent_sites(model, md)
    missing = sorted(sites - set(init_params))
    if missing:
        raise ConfigError(f"`init_params` lacks site(s) {missing}; give a value (with a leading chain axis) for each.")
    for k in sorted(sites):
        shape = np.shape(init_params[k])
        if shape[:1] != (num_chains,):
            raise ConfigError(f"`init_params['{k}']` must have a leading axis of num_chains={num_chains}; got {shape}.")


def unconstrain_inits(model, md, init_params):
    vals = {k: jnp.asarray(init_params[k]) for k in latent_sites(model, md)}
    return jax.jit(jax.vmap(lambda p: unconstrain_fn(model, (md,), {}, p)))(vals)

