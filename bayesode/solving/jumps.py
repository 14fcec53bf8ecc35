"""Jump schedules inside a model: doses, resets and change points, at known or inferred times.

:class:`Jumps` holds a schedule (times or a prior over them, amounts, an
optional learned scale), validates it before anything is traced and, inside
a model, samples its sites and returns the (series, jump) arrays that
:func:`bayesode.solving.jump_solve.solve_with_jumps` integrates through.
:func:`doses_from_events` builds a per-series schedule from an events table.

Convention: states are right-continuous. A save time equal to a jump time
sees the state *after* the jump; to observe a trough just before a dose,
record it a moment earlier.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from ..errors import ConfigError, DataError

SCALE_PER = ("model", "series", "jump")


def _as_array(value, argname, dtype=float):
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"`{argname}` could not be read as a numeric array ({e}).") from None
    if dtype is float and not np.all(np.isfinite(arr)):
        raise ConfigError(f"`{argname}` must be finite; got {value!r}. Mark padding with `mask=` instead of NaN.")
    return arr


def _prior_shape(d) -> tuple[int, ...]:
    return tuple(d.batch_shape + d.event_shape)


class Jumps(eqx.Module):
    """A jump schedule for :func:`bayesode.make_model`: doses, resets or change points.

    Parameters
    ----------
    times : (jump,) or (series, jump) array, optional
        Jump times in the data's raw time units (the model subtracts
        ``time_origin``). Omit with ``time_prior``.
    amounts : (jump,), (series, jump), (jump, state) or (series, jump, state) array
        What each jump adds: a number per jump with ``state=`` (the compartment
        that receives it), else a full (state,) vector per jump. Default: ones
        (with ``scale_prior``, the learned scale is then the jump size).
    state : int, optional
        Index of the state that receives scalar ``amounts``.
    mask : bool array like ``times``, optional
        False marks padding, so series can have different numbers of jumps.
    time_prior : numpyro distribution of shape () or (jump,), optional
        Infer the jump times (shared by all series; raw time units). Site
        ``<name>_time``.
    scale_prior : numpyro distribution, optional
        Infer a positive multiplier on ``amounts``. Site ``<name>_scale`` of shape
        () for ``scale_per="model"``, (series,) for ``"series"``, or the shape of
        ``times``/``amounts`` for ``"jump"`` (one learned magnitude per jump).
    scale_per : {"model", "series", "jump"}
    regime : bool
        Pass ``Regime(index, args)`` to the field (a change of dynamics at each jump).
    name : str
        Prefix of the sample sites (``"dose"`` gives ``dose_scale``, ``dose_time``).
    time_origin : float
        Raw time that model time 0 stands for: the data's ``t_ref``
        (``Data.t_ref``, the earliest series start). :func:`doses_from_events`
        sets it; set it yourself when ``t0``/the first time is not 0.

    Examples
    --------
    >>> import numpyro.distributions as dist
    >>> doses = Jumps(times=[0.0, 12.0], amounts=[100.0, 100.0], state=0,
    ...               scale_prior=dist.LogNormal(0.0, 0.5), name="dose")
    >>> doses.num_jumps, doses.sites()
    (2, {'dose_scale': ()})
    """

    times: np.ndarray | None
    amounts: np.ndarray
    mask: np.ndarray
    time_prior: dist.Distribution | None
    scale_prior: dist.Distribution | None
    state: int | None = eqx.field(static=True)
    scale_per: str = eqx.field(static=True)
    regime: bool = eqx.field(static=True)
    name: str = eqx.field(static=True)
    time_origin: float = eqx.field(static=True)

    def __init__(
        self,
        times=None,
        amounts=None,
        *,
        state: int | None = None,
        mask=None,
        time_prior: dist.Distribution | None = None,
        scale_prior: dist.Distribution | None = None,
        scale_per: str = "model",
        regime: bool = False,
        name: str = "jump",
        time_origin: float = 0.0,
    ):
        if not (isinstance(name, str) and name.isidentifier()):
            raise ConfigError(f"`name` must be a Python identifier (it prefixes site names); got {name!r}.")
        if scale_per not in SCALE_PER:
            raise ConfigError(f"`scale_per`={scale_per!r} is unknown; choose one of {SCALE_PER}.")
        for argname, d in (("time_prior", time_prior), ("scale_prior", scale_prior)):
            if d is not None and not isinstance(d, dist.Distribution):
                raise ConfigError(f"`{argname}` must be a numpyro distribution or None; got {type(d).__name__}.")
        if (times is None) == (time_prior is None):
            raise ConfigError(
                "give exactly one of `times` (known jump times) and `time_prior` (inferred times); "
                f"got times={'None' if times is None else 'an array'}, time_prior={time_prior!r}."
            )
        if time_prior is not None:
            shape = _prior_shape(time_prior)
            if len(shape) > 1:
                raise ConfigError(f"`time_prior` must have shape () or (jump,); got {shape}.")
            num = shape[0] if shape else 1
            if mask is not None:
                raise ConfigError("`mask` pads known `times`; inferred times (`time_prior`) need no mask.")
            times_arr = None
            lead = (num,)
        else:
            times_arr = _as_array(times, "times")
            if times_arr.ndim not in (1, 2):
                raise ConfigError(f"`times` must have shape (jump,) or (series, jump); got {times_arr.shape}.")
            lead = times_arr.shape
        if amounts is None and state is None and not regime:
            raise ConfigError("without `amounts`, give `state=` (the index of the state each jump adds to).")
        if amounts is None:
            # Ones into `state` (the learned scale is the size), or no jump at all for a pure change point.
            amounts_arr = np.ones(lead) if state is not None else np.zeros(lead)
            state = 0 if state is None else state
        else:
            amounts_arr = _as_array(amounts, "amounts")
        scalar_amounts = state is not None
        core = amounts_arr.shape if scalar_amounts else amounts_arr.shape[:-1]
        ok = (
            amounts_arr.ndim >= (1 if scalar_amounts else 2)
            and len(core) in (1, 2)
            and core[-1] == lead[-1]
            and (len(core) == 1 or len(lead) == 1 or core[0] == lead[0])
        )
        if not ok:
            want = "(jump,) or (series, jump)" if scalar_amounts else "(jump, state) or (series, jump, state)"
            raise ConfigError(
                f"`amounts` has shape {amounts_arr.shape}; expected {want} with jump = {lead[-1]} "
                f"to match `{'times' if times_arr is not None else 'time_prior'}` {lead}."
                + ("" if scalar_amounts else " Pass `state=` for one number per jump.")
            )
        if state is not None and not (isinstance(state, (int, np.integer)) and state >= 0):
            raise ConfigError(f"`state` must be a non-negative int (a state index); got {state!r}.")
        mask_arr = np.ones(lead, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        if mask_arr.shape != lead:
            raise ConfigError(f"`mask` must have the shape of `times` {lead}; got {mask_arr.shape}.")
        self.times = times_arr
        self.amounts = amounts_arr
        self.mask = mask_arr
        self.time_prior = time_prior
        self.scale_prior = scale_prior
        self.state = None if state is None else int(state)
        self.scale_per = scale_per
        self.regime = bool(regime)
        self.name = name
        self.time_origin = float(time_origin)

    @property
    def num_jumps(self) -> int:
        return int(self.mask.shape[-1])

    @property
    def num_series(self) -> int | None:
        """Series count fixed by the arrays, or None when every series shares the schedule."""
        shapes = [self.mask.shape, self.amounts.shape if self.state is not None else self.amounts.shape[:-1]]
        two = [s[0] for s in shapes if len(s) == 2]
        return two[0] if two else None

    def scale_shape(self, num_series) -> tuple:
        """Shape of the ``<name>_scale`` site for ``num_series`` series."""
        per_jump = (self.num_jumps,) if self.num_series is None else (num_series, self.num_jumps)
        return {"model": (), "series": (num_series,), "jump": per_jump}[self.scale_per]

    def sites(self) -> dict[str, tuple]:
        """Sample sites this schedule adds, by name, with their shapes (``"series"`` for the series axis)."""
        out = {}
        if self.time_prior is not None:
            out[f"{self.name}_time"] = _prior_shape(self.time_prior)
        if self.scale_prior is not None:
            out[f"{self.name}_scale"] = self.scale_shape("series")
        return out

    def check(self, state_dim: int, num_series: int) -> None:
        """Python-level checks against the model and data (before tracing)."""
        if self.state is not None and self.state >= state_dim:
            raise ConfigError(f"`state`={self.state} is out of range for a field with state_dim={state_dim}.")
        if self.state is None and self.amounts.shape[-1] != state_dim:
            raise ConfigError(
                f"`amounts` has {self.amounts.shape[-1]} entries per jump; the field has state_dim={state_dim}."
            )
        if self.num_series is not None and self.num_series != num_series:
            raise DataError(
                f"the jump schedule `{self.name}` has {self.num_series} series (first axis of times/amounts) "
                f"but the data have {num_series}; give one row per series, in the data's series order."
            )

    def sample(self, num_series: int, state_dim: int, dtype) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Inside a model: ``(times (series, jump), sizes (series, jump, state), mask (series, jump))``.

        Adds the sites of :meth:`sites`; times are in model time (raw minus ``time_origin``).
        """
        S, J = num_series, self.num_jumps
        if self.time_prior is None:
            times = jnp.asarray(self.times, dtype)
        else:
            times = jnp.reshape(numpyro.sample(f"{self.name}_time", self.time_prior), (J,)).astype(dtype)
        times = jnp.broadcast_to(times - self.time_origin, (S, J))
        amounts = jnp.asarray(self.amounts, dtype)
        if self.state is not None:
            unit = jax.nn.one_hot(self.state, state_dim, dtype=dtype)
            amounts = amounts[..., None] * jnp.reshape(unit, (1,) * amounts.ndim + (state_dim,))
        amounts = jnp.broadcast_to(amounts, (S, J, state_dim))
        if self.scale_prior is not None:
            site, shape = f"{self.name}_scale", self.scale_shape(S)
            d = self.scale_prior
            if _prior_shape(d) == () and shape:
                d = d.expand(shape).to_event(len(shape))
            if _prior_shape(d) != shape:
                raise ConfigError(f"`scale_prior` has shape {_prior_shape(d)}; `{site}` needs () or {shape}.")
            scale = jnp.asarray(numpyro.sample(site, d), dtype)
            amounts = amounts * jnp.broadcast_to(jnp.reshape(scale, shape + (1,) * (2 - len(shape))), (S, J))[..., None]
        return times, amounts, jnp.broadcast_to(jnp.asarray(self.mask), (S, J))


def doses_from_events(
    events: dict,
    data,
    *,
    state_names=None,
    name: str = "dose",
    scale_prior: dist.Distribution | None = None,
    scale_per: str = "model",
) -> Jumps:
    """A per-series dose schedule from an events table (e.g. ``datasets.load("pk_multidose").events``).

    Parameters
    ----------
    events : dict of (event,) arrays ``subject`` (series label), ``time`` (raw
        units), ``amount`` and ``compartment`` (state name).
    data : Data
        Fixes the series order (``data.series_names``) and ``time_origin`` (``data.t_ref``).
    state_names : sequence of str, optional
        Names of the field's states, if not the data's columns.

    Returns
    -------
    Jumps
        Padded (series, jump) arrays; doses into different compartments are
        full (state,) vectors.

    Examples
    --------
    >>> from bayesode import datasets
    >>> ds = datasets.load("pk_multidose")
    >>> doses = doses_from_events(ds.events, ds.to_data())
    >>> doses.times.shape, int(doses.mask.sum())
    ((3, 4), 11)
    """
    missing = [k for k in ("subject", "time", "amount", "compartment") if k not in events]
    if missing:
        raise DataError(f"`events` lacks column(s) {missing}; it has {sorted(events)}.")
    names = list(data.state_names if state_names is None else state_names)
    subject = np.asarray(events["subject"]).astype(str)
    unknown = sorted(set(subject) - set(data.series_names))
    if unknown:
        raise DataError(
            f"`events` name subject(s) {unknown} that are not series of the data {list(data.series_names)}."
        )
    comp = np.asarray(events["compartment"]).astype(str)
    bad = sorted(set(comp) - set(names))
    if bad:
        raise DataError(f"`events` dose into compartment(s) {bad}, which are not states {names}; pass `state_names=`.")
    S, D = len(data.series_names), len(names)
    J = max(1, max(int(np.sum(subject == s)) for s in data.series_names))
    times, amounts, mask = np.zeros((S, J)), np.zeros((S, J, D)), np.zeros((S, J), dtype=bool)
    for i, s in enumerate(data.series_names):
        rows = np.flatnonzero(subject == s)
        for j, r in enumerate(rows):
            times[i, j] = float(events["time"][r])
            amounts[i, j, names.index(comp[r])] = float(events["amount"][r])
            mask[i, j] = True
    return Jumps(
        times, amounts, mask=mask, scale_prior=scale_prior, scale_per=scale_per, name=name, time_origin=data.t_ref
    )
