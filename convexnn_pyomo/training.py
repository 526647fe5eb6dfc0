"""``train``: Algorithm 1 in one call, a thin wrapper of :class:`~convexnn_pyomo.algorithms.SequentialRelaxation`.

The algorithm, its schedules (``paper``, ``adaptive``) and step proposals live in
:mod:`convexnn_pyomo.algorithms`; this module keeps the function most users call.
"""

from __future__ import annotations

from collections.abc import Callable

from .algorithms import HISTORY_COLUMNS, IPOPT_DEFAULTS, RoundStatus, RunStatus, SequentialRelaxation, TrainResult
from .losses import Loss
from .network import Network

__all__ = ["train", "TrainResult", "RunStatus", "RoundStatus", "HISTORY_COLUMNS", "IPOPT_DEFAULTS"]


def train(
    net: Network,
    X,
    Y,
    method: str = "sequential",
    schedule: str = "adaptive",
    rounds: int = 300,
    eta: float | None = None,
    epsilon: float | None = None,
    mu: tuple[float, float, float] | None = None,
    hard_constraints=None,
    solver: str | None = None,
    solver_options: dict | None = None,
    time_limit: float | None = None,
    target_loss: float | None = None,
    constraint_tol: float = 1e-6,
    patience: int = 5,
    exact_tol: float = 1e-4,
    warm_start: int = 0,
    round_time_limit: float = 120.0,
    max_failures: int = 3,
    progress: Callable[[dict, Network], None] | bool | None = None,
    relaxation: str = "parabolic",
    loss_fraction: float = 1e-5,
    loss: str | Loss = "squared",
    shards: int = 1,
    backend: str = "auto",
    ph_options: dict | None = None,
    round_solver: str = "ipopt",
) -> TrainResult:
    """Train ``net`` on ``(X, Y)`` by Algorithm 1 and return the best accepted weights and history.

    Parameters
    ----------
    net: a :class:`Network` with initial weights (``net.init_he(seed)``); it is not modified.
    X, Y: data, ``(m, n_0)`` and ``(m, n_L)`` or ``(m,)``.
    schedule: ``"adaptive"`` (alias ``"default"``) or ``"paper"``
        (:mod:`convexnn_pyomo.algorithms.schedules`).
    rounds: maximum number of convex solves (accepted, rejected or failed).
    eta, epsilon, patience, loss_fraction: the schedule's (docs/algorithm.md): ``paper``: fixed eta
        (100), stop at the first accepted improvement below ``epsilon`` (1e-7, absolute);
        ``adaptive``: initial safety factor (2), stop once the loss is below ``loss_fraction``
        (1e-5) of the initial loss, or after ``patience`` (5) exact rounds in a row each improving
        it by less than ``epsilon`` (1e-4, relative).
    mu: ``(mu_z, mu_p, mu_q)`` for every layer.  Default: ``(1, 1, 1)`` for ``paper``; for
        ``adaptive`` the per-layer exactness weights, recomputed at every reference.
    hard_constraints: a :class:`~convexnn_pyomo.constraints.HardConstraint`, a callable
        ``f(model)`` that adds constraints, or a list of them.
    solver: solver name (default :func:`~convexnn_pyomo.solvers.default_nlp_solver`).
    time_limit: wall-clock seconds for the whole run (it also caps the solve in progress).
    target_loss: stop as soon as the true loss is at or below this value.
    exact_tol, round_time_limit, max_failures, warm_start, constraint_tol: see
        :class:`~convexnn_pyomo.algorithms.SequentialRelaxation` (``.CONFIG.display()``); a failed
        solve is recorded as ``solver_failed`` and retried with eta x4, ``max_failures`` in a row end
        the run with the best accepted weights.
    progress: ``True`` prints a header and a line per round; or a callable ``(row, best_network)``.
    relaxation: ``"parabolic"`` (5a)-(5d) or ``"mccormick"`` (needs weight boxes; it applies
        ``convexnn.bound`` with its defaults): the relaxations the regularizer (8) is defined for.
    loss: the training loss on the outputs ``z^L`` (:mod:`convexnn_pyomo.losses`): ``"squared"``
        (the paper's, default), ``"logistic"`` (labels 0/1, one output per binary label; outputs are
        logits, ``sigmoid(z)`` the probabilities), ``"softmax"`` (one-hot ``Y``, one output per class),
        or a :class:`~convexnn_pyomo.losses.Loss`.  History losses and ``final_loss`` are this loss,
        summed over samples.
    backend: ``"auto"`` (default), ``"pyomo"`` or ``"direct"``: the round as the Pyomo model
        (``result.model``) or built directly in CasADi per sample (the same problem,
        ``tests/test_casadi_direct.py``); ``auto`` takes ``direct`` when it applies (parabolic
        relaxation, no hard constraints, the embedded ``ipopt_casadi``).
    shards: split the samples into this many shards; each round is then solved by mpi-sppy's
        Progressive Hedging over the shards (:mod:`convexnn_pyomo.algorithms.sharded`; needs the
        ``[mpi]`` extra), in one process or, under ``mpiexec -n K``, one rank per shard group.
    ph_options: with ``shards > 1``, PH options over ``sharded.PH_DEFAULTS`` (``{"tol": 1e-5}``).
    round_solver: ``"ipopt"`` (default) or ``"schur"``: direct rounds solved by
        :class:`~convexnn_pyomo.solvers.schur_ipm.SchurInteriorPoint` (linear in ``m``,
        docs/results.md); ``solver_options`` are then its ``CONFIG``.
    """
    options = {k: v for k, v in locals().items() if k not in ("net", "X", "Y", "method")}  # SequentialRelaxation.CONFIG
    if method != "sequential":
        raise ValueError(f"unknown method {method!r}; the only method is 'sequential' (Algorithm 1)")
    return SequentialRelaxation(**options).solve(net, X, Y)
