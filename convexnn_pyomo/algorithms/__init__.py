"""Training algorithms: Algorithm 1 as :class:`SequentialRelaxation`, its schedules and step proposals."""

from .results import HISTORY_COLUMNS, RoundStatus, RunStatus, TrainResult
from .schedules import SCHEDULES, AdaptiveSchedule, PaperSchedule, Schedule, get_schedule
from .sequential import IPOPT_DEFAULTS, SequentialRelaxation
from .steps import Evaluator, IdentityStep, LineSearch, Proposal, StepProposal, SubspaceSearch

__all__ = [
    "HISTORY_COLUMNS",
    "IPOPT_DEFAULTS",
    "AdaptiveSchedule",
    "Evaluator",
    "IdentityStep",
    "LineSearch",
    "PaperSchedule",
    "Proposal",
    "RoundStatus",
    "RunStatus",
    "SCHEDULES",
    "Schedule",
    "SequentialRelaxation",
    "StepProposal",
    "SubspaceSearch",
    "TrainResult",
    "get_schedule",
]
