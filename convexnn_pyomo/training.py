"""Algorithm 1 (sequential regularized relaxation) and the high-level ``train``.

Two schedules share one loop:

``schedule="paper"``
    Algorithm 1 as printed: summed loss (1), a fixed ``eta``, ``mu = 1``, the new reference is the
    convex solution's weights.  Theorem 1 needs ``eta * mu_z >= ||f(w,b) - y||_1`` (measured),
    which grows with ``m``, and above it a round moves the weights by about a proximal step of
    ``1/(2 eta)``.

``schedule="default"``
    The same convex round, made to train: the loss and the per-sample regularizer terms are
    averaged over samples; each round the per-layer ``mu_z, mu_p, mu_q`` of (8) are set to the
    first-order exactness thresholds of every slack of the relaxation, computed from the
    reference's backpropagated sensitivities (:func:`~convexnn_pyomo.transformations.exactness_weights`),
    so that ``eta`` is a safety factor around 1 (doubled after an inexact round, divided by 1.5
    after an exact one, never below 1); and the round's step ``d = w* - w_k`` is searched on the
    *true* loss with numpy forward/backward passes (one coefficient per layer plus the last
    accepted steps as momentum; a plain line search when hard constraints are present).

Both schedules accept a round only if the true loss (numpy forward pass) does not increase (and,
with hard constraints, the real network's violation does not grow / stays within tolerance); a
rejected round is recorded with status ``rejected`` and retried with a larger ``eta``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyomo.environ as pyo
from pyomo.opt import TerminationCondition

from .constraints import as_hard_constraints
from .model import build_training_model, constraint_gaps, network_from_model
from .network import Network, check_data
from .solvers.registry import default_nlp_solver, require_solver
from .transformations import exactness_weights, set_lifted_values, update_reference

__all__ = ["train", "TrainResult", "HISTORY_COLUMNS"]

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
]

# mu_strategy/METIS: 1.03 s -> 0.49 s per round (m = 100, same optimum; benchmarks/round_options.py); max_iter: a few
# rounds (large eta after rejections) otherwise ran thousands of iterations
IPOPT_DEFAULTS = {"mu_strategy": "adaptive", "mumps_pivot_order": 5, "max_iter": 1000}

_OK = {TerminationCondition.optimal, TerminationCondition.locallyOptimal}


@dataclass
class TrainResult:
    """Returned by :func:`train`: the best accepted network and the per-round history."""

    network: Network
    history: pd.DataFrame
    status: str
    initial_loss: float
    final_loss: float
    seconds: float
    schedule: str
    solver: str
    violation: float = 0.0
    model: object = field(default=None, repr=False)

    @property
    def rounds(self) -> int:
        """Convex solves (accepted, rejected or failed); a warm-start row is not a round."""
        return int((self.history["round"] > 0).sum()) if len(self.history) else 0

    def summary(self) -> dict:
        return {
            "status": self.status,
            "schedule": self.schedule,
            "solver": self.solver,
            "initial_loss": self.initial_loss,
            "final_loss": self.final_loss,
            "rounds": self.rounds,
            "accepted_rounds": int((self.history["status"] == "accepted").sum()) if len(self.history) else 0,
            "seconds": self.seconds,
            "violation": self.violation,
        }


def train(
    net: Network,
    X,
    Y,
    method: str = "sequential",
    schedule: str = "default",
    rounds: int = 300,
    eta: float | None = None,
    epsilon: float = 1e-7,
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
) -> TrainResult:
    """Train ``net`` on ``(X, Y)`` by Algorithm 1 and return the best accepted weights and history.

    Parameters
    ----------
    net: a :class:`Network` with initial weights (``net.init_he(seed)``); it is not modified.
    X, Y: data, ``(m, n_0)`` and ``(m, n_L)`` or ``(m,)``.
    schedule: ``"paper"`` (fixed ``eta``, summed loss) or ``"default"`` (see module docstring).
    rounds: maximum number of convex solves (accepted + rejected).
    eta: fixed ``eta`` for ``"paper"`` (default 100); for ``"default"`` the initial safety factor
        on the exactness weights (default 2), adapted each round and never below 1 (never below
        the given value when ``mu`` is given).
    epsilon: stop when an accepted round improves the true loss by less than this (relative to
        the loss for ``"default"``, absolute for ``"paper"``, as in the paper).
    mu: ``(mu_z, mu_p, mu_q)`` for every layer.  Default: ``(1, 1, 1)`` for ``"paper"``; for
        ``"default"`` the per-layer exactness weights, recomputed at every reference.
    hard_constraints: a :class:`~convexnn_pyomo.constraints.HardConstraint`, a callable
        ``f(model)`` that adds constraints, or a list of them.
    solver: Pyomo solver name (default :func:`default_nlp_solver`).
    time_limit: wall-clock seconds for the whole run (checked between rounds).
    target_loss: stop as soon as the true loss is at or below this value.
    patience: for ``"default"``, stop after this many *exact* accepted rounds in a row improve by
        less than ``epsilon``.
    exact_tol: a round is exact when both constraint gaps (``bilinear_gap``, ``activation_gap``)
        are at most this; for ``"default"`` an inexact round doubles ``eta``.
    round_time_limit: wall-clock seconds for one convex solve (Ipopt's ``max_wall_time``).
    max_failures: a failed solve (time or iteration cap, solver error, or "infeasible" although the
        accepted network meets the hard constraints) is recorded as ``solver_failed:<condition>``
        and retried with eta four times larger; this many failures in a row end the run with that
        status and the best accepted weights.
    warm_start: full-batch Adam steps (lr 0.01, PyTorch) taken from ``net`` before the first
        round; the history then starts with a ``warm_start`` row (round 0).
    progress: ``True`` prints one line per round; a callable receives each history row and the
        best accepted network so far (e.g. to checkpoint it).
    """
    if method != "sequential":
        raise ValueError(f"unknown method {method!r}; the only method is 'sequential' (Algorithm 1)")
    if schedule not in ("paper", "default"):
        raise ValueError(f"schedule must be 'paper' or 'default', got {schedule!r}")
    if not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be a positive integer, got {rounds!r}")
    if eta is not None and not (math.isfinite(eta) and eta > 0):
        raise ValueError(f"eta must be a positive finite number, got {eta!r}")
    if mu is not None:
        try:
            mu = tuple(float(v) for v in mu)
        except (TypeError, ValueError):
            mu = (mu,)
        if len(mu) != 3 or any(not (isinstance(v, float) and math.isfinite(v) and v > 0) for v in mu):
            raise ValueError(f"mu must be three positive numbers (mu_z, mu_p, mu_q), got {mu!r}")
    if net.weights is None:
        raise ValueError("the network has no initial weights: call net.init_he(seed) first")
    X, Y = check_data(X, Y, net.sizes[0], net.sizes[-1])
    constraints = as_hard_constraints(hard_constraints)
    solver_name = solver or default_nlp_solver()
    opt = require_solver(solver_name)
    if solver_name.startswith("ipopt"):
        # measured on breast_cancer (m = 100): 0.85 s -> 0.57 s per round, same optima
        solver_options = {**IPOPT_DEFAULTS, **(solver_options or {})}
    else:
        solver_options = dict(solver_options or {})
    if progress is True:
        progress = _print_row

    paper = schedule == "paper"
    reduction = "sum" if paper else "mean"
    t_start = time.perf_counter()
    initial_loss = net.loss(X, Y)
    warm_row = None
    if warm_start:
        from .baselines import train_adam

        t0 = time.perf_counter()
        net = train_adam(net, X, Y, steps=int(warm_start), lr=0.01).network
        warm_row = {"round": 0, "true_loss": net.loss(X, Y), "relaxed_objective": math.nan, "bilinear_gap": math.nan,
                    "activation_gap": math.nan, "eta": math.nan, "solve_seconds": time.perf_counter() - t0,
                    "status": "warm_start", "step": math.nan, "violation": math.nan, "iterations": int(warm_start)}

    model = build_training_model(net, X, Y, reduction=reduction)
    pyo.TransformationFactory("convexnn.parabolic").apply_to(model)
    for c in constraints:
        c.add_to(model)
    set_lifted_values(model, net)
    auto_mu = not paper and mu is None
    mu_fixed = tuple(mu) if mu is not None else (1.0, 1.0, 1.0)
    if paper:
        eta_k = float(eta) if eta is not None else 100.0
        eta_floor = eta_k
    else:
        eta_k = float(eta) if eta is not None else 2.0
        eta_floor = 1.0 if auto_mu else eta_k
    pyo.TransformationFactory("convexnn.regularize").apply_to(
        model, eta=eta_k, reference=net, mu_z=mu_fixed[0], mu_p=mu_fixed[1], mu_q=mu_fixed[2]
    )
    reg = model.regularization

    def recentre(reference: Network, eta_value: float) -> None:
        """Next round: centre (8) at ``reference`` (weights and eta) and warm start at its lift."""
        fp = reference.forward_pass(X)  # one forward pass serves the weights, the centre and the lift
        weights = exactness_weights(model, reference, fp=fp) if auto_mu else {}
        update_reference(model, reference, eta=eta_value, fp=fp, **weights)
        set_lifted_values(model, reference, fp=fp)

    if auto_mu:
        recentre(net, eta_k)

    def loss_of(n: Network) -> float:
        return n.loss(X, Y, reduction="sum")

    def violation_of(n: Network) -> float:
        return max([c.violation(n, X, Y) for c in constraints], default=0.0)

    def better(loss_new, viol_new, loss_cur, viol_cur) -> bool:
        if viol_cur > constraint_tol:  # not yet feasible: reduce the violation first
            return viol_new < viol_cur or (viol_new <= constraint_tol)
        return viol_new <= constraint_tol and loss_new <= loss_cur

    best = net.copy()
    best_loss, best_viol = loss_of(best), violation_of(best)
    rows: list[dict] = []
    if warm_row is not None:
        warm_row["violation"] = best_viol
        _record(rows, warm_row, progress, best)
    previous_steps: list[np.ndarray] = []  # last accepted steps, for the subspace search
    memory = 4  # previous steps kept for the subspace search (measured: 4 beat 2 on breast_cancer)
    stalls = 0  # consecutive accepted rounds with improvement below epsilon
    failures = 0  # consecutive failed solves
    status = "round_limit"
    k = 0
    while k < rounds:
        if time_limit is not None and time.perf_counter() - t_start > time_limit:
            status = "time_limit"
            break
        k += 1
        t0 = time.perf_counter()
        round_options = dict(solver_options)
        if solver_name.startswith("ipopt"):
            # the run's time limit also bounds the solve in progress, not only the gaps between solves
            cap = round_time_limit if time_limit is None else min(round_time_limit, max(1.0, time_limit - (t0 - t_start)))
            round_options.setdefault("max_wall_time", float(cap))
        try:
            res = opt.solve(model, options=round_options) if round_options else opt.solve(model)
            term = res.solver.termination_condition
            iterations = int(getattr(res.solver, "iterations", -1) or -1)
        except Exception as exc:  # a solver crash must not lose the accepted weights
            term, iterations = f"error: {type(exc).__name__}: {exc}", -1
        solve_seconds = time.perf_counter() - t0
        row = {"round": k, "eta": float(pyo.value(reg.eta)), "solve_seconds": solve_seconds, "iterations": iterations}
        failed_row = dict(row, true_loss=best_loss, relaxed_objective=math.nan, bilinear_gap=math.nan,
                          activation_gap=math.nan, step=0.0, violation=best_viol)
        # the relaxation contains the lifted reference point, which meets the hard constraints once
        # the accepted network does: "infeasible" is then Ipopt's local infeasibility detection
        # failing, not a property of the problem
        if term == TerminationCondition.infeasible and best_viol > constraint_tol:
            # the hard constraints leave the relaxation (hence every network) no feasible point
            hint = ""
            for c in constraints:
                if hasattr(c, "smallest_feasible_factor"):
                    f = c.smallest_feasible_factor(model, solver_name)
                    hint = f"; the smallest kappa_factor the relaxation admits is {f:.6g}"
            _record(rows, dict(failed_row, status="infeasible"), progress, best)
            status = f"infeasible: the hard constraints admit no point of the relaxation{hint}"
            break
        if term == TerminationCondition.maxTimeLimit and time_limit is not None and time.perf_counter() - t_start >= time_limit:
            _record(rows, dict(failed_row, status="time_limit"), progress, best)
            status = "time_limit"
            break
        if term not in _OK:
            # a failed solve (iteration or per-round time cap, numerical trouble) costs a round, not
            # the run: retry from the same reference with a larger eta (a stronger proximal term)
            _record(rows, dict(failed_row, status=f"solver_failed:{term}"), progress, best)
            failures += 1
            if failures >= max_failures:
                status = f"solver_failed:{term}"
                break
            eta_k *= 4.0
            recentre(best, eta_k)
            continue
        failures = 0
        candidate = network_from_model(model)
        bil, act = constraint_gaps(model)
        row.update(relaxed_objective=float(pyo.value(reg.objective)), bilinear_gap=bil, activation_gap=act)

        if paper:
            step, new = 1.0, candidate
            new_loss, new_viol = loss_of(new), violation_of(new)
        elif constraints:
            step, new, new_loss, new_viol = _line_search(best, candidate, loss_of, violation_of, better)
        else:
            step, new, new_loss = _subspace_search(best, candidate, previous_steps, X, Y)
            new_viol = 0.0
        accepted = new is not None and better(new_loss, new_viol, best_loss, best_viol)
        if accepted:
            improvement = best_loss - new_loss
            previous_steps = [new.get_flat() - best.get_flat()] + previous_steps[: memory - 1]
            best, best_loss, best_viol = new, new_loss, new_viol
            row.update(true_loss=new_loss, status="accepted", step=step, violation=new_viol)
        else:
            row.update(true_loss=new_loss if new is not None else loss_of(candidate), status="rejected",
                       step=0.0, violation=new_viol if new is not None else violation_of(candidate))
        _record(rows, row, progress, best)

        # -- next round: reference and eta ------------------------------------------------------
        exact = max(bil, act) <= exact_tol
        if accepted:
            if target_loss is not None and best_loss <= target_loss and best_viol <= constraint_tol:
                status = "target_reached"
                break
            tol = epsilon * max(best_loss, 1e-12) if not paper else epsilon
            # Theorem 1's stopping rule is meaningful on exact rounds only: an inexact relaxation's
            # step can be useless while a larger eta would still make progress
            stalls = stalls + 1 if (0 <= improvement < tol and (paper or exact)) else 0
            # the paper stops at the first small improvement; the default schedule, whose rounds
            # vary in length with eta, waits for `patience` small improvements in a row
            if stalls >= (1 if paper else patience) and best_viol <= constraint_tol:
                status = "converged"
                break
        if not accepted:
            eta_k *= 4.0
        elif not paper:
            # the weights are first-order thresholds: double eta when they were not enough, else
            # creep back towards them (longer steps), never below the floor
            eta_k = eta_k * 2.0 if not exact else max(eta_k / 1.5, eta_floor)
        if eta_k > 1e12 * eta_floor:
            status = "stalled"
            break
        recentre(best, eta_k)

    history = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
    if best_viol > constraint_tol and status in ("round_limit", "converged", "time_limit", "stalled"):
        status = f"{status}:constraints_violated"
    return TrainResult(
        network=best,
        history=history,
        status=status,
        initial_loss=initial_loss,
        final_loss=best_loss,
        seconds=time.perf_counter() - t_start,
        schedule=schedule,
        solver=solver_name,
        violation=best_viol,
        model=model,
    )


def _line_search(current: Network, candidate: Network, loss_of, violation_of, better, max_expand: int = 6):
    """Search ``current + t (candidate - current)`` on the true loss; return the best acceptable point."""
    theta0 = current.get_flat()
    d = candidate.get_flat() - theta0
    loss0, viol0 = loss_of(current), violation_of(current)

    def at(t):
        n = current.with_flat(theta0 + t * d)
        return n, loss_of(n), violation_of(n)

    n1, l1, v1 = at(1.0)
    if better(l1, v1, loss0, viol0) and (l1 < loss0 or v1 < viol0):
        best = (1.0, n1, l1, v1)
        t = 1.0
        for _ in range(max_expand):
            t *= 2.0
            n, lt, vt = at(t)
            if better(lt, vt, best[2], best[3]) and lt < best[2]:
                best = (t, n, lt, vt)
            else:
                break
        return best
    for t in (0.5, 0.25, 0.125):
        n, lt, vt = at(t)
        if better(lt, vt, loss0, viol0) and (lt < loss0 or vt < viol0):
            return t, n, lt, vt
    return 0.0, None, l1, v1


def _subspace_search(current: Network, candidate: Network, previous_steps: list[np.ndarray], X, Y):
    """Minimise the true loss over ``current + a_0 d + sum_i a_i s_i``.

    ``d`` is this round's step (convex solution minus reference) and ``s_i`` the last accepted
    steps: the convex round acts as a preconditioned descent direction and the previous steps add
    momentum (as in accelerated proximal-point and nonlinear conjugate-gradient methods).  Each
    evaluation is a numpy forward/backward pass, negligible next to a convex solve.  Returns
    ``(a_0, network, loss)``, or ``(0, None, loss at a_0 = 1)`` when nothing improves on ``current``.

    Trust region: each term may move the weights it touches by at most their norm (at least 1),
    and the convex step itself (coefficient 1) is always allowed.  Unbounded, the search drove a
    layer whose convex step was nearly zero to a coefficient of 1e6 (weights of 7e4, every sigmoid
    saturated, later rounds slow and stuck; breast_cancer m = 400, seed 1).
    """
    from scipy.optimize import minimize

    theta0 = current.get_flat()
    d = candidate.get_flat() - theta0
    # one coefficient per layer's part of the convex step (layers differ in scale), plus momentum
    parts, radii, k = [], [], 0
    for l in range(1, current.n_layers + 1):
        size = current.sizes[l] * (current.sizes[l - 1] + 1)
        part = np.zeros_like(d)
        part[k : k + size] = d[k : k + size]
        parts.append(part)
        radii.append(max(float(np.linalg.norm(theta0[k : k + size])), 1.0))
        k += size
    radii += [max(float(np.linalg.norm(theta0)), 1.0)] * len(previous_steps)
    basis = np.stack(parts + list(previous_steps), axis=1)
    norms = np.linalg.norm(basis, axis=0)
    limits = [max(r / n, 1.0) if n > 0 else 1.0 for r, n in zip(radii, norms)]
    loss0 = current.loss(X, Y)

    def fun(a):
        n = current.with_flat(theta0 + basis @ a)
        loss, grad = n.loss_and_gradient(X, Y)
        return loss, basis.T @ grad

    a0 = np.zeros(basis.shape[1])
    a0[: len(parts)] = 1.0
    loss1 = fun(a0)[0]
    res = minimize(fun, a0, jac=True, method="L-BFGS-B", bounds=[(-c, c) for c in limits], options={"maxiter": 50})
    a = res.x if res.fun < loss1 else a0
    loss = min(res.fun, loss1)
    if not np.isfinite(loss) or loss >= loss0:
        return 0.0, None, loss1
    step = float(np.dot(a[: len(parts)], [np.dot(p, p) for p in parts]) / max(np.dot(d, d), 1e-300))
    return step, current.with_flat(theta0 + basis @ a), float(loss)


def _record(rows: list[dict], row: dict, progress, best: Network) -> None:
    rows.append(row)
    if progress:
        progress(row, best)


def _print_row(row: dict, network: Network | None = None) -> None:
    if row["status"] == "warm_start":
        print(f"warm start: {row['iterations']} Adam steps, loss {row['true_loss']:.6g}, {row['solve_seconds']:.2f}s", flush=True)
        return
    print(
        f"round {row['round']:4d}  {row['status']:<9s} loss {row['true_loss']:.6g}  "
        f"relaxed {row['relaxed_objective']:.6g}  gaps {row['bilinear_gap']:.1e}/{row['activation_gap']:.1e}  "
        f"eta {row['eta']:.3g}  step {row['step']:g}  {row['solve_seconds']:.2f}s",
        flush=True,
    )
