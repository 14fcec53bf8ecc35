"""Model presets (`neural`, `lotka_volterra`, `hybrid`, `freeze_hidden`, ...).

An alias of :mod:`bayesode.model.presets`, kept so that ``bayesode.models`` and ``import bayesode.models``
work as they always have; the code lives in the model wing.
"""

from .model.presets import *  # noqa: F403
from .model.presets import __all__  # noqa: F401
