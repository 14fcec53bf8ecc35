"""Compose field, priors, solve and observation into a plain NumPyro model function.

``make_model(...)`` returns ``model(data, *, predict_ts=None)`` where ``data``
is a :class:`ModelData` (from ``Data.model_data()``). Sites:

- field parameters (see :mod:`bayesode.model.priors`);
- ``y0`` (series, state): the state at each series' ``t0``;
- noise sites of the likelihood (``sigma``, ``nu``, ``phi_inv``);
- ``obs`` (series, time, observed): the masked likelihood;
- deterministic ``trajectory`` (series, time, state);
- with ``predict_ts`` (series, time'): ``trajectory_predict`` and ``obs_predict``;
- with ``jumps=``: ``<name>_time`` / ``<name>_scale`` when inferred (see :class:`Jumps`);
- with ``series_params=``: per parameter ``<p>_pop``, ``<p>_pop_sd``, ``<p>_z`` (series,)
  and the deterministic ``<p>`` (series,); centred: ``<p>`` (series,) is the sample site
  (see :class:`PopulationPrior`);
- with ``events=``: deterministic ``event_times`` (series, max_events).

A failed solve adds ``-inf`` through the factor ``solver_failed``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from ..datasets.data import ModelData
from ..errors import ConfigError
from ..fields.basic import field_state_dim
from ..solving import failures as _failures
from ..solving.diffeq import STATUS_OK, Solution, SolverConfig, solve, vmap_unless_one
from ..solving.events import StateEvent, solve_with_events
from ..solving.jump_solve import Regime, solve_with_jumps
from ..solving.jumps import Jumps
from ..solving.precision import check_precision
from .equinox_adapter import allow_closure_convert_in_shard_map
from .likelihoods import AbstractLikelihood, NormalNoise, observe
from .observation import AbstractObservation
from .plain import PlainModelSpec
from .populations import check_series_params, strip_params, with_params
from .priors import SITE_Y0, HierarchicalNormal, Normal, check_param_priors, sample_field
from .series_devices import resolve_devices, split_across_devices
from .spec import ModelSpec, check_field_output, check_observation_fn, column_scale, first_observed


def shard_series(model, devices="all"):
    """The same model with its series split across ``devices`` (see ``make_model(series_devices=...)``).

    >>> import bayesode as bo
    >>> model = bo.shard_series(bo.models.lotka_volterra(), devices=1)   # one device: unchanged solves
    >>> model.spec.series_devices is None
    True
    """
    spec = getattr(model, "spec", None)
    if not isinstance(spec, ModelSpec):
        raise ConfigError(f"`model` must be a bayesode model (from make_model or bayesode.models); got {model!r}.")
    # Every ModelSpec field is a make_model argument of the same name: rebuild from all of them,
    # so a field added later is carried over too.
    settings = {
        f.name: getattr(spec, f.name) for f in dataclasses.fields(spec) if f.name not in ("field", "series_devices")
    }
    return make_model(spec.field, **settings, series_devices=devices)


def make_model(
    field,
    *,
    weight_prior=None,
    param_priors: Mapping | None = None,
    y0_prior: dist.Distribution | None = None,
    likelihood: AbstractLikelihood | None = None,
    solver: SolverConfig | None = None,
    observation_fn: Callable | None = None,
    observation: AbstractObservation | None = None,
    args=None,
    recipe: dict | None = None,
    y0=None,
    jumps: Jumps | None = None,
    events: StateEvent | None = None,
    series_params: Mapping | None = None,
    series_devices=None,
    precision: str = "float32",
):
    """Build a plain NumPyro model function for a Bayesian ODE.

    Parameters
    ----------
    field : eqx.Module
        Vector field ``f(t, y, args)`` with a ``state_dim`` attribute. Fields see
        time relative to the earliest series start (``Data.t_ref``).
    weight_prior : Normal or HierarchicalNormal
        Prior on neural weights and biases (default ``Normal(1.0)``).
    param_priors : dict of str to numpyro distribution
        One prior per mechanistic parameter (required if the field has any),
        except those in ``series_params``.
    y0_prior : numpyro distribution with shape () or (state,), optional
        Prior on each series' initial state. Default: centred on the first
        observation of each series (``LogNormal(log y_first, 1)`` for positive
        likelihoods, ``Normal(y_first, column std)`` otherwise).
    likelihood : default ``NormalNoise()``
    solver : SolverConfig
    observation : Observation or Incidence, optional
        What is measured, as any function of each series' solution at its
        observation times and the parameters, with one likelihood family per
        observed column (see :class:`Observation`, :class:`Incidence`);
        replaces ``likelihood`` and ``observation_fn``.
    observation_fn : callable ``y (state,) -> (observed,)``, optional
        What is measured, if not the full state (e.g. ``lambda y: y[1:2]``, or
        ``lambda y: y[1:2] * 763.0`` for counts out of a population of 763).
    args : pytree passed to the field as ``args``.
    y0 : (state,) or (series, state) array, optional
        A known initial state (no ``y0`` site), e.g. zero drug before the
        first dose, or 762 susceptible pupils and 1 infected.
    jumps : Jumps, optional
        Impulses or change points at known or inferred times (doses; see
        :class:`Jumps` and :func:`doses_from_events`). They act in forecasts too.
    events : StateEvent, optional
        Resets when the state crosses a surface (see :class:`StateEvent`).
    series_params : dict of str to PopulationPrior or (center, spread), optional
        Mechanistic parameters that vary by series, drawn from a population
        (non-centred); the field is solved per series with its own values.
    series_devices : None, "all", int or sequence of jax devices, optional
        Split the series across these devices (``"all"``: ``jax.devices()``;
        an int: the first that many). Each device solves its share of the
        series in its own loop (``jax.shard_map``); the series are padded to a
        multiple of the device count. Default None: one device. Chains then
        run vectorised (``chain_method="parallel"`` would need the same
        devices). See also :func:`shard_series`.
    precision : {"float32", "float64"}
        The floating-point precision the model's fits run in unless a fit is
        given its own (``run_nuts(..., precision=...)``); ``float32`` (JAX's
        default) here, the presets choose per model kind (see
        ``docs/decisions.md``). A fit runs in a scope (``jax.enable_x64``), so
        the process-wide ``jax_enable_x64`` is left as it is.

    Returns
    -------
    model : callable ``model(data: ModelData, *, predict_ts=None)`` with ``model.spec``.

    Examples
    --------
    >>> import jax.random as jr
    >>> from numpyro import handlers
    >>> from bayesode import MLPField, make_data
    >>> data = make_data([0.0, 1.0, 2.0], [[1.0, 2.0], [1.1, 1.9], [1.2, 1.7]])
    >>> model = make_model(MLPField(2, 4, 1, key=jr.key(0)))
    >>> tr = handlers.trace(handlers.seed(model, 0)).get_trace(data.model_data())
    >>> tr["y0"]["value"].shape, tr["obs"]["value"].shape
    ((1, 2), (1, 3, 2))
    """
    precision = check_precision(precision)
    state_dim = field_state_dim(field)
    weight_prior = Normal(1.0) if weight_prior is None else weight_prior
    if not isinstance(weight_prior, (Normal, HierarchicalNormal)):
        raise ConfigError(
            f"`weight_prior` must be bayesode.Normal(...) or HierarchicalNormal(...) (a scale for every weight, "
            f"not a numpyro distribution); got {type(weight_prior).__name__}."
        )
    series_params = check_series_params(field, series_params, param_priors)
    param_priors = check_param_priors(strip_params(field, set(series_params)), param_priors)
    if observation is not None:
        if not isinstance(observation, AbstractObservation):
            raise ConfigError(
                f"`observation` must be a bayesode Observation(fn, families=...) or Incidence(...); got {observation!r}."
            )
        if likelihood is not None or observation_fn is not None:
            raise ConfigError(
                "`observation` carries its own likelihood families: give it without `likelihood` or `observation_fn`."
            )
        observation_fn, likelihood = observation, observation.likelihood
    likelihood = NormalNoise() if likelihood is None else likelihood
    if not isinstance(likelihood, AbstractLikelihood):
        raise ConfigError(f"`likelihood` must be a bayesode likelihood such as LogNormalNoise(); got {likelihood!r}.")
    solver = SolverConfig() if solver is None else solver
    if not isinstance(solver, SolverConfig):
        raise ConfigError(f"`solver` must be a bayesode.SolverConfig; got {type(solver).__name__}.")
    if y0_prior is not None and y0 is not None:
        raise ConfigError("give either `y0` (a known initial state) or `y0_prior`, not both.")
    if y0_prior is not None:
        if not isinstance(y0_prior, dist.Distribution):
            raise ConfigError(f"`y0_prior` must be a numpyro distribution; got {type(y0_prior).__name__}.")
        shape = tuple(y0_prior.batch_shape + y0_prior.event_shape)
        if shape not in ((), (state_dim,)):
            raise ConfigError(f"`y0_prior` has shape {shape}; expected () or (state,) = ({state_dim},).")
    if y0 is not None:
        y0 = np.asarray(y0, dtype=float)
        if y0.shape[-1:] != (state_dim,) or y0.ndim > 2 or not np.all(np.isfinite(y0)):
            raise ConfigError(
                f"`y0` must be a finite (state,) = ({state_dim},) or (series, {state_dim}) array; got shape {y0.shape}."
            )
    if observation_fn is not None and y0_prior is None and y0 is None:
        name = "observation" if isinstance(observation_fn, AbstractObservation) else "observation_fn"
        raise ConfigError(
            f"with `{name}`, the data do not pin down the initial state: give `y0_prior=` (or a known `y0=`)."
        )
    if isinstance(observation_fn, AbstractObservation):
        observation_fn.num_observed(state_dim, field)  # a bad function fails here, before tracing
    elif observation_fn is not None:
        check_observation_fn(observation_fn, state_dim)
    if jumps is not None and not isinstance(jumps, Jumps):
        raise ConfigError(
            f"`jumps` must be a bayesode.Jumps (e.g. from doses_from_events); got {type(jumps).__name__}."
        )
    if events is not None and not isinstance(events, StateEvent):
        raise ConfigError(f"`events` must be a bayesode.StateEvent; got {type(events).__name__}.")
    if events is not None and jumps is not None:
        raise ConfigError("`jumps` and `events` cannot be combined in one model yet; use one of them.")
    if jumps is not None:
        jumps.check(state_dim, jumps.num_series or 1)
    if isinstance(solver.adjoint, diffrax.BacksolveAdjoint) and (
        events is not None or (jumps is not None and jumps.time_prior is not None)
    ):
        what = "state events" if events is not None else "inferred jump times (`time_prior`)"
        raise ConfigError(
            f"`SolverConfig(adjoint=diffrax.BacksolveAdjoint())` cannot differentiate {what} (diffrax supports "
            "neither events nor gradients with respect to t0/t1 there); use RecursiveCheckpointAdjoint() or ForwardMode()."
        )
    regime = jumps is not None and jumps.regime
    check_field_output(field, state_dim, Regime(jnp.zeros((), jnp.int32), args) if regime else args)
    series_devices = resolve_devices(series_devices)
    if series_devices is not None:
        allow_closure_convert_in_shard_map()

    spec = ModelSpec(
        field,
        weight_prior,
        param_priors,
        y0_prior,
        likelihood,
        solver,
        observation_fn,
        args,
        recipe,
        y0=y0,
        jumps=jumps,
        events=events,
        series_params=series_params,
        series_devices=series_devices,
        precision=precision,
    )
    stripped = strip_params(field, set(series_params))

    def solve_all(f, series_values, y0, ts, t0, schedule) -> Solution:
        """Solve every series (vmapped), each with its own parameters and jumps."""

        def one(f, values, y0, ts, t0, schedule):
            g = with_params(f, values) if values else f
            if spec.events is not None:
                sol = solve_with_events(g, y0, ts, spec.events, t0=t0, args=spec.args, config=spec.solver)
                return Solution(sol.ys, sol.status, sol.num_steps), sol.event_times
            if schedule is not None:
                times, sizes, mask = schedule
                sol = solve_with_jumps(
                    g, y0, ts, times, sizes, jump_mask=mask, t0=t0, args=spec.args, config=spec.solver, regime=regime
                )
                return sol, None
            return solve(g, y0, ts, t0=t0, args=spec.args, config=spec.solver), None

        per_series = (series_values, y0, ts, t0, schedule)  # every leaf: (series, ...)
        shared, static = eqx.partition(f, eqx.is_array)  # the field's weights and parameters

        def solve_each(shared, per_series):
            field = eqx.combine(shared, static)
            return vmap_unless_one(lambda *series: one(field, *series))(*per_series)

        if series_devices is None:
            return solve_each(shared, per_series)
        return split_across_devices(solve_each, shared, per_series, series_devices)

    # Compiled as one program even when the model runs eagerly (numpyro's guide and
    # initialisation set-up evaluate the model and its gradient outside jit): op by op, its
    # few hundred small operations each cost an XLA compile (~0.08 s here), 40-50 s per SVI fit.
    solve_all = eqx.filter_jit(solve_all)

    def observed(f, series_values, ts, ys, y0):
        """(series, time, observed) predictions of the observations from the solution ``ys``."""
        if spec.observation_fn is None:
            return ys
        if isinstance(spec.observation_fn, AbstractObservation):

            def one(values, ts, ys, y0):
                return spec.observation_fn(ts, ys, y0, with_params(f, values) if values else f)

            return jax.vmap(one)(series_values, ts, ys, y0)
        return jax.vmap(jax.vmap(spec.observation_fn))(ys)

    def model(data: ModelData, *, predict_ts=None, chain_id=None, iteration=None, report=True, latents_only=False):
        num_series = data.ts.shape[0]
        f = sample_field(stripped, spec.weight_prior, spec.param_priors)
        series_values = {}
        for name, prior in spec.series_params.items():
            series_values[name] = prior.sample(name, num_series).astype(data.ts.dtype)
        if spec.y0 is not None:
            y0 = jnp.asarray(spec.y0, data.ts.dtype)
        else:
            if spec.y0_prior is not None:
                d = spec.y0_prior
                d = d.expand((state_dim,)) if not (d.batch_shape + d.event_shape) else d
                y0_dist = d.to_event(1) if d.event_shape == () else d
            else:
                first = first_observed(data.ys, data.mask)
                if spec.likelihood.positive or spec.likelihood.counts:
                    y0_dist = dist.LogNormal(jnp.log(jnp.maximum(first, 1e-3)), 1.0).to_event(1)
                else:
                    y0_dist = dist.Normal(first, column_scale(data.ys, data.mask)).to_event(1)
            with numpyro.plate("series", num_series, dim=-1):
                y0 = numpyro.sample(SITE_Y0, y0_dist)
        y0 = jnp.broadcast_to(y0, (num_series, state_dim)).astype(data.ts.dtype)
        noise = spec.likelihood.sample_noise(column_scale(data.ys, data.mask))
        schedule = None if spec.jumps is None else spec.jumps.sample(num_series, state_dim, data.ts.dtype)
        if latents_only:  # every latent site is drawn above: starting points need no solve
            return

        sol, event_times = solve_all(f, series_values, y0, data.ts, data.t0, schedule)
        numpyro.factor("solver_failed", jnp.where(jnp.all(sol.status == STATUS_OK), 0.0, -jnp.inf))
        if chain_id is not None:
            # `report` may be a traced flag: run_nuts samples with it off (a host callback costs
            # about 1 ms per gradient on CPU) and replays the iterations that diverged with it on.
            params = (eqx.filter(f, eqx.is_inexact_array), y0, series_values)
            send = lambda: _failures.report(chain_id, iteration, sol.status, params)  # noqa: E731
            if isinstance(report, bool):
                if report:
                    send()
            else:
                jax.lax.cond(report, send, lambda: None)
        numpyro.deterministic("solver_status", sol.status)
        numpyro.deterministic("trajectory", sol.ys)
        if event_times is not None:
            numpyro.deterministic("event_times", event_times)
        pred = observed(f, series_values, data.ts, sol.ys, y0)
        observe(spec.likelihood, pred, noise, data.ys, data.mask)

        if predict_ts is not None:
            new, _ = solve_all(f, series_values, y0, predict_ts, data.t0, schedule)
            numpyro.deterministic("trajectory_predict", new.ys)
            numpyro.deterministic("predict_status", new.status)
            pred_new = observed(f, series_values, jnp.broadcast_to(predict_ts, new.ys.shape[:2]), new.ys, y0)
            numpyro.sample("obs_predict", spec.likelihood.distribution(pred_new, noise))

    model.spec = spec
    return model


def check_model(model):
    """Raise a ConfigError unless ``model`` comes from ``make_model``, a preset or ``numpyro_model``."""
    if callable(model) and isinstance(getattr(model, "spec", None), (ModelSpec, PlainModelSpec)):
        return
    if callable(model):
        raise ConfigError(
            "`model` must come from bayesode.make_model(...) (or a bayesode.models preset); a plain NumPyro model "
            "function fn(ts, ys, mask) is wrapped by bayesode.numpyro_model(fn) (it must call "
            "bayesode.record_solve(sol) and observe the data at site 'obs')."
        )
    raise ConfigError(f"`model` must be a bayesode model (from make_model or numpyro_model); got {model!r}.")
