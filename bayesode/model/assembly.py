"""Compose field, priors, solve and observation into a plain NumPyro model function.

``make_model(...)`` returns ``model(data, *, predict_ts=None)`` where ``data``
is a :class:`ModelData` (from ``Data.model_data()``). Sites:

- field parameters (see :mod:`bayesode._priors`);
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
from dataclasses import dataclass
from dataclasses import field as dc_field

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from ..datasets.data import Data, ModelData
from ..errors import ConfigError, DataError, FieldError
from ..fields.basic import field_state_dim
from ..solving import failures as _failures
from ..solving.diffeq import STATUS_OK, Solution, SolverConfig, solve, vmap_unless_one
from ..solving.jumps import Jumps, Regime, StateEvent, solve_with_events, solve_with_jumps
from .likelihoods import AbstractLikelihood, NormalNoise, observe
from .priors import (
    SITE_Y0,
    HierarchicalNormal,
    Normal,
    _mechanistic_name,
    check_param_priors,
    field_sites,
    sample_field,
)

LINKS = ("log", "identity")


class PopulationPrior(eqx.Module):
    """A mechanistic parameter that varies by series around a population value.

    For series ``s``: ``g(theta_s) ~ Normal(g(pop), pop_sd)`` with ``pop ~ center``,
    ``pop_sd ~ spread`` and link ``g`` (``log`` or ``identity``).

    Non-centred by default: ``g(theta_s) = g(pop) + pop_sd * z_s`` with
    ``z_s ~ Normal(0, 1)`` sampled instead of ``theta_s``, which avoids the
    funnel between ``pop_sd`` and the series values when the data say little
    about each series. When every series has enough data to pin its own value
    (e.g. a dense concentration profile per subject), the non-centred
    posterior becomes a narrow curved ridge and NUTS needs tiny steps; use
    ``centered=True`` there (sample ``theta_s`` directly).

    Parameters
    ----------
    center : numpyro distribution, shape ()
        Prior on the population value in natural units (the population median
        for ``link="log"``), e.g. ``dist.LogNormal(0, 1)``. Site ``<name>_pop``.
    spread : numpyro distribution, shape (), positive
        Prior on the between-series standard deviation on the link scale (for
        ``log``: roughly the coefficient of variation), e.g. ``dist.HalfNormal(0.5)``.
        Site ``<name>_pop_sd``.
    link : {"log", "identity"}
        Default ``"log"`` (positive parameters such as rates).
    centered : bool
        Sample the series values themselves (site ``<name>`` (series,)) instead
        of the offsets ``<name>_z``. Default False.

    Examples
    --------
    >>> import numpyro.distributions as dist
    >>> PopulationPrior(dist.LogNormal(0.0, 1.0), dist.HalfNormal(0.5)).link
    'log'
    """

    center: dist.Distribution
    spread: dist.Distribution
    link: str = eqx.field(static=True, default="log")
    centered: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        for argname in ("center", "spread"):
            d = getattr(self, argname)
            if not isinstance(d, dist.Distribution):
                raise ConfigError(f"`PopulationPrior({argname}=...)` must be a numpyro distribution; got {d!r}.")
            if tuple(d.batch_shape + d.event_shape) != ():
                raise ConfigError(
                    f"`PopulationPrior({argname}=...)` must be a scalar distribution; got shape "
                    f"{tuple(d.batch_shape + d.event_shape)}."
                )
        if self.link not in LINKS:
            raise ConfigError(f"`PopulationPrior(link=...)` must be one of {LINKS}; got {self.link!r}.")
        if not isinstance(self.centered, bool):
            raise ConfigError(f"`PopulationPrior(centered=...)` must be True or False; got {self.centered!r}.")

    def sample(self, name: str, num_series: int):
        """Inside a model: sites ``<name>_pop``, ``<name>_pop_sd`` and ``<name>_z`` (deterministic
        ``<name>``), or ``<name>`` itself when centred; returns the (series,) values."""
        pop = numpyro.sample(f"{name}_pop", self.center)
        sd = numpyro.sample(f"{name}_pop_sd", self.spread)
        with numpyro.plate("series", num_series, dim=-1):
            if self.centered:
                d = dist.LogNormal(jnp.log(pop), sd) if self.link == "log" else dist.Normal(pop, sd)
                return numpyro.sample(name, d)
            z = numpyro.sample(f"{name}_z", dist.Normal(0.0, 1.0))
        return numpyro.deterministic(name, self.combine(pop, sd, z))

    def combine(self, pop, sd, z):
        """Series values from the population value, spread and standard-normal offsets (broadcasting)."""
        if self.link == "log":
            return jnp.exp(jnp.log(pop) + sd * z)
        return pop + sd * z


def _check_series_params(field, series_params, param_priors) -> dict:
    """Validate ``series_params`` (before tracing); tuples become :class:`PopulationPrior`."""
    out = {}
    scalars = {n: shape for n, shape, mech in field_sites(field) if mech}
    for name, prior in dict(series_params or {}).items():
        if name not in scalars:
            raise ConfigError(
                f"`series_params` names {name!r}, which is not a mechanistic parameter of the field; "
                f"its parameters are {sorted(scalars)}."
            )
        if scalars[name] != ():
            raise ConfigError(
                f"`series_params['{name}']`: only scalar parameters can vary by series; it has shape {scalars[name]}."
            )
        if name in (param_priors or {}):
            raise ConfigError(
                f"{name!r} is in both `param_priors` and `series_params`; a per-series parameter takes its prior "
                "from `series_params` only, so remove it from `param_priors`."
            )
        if isinstance(prior, tuple) and len(prior) == 2:
            center = prior[0]
            positive = isinstance(center, dist.Distribution) and center.support is dist.constraints.positive
            prior = PopulationPrior(center, prior[1], link="log" if positive else "identity")
        if not isinstance(prior, PopulationPrior):
            raise ConfigError(
                f"`series_params['{name}']` must be PopulationPrior(center, spread) or a (center, spread) tuple of "
                f"numpyro distributions; got {prior!r}."
            )
        out[name] = prior
    return out


def _strip_params(field, names):
    """``field`` with the named mechanistic leaves made non-random placeholders (Python 0.0)."""
    return jax.tree_util.tree_map_with_path(lambda p, x: 0.0 if _mechanistic_name(p) in names else x, field)


def _with_params(field, values: dict):
    """``field`` with the named mechanistic leaves set to ``values[name]``."""
    return jax.tree_util.tree_map_with_path(lambda p, x: values.get(_mechanistic_name(p), x), field)


def per_series_params(posterior) -> dict:
    """Per-series draws of every ``series_params`` parameter: name -> (chain, draw, series) array.

    Rebuilt from the population sites (``<p>_pop``, ``<p>_pop_sd``, ``<p>_z``)
    of a fitted :class:`bayesode.Posterior` (taken as they are when centred).
    """
    out = {}
    for name, prior in posterior.model.spec.series_params.items():
        s = posterior.samples
        if prior.centered:
            out[name] = np.asarray(s[name])
            continue
        out[name] = np.asarray(
            prior.combine(s[f"{name}_pop"][..., None], s[f"{name}_pop_sd"][..., None], s[f"{name}_z"])
        )
    return out


@dataclass(frozen=True, eq=False)
class ModelSpec:
    """Everything that defines a Bayesian ODE model (see :func:`make_model`)."""

    field: eqx.Module
    weight_prior: eqx.Module
    param_priors: Mapping
    y0_prior: dist.Distribution | None
    likelihood: AbstractLikelihood
    solver: SolverConfig
    observation_fn: Callable | None
    args: object = None
    recipe: dict | None = dc_field(default=None)
    y0: jax.Array | None = None
    jumps: Jumps | None = None
    events: StateEvent | None = None
    series_params: Mapping = dc_field(default_factory=dict)
    series_devices: tuple | None = None

    @property
    def state_dim(self) -> int:
        return field_state_dim(self.field)

    def check_data(self, data: Data) -> None:
        """Python-level checks of data against the model, before tracing."""
        expected = self.num_observed
        if data.num_observed != expected:
            what = "observation_fn outputs" if self.observation_fn else "field.state_dim"
            raise DataError(
                f"data have {data.num_observed} observed column(s) {list(data.state_names)}, but the model's "
                f"{what} = {expected}; pass `ys` with shape (time, {expected})."
            )
        self.likelihood.check_data(data.ys)
        if self.jumps is not None:
            self.jumps.check(self.state_dim, data.num_series)
        if self.y0 is not None and self.y0.ndim == 2 and self.y0.shape[0] != data.num_series:
            raise DataError(
                f"`y0` has {self.y0.shape[0]} rows (one per series) but the data have {data.num_series} series."
            )
        if self.y0_prior is None and self.y0 is None and self.observation_fn is None:
            never = [n for k, n in enumerate(data.state_names) if not data.mask[:, :, k].any(axis=1).all()]
            if never:
                raise DataError(
                    f"state(s) {never} are never observed in some series, so the default y0 prior (centred on the "
                    "first observation) is undefined; give `y0_prior=` to make_model."
                )

    @property
    def num_observed(self) -> int:
        if self.observation_fn is None:
            return self.state_dim
        out = jax.eval_shape(self.observation_fn, jax.ShapeDtypeStruct((self.state_dim,), jnp.result_type(float)))
        return int(out.shape[0])


def _check_observation_fn(observation_fn, state_dim):
    if not callable(observation_fn):
        raise ConfigError(f"`observation_fn` must be a function y (state,) -> (observed,); got {observation_fn!r}.")
    try:
        out = jax.eval_shape(observation_fn, jax.ShapeDtypeStruct((state_dim,), jnp.result_type(float)))
    except Exception as e:
        raise FieldError(f"calling `observation_fn(y)` with y of shape ({state_dim},) failed: {e}") from e
    if not hasattr(out, "shape") or len(out.shape) != 1:
        raise FieldError(
            f"`observation_fn(y)` must return a 1-D array (observed,); got "
            f"{getattr(out, 'shape', type(out).__name__)} for y of shape ({state_dim},)."
        )


def _check_field_output(field, state_dim, args):
    try:
        out = jax.eval_shape(lambda y: field(0.0, y, args), jax.ShapeDtypeStruct((state_dim,), jnp.result_type(float)))
    except Exception as e:
        raise FieldError(f"calling `field(t, y, args)` with y of shape ({state_dim},) failed: {e}") from e
    if not hasattr(out, "shape") or out.shape != (state_dim,):
        raise FieldError(
            f"`field(t, y, args)` must return dy/dt with the shape of y, ({state_dim},); "
            f"got {getattr(out, 'shape', type(out).__name__)}."
        )
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise FieldError(f"`field(t, y, args)` must return floats; got dtype {out.dtype}. Use float arithmetic.")


def _first_observed(ys, mask):
    """(series, observed) first observed value of each column; 1.0 where a column is never observed."""
    idx = jnp.argmax(mask, axis=1)  # (series, observed)
    first = jnp.take_along_axis(ys, idx[:, None, :], axis=1)[:, 0, :]
    return jnp.where(jnp.any(mask, axis=1), first, 1.0)


def _column_scale(ys, mask):
    """(observed,) std of observed values per column, falling back to |mean| then 1."""
    m = mask.astype(ys.dtype)
    n = jnp.maximum(jnp.sum(m, axis=(0, 1)), 1.0)
    mean = jnp.sum(ys * m, axis=(0, 1)) / n
    std = jnp.sqrt(jnp.sum(((ys - mean[None, None, :]) * m) ** 2, axis=(0, 1)) / n)
    return jnp.where(std > 0, std, jnp.where(jnp.abs(mean) > 0, jnp.abs(mean), 1.0))


def _resolve_devices(series_devices) -> tuple | None:
    """``make_model(series_devices=...)`` as a tuple of two or more devices, or None (one device)."""
    if series_devices is None:
        return None
    available = jax.devices()
    if isinstance(series_devices, str):
        if series_devices != "all":
            raise ConfigError(f'`series_devices`={series_devices!r}: give "all", a device count or a list of devices.')
        devices = tuple(available)
    elif isinstance(series_devices, (int, np.integer)) and not isinstance(series_devices, bool):
        if not 1 <= series_devices <= len(available):
            raise ConfigError(
                f"`series_devices`={series_devices} but jax sees {len(available)} device(s) ({available[0].platform}); "
                "give a count between 1 and that (on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N "
                "set before jax starts gives N devices)."
            )
        devices = tuple(available[: int(series_devices)])
    else:
        devices = tuple(series_devices) if isinstance(series_devices, (list, tuple)) else None
        if not devices or not all(isinstance(d, jax.Device) for d in devices) or len(set(devices)) != len(devices):
            raise ConfigError(
                f'`series_devices` must be "all", a device count or a list of distinct jax devices; got {series_devices!r}.'
            )
    return devices if len(devices) > 1 else None


def _allow_closure_convert_in_shard_map():
    """Let diffrax's checkpointed adjoint run inside ``shard_map`` (equinox <= 0.13).

    Reverse mode through ``RecursiveCheckpointAdjoint`` closure-converts the loop body and
    checks that it is called with the example arguments' shapes, dtypes *and shardings*;
    inside ``shard_map`` a value gains the manual mesh's sharding (adding zero is enough), so
    the check fails ("Closure-converted function called with different dynamic arguments":
    diffrax issue #765, fix proposed in equinox PR #1261). Shapes and dtypes, what the check
    is for, are still compared; only the sharding metadata is ignored. Applied once, by the
    first model built with ``series_devices``.
    """
    import equinox._ad as eqx_ad

    original = getattr(eqx_ad, "_strip_weak_dtype", None)
    if original is None or getattr(original, "_bayesode", False):
        return

    def shape_and_dtype(tree):
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)

    shape_and_dtype._bayesode = True
    eqx_ad._strip_weak_dtype = shape_and_dtype


def _split_across_devices(fn, shared, per_series, devices):
    """``fn(shared, per_series)`` with the series axis (leading, of every leaf of ``per_series``)
    split across ``devices``.

    Each device runs ``fn`` on its share in its own program (``jax.shard_map``), so a
    device's adaptive-step loop never waits on another's. ``shared`` (the field's weights)
    goes in as one copy per device: reverse mode then returns one gradient per copy and the
    copying sums them (a replicated ``PartitionSpec()`` input relies on ``check_vma=True``
    for that sum, a check diffrax's loops do not pass). The series are
    padded with copies of the last one to a multiple of the device count; the padding is
    cut from the result.
    """
    from jax.sharding import Mesh, PartitionSpec

    num_series = jax.tree.leaves(per_series)[0].shape[0]
    pad = -num_series % len(devices)
    if pad:
        per_series = jax.tree.map(lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)]), per_series)
    mesh = Mesh(np.asarray(devices), ("series",))
    by_series = PartitionSpec("series")
    copies = jax.tree.map(lambda x: jnp.broadcast_to(x, (len(devices), *x.shape)), shared)

    def on_device(copies, per_series):
        return fn(jax.tree.map(lambda x: x[0], copies), per_series)

    out = jax.shard_map(on_device, mesh=mesh, in_specs=(by_series, by_series), out_specs=by_series, check_vma=False)(
        copies, per_series
    )
    return jax.tree.map(lambda x: x[:num_series], out) if pad else out


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
    args=None,
    recipe: dict | None = None,
    y0=None,
    jumps: Jumps | None = None,
    events: StateEvent | None = None,
    series_params: Mapping | None = None,
    series_devices=None,
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
    state_dim = field_state_dim(field)
    weight_prior = Normal(1.0) if weight_prior is None else weight_prior
    if not isinstance(weight_prior, (Normal, HierarchicalNormal)):
        raise ConfigError(
            f"`weight_prior` must be bayesode.Normal(...) or HierarchicalNormal(...) (a scale for every weight, "
            f"not a numpyro distribution); got {type(weight_prior).__name__}."
        )
    series_params = _check_series_params(field, series_params, param_priors)
    param_priors = check_param_priors(_strip_params(field, set(series_params)), param_priors)
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
        raise ConfigError(
            "with `observation_fn`, the data do not pin down the initial state: give `y0_prior=` (or a known `y0=`)."
        )
    if observation_fn is not None:
        _check_observation_fn(observation_fn, state_dim)
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
    _check_field_output(field, state_dim, Regime(jnp.zeros((), jnp.int32), args) if regime else args)
    series_devices = _resolve_devices(series_devices)
    if series_devices is not None:
        _allow_closure_convert_in_shard_map()

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
    )
    stripped = _strip_params(field, set(series_params))

    def solve_all(f, series_values, y0, ts, t0, schedule) -> Solution:
        """Solve every series (vmapped), each with its own parameters and jumps."""

        def one(f, values, y0, ts, t0, schedule):
            g = _with_params(f, values) if values else f
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
        return _split_across_devices(solve_each, shared, per_series, series_devices)

    # Compiled as one program even when the model runs eagerly (numpyro's guide and
    # initialisation set-up evaluate the model and its gradient outside jit): op by op, its
    # few hundred small operations each cost an XLA compile (~0.08 s here), 40-50 s per SVI fit.
    solve_all = eqx.filter_jit(solve_all)

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
                first = _first_observed(data.ys, data.mask)
                if spec.likelihood.positive or spec.likelihood.counts:
                    y0_dist = dist.LogNormal(jnp.log(jnp.maximum(first, 1e-3)), 1.0).to_event(1)
                else:
                    y0_dist = dist.Normal(first, _column_scale(data.ys, data.mask)).to_event(1)
            with numpyro.plate("series", num_series, dim=-1):
                y0 = numpyro.sample(SITE_Y0, y0_dist)
        y0 = jnp.broadcast_to(y0, (num_series, state_dim)).astype(data.ts.dtype)
        noise = spec.likelihood.sample_noise(_column_scale(data.ys, data.mask))
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
        pred = sol.ys if spec.observation_fn is None else jax.vmap(jax.vmap(spec.observation_fn))(sol.ys)
        observe(spec.likelihood, pred, noise, data.ys, data.mask)

        if predict_ts is not None:
            new, _ = solve_all(f, series_values, y0, predict_ts, data.t0, schedule)
            numpyro.deterministic("trajectory_predict", new.ys)
            numpyro.deterministic("predict_status", new.status)
            pred_new = new.ys if spec.observation_fn is None else jax.vmap(jax.vmap(spec.observation_fn))(new.ys)
            numpyro.sample("obs_predict", spec.likelihood.distribution(pred_new, noise))

    model.spec = spec
    return model


def check_model(model):
    if not callable(model) or not hasattr(model, "spec"):
        raise ConfigError("`model` must come from bayesode.make_model(...) (or a bayesode.models preset).")
