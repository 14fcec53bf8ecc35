"""The one wrapper over diffrax, and the discontinuities built on it (doses, change points, state events)."""

from .diffeq import ForwardSensitivity, Solution, SolverConfig, solve, solve_series, vmap_unless_one
from .event_grid import FixedSteps
from .event_jumps import (
    EventJumpSolution,
    NeuralJumpProcess,
    events_log_likelihood,
    per_event_log_likelihood,
    solve_event_jumps,
)
from .events import EventSolution, StateEvent, solve_with_events
from .integrate import integrate
from .jump_solve import Regime, solve_with_jumps
from .jumps import Jumps, doses_from_events
from .observation_jumps import (
    Filtered,
    FilterState,
    NeuralJumpODE,
    filter_config,
    filter_observations,
    hidden_at,
    initial_state,
)
from .status import FAILURE_ADVICE, FAILURE_CAUSES, Status, status_from, status_of
from .thinning import SimulatedEvents, pending_arrivals, simulate_events

__all__ = [
    "doses_from_events", "EventJumpSolution", "events_log_likelihood", "EventSolution", "FAILURE_ADVICE",
    "FAILURE_CAUSES", "filter_config", "FixedSteps", "filter_observations", "Filtered", "FilterState", "ForwardSensitivity",
    "hidden_at", "initial_state", "integrate", "Jumps", "NeuralJumpODE", "NeuralJumpProcess",
    "per_event_log_likelihood", "Regime", "pending_arrivals", "simulate_events", "SimulatedEvents", "Solution", "solve",
    "solve_event_jumps", "solve_series", "solve_with_events", "solve_with_jumps", "SolverConfig", "StateEvent",
    "Status", "status_from", "status_of", "vmap_unless_one",
]
