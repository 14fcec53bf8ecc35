"""The one wrapper over diffrax, and the discontinuities built on it (doses, change points, state events)."""

from .diffeq import ForwardSensitivity, Solution, SolverConfig, solve, solve_series, vmap_unless_one
from .events import EventSolution, StateEvent, solve_with_events
from .integrate import integrate
from .jumps import Jumps, Regime, doses_from_events, solve_with_jumps
from .status import FAILURE_ADVICE, FAILURE_CAUSES, Status, status_from, status_of

__all__ = ["FAILURE_ADVICE", "FAILURE_CAUSES", "EventSolution", "ForwardSensitivity", "Jumps", "Regime", "Solution",
           "SolverConfig", "StateEvent", "Status", "doses_from_events", "integrate", "solve", "solve_series",
           "solve_with_events", "solve_with_jumps", "status_from", "status_of", "vmap_unless_one"]
