"""Your own NumPyro model in bayesode's inference: :func:`numpyro_model` and :func:`record_solve`.

A plain model function ``fn(ts, ys, mask)`` (one series: ``ts`` (time,), ``ys`` and ``mask``
(time, observed)) becomes a model with the interface of ``make_model``'s: ``model(data, *,
predict_ts=None, ...)`` with a ``model.spec``, so ``run_nuts``, ``run_svi``, ``Posterior``
(``to_arviz``, ``predict``, ``fitted``, ``save``/``load``) and ``sbc`` take it. What ``fn`` must do:

- call :func:`record_solve` once with the solve whose states are the trajectory: it records
  the ``trajectory`` (time, state) and the ``solver_status``, and adds ``-inf`` to the log
  density when the solve failed (factor ``solver_failed``), so failures are counted as in
  ``make_model``'s models;
- observe the data at the sample site ``obs`` (``bayesode.observe`` names it so) with a
  distribution of batch shape (time, observed) (one log-likelihood per entry; mask it with ``mask``);
- start its solve at ``ts[0]``, the series' start (``bayesode.solve`` does by default);
- for ``Posterior.predict``: run with ``ys=None, mask=None`` too (then ``ts`` is the start
  followed by the new times, and ``obs`` is drawn), with priors that do not read ``ys``.

The adapter runs ``fn`` inside its model and re-records those three outputs with the leading
``series`` axis (of size one) that the results wing reads; every other site passes through
unchanged. Features that need a bayesode field (``field_draws``, stability, function-space
diagnostics, ``run_ensemble``) raise a :class:`ConfigError` naming ``make_model``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpyro
from numpyro import handlers

from ..datasets.data import Data, ModelData
from ..errors import ConfigError, DataError
from ..solving import failures as _failures
from ..solving.diffeq import STATUS_OK, Solution, SolverConfig
from ..solving.precision import check_precision
from .priors import SITE_OBS

SITE_TRAJECTORY = "trajectory"
SITE_STATUS = "solver_status"
# The user's sites the adapter re-records with the series axis (hidden from the outer handlers).
_OUTPUTS = (SITE_TRAJECTORY, SITE_STATUS, SITE_OBS)


def record_solve(sol: Solution) -> Solution:
    """Inside a model for :func:`numpyro_model`: record ``sol`` as the model's trajectory and count its failure.

    Adds the deterministic sites ``trajectory`` (``sol.ys``, (time, state)) and
    ``solver_status`` (the largest status code of ``sol``: 0 when it solved) and the factor
    ``solver_failed`` (``-inf`` when the solve failed, so the sampler rejects the point).
    Call it once per model evaluation. Returns ``sol``.
    """
    if not isinstance(sol, Solution):
        raise ConfigError(f"`record_solve` takes the Solution returned by bayesode.solve; got {type(sol).__name__}.")
    status = jnp.max(jnp.ravel(sol.status))
    numpyro.factor("solver_failed", jnp.where(status == STATUS_OK, 0.0, -jnp.inf))
    numpyro.deterministic(SITE_STATUS, status)
    numpyro.deterministic(SITE_TRAJECTORY, sol.ys)
    return sol


def _needs_field(feature: str):
    def get(self):
        raise ConfigError(
            f"this model wraps a plain NumPyro function (numpyro_model), which has no bayesode {feature}; "
            "this needs a model from bayesode.make_model(...)."
        )

    return property(get)


@dataclass(frozen=True, eq=False)
class PlainModelSpec:
    """The spec of a model from :func:`numpyro_model`: the function and its trajectory's state names."""

    fn: Callable
    state_names: tuple[str, ...] | None = None
    precision: str = "float32"  # the fits' default (``run_nuts(precision=...)`` overrides it)
    solver = SolverConfig()  # what bayesode assumes of fn's solves: reverse-mode gradients (read for forward_mode)
    recipe = None
    series_devices = None
    field = _needs_field("vector field")
    weight_prior = _needs_field("weight prior")
    param_priors = _needs_field("parameter priors")
    likelihood = _needs_field("likelihood object")
    args = _needs_field("field arguments")

    @property
    def observation_fn(self):
        """None when the trajectory's states are the data's columns; else the function (it maps states to data)."""
        return None if self.state_names is None else self.fn

    @property
    def state_dim(self) -> int:
        if self.state_names is None:
            raise ConfigError("the trajectory's states are the data's columns: give numpyro_model(state_names=...).")
        return len(self.state_names)

    def trajectory_names(self, data: Data) -> list[str]:
        return list(data.state_names) if self.state_names is None else list(self.state_names)

    def check_data(self, data: Data) -> None:
        """Trace ``fn`` once on ``data`` (shapes only) and check the sites bayesode reads."""
        if data.num_series != 1:
            raise DataError(
                f"a numpyro_model model fits one series (fn(ts, ys, mask)); the data have {data.num_series}. "
                "Fit each series on its own, or build the model with make_model."
            )
        md = data.model_data()
        if float(md.ts[0, 0]) != float(md.t0[0]):
            raise DataError(
                f"a numpyro_model model solves from its first time, but the data start at t0={data.t0[0]} before "
                f"the first observation at {data.ts[0, 0]}; give data whose first time is the start."
            )
        sites = {}

        def run():
            tr = handlers.trace(handlers.seed(self.fn, 0)).get_trace(md.ts[0], md.ys[0], md.mask[0])
            sites.update(tr)
            return 0

        try:
            jax.eval_shape(run)
        except (ConfigError, DataError):
            raise
        except Exception as e:
            raise ConfigError(f"calling the model function as fn(ts, ys, mask) on the data failed: {e!r}") from e
        num_time, num_obs = md.ys.shape[1:]
        for name in (SITE_TRAJECTORY, SITE_STATUS):
            if name not in sites:
                raise ConfigError(
                    f"the model function records no `{name}` site: call bayesode.record_solve(sol) once with the "
                    "solve of the trajectory (it records the trajectory and the status that counts failures)."
                )
        states = num_obs if self.state_names is None else len(self.state_names)
        traj = tuple(sites[SITE_TRAJECTORY]["value"].shape)
        if traj != (num_time, states):
            what = "the data's columns" if self.state_names is None else f"state_names {list(self.state_names)}"
            raise ConfigError(
                f"the recorded trajectory has shape {traj}; expected (time, state) = ({num_time}, {states}) "
                f"(states: {what}; give numpyro_model(state_names=...) when the model's states are not the columns)."
            )
        obs = sites.get(SITE_OBS)
        if obs is None or obs["type"] != "sample" or not obs["is_observed"]:
            raise ConfigError(
                f"the model function has no observed sample site `{SITE_OBS}`: observe the data there, e.g. "
                "bayesode.observe(likelihood, pred, noise, ys, mask)."
            )
        d = obs["fn"]
        if tuple(d.batch_shape) != (num_time, num_obs) or tuple(d.event_shape) != ():
            raise ConfigError(
                f"the `{SITE_OBS}` distribution has batch shape {tuple(d.batch_shape)} and event shape "
                f"{tuple(d.event_shape)}; expected batch shape (time, observed) = ({num_time}, {num_obs}) and no "
                "event dims (one log-likelihood per entry: no .to_event; mask missing entries with .mask(mask))."
            )


def _with_series(d):
    """``d`` with a leading series axis of size one."""
    return d.expand((1,) + tuple(d.batch_shape))


def numpyro_model(fn: Callable, *, state_names=None, precision: str = "float32"):
    """Make a plain NumPyro model function usable by bayesode's inference and results.

    Parameters
    ----------
    fn : callable ``fn(ts, ys, mask)``
        A NumPyro model of one series: ``ts`` (time,) times relative to the data's start,
        ``ys`` (time, observed) observations (missing entries hold 1.0), ``mask``
        (time, observed) True where observed. It must call :func:`record_solve` once and
        observe ``ys`` at the site ``obs`` (see :mod:`bayesode.model.plain`);
        Its solve starts at ``ts[0]``; ``Posterior.predict`` calls it as
        ``fn(concat([start], new_ts), None, None)``.
    state_names : sequence of str, optional
        Names of the trajectory's states when they are not the data's columns (e.g. S, I, R
        with only I observed). Default: the data's column names.
    precision : "float32" (default) or "float64"
        The fits' default floating-point precision (as ``make_model(precision=...)``).

    Returns
    -------
    model : callable ``model(data: ModelData, *, predict_ts=None)`` with ``model.spec``
    (a :class:`PlainModelSpec`), for ``run_nuts``, ``run_svi``, ``Posterior`` and ``sbc``.

    Examples
    --------
    >>> import bayesode as bo, jax.numpy as jnp, numpyro, numpyro.distributions as dist
    >>> def decay(ts, ys, mask):
    ...     k = numpyro.sample("k", dist.LogNormal(0.0, 0.5))
    ...     sol = bo.record_solve(bo.solve(lambda t, y, args: -k * y, jnp.ones(1), ts))
    ...     bo.observe(bo.NormalNoise(), sol.ys, {"sigma": 0.1}, ys, mask)
    >>> model = bo.numpyro_model(decay)
    >>> model.spec.fn is decay
    True
    """
    if not callable(fn) or hasattr(fn, "spec"):
        what = "already a bayesode model" if hasattr(fn, "spec") else f"not callable: {fn!r}"
        raise ConfigError(f"`fn` must be a plain NumPyro model function fn(ts, ys, mask); got one {what}.")
    try:
        inspect.signature(fn).bind(None, None, None)
    except TypeError as e:
        raise ConfigError(f"`fn` must take three arguments, fn(ts, ys, mask); its signature does not: {e}.") from e
    except ValueError:  # no signature to inspect (some builtins): the first trace will tell
        pass
    if state_names is not None:
        if not isinstance(state_names, (list, tuple)) or not state_names or not all(isinstance(n, str) for n in state_names):
            raise ConfigError(f"`state_names` must be a non-empty sequence of str; got {state_names!r}.")
        state_names = tuple(state_names)
    spec = PlainModelSpec(fn, state_names, check_precision(precision))

    def model(data: ModelData, *, predict_ts=None, chain_id=None, iteration=None, report=True, latents_only=False):
        # latents_only (a shortcut of make_model's models) is ignored: fn's latents are known only by running it.
        if data.ts.shape[0] != 1:
            raise DataError(f"a numpyro_model model fits one series; got {data.ts.shape[0]}.")
        with handlers.block(hide_fn=lambda msg: msg["name"] in _OUTPUTS):
            tr = handlers.trace(fn).get_trace(data.ts[0], data.ys[0], data.mask[0])
        latents = {n: s["value"] for n, s in tr.items() if s["type"] == "sample" and not s["is_observed"]}
        status = jnp.reshape(tr[SITE_STATUS]["value"], (1,))
        if chain_id is not None:  # as in make_model: report the status to the failure log (see solving.failures)
            send = lambda: _failures.report(chain_id, iteration, status, latents)  # noqa: E731
            if isinstance(report, bool):
                if report:
                    send()
            else:
                jax.lax.cond(report, send, lambda: None)
        numpyro.deterministic(SITE_STATUS, status)
        numpyro.deterministic(SITE_TRAJECTORY, tr[SITE_TRAJECTORY]["value"][None])
        obs = tr[SITE_OBS]
        numpyro.sample(SITE_OBS, _with_series(obs["fn"]), obs=obs["value"][None])

        if predict_ts is not None:
            key = numpyro.prng_key()
            # fn solves from its first time: the series' start, then the new times (the start's row is dropped).
            ts_new = jnp.concatenate([data.ts[0, :1], predict_ts[0]])
            try:
                with handlers.block():  # the same latents at new times: nothing here enters the log density
                    run = handlers.seed(handlers.substitute(fn, data=latents), key)
                    new = handlers.trace(run).get_trace(ts_new, None, None)
            except Exception as e:
                raise ConfigError(
                    "predicting calls the model function as fn(ts, None, None) (no data); it failed: "
                    f"{e!r}. Make `ys` and `mask` optional and keep the priors free of `ys`."
                ) from e
            numpyro.deterministic("trajectory_predict", new[SITE_TRAJECTORY]["value"][None, 1:])
            numpyro.deterministic("predict_status", jnp.reshape(new[SITE_STATUS]["value"], (1,)))
            numpyro.deterministic("obs_predict", new[SITE_OBS]["value"][None, 1:])  # drawn inside, seeded by `key`

    model.spec = spec
    return model
