"""The one wrapper over diffrax, and the discontinuities built on it (doses, change points, state events)."""

from .diffeq import FAILURE_ADVICE, FAILURE_CAUSES, ForwardSensitivity, Solution, SolverConfig, solve, solve_series
from .event_jumps import (
    EventJumpSolution,
    NeuralJumpProcess,
    events_log_likelihood,
    per_event_log_likelihood,
    solve_event_jumps,
)
from .jumps import EventSolution, Jumps, StateEvent, doses_from_events, solve_with_events, solve_with_jumps
from .observation_jumps import (
    Filtered,
    FilterState,
    NeuralJumpODE,
    filter_config,
    filter_observations,
    hidden_at,
    initial_state,
)
from .thinning import SimulatedEvents, simulate_events

__all__ = [
    "doses_from_events", "EventJumpSolution", "events_log_likelihood", "EventSolution", "FAILURE_ADVICE",
    "FAILURE_CAUSES", "filter_config", "filter_observations", "Filtered", "FilterState", "ForwardSensitivity",
    "hidden_at", "initial_state", "Jumps", "NeuralJumpODE", "NeuralJumpProcess", "per_event_log_likelihood",
    "simulate_events", "SimulatedEvents", "Solution", "solve", "solve_event_jumps", "solve_series",
    "solve_with_events", "solve_with_jumps", "SolverConfig", "StateEvent",
]
