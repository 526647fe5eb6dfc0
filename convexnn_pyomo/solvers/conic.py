"""``convexnn_conic``: linear + convex-quadratic-objective + PSD models to Clarabel (or SCS).

Handles what the SDP relaxation needs: an objective with a convex quadratic part, linear
equalities and inequalities, variable bounds, and :class:`~convexnn_pyomo.psd.PSDConstraint`
blocks.  Nonlinear or quadratic *constraints* are refused with a clear error (outer-approximate
them by cuts first, as ``convexnn.sdp`` does for the activations).
"""

from __future__ import annotations

import math
import time

import numpy as np
from pyomo.environ import Constraint, Objective, SolverFactory, maximize
from pyomo.opt import SolverResults, SolverStatus, TerminationCondition
from pyomo.repn import generate_standard_repn
from scipy import sparse

from ..psd import psd_constraints

from .base import LegacySolverMixin, store_solution

__all__ = ["ConicSolver"]

_CLARABEL_STATUS = {
    "Solved": (SolverStatus.ok, TerminationCondition.optimal),
    "AlmostSolved": (SolverStatus.ok, TerminationCondition.optimal),
    "PrimalInfeasible": (SolverStatus.warning, TerminationCondition.infeasible),
    "AlmostPrimalInfeasible": (SolverStatus.warning, TerminationCondition.infeasible),
    "DualInfeasible": (SolverStatus.warning, TerminationCondition.unbounded),
    "AlmostDualInfeasible": (SolverStatus.warning, TerminationCondition.unbounded),
    "MaxIterations": (SolverStatus.warning, TerminationCondition.maxIterations),
    "MaxTime": (SolverStatus.warning, TerminationCondition.maxTimeLimit),
}


class _Builder:
    def __init__(self):
        self.index: dict[int, int] = {}
        self.vars: list = []

    def col(self, v) -> int:
        k = self.index.get(id(v))
        if k is None:
            k = self.index[id(v)] = len(self.vars)
            self.vars.append(v)
        return k

    def affine(self, expr, what: str):
        repn = generate_standard_repn(expr, compute_values=True, quadratic=False)
        if not repn.is_linear():
            raise ValueError(f"convexnn_conic: {what} is not affine; only linear constraints and PSD blocks are supported")
        coefs = {}
        for v, c in zip(repn.linear_vars, repn.linear_coefs):
            if v.fixed:
                continue
            coefs[self.col(v)] = coefs.get(self.col(v), 0.0) + float(c)
        const = float(repn.constant) + sum(float(c) * v.value for v, c in zip(repn.linear_vars, repn.linear_coefs) if v.fixed)
        return coefs, const


@SolverFactory.register("convexnn_conic", doc="Linear/QP objective + PSD constraints via Clarabel (pip)")
class ConicSolver(LegacySolverMixin):
    """Pyomo solver plugin (legacy protocol) for conic models with PSD blocks."""

    name = "convexnn_conic"
    module = "clarabel"
    pip = "pip install clarabel"
    timelimit_option = "time_limit"

    def solve(self, model, tee: bool = False, load_solutions: bool = True, options=None, **kwds) -> SolverResults:
        import clarabel

        self.available(True)
        opts = self.merged_options(options, kwds.pop("timelimit", None))
        t0 = time.perf_counter()
        b = _Builder()
        objs = list(model.component_data_objects(Objective, active=True, descend_into=True))
        if len(objs) != 1:
            raise ValueError(f"convexnn_conic needs one active objective, found {len(objs)}")
        obj = objs[0]
        sense = -1.0 if obj.sense == maximize else 1.0
        repn = generate_standard_repn(obj.expr, compute_values=True, quadratic=True)
        if repn.nonlinear_expr is not None:
            raise ValueError("convexnn_conic: the objective must be linear or quadratic")
        q_lin = {}
        for v, c in zip(repn.linear_vars, repn.linear_coefs):
            q_lin[b.col(v)] = q_lin.get(b.col(v), 0.0) + sense * float(c)
        P_entries = []
        for (v1, v2), c in zip(repn.quadratic_vars, repn.quadratic_coefs):
            i, j = b.col(v1), b.col(v2)
            if i == j:
                P_entries.append((i, i, 2.0 * sense * float(c)))
            else:
                P_entries += [(i, j, sense * float(c)), (j, i, sense * float(c))]
        obj_const = sense * float(repn.constant)

        rows_eq, rows_le = [], []  # (coefs, rhs): coefs x == rhs  /  coefs x <= rhs
        for con in model.component_data_objects(Constraint, active=True, descend_into=True):
            coefs, const = b.affine(con.body, f"constraint {con.name}")
            lo, up = con.lower, con.upper
            lo = None if lo is None else float(lo.__call__() if callable(lo) else lo)
            up = None if up is None else float(up.__call__() if callable(up) else up)
            if lo is not None and up is not None and abs(lo - up) < 1e-12:
                rows_eq.append((coefs, lo - const))
                continue
            if up is not None:
                rows_le.append((coefs, up - const))
            if lo is not None:
                rows_le.append(({k: -c for k, c in coefs.items()}, const - lo))
        psd_rows = []
        for blk in psd_constraints(model):
            n = blk.size
            entries = []
            for c in range(n):
                for r in range(c + 1):
                    coefs, const = b.affine(blk.upper[(r, c)], f"PSD entry ({r},{c}) of {blk.name}")
                    scale = 1.0 if r == c else math.sqrt(2.0)
                    entries.append(({k: scale * v for k, v in coefs.items()}, scale * const))
            psd_rows.append((n, entries))
        for v in list(b.vars):
            if v.ub is not None:
                rows_le.append(({b.col(v): 1.0}, float(v.ub)))
            if v.lb is not None:
                rows_le.append(({b.col(v): -1.0}, -float(v.lb)))

        nvar = len(b.vars)
        A_rows, A_cols, A_vals, rhs, cones = [], [], [], [], []
        row = 0

        def add(coefs, value, sign=1.0):
            nonlocal row
            for k, c in coefs.items():
                A_rows.append(row)
                A_cols.append(k)
                A_vals.append(sign * c)
            rhs.append(value)
            row += 1

        for coefs, r in rows_eq:
            add(coefs, r)
        if rows_eq:
            cones.append(clarabel.ZeroConeT(len(rows_eq)))
        for coefs, r in rows_le:
            add(coefs, r)
        if rows_le:
            cones.append(clarabel.NonnegativeConeT(len(rows_le)))
        for n, entries in psd_rows:  # s = svec(M(x)) = b - A x  ->  A = -coef, b = const
            for coefs, const in entries:
                add(coefs, const, sign=-1.0)
            cones.append(clarabel.PSDTriangleConeT(n))
        A = sparse.csc_matrix((A_vals, (A_rows, A_cols)), shape=(row, nvar))
        P = sparse.csc_matrix(
            ([e[2] for e in P_entries], ([e[0] for e in P_entries], [e[1] for e in P_entries])), shape=(nvar, nvar)
        )
        P = sparse.triu(P, format="csc")
        q = np.zeros(nvar)
        for k, c in q_lin.items():
            q[k] = c
        settings = clarabel.DefaultSettings()
        settings.verbose = bool(tee)
        for k, v in opts.items():
            setattr(settings, k, v)
        build = time.perf_counter() - t0
        solver = clarabel.DefaultSolver(P, q, A, np.array(rhs), cones, settings)
        sol = solver.solve()
        results = self.new_results(_CLARABEL_STATUS, str(sol.status), float(sol.solve_time))
        term = results.solver.termination_condition
        results.solver.iterations = int(sol.iterations)
        results.solver.build_time = build
        results.problem.number_of_variables = nvar
        results.problem.number_of_constraints = row
        fval = sense * (float(sol.obj_val) + obj_const)
        results.problem.lower_bound = results.problem.upper_bound = fval
        if load_solutions and term == TerminationCondition.optimal:
            for v, xv in zip(b.vars, sol.x):
                v.set_value(float(xv), skip_validation=True)
            if "report_timing" in kwds:  # called by `pyomo solve`
                store_solution(model, results, b.vars, fval)
        return results
