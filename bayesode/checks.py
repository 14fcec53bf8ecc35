"""Argument checks shared by every wing: PRNG keys and seeds, positive integers and numbers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .errors import ConfigError


def as_key(key, argname="key"):
    """Accept an int seed, a typed key or a raw uint32 key; return a raw key."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return jax.random.PRNGKey(int(key))
    if key is None:
        raise ConfigError(f"`{argname}` is required (keyword-only): e.g. {argname}=jax.random.key(0) or an int seed.")
    if isinstance(key, (str, bytes, float, bool)) or not hasattr(key, "dtype") and not isinstance(key, (list, tuple)):
        raise ConfigError(f"`{argname}` must be a PRNG key or an int seed; got {key!r}.")
    key = jnp.asarray(key) if not hasattr(key, "dtype") else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    if key.shape != (2,) or key.dtype != jnp.uint32:
        raise ConfigError(f"`{argname}` must be a PRNG key or an int seed; got {key!r}.")
    return key


def seed_of(key) -> object:
    return int(key) if isinstance(key, (int, np.integer)) else np.asarray(as_key(key)).tolist()


def positive_int(name, value, allow_zero=False):
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        kind = "non-negative" if allow_zero else "positive"
        raise ConfigError(f"`{name}` must be a {kind} int; got {value!r}.")
    return int(value)


def positive_number(name, value):
    """``value`` as a float if it is a finite number above 0 (not a bool or a string); else ConfigError naming ``name``."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not (ok and np.isfinite(value) and value > 0):
        raise ConfigError(f"`{name}` must be a positive finite number; got {value!r}.")
    return float(value)
