"""A bounded cache of compiled programs, keyed by model, kind, key and precision.

A base module, so every wing that compiles per model (results' predictive draws, inference's
samplers, diagnostics' stability and SBC programs) keeps its own cache instance here, not as an
attribute of the user's model function.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import jax
import numpy as np


def _precision() -> str:
    # The same as ``solving.precision.current_precision`` (a base module cannot import a wing).
    return "float64" if jax.config.jax_enable_x64 else "float32"


class ProgramCache:
    """Compiled programs (and other per-model results worth keeping), keyed by model, kind and key.

    ``key`` holds what the program depends on besides the model: data shapes and static
    settings (and, added here, the precision). The same model with the same shapes and settings gets the same program, so a
    second call traces and compiles nothing. The model is part of the key by identity (a
    function hashes by identity); the entries hold their model, so the cache keeps the
    ``max_entries`` most recently used and drops the oldest (a loop over fresh models or fresh
    optax objects stays bounded).
    A key that cannot be hashed (e.g. an optax object holding arrays) is built afresh each call.
    """

    def __init__(self, max_entries: int = 16):
        self.max_entries = max_entries
        self._entries: OrderedDict = OrderedDict()
        _ALL_CACHES.add(self)

    def get(self, model, kind: str, key, build: Callable[[], Any]):
        """The entry for ``(model, kind, key)`` in the current precision, made by ``build()`` on the first call.

        The precision JAX computes in (a fit's ``precision=`` scope) is part of every key: a
        program traced in float32 is never reused in float64, nor the other way round."""
        full = (model, kind, key, _precision())
        try:
            hash(full)
        except TypeError:
            return build()
        if full in self._entries:
            self._entries.move_to_end(full)
            return self._entries[full]
        value = self._entries[full] = build()
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()


_ALL_CACHES: weakref.WeakSet[ProgramCache] = weakref.WeakSet()


def clear_program_caches() -> None:
    """Empty every ``ProgramCache`` (each wing's), so their compiled programs can be freed.

    Together with ``jax.clear_caches()`` this gives back the memory and memory maps of every
    program compiled so far (the test suite does it after each module)."""
    for cache in list(_ALL_CACHES):
        cache.clear()


def tree_key(tree, values_ignored=None):
    """A hashable key for a pytree (an equinox module), or None where a leaf cannot be hashed.

    Two trees get equal keys when they have the same structure (classes, static fields), equal
    non-array leaves, and equal arrays, except where ``values_ignored`` (a pytree of bools with
    ``tree``'s structure, as a filter spec for ``eqx.partition``) is True: there only the shape and
    dtype count. Why: a model built around a template whose weights the prior replaces depends on
    the weights' shapes, not their values, so a refit with a fresh template can reuse its programs.
    """
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    try:
        ignored = [False] * len(leaves) if values_ignored is None else treedef.flatten_up_to(values_ignored)
    except (ValueError, TypeError):  # a filter spec of another structure
        return None
    parts = []
    for leaf, ignore in zip(leaves, ignored):
        if isinstance(leaf, (jax.Array, np.ndarray, np.generic)):
            a = np.asarray(leaf)
            parts.append((a.shape, str(a.dtype)) if ignore else (a.shape, str(a.dtype), a.tobytes()))
        else:
            parts.append(leaf)
    key = (treedef, tuple(parts))
    try:
        hash(key)
    except TypeError:
        return None
    return key


# Model functions built around a template (a point-process or jump-filter template), shared by templates of
# one structure (see shared_by_structure); kept apart from the compiled programs, which hold their model.
MODEL_FUNCTIONS = ProgramCache(max_entries=32)


def shared_by_structure(kind: str, template, values_ignored, settings, build: Callable[[], Any]):
    """The function ``build()`` makes for ``template``, shared by every template with the same
    :func:`tree_key` (values ignored where ``values_ignored`` says) and the same hashable ``settings``.

    Why: the inference wing keeps compiled programs by model function, so a refit whose template
    differs only in the weights the prior replaces (another seed) gets the same function, and so
    reuses every program. A template that cannot be keyed gets a function of its own."""
    key = tree_key(template, values_ignored)
    if key is None:
        return build()
    return MODEL_FUNCTIONS.get(None, kind, (key, settings), build)
