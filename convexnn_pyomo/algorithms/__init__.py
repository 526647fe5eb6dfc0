"""Training algorithms: Algorithm 1 as :class:`SequentialRelaxation`, its schedules and step proposals."""

from .results import HISTORY_COLUMNS, RoundStatus, RunStatus, TrainResult
from .round_solvers import ROUND_SOLVERS, PyomoRounds, RoundSolver, SchurRounds, ShardedRounds, get_round_solver
from .rounds import IPOPT_DEFAULTS, RoundProblem
from .schedules import SCHEDULES, AdaptiveSchedule, PaperSchedule, Schedule, get_schedule
from .sequential import SequentialRelaxation
from .steps import (
    Evaluator,
    FeasibleSubspaceSearch,
    IdentityStep,
    LineSearch,
    Proposal,
    StepProposal,
    SubspaceSearch,
    ViolationSearch,
)

__all__ = [
    "HISTORY_COLUMNS",
    "IPOPT_DEFAULTS",
    "AdaptiveSchedule",
    "Evaluator",
    "FeasibleSubspaceSearch",
    "IdentityStep",
    "LineSearch",
    "PaperSchedule",
    "PyomoRounds",
    "ROUND_SOLVERS",
    "RoundProblem",
    "RoundSolver",
    "SchurRounds",
    "ShardedRounds",
    "get_round_solver",
    "Proposal",
    "RoundStatus",
    "RunStatus",
    "SCHEDULES",
    "Schedule",
    "SequentialRelaxation",
    "StepProposal",
    "SubspaceSearch",
    "TrainResult",
    "ViolationSearch",
    "get_schedule",
]
