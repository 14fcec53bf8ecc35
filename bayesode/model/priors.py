"""Priors: how distributions attach to a field's leaves (by key path) and to ``y0``.

Sample-site names are a public contract (see ``SITE_*``):

- mechanistic parameters: the parameter's own name (``alpha``, ``beta``...);
- neural weights: ``field.<keypath>``, e.g. ``field.layers[0].weight``
  (no ``/``: netCDF reserves it for groups);
- initial states ``y0`` (series, state); noise scales ``sigma`` (state,).
"""

from __future__ import annotations

from collections.abc import Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from ..errors import ConfigError
from ..fields.basic import MLPField

SITE_Y0 = "y0"
SITE_SIGMA = "sigma"
SITE_NU = "nu"
SITE_OBS = "obs"
FIELD_PREFIX = "field"


def _check_scale(owner: str, scale) -> None:
    """A Python or NumPy scale must be a positive finite number; a traced one is let through.

    Checked with NumPy, not ``jnp``: inside ``jax.jit`` every ``jnp`` result is a tracer, so even
    ``Normal(1.0)`` built inside a user's traced model could not be checked with it. A traced scale
    (e.g. a sampled hyperparameter) has no value to check before the model runs.
    """
    if isinstance(scale, jax.core.Tracer):
        return
    value = np.asarray(scale) if isinstance(scale, (int, float, np.ndarray, np.generic, jax.Array)) else None
    if value is None or value.ndim != 0 or not np.issubdtype(value.dtype, np.number) or not (
        np.isfinite(value) and value > 0
    ):
        raise ConfigError(f"`{owner}(scale=...)` must be positive and finite; got {scale!r}.")


class Normal(eqx.Module):
    """Independent ``Normal(0, scale)`` on every neural weight and bias.

    ``scale=1`` (the default) suits fields whose inputs and outputs are
    scaled to O(1) (see ``MLPField(y_scale=, t_scale=)``); shrink it for a
    hybrid's correction so the mechanistic part leads.
    """

    scale: float = 1.0  # a leaf, not static: it may be traced (a sampled scale inside a user's model)

    def __check_init__(self):
        _check_scale("Normal", self.scale)

    def sample(self, site: str, shape: tuple[int, ...]):
        return numpyro.sample(site, dist.Normal(0.0, self.scale).expand(shape).to_event(len(shape)))


class HierarchicalNormal(eqx.Module):
    """A learned scale per weight array: ``s ~ HalfNormal(scale)``, ``w = s * z``, ``z ~ N(0, 1)``.

    Non-centred, so NUTS does not meet the funnel between ``s`` and ``w``.
    Sites: ``<name>_scale`` and ``<name>_z``; the weight itself is rebuilt
    from them.
    """

    scale: float = 1.0  # a leaf, not static: it may be traced

    def __check_init__(self):
        _check_scale("HierarchicalNormal", self.scale)

    def sample(self, site: str, shape: tuple[int, ...]):
        s = numpyro.sample(f"{site}_scale", dist.HalfNormal(self.scale))
        z = numpyro.sample(f"{site}_z", dist.Normal(0.0, 1.0).expand(shape).to_event(len(shape)))
        return s * z


def _mechanistic_name(path) -> str | None:
    """``alpha`` for a leaf at ``....params['alpha']``, else None."""
    for a, b in zip(path[:-1], path[1:]):
        if isinstance(a, jax.tree_util.GetAttrKey) and a.name == "params" and isinstance(b, jax.tree_util.DictKey):
            return str(b.key)
    return None


def field_sites(field) -> list[tuple[str, tuple[int, ...], bool]]:
    """``(site name, shape, is_mechanistic)`` for every random leaf of ``field``."""
    params, _ = eqx.partition(field, eqx.is_inexact_array)
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        name = _mechanistic_name(path)
        if name is not None:
            out.append((name, tuple(leaf.shape), True))
        else:
            out.append((FIELD_PREFIX + jax.tree_util.keystr(path), tuple(leaf.shape), False))
    return out


def check_param_priors(field, param_priors: Mapping | None) -> dict:
    """Validate that every mechanistic parameter has a prior, before tracing."""
    param_priors = dict(param_priors or {})
    mech = [(n, s) for n, s, is_mech in field_sites(field) if is_mech]
    names = [n for n, _ in mech]
    if len(set(names)) != len(names):
        raise ConfigError(f"mechanistic parameter names repeat in the field: {names}; rename them.")
    missing = [n for n in names if n not in param_priors]
    if missing:
        raise ConfigError(
            f"`param_priors` has no prior for mechanistic parameter(s) {missing}; "
            f"give a numpyro distribution for each, e.g. param_priors={{'{missing[0]}': dist.LogNormal(0, 1)}}."
        )
    unknown = sorted(set(param_priors) - set(names))
    if unknown:
        raise ConfigError(f"`param_priors` names {unknown}, which the field does not have; its parameters are {names}.")
    for n, shape in mech:
        d = param_priors[n]
        if not isinstance(d, dist.Distribution):
            raise ConfigError(f"`param_priors['{n}']` must be a numpyro distribution; got {type(d).__name__}.")
        if tuple(d.batch_shape + d.event_shape) not in ((), shape):
            raise ConfigError(
                f"`param_priors['{n}']` has shape {tuple(d.batch_shape + d.event_shape)}; the parameter has shape {shape}."
            )
    return param_priors


def _random_leaves(field):
    """Filter spec for ``eqx.partition``: True for leaves that get a prior.

    Every inexact array leaf, except the leading ``fixed_layers`` of any
    ``MLPField`` inside ``field`` (held at their values: a neural-linear model).
    """

    def spec(node):
        if isinstance(node, MLPField):
            flags = jax.tree_util.tree_map(eqx.is_inexact_array, node)
            if not node.fixed_layers:
                return flags
            fixed = [jax.tree_util.tree_map(lambda _: False, flags.layers[i]) for i in range(node.fixed_layers)]
            return eqx.tree_at(lambda m: tuple(m.layers[: node.fixed_layers]), flags, tuple(fixed))
        return eqx.is_inexact_array(node)

    return jax.tree_util.tree_map(spec, field, is_leaf=lambda x: isinstance(x, MLPField))


def sample_field(field, weight_prior=None, param_priors: Mapping | None = None):
    """Inside a NumPyro model: return ``field`` with every random leaf replaced by a sample.

    Parameters
    ----------
    field : eqx.Module
        Any vector field. Mechanistic parameters (``params['name']``) use
        ``param_priors[name]``; every other inexact array leaf uses
        ``weight_prior`` (default ``Normal(1.0)``), except the leading
        ``fixed_layers`` of an ``MLPField``, which keep their values.
    """
    weight_prior = Normal(1.0) if weight_prior is None else weight_prior
    param_priors = param_priors or {}
    params, static = eqx.partition(field, _random_leaves(field))
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    new = []
    for path, leaf in flat:
        name = _mechanistic_name(path)
        if name is not None:
            d = param_priors[name]
            if tuple(d.batch_shape) != tuple(leaf.shape) and leaf.shape:
                d = d.expand(leaf.shape).to_event(leaf.ndim)
            value = numpyro.sample(name, d)
        else:
            value = weight_prior.sample(FIELD_PREFIX + jax.tree_util.keystr(path), tuple(leaf.shape))
        new.append(jnp.asarray(value, dtype=leaf.dtype))
    return eqx.combine(jax.tree_util.tree_unflatten(treedef, new), static)
