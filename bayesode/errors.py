"""Error types. Every message names the argument, shows what was received,
what was expected, and how to fix it."""


class BayesODEError(Exception):
    """Base class of bayesode's own errors."""


class DataError(BayesODEError, ValueError):
    """Times or observations handed to bayesode are malformed."""


class ConfigError(BayesODEError, ValueError):
    """A setting (scale, tolerance, size, name) is invalid."""


class FieldError(BayesODEError, TypeError):
    """A vector field returns the wrong shape or dtype."""


class FitFailedError(BayesODEError, RuntimeError):
    """A fit stopped early: most prior draws, or most iterations of a window, failed to solve or diverged."""


class InitializationError(FitFailedError):
    """No starting point with a finite log density could be found (a fit that failed before its first step)."""
