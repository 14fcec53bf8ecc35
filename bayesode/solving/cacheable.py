"""Adapter for one gap in diffrax/equinox: diffrax's save-time checks compile a host callback.

diffrax checks ``saveat.ts`` (increasing, within the interval) with equinox's
``error_if``, which raises through a host callback, and JAX never writes a program
with a host callback to the persistent compilation cache: every process would
recompile every model. Our times are validated before any solve, so while our
solve is traced these checks return NaN instead of raising (``on_error="nan"``:
a NaN time fails the solve, which is then counted like any other failure).
Only ``equinox.internal.error_if``, the name diffrax calls, is swapped, and only
during the trace; equinox caches the two variants under different keys.
"""

from __future__ import annotations

import contextlib
import functools

import equinox.internal as eqxi


@contextlib.contextmanager
def checks_without_callbacks():
    """While tracing a solve: diffrax's runtime checks give NaN instead of a host callback."""
    original = eqxi.error_if
    eqxi.error_if = functools.partial(original, on_error="nan")
    try:
        yield
    finally:
        eqxi.error_if = original
