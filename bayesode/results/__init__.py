"""The fit result: `Posterior` (InferenceData export, prediction at new times, save/load)."""

from .posterior import Posterior

__all__ = ["Posterior"]
