"""``train``: Algorithm 1 in one call, a thin wrapper of :class:`~convexnn_pyomo.algorithms.SequentialRelaxation`.

The algorithm, its schedules (``paper``, ``adaptive``), round solvers (``schur``, ``pyomo``,
sharded) and step proposals live in :mod:`convexnn_pyomo.algorithms`; this module keeps the
function most users call.  Options beyond its keywords (tolerances, Adam warm start, failures in
a row) are :class:`SequentialRelaxation`'s; a schedule's and a round solver's options are theirs.
"""

from __future__ import annotations

from collections.abc import Callable

from .algorithms import HISTORY_COLUMNS, RoundStatus, RunStatus, SequentialRelaxation, TrainResult
from .algorithms.round_solvers import RoundSolver
from .algorithms.schedules import Schedule
from .distributed import SampleShards
from .losses import Loss
from .network import Network

__all__ = ["train", "TrainResult", "RunStatus", "RoundStatus", "HISTORY_COLUMNS"]


def train(
    net: Network,
    X,
    Y,
    loss: str | Loss = "squared",
    hard_constraints=None,
    rounds: int = 300,
    schedule: str | Schedule = "adaptive",
    round_solver: str | RoundSolver = "auto",
    time_limit: float | None = None,
    target_loss: float | None = None,
    progress: Callable[[dict, Network], None] | bool | None = None,
    shards: int | SampleShards = 1,
    refit_output_layer: bool = True,
) -> TrainResult:
    """Train ``net`` on ``(X, Y)`` by Algorithm 1 and return the best accepted weights and history.

    Parameters
    ----------
    net: a :class:`Network` with initial weights (``net.init_he(seed)``); it is not modified.
    X, Y: data, ``(m, n_0)`` and ``(m, n_L)`` or ``(m,)``.
    loss: the training loss on the outputs ``z^L`` (:mod:`convexnn_pyomo.losses`): ``"squared"``
        (the paper's), ``"logistic"`` (labels 0/1, outputs are logits), ``"softmax"`` (one-hot
        ``Y``), or a :class:`~convexnn_pyomo.losses.Loss`; history losses and ``final_loss`` are
        this loss, summed over samples.
    hard_constraints: a :class:`~convexnn_pyomo.constraints.HardConstraint`, a callable
        ``f(model)`` that adds Pyomo constraints, or a list of them.
    rounds: maximum number of convex solves (accepted, rejected or failed).
    schedule: ``"adaptive"`` (default), ``"paper"``, or a configured schedule, e.g.
        ``AdaptiveSchedule(eta=4, rel_tol=1e-5, patience=5, loss_fraction=1e-5, mu=None)`` or
        ``PaperSchedule(eta=100, epsilon=1e-7)`` (:mod:`convexnn_pyomo.algorithms.schedules`).
    round_solver: ``"auto"`` (the structured round by the Schur interior point, or sharded with
        ``shards > 1``), ``"schur"``, ``"pyomo"`` or a Pyomo solver name (the Pyomo model on every
        sample, e.g. ``"ipopt"``), or a configured one, e.g. ``SchurRounds(time_limit=600,
        options={"tol": 1e-9})``, ``PyomoRounds(solver="ipopt_casadi", relaxation="mccormick")``
        (:mod:`convexnn_pyomo.algorithms.round_solvers`).
    time_limit: wall-clock seconds for the whole run (it also caps the solve in progress).
    target_loss: stop as soon as the true loss is at or below this value.
    progress: ``True`` prints a header and a line per round; or a callable ``(row, best_network)``.
    shards: split the samples into this many shards (``[mpi]`` extra).  With the structured round
        (``round_solver="auto"`` or ``"schur"``) one MPI rank per shard, started as ``mpiexec -n K``:
        every rank calls ``train`` with the same arguments, keeps its own rows of ``X`` and ``Y`` and
        gets the one-process result (:mod:`convexnn_pyomo.distributed`); or this rank's
        :class:`~convexnn_pyomo.distributed.SampleShards` (``SampleShards.of_local(len(X))``) when
        each rank passes only its own rows.  With ``round_solver="sharded"`` the Pyomo model split
        over mpi-sppy's Progressive Hedging instead.
    refit_output_layer: with hard constraints convex in the output layer alone, refit the output
        layer of a round's step exactly under them when the step breaks them (one process only;
        docs/algorithm.md, "The output layer's exact problem").
    """
    options = {k: v for k, v in locals().items() if k not in ("net", "X", "Y")}  # SequentialRelaxation.CONFIG
    return SequentialRelaxation(**options).solve(net, X, Y)
