"""A fit's ``precision=`` argument: resolved against the model's default, and the fit run in its scope.

``run_nuts``, ``run_svi`` and the workflows each take ``precision: str | None = None``:
``"float32"``, ``"float64"``, or None for the model's own (``model.spec.precision``; the presets
set it per model kind). :func:`fits_in_precision` wraps such a function: it checks the value
(``ConfigError`` naming ``precision``), runs the whole fit (tracing, compiling, sampling, the
draws' post-processing) inside :func:`bayesode.solving.precision.precision_scope`, and passes
the resolved name on, so the fit records it (``settings["precision"]``). The process-wide
``jax_enable_x64`` is the same afterwards.
"""

from __future__ import annotations

import functools
import inspect

from ..solving.precision import check_precision, current_precision, precision_scope


def fit_precision(model, precision) -> str:
    """``precision`` checked; when None, float64 if the caller has JAX's x64 on (globally or in a
    ``jax.enable_x64`` scope: a user who asked JAX for float64 gets it), else the model's default."""
    chosen = check_precision(precision, allow_none=True)
    if chosen is None:
        chosen = "float64" if current_precision() == "float64" else model.spec.precision
    return chosen


def fits_in_precision(fit):
    """``fit(model, ..., precision=None, ...)`` run in the resolved precision's scope."""
    signature = inspect.signature(fit)

    @functools.wraps(fit)
    def wrapped(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        model = bound.arguments["model"]
        if getattr(model, "spec", None) is None:  # not a bayesode model: the fit's own check says so
            return fit(*args, **kwargs)
        precision = fit_precision(model, bound.arguments.get("precision"))
        bound.arguments["precision"] = precision
        with precision_scope(precision):
            return fit(*bound.args, **bound.kwargs)

    return wrapped
