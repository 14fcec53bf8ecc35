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
from .thinning import SimulatedEvents, simulate_events

__all__ = ["FAILURE_ADVICE", "FAILURE_CAUSES", "EventSolution", "ForwardSensitivity", "Jumps", "Solution",
           "SolverConfig", "StateEvent", "doses_from_events", "solve", "solve_series", "solve_with_events",
           "solve_with_jumps"]
__all__ += ["EventJumpSolution", "NeuralJumpProcess", "SimulatedEvents", "events_log_likelihood",
            "per_event_log_likelihood", "simulate_events", "solve_event_jumps"]
