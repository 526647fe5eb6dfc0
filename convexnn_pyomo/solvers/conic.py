"""``convexnn_conic``: linear + convex-quadratic-objective + PSD models to Clarabel.

Handles what the SDP relaxation needs: an objective with a convex quadratic part, linear
equalities and inequalities, variable bounds, and :class:`~convexnn_pyomo.psd.PSDConstraint`
blocks.  Nonlinear or quadratic *constraints* are refused with a clear error (outer-approximate
them by cuts first, as ``convexnn.sdp`` does for the activations).

Clarabel is a primal-dual interior-point method: at convergence its dual objective is a proven
bound (``results.objective_bound``), up to its tolerances.
"""

from __future__ import annotations

import math

import numpy as np
from pyomo.common.timing import default_timer
from pyomo.contrib.solver.common.results import Results, SolutionStatus, TerminationCondition
from pyomo.environ import Constraint, Objective, maximize, value
from pyomo.repn import generate_standard_repn

from ..psd import psd_constraints
from .base import ConvexnnSolverBase, PointSolutionLoader, StatusTable, map_status, register_solver

__all__ = ["CLARABEL_STATUS", "ConicSolver"]

_TC, _SS = TerminationCondition, SolutionStatus
#: Clarabel's ``status`` -> (termination condition, solution status); "Almost" statuses are
#: reduced-accuracy versions of the plain ones (as Ipopt's acceptable level is of its optimum)
CLARABEL_STATUS: StatusTable = {
    "Solved": (_TC.convergenceCriteriaSatisfied, _SS.optimal),
    "AlmostSolved": (_TC.convergenceCriteriaSatisfied, _SS.optimal),
    "PrimalInfeasible": (_TC.provenInfeasible, _SS.noSolution),
    "AlmostPrimalInfeasible": (_TC.provenInfeasible, _SS.noSolution),
    "DualInfeasible": (_TC.unbounded, _SS.noSolution),
    "AlmostDualInfeasible": (_TC.unbounded, _SS.noSolution),
    "MaxIterations": (_TC.iterationLimit, _SS.unknown),
    "MaxTime": (_TC.maxTimeLimit, _SS.unknown),
    "InsufficientProgress": (_TC.minStepLength, _SS.unknown),
    "NumericalError": (_TC.error, _SS.noSolution),
    "CallbackTerminated": (_TC.interrupted, _SS.noSolution),
}


class _ConicProblem:
    r"""A Pyomo model as Clarabel's data: :math:`\min \tfrac12 x^\top P x + q^\top x` subject to
    :math:`b - A x \in \mathcal{K}` (zero cone: equalities; nonnegative cone: inequalities and
    variable bounds; one PSD-triangle cone per :class:`PSDConstraint`, entries in svec order)."""

    def __init__(self, model):
        self.index: dict[int, int] = {}
        self.vars: list = []
        objs = list(model.component_data_objects(Objective, active=True, descend_into=True))
        if len(objs) != 1:
            raise ValueError(f"convexnn_conic needs one active objective, found {len(objs)}")
        self.sense = -1.0 if objs[0].sense == maximize else 1.0
        self._objective(objs[0].expr)
        self.rows_eq, self.rows_le = [], []  # (coefs, rhs): coefs x == rhs / coefs x <= rhs
        for con in model.component_data_objects(Constraint, active=True, descend_into=True):
            self._constraint(con)
        self.psd = [self._psd_rows(blk) for blk in psd_constraints(model)]
        for v in list(self.vars):
            if v.ub is not None:
                self.rows_le.append(({self.col(v): 1.0}, float(v.ub)))
            if v.lb is not None:
                self.rows_le.append(({self.col(v): -1.0}, -float(v.lb)))

    def col(self, v) -> int:
        k = self.index.get(id(v))
        if k is None:
            k = self.index[id(v)] = len(self.vars)
            self.vars.append(v)
        return k

    def affine(self, expr, what: str) -> tuple[dict, float]:
        repn = generate_standard_repn(expr, compute_values=True, quadratic=False)
        if not repn.is_linear():
            raise ValueError(f"convexnn_conic: {what} is not affine; only linear constraints and PSD blocks are supported")
        coefs: dict[int, float] = {}
        const = float(repn.constant)
        for v, c in zip(repn.linear_vars, repn.linear_coefs):
            if v.fixed:
                const += float(c) * v.value
            else:
                coefs[self.col(v)] = coefs.get(self.col(v), 0.0) + float(c)
        return coefs, const

    def _objective(self, expr) -> None:
        repn = generate_standard_repn(expr, compute_values=True, quadratic=True)
        if repn.nonlinear_expr is not None:
            raise ValueError("convexnn_conic: the objective must be linear or quadratic")
        s = self.sense
        self.q = {}
        for v, c in zip(repn.linear_vars, repn.linear_coefs):
            self.q[self.col(v)] = self.q.get(self.col(v), 0.0) + s * float(c)
        self.P = []
        for (v1, v2), c in zip(repn.quadratic_vars, repn.quadratic_coefs):
            i, j = self.col(v1), self.col(v2)
            self.P += [(i, i, 2.0 * s * float(c))] if i == j else [(i, j, s * float(c)), (j, i, s * float(c))]
        self.constant = s * float(repn.constant)

    def _constraint(self, con) -> None:
        coefs, const = self.affine(con.body, f"constraint {con.name}")
        lo = None if con.lower is None else float(value(con.lower))
        up = None if con.upper is None else float(value(con.upper))
        if lo is not None and up is not None and abs(lo - up) < 1e-12:
            self.rows_eq.append((coefs, lo - const))
            return
        if up is not None:
            self.rows_le.append((coefs, up - const))
        if lo is not None:
            self.rows_le.append(({k: -c for k, c in coefs.items()}, const - lo))

    def _psd_rows(self, blk) -> tuple[int, list]:
        """svec(M(x)) of a PSD block, as rows ``(-coefs, const)`` of ``b - A x``."""
        rows = []
        for c in range(blk.size):
            for r in range(c + 1):
                coefs, const = self.affine(blk.upper[(r, c)], f"PSD entry ({r},{c}) of {blk.name}")
                scale = 1.0 if r == c else math.sqrt(2.0)
                rows.append(({k: -scale * v for k, v in coefs.items()}, scale * const))
        return blk.size, rows

    def matrices(self, clarabel):
        """``P, q, A, b, cones`` for ``clarabel.DefaultSolver``."""
        from scipy import sparse  # here, not at import: scipy costs every process 60 MB and 0.6 s

        rows = [*self.rows_eq, *self.rows_le, *(row for _, block in self.psd for row in block)]
        entries = [(r, k, c) for r, (coefs, _) in enumerate(rows) for k, c in coefs.items()]
        A = sparse.csc_matrix(
            ([e[2] for e in entries], ([e[0] for e in entries], [e[1] for e in entries])),
            shape=(len(rows), len(self.vars)),
        )
        cones = [clarabel.ZeroConeT(len(self.rows_eq))] if self.rows_eq else []
        cones += [clarabel.NonnegativeConeT(len(self.rows_le))] if self.rows_le else []
        cones += [clarabel.PSDTriangleConeT(n) for n, _ in self.psd]
        n = len(self.vars)
        P = sparse.csc_matrix(([e[2] for e in self.P], ([e[0] for e in self.P], [e[1] for e in self.P])), shape=(n, n))
        q = np.zeros(n)
        for k, c in self.q.items():
            q[k] = c
        return sparse.triu(P, format="csc"), q, A, np.array([r for _, r in rows], dtype=float), cones


@register_solver("convexnn_conic", doc="Linear/QP objective + PSD constraints via Clarabel (pip)")
class ConicSolver(ConvexnnSolverBase):
    """Clarabel for LP/QP objectives, linear constraints and PSD blocks.

    ``solver_options`` are Clarabel settings (``max_iter``, ``tol_gap_abs``, ...); ``time_limit``
    becomes Clarabel's ``time_limit``.  ``objective_bound`` is Clarabel's dual objective at
    convergence.  ``extra_info``: ``iteration_count``, ``return_status`` (Clarabel's, mapped by
    :data:`CLARABEL_STATUS`), ``build_time``, ``solve_time``.
    """

    module = "clarabel"
    time_limit_option = "time_limit"

    def _solve(self, model, config, results: Results) -> None:
        import clarabel

        t0 = default_timer()
        prob = _ConicProblem(model)
        settings = clarabel.DefaultSettings()
        settings.verbose = bool(config.tee)
        for key, val in self.solver_options(config).items():
            if not hasattr(settings, key):
                raise ValueError(f"convexnn_conic: Clarabel has no setting {key!r}")
            setattr(settings, key, val)
        solver = clarabel.DefaultSolver(*prob.matrices(clarabel), settings)
        t1 = default_timer()
        sol = solver.solve()
        status = str(sol.status)
        results.termination_condition, results.solution_status = map_status(CLARABEL_STATUS, status)
        if results.solution_status == SolutionStatus.optimal:
            results.incumbent_objective = prob.sense * (float(sol.obj_val) + prob.constant)
            results.objective_bound = prob.sense * (float(sol.obj_val_dual) + prob.constant)
        info = results.extra_info
        info.iteration_count, info.return_status = int(sol.iterations), status
        info.build_time, info.solve_time = t1 - t0, default_timer() - t1
        if results.solution_status != SolutionStatus.noSolution:
            results.solution_loader = PointSolutionLoader(model, prob.vars, list(sol.x), solver=self.name)
