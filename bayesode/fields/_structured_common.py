"""Shared helpers of the structured fields: argument checks, plain MLPs, scaling.

Private to the fields wing; used by :mod:`.conservative` and :mod:`.bounded`.

From the "deep learning as a dynamical system" literature: antisymmetric
(Haber & Ruthotto 2018; Chang et al. 2019), Hamiltonian (Greydanus et al.
2019), Lipschitz-bounded (spectral normalisation) and Lyapunov-stable
(Manek & Kolter 2019) fields.

Every inexact array leaf is a free, unconstrained real parameter, so a model
can put any prior on it through :func:`bayesode.sample_field`; the structure
comes from how the leaves are used (``W - Wᵀ``, ``softplus(raw)``, ``W / ||W||``),
never from constraints on them. Scaling follows :class:`bayesode.MLPField`:
a network sees ``x = y / y_scale`` and the field is ``y_scale * F(x) / t_scale``.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ..errors import ConfigError
from .basic import _positive_tuple

# Activations with a derivative in [0, 1]: monotone (needed by the antisymmetric
# bound) and 1-Lipschitz (needed by the Lipschitz bound).
_MONOTONE_1LIP = ("elu", "relu", "softplus", "tanh")
# Activations with a continuous derivative, so that a gradient field is continuous.
_SMOOTH = ("elu", "gelu", "softplus", "swish", "tanh")


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ConfigError(f"`{name}` must be {kind}; got {value!r}.")
    return value


def _check_activation(activation, allowed: tuple[str, ...], why: str) -> str:
    if activation not in allowed:
        raise ConfigError(f"`activation`={activation!r} is not allowed here ({why}); choose one of {list(allowed)}.")
    return activation


def _check_nonneg(name: str, value, *, strict: bool) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if not (v > 0 if strict else v >= 0) or v == float("inf"):
        need = "positive" if strict else "non-negative"
        raise ConfigError(f"`{name}` must be a {need} finite number; got {value!r}.")
    return v


def _scale_tuple(name: str, value, state_dim: int) -> tuple[float, ...]:
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ConfigError(f"`{name}` must be a positive number or one per state; got {value!r}.") from None
    return _positive_tuple(name, array, state_dim)


def _mlp(sizes: list[int], key) -> tuple[eqx.nn.Linear, ...]:
    keys = jr.split(key, len(sizes) - 1)
    return tuple(eqx.nn.Linear(a, b, key=k) for a, b, k in zip(sizes[:-1], sizes[1:], keys, strict=True))


def _run_mlp(layers, act: Callable, x, weight_fn: Callable = lambda w: w):
    for i, layer in enumerate(layers):
        x = weight_fn(layer.weight) @ x + layer.bias
        if i < len(layers) - 1:
            x = act(x)
    return x


def _scales(field, y):
    return jnp.asarray(field.y_scale, dtype=y.dtype), field.t_scale
