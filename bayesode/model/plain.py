"""Your own NumPyro model in bayesode's inference: :func:`numpyro_model` and :func:`record_solve`.

A plain model function ``fn(ts, ys, mask)`` becomes a model with the interface of
``make_model``'s: ``model(data, *, predict_ts=None, ...)`` with a ``model.spec``, so ``run_nuts``,
``run_svi``, ``Posterior`` (``to_arviz``, ``predict``, ``fitted``, ``save``/``load``) and ``sbc``
take it. ``fn`` sees one series (``ts`` (time,), ``ys`` and ``mask`` (time, observed)), or with
``numpyro_model(fn, all_series=True)`` every series at once (``ts`` (series, time), ``ys`` and
``mask`` (series, time, observed); for models whose series share parameters, e.g. a hierarchical
model of subjects). What ``fn`` must do:

- call :func:`record_solve` once with the solve whose states are the trajectory: it records
  the ``trajectory`` ((series,) time, state) and the ``solver_status``, and adds ``-inf`` to the
  log density when a solve failed (factor ``solver_failed``), so failures are counted as in
  ``make_model``'s models (with ``all_series``, vmap ``bayesode.solve`` over the series);
- observe the data at the sample site ``obs`` (``bayesode.observe`` names it so) with a
  distribution of batch shape ((series,) time, observed) (one log-likelihood per entry; mask it
  with ``mask``: it also hides the padding after a shorter series' last time);
- start each solve at the series' first time ``ts[..., 0]`` (``bayesode.solve`` does by default);
- for ``Posterior.predict``: run with ``ys=None, mask=None`` too (then ``ts`` is the start
  followed by the new times, and ``obs`` is drawn), with priors that do not read ``ys``.

The adapter runs ``fn`` inside its model and re-records those three outputs with the leading
``series`` axis that the results wing reads (of size one for a one-series ``fn``); every other
site passes through unchanged. Features that need a bayesode field (``field_draws``, stability,
function-space diagnostics, ``run_ensemble``) raise a :class:`ConfigError` naming ``make_model``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
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

    Adds the deterministic sites ``trajectory`` (``sol.ys``: (time, state), or (series, time,
    state) for a solve vmapped over series) and ``solver_status`` (the largest status code of
    ``sol``, per series for a vmapped solve: 0 when it solved) and the factor ``solver_failed``
    (``-inf`` when a solve failed, so the sampler rejects the point). Call it once per model
    evaluation. Returns ``sol``.
    """
    if not isinstance(sol, Solution):
        raise ConfigError(f"`record_solve` takes the Solution returned by bayesode.solve; got {type(sol).__name__}.")
    status = jnp.asarray(sol.status)
    if status.ndim > 1:  # one status per leading index (series), the largest over the rest
        status = jnp.max(jnp.reshape(status, (status.shape[0], -1)), axis=1)
    numpyro.factor("solver_failed", jnp.where(jnp.all(status == STATUS_OK), 0.0, -jnp.inf))
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
    all_series: bool = False  # fn sees every series at once (leading series axis) rather than one
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
        if data.num_series != 1 and not self.all_series:
            raise DataError(
                f"a numpyro_model model fits one series (fn(ts, ys, mask)); the data have {data.num_series}. "
                "Give numpyro_model(fn, all_series=True) for a function of every series at once, fit each series "
                "on its own, or build the model with make_model."
            )
        md = data.model_data()
        late = np.flatnonzero(np.asarray(md.ts[:, 0]) != np.asarray(md.t0))
        if late.size:
            i = int(late[0])
            raise DataError(
                f"a numpyro_model model solves from each series' first time, but series {data.series_names[i]!r} "
                f"starts at t0={data.t0[i]} before its first observation at {data.ts[i, 0]}; give data whose first "
                "time is the start."
            )
        sites = {}
        args = (md.ts, md.ys, md.mask) if self.all_series else (md.ts[0], md.ys[0], md.mask[0])

        def run():
            tr = handlers.trace(handlers.seed(self.fn, 0)).get_trace(*args)
            sites.update(tr)
            return 0

        try:
            jax.eval_shape(run)
        except (ConfigError, DataError):
            raise
        except Exception as e:
            shapes = f" (all_series=True: a leading series axis, ts {tuple(md.ts.shape)})" if self.all_series else ""
            raise ConfigError(
                f"calling the model function as fn(ts, ys, mask) on the data{shapes} failed: {e!r}"
            ) from e
        lead = md.ys.shape[:1] if self.all_series else ()
        lead_name = "series, " if self.all_series else ""
        num_time, num_obs = md.ys.shape[1:]
        for name in (SITE_TRAJECTORY, SITE_STATUS):
            if name not in sites:
                raise ConfigError(
                    f"the model function records no `{name}` site: call bayesode.record_solve(sol) once with the "
                    "solve of the trajectory (it records the trajectory and the status that counts failures)."
                )
        states = num_obs if self.state_names is None else len(self.state_names)
        traj = tuple(sites[SITE_TRAJECTORY]["value"].shape)
        if traj != lead + (num_time, states):
            what = "the data's columns" if self.state_names is None else f"state_names {list(self.state_names)}"
            raise ConfigError(
                f"the recorded trajectory has shape {traj}; expected ({lead_name}time, state) = "
                f"{lead + (num_time, states)} (states: {what}; give numpyro_model(state_names=...) when the model's "
                "states are not the columns)."
            )
        status = tuple(sites[SITE_STATUS]["value"].shape)
        if self.all_series and status not in ((), lead):
            raise ConfigError(
                f"the recorded solver status has shape {status}; expected () or (series,) = {lead}: record one "
                "solve vmapped over the series (bayesode.record_solve(jax.vmap(...)(...)))."
            )
        obs = sites.get(SITE_OBS)
        if obs is None or obs["type"] != "sample" or not obs["is_observed"]:
            raise ConfigError(
                f"the model function has no observed sample site `{SITE_OBS}`: observe the data there, e.g. "
                "bayesode.observe(likelihood, pred, noise, ys, mask)."
            )
        d = obs["fn"]
        if tuple(d.batch_shape) != lead + (num_time, num_obs) or tuple(d.event_shape) != ():
            raise ConfigError(
                f"the `{SITE_OBS}` distribution has batch shape {tuple(d.batch_shape)} and event shape "
                f"{tuple(d.event_shape)}; expected batch shape ({lead_name}time, observed) = "
                f"{lead + (num_time, num_obs)} and no event dims (one log-likelihood per entry: no .to_event; mask "
                "missing entries with .mask(mask))."
            )


def _with_series(d):
    """``d`` with a leading series axis of size one."""
    return d.expand((1,) + tuple(d.batch_shape))


def numpyro_model(fn: Callable, *, state_names=None, precision: str = "float32", all_series: bool = False):
    """Make a plain NumPyro model function usable by bayesode's inference and results.

    Parameters
    ----------
    fn : callable ``fn(ts, ys, mask)``
        A NumPyro model of one series: ``ts`` (time,) times relative to the data's start,
        ``ys`` (time, observed) observations (missing entries hold 1.0), ``mask``
        (time, observed) True where observed. It must call :func:`record_solve` once and
        observe ``ys`` at the site ``obs`` (see :mod:`bayesode.model.plain`).
        Its solve starts at ``ts[0]``; ``Posterior.predict`` calls it as
        ``fn(concat([start], new_ts), None, None)``.
    state_names : sequence of str, optional
        Names of the trajectory's states when they are not the data's columns (e.g. S, I, R
        with only I observed). Default: the data's column names.
    precision : "float32" (default) or "float64"
        The fits' default floating-point precision (as ``make_model(precision=...)``).
    all_series : bool
        False (default): ``fn`` models one series and the data must hold one. True: ``fn``
        receives every series at once, each argument with a leading series axis (``ts``
        (series, time), padded after a shorter series' end by repeating its last time, where
        ``mask`` is False), records a trajectory (series, time, state) (vmap ``bayesode.solve``
        over the series) and observes ``obs`` with batch shape (series, time, observed): for
        series that share parameters, such as a hierarchical model of subjects.

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
    if not isinstance(all_series, bool):
        raise ConfigError(f"`all_series` must be True or False; got {all_series!r}.")
    spec = PlainModelSpec(fn, state_names, check_precision(precision), all_series)
    # fn's view of the data, and the adapter's: outputs get a series axis of one for a one-series fn
    view = (lambda x: x) if all_series else (lambda x: x[0])
    lift = (lambda x: x) if all_series else (lambda x: x[None])

    def model(data: ModelData, *, predict_ts=None, chain_id=None, iteration=None, report=True, latents_only=False):
        # latents_only (a shortcut of make_model's models) is ignored: fn's latents are known only by running it.
        num_series = data.ts.shape[0]
        if num_series != 1 and not all_series:
            raise DataError(f"a numpyro_model model fits one series; got {num_series} (see all_series=True).")
        with handlers.block(hide_fn=lambda msg: msg["name"] in _OUTPUTS):
            tr = handlers.trace(fn).get_trace(view(data.ts), view(data.ys), view(data.mask))
        latents = {n: s["value"] for n, s in tr.items() if s["type"] == "sample" and not s["is_observed"]}
        status = _per_series(tr[SITE_STATUS]["value"], num_series)
        if chain_id is not None:  # as in make_model: report the status to the failure log (see solving.failures)
            send = lambda: _failures.report(chain_id, iteration, status, latents)  # noqa: E731
            if isinstance(report, bool):
                if report:
                    send()
            else:
                jax.lax.cond(report, send, lambda: None)
        numpyro.deterministic(SITE_STATUS, status)
        numpyro.deterministic(SITE_TRAJECTORY, lift(tr[SITE_TRAJECTORY]["value"]))
        obs = tr[SITE_OBS]
        numpyro.sample(SITE_OBS, obs["fn"] if all_series else _with_series(obs["fn"]), obs=lift(obs["value"]))

        if predict_ts is not None:
            key = numpyro.prng_key()
            # fn solves from its first time: the series' start, then the new times (the start's row is dropped).
            ts_new = view(jnp.concatenate([data.ts[:, :1], predict_ts], axis=1))
            try:
                with handlers.block():  # the same latents at new times: nothing here enters the log density
                    run = handlers.seed(handlers.substitute(fn, data=latents), key)
                    new = handlers.trace(run).get_trace(ts_new, None, None)
            except Exception as e:
                raise ConfigError(
                    "predicting calls the model function as fn(ts, None, None) (no data); it failed: "
                    f"{e!r}. Make `ys` and `mask` optional and keep the priors free of `ys`."
                ) from e
            numpyro.deterministic("trajectory_predict", lift(new[SITE_TRAJECTORY]["value"])[:, 1:])
            numpyro.deterministic("predict_status", _per_series(new[SITE_STATUS]["value"], num_series))
            numpyro.deterministic("obs_predict", lift(new[SITE_OBS]["value"])[:, 1:])  # drawn inside, seeded by `key`

    model.spec = spec
    return model


def _per_series(status, num_series: int):
    """The recorded status as (series,): per series when fn recorded it so, else its largest value for each."""
    status = jnp.asarray(status)
    if status.shape == (num_series,):
        return status
    return jnp.full((num_series,), jnp.max(status), dtype=status.dtype)
