"""Adapter for one gap in diffrax: its save-time checks compile a host callback into every solve.

The gap. ``diffrax.diffeqsolve`` checks ``saveat.ts`` (increasing, within
``[t0, t1]``) with ``equinox.internal.error_if``. With traced times the check
is a runtime ``lax.cond`` whose error branch is a ``jax.pure_callback``, and JAX
never writes a program holding a host callback to the persistent compilation
cache: every process would recompile every model (tens of seconds for NUTS).
``diffeqsolve`` has no argument to turn the check off or make it a NaN, and
equinox's own switch, the ``EQX_ON_ERROR`` environment variable, is read once
at import for the whole process (so it would also silence the user's own
equinox and diffrax errors). Upstream-style request: an ``on_error=`` argument
to ``diffeqsolve`` (or ``SaveAt``), passed through to ``error_if``.

What we do instead. bayesode validates its save times before any solve, so
inside its own solves the checks may give NaN (equinox's documented
``on_error="nan"``: a NaN time fails the solve, which is then counted like any
other failure). :func:`checks_without_callbacks` marks a trace as bayesode's
through a :class:`contextvars.ContextVar`; ``equinox.internal.error_if`` is
wrapped once, at first use, by a function that passes ``on_error="nan"`` only
inside that context and calls equinox's own function unchanged everywhere else.
So nothing is swapped back and forth during a trace, another thread's (or the
user's) diffrax call keeps raising, and equinox caches the two variants under
different keys. ``tests/test_solve.py`` fails loudly when diffrax stops calling
``eqxi.error_if`` for these checks (then delete this module) or when a bayesode
solve compiles a callback again.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading

import equinox.internal as eqxi

_IN_BAYESODE_SOLVE = contextvars.ContextVar("bayesode_in_solve", default=False)
_INSTALL_LOCK = threading.Lock()


class _NaNInsideBayesode:
    """``equinox.internal.error_if`` with ``on_error="nan"`` inside :func:`checks_without_callbacks`."""

    def __init__(self, error_if):
        self.error_if = error_if  # equinox's own function

    def __call__(self, x, pred, msg, *, on_error="default"):
        if on_error == "default" and _IN_BAYESODE_SOLVE.get():
            on_error = "nan"
        return self.error_if(x, pred, msg, on_error=on_error)


def _install() -> None:
    with _INSTALL_LOCK:
        if not isinstance(eqxi.error_if, _NaNInsideBayesode):
            eqxi.error_if = _NaNInsideBayesode(eqxi.error_if)


@contextlib.contextmanager
def checks_without_callbacks():
    """While a bayesode solve is traced: diffrax's runtime checks give NaN instead of a host callback."""
    _install()
    token = _IN_BAYESODE_SOLVE.set(True)
    try:
        yield
    finally:
        _IN_BAYESODE_SOLVE.reset(token)
