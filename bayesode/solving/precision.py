"""Floating-point precision of a fit: the one setting, checked, and the scope it runs in.

JAX computes in float32 unless 64-bit types are enabled. A fit does not flip that for the whole
process (``jax.config.update("jax_enable_x64", True)``): it runs inside
``jax.enable_x64(...)``, JAX's scoped (thread-local) form of the same flag, so the user's global
setting is the same after the fit as before, and a float64 fit and a float32 fit can follow each
other in one session. Work that a fit hands to other threads (chains on several devices, a
background compile) must enter the same scope there: :func:`in_current_precision`.

Which precision a model runs in by default is the model's (``ModelSpec.precision``, set by
``make_model`` and the presets per model kind; the measurements behind each kind's default are
in ``docs/decisions.md``); ``run_nuts``/``run_svi``/the workflows' ``precision=`` overrides it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ..errors import ConfigError

PRECISIONS = ("float32", "float64")


def check_precision(precision, *, allow_none: bool = False, name: str = "precision") -> str | None:
    """``precision`` if it is one of :data:`PRECISIONS` (or None with ``allow_none``); else ConfigError."""
    if precision is None and allow_none:
        return None
    if not isinstance(precision, str) or precision not in PRECISIONS:
        choices = list(PRECISIONS) + (["None (the model's default)"] if allow_none else [])
        raise ConfigError(f"`{name}`={precision!r} is unknown; choose one of {choices}.")
    return precision


def current_precision() -> str:
    """The precision JAX computes in here and now (this thread, inside any scope)."""
    return "float64" if jax.config.jax_enable_x64 else "float32"


def precision_scope(precision: str):
    """Context in which JAX computes in ``precision`` (``"float32"`` or ``"float64"``);
    the global ``jax_enable_x64`` is untouched."""
    return jax.enable_x64(check_precision(precision) == "float64")


def float_dtype(precision: str):
    """The float dtype of ``precision``."""
    return jnp.float64 if check_precision(precision) == "float64" else jnp.float32


def cast_floats(tree, precision: str):
    """``tree`` with every floating-point array leaf cast to ``precision``'s dtype (others as they are).

    Call inside :func:`precision_scope` for float64 (outside it JAX would make float32 again)."""
    dtype = float_dtype(precision)

    def cast(x):
        if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating):
            return jnp.asarray(x, dtype=dtype)
        return x

    return jax.tree.map(cast, tree)


def in_current_precision(fn):
    """``fn`` that runs in the calling thread's precision wherever it is called (e.g. in a worker
    thread, where JAX's scoped setting does not reach)."""
    x64 = bool(jax.config.jax_enable_x64)

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with jax.enable_x64(x64):
            return fn(*args, **kwargs)

    return wrapped

