"""What a training run returns: the run status (an enum plus data) and :class:`TrainResult`."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..network import Network

if TYPE_CHECKING:  # pandas is imported where a history is built (40 MB per process)
    import pandas as pd

__all__ = ["RunStatus", "RoundStatus", "TrainResult", "HISTORY_COLUMNS"]

#: One row per convex round (and a ``warm_start`` row 0 when Adam steps came first).
HISTORY_COLUMNS = [
    "round",
    "true_loss",
    "relaxed_objective",
    "bilinear_gap",
    "activation_gap",
    "eta",
    "solve_seconds",
    "status",
    "step",
    "violation",
    "iterations",
    "termination",
    "phase",  # 1: a feasibility-phase round (least violation), 2: a round of the constrained program
    "rho",  # phase 1: the weight of the round's objective beside the violation (NaN in phase 2)
    "message",  # why a solve failed (the round solver's words); empty for an accepted round
]


class RunStatus(str, enum.Enum):
    """Why a run ended.  A ``str`` enum: ``result.status == "converged"`` works."""

    CONVERGED = "converged"  #: the schedule's stop rule fired
    TARGET_REACHED = "target_reached"  #: the true loss reached ``target_loss``
    ROUND_LIMIT = "round_limit"  #: ``rounds`` convex solves done
    TIME_LIMIT = "time_limit"  #: ``time_limit`` seconds spent
    STALLED = "stalled"  #: eta grew past ``1e12`` times its floor without an accepted round
    INFEASIBLE = "infeasible"  #: the hard constraints admit no point of the relaxation
    SOLVER_FAILED = "solver_failed"  #: ``max_failures`` failed solves in a row

    def __str__(self) -> str:
        return self.value


class RoundStatus(str, enum.Enum):
    """What became of one round (the ``status`` column of the history)."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    SOLVER_FAILED = "solver_failed"
    INFEASIBLE = "infeasible"
    TIME_LIMIT = "time_limit"
    WARM_START = "warm_start"

    def __str__(self) -> str:
        return self.value


@dataclass
class TrainResult:
    """The best accepted network, the per-round history and why the run ended.

    ``status`` is a :class:`RunStatus`; ``message`` says the same for a person; the data fields
    carry what a caller may act on: ``feasible`` (the returned network meets every hard constraint
    within ``constraint_tol``), ``termination`` (the solver's termination condition of the last
    failed solve, when the run ended on solver failures) and ``smallest_kappa_factor`` (set when
    class-wise bounds (19) made the relaxation infeasible: the smallest factor it admits).
    """

    network: Network
    history: pd.DataFrame
    status: RunStatus
    initial_loss: float
    final_loss: float
    seconds: float
    schedule: str
    solver: str
    violation: float = 0.0
    message: str = ""
    feasible: bool = True
    termination: str | None = None
    smallest_kappa_factor: float | None = None
    model: object = field(default=None, repr=False)

    @property
    def rounds(self) -> int:
        """Convex solves (accepted, rejected or failed); a warm-start row is not a round."""
        return int((self.history["round"] > 0).sum()) if len(self.history) else 0

    @property
    def accepted_rounds(self) -> int:
        return int((self.history["status"] == RoundStatus.ACCEPTED.value).sum()) if len(self.history) else 0

    def summary(self) -> dict:
        """A JSON-ready dict (``status`` as its plain string)."""
        out = {
            "status": self.status.value,
            "message": self.message,
            "schedule": self.schedule,
            "solver": self.solver,
            "initial_loss": self.initial_loss,
            "final_loss": self.final_loss,
            "rounds": self.rounds,
            "accepted_rounds": self.accepted_rounds,
            "seconds": self.seconds,
            "violation": self.violation,
            "feasible": self.feasible,
        }
        if self.termination is not None:
            out["termination"] = self.termination
        if self.smallest_kappa_factor is not None and math.isfinite(self.smallest_kappa_factor):
            out["smallest_kappa_factor"] = self.smallest_kappa_factor
        return out
