"""The one adapter over an equinox internal: closure conversion inside ``jax.shard_map``.

The gap, as it would be reported upstream (diffrax issue #765; fix proposed in equinox PR #1261):

    ``eqx.filter_closure_convert(fn, *example)`` records the example arguments' shapes,
    dtypes and shardings, and every later call checks that its arguments match them
    ("Closure-converted function called with different dynamic arguments"). Reverse mode
    through ``diffrax.RecursiveCheckpointAdjoint`` closure-converts the loop body with the
    loop's initial state as the example. Inside ``jax.shard_map`` the initial state's
    constants (step counters, flags made by ``jnp.asarray``) are concrete arrays with no
    sharding, while the same values carried through the loop are traced with the manual
    mesh's sharding (``NamedSharding(AbstractMesh('series': N, Manual), P())``). The
    shapes and dtypes agree; only the sharding metadata differs, so every reverse-mode
    solve under ``shard_map`` fails. Expected: the check compares shapes and dtypes (as
    it did before ``jax.ShapeDtypeStruct`` carried shardings).
    Reproduce: ``jax.grad`` of a ``shard_map`` over ``diffeqsolve`` with the default
    adjoint (jax 0.10.2, equinox 0.13.8, diffrax 0.7).

No public setting avoids it (the constants are made inside diffrax's loop), so
:func:`allow_closure_convert_in_shard_map` replaces ``equinox._ad._strip_weak_dtype``,
the function that builds the recorded and the checked structures, by one that keeps
shape and dtype only. It is applied once per process, by the first model built with
``series_devices``, and is process-global for that reason (the backward pass is traced
after the model function returns, so a scoped patch would not cover it).
``tests/test_model.py::test_equinox_closure_convert_gap_is_still_there`` fails as soon as
equinox renames the function or fixes the check, and says to delete this module then.
"""

from __future__ import annotations

import jax

EQUINOX_INTERNAL = "equinox._ad._strip_weak_dtype"


def _shape_and_dtype(tree):
    """The replacement: shape and dtype of every leaf, no sharding."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


_shape_and_dtype.bayesode_adapter = True


def equinox_original():
    """equinox's own ``_strip_weak_dtype`` (before or after the adapter is applied); raises if it is gone."""
    import equinox._ad as eqx_ad

    current = getattr(eqx_ad, "_strip_weak_dtype", None)
    if current is None:
        raise RuntimeError(
            f"{EQUINOX_INTERNAL} no longer exists, so bayesode.model.equinox_adapter cannot let diffrax's "
            "checkpointed adjoint run inside shard_map; check whether equinox fixed diffrax#765 and remove the adapter."
        )
    return _ORIGINAL.get("fn", current)


_ORIGINAL: dict = {}


def allow_closure_convert_in_shard_map() -> None:
    """Make equinox's closure-conversion check compare shapes and dtypes only (idempotent)."""
    import equinox._ad as eqx_ad

    original = equinox_original()
    if getattr(eqx_ad._strip_weak_dtype, "bayesode_adapter", False):
        return
    _ORIGINAL["fn"] = original
    eqx_ad._strip_weak_dtype = _shape_and_dtype
