"""The one wrapper over diffrax, and the discontinuities built on it (doses, change points, state events)."""

from .diffeq import FAILURE_ADVICE, FAILURE_CAUSES, ForwardSensitivity, Solution, SolverConfig, solve, solve_series
from .jumps import EventSolution, Jumps, StateEvent, doses_from_events, solve_with_events, solve_with_jumps

__all__ = ["FAILURE_ADVICE", "FAILURE_CAUSES", "EventSolution", "ForwardSensitivity", "Jumps", "Solution",
           "SolverConfig", "StateEvent", "doses_from_events", "solve", "solve_series", "solve_with_events",
           "solve_with_jumps"]

from .observation_jumps import (
           Filtered,
           FilterState,
           NeuralJumpODE,
           filter_config,
           filter_observations,
           hidden_at,
           initial_state,
)

__all__ += ["FilterState", "Filtered", "NeuralJumpODE", "filter_config", "filter_observations", "hidden_at", "initial_state"]
