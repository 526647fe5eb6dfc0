r"""``convexnn_conic``: linear + convex-quadratic + PSD models to Clarabel.

Handles what the SDP relaxation and the output layer's refit need: an objective with a convex
quadratic part, linear equalities and inequalities, variable bounds, convex quadratic rows
:math:`x^\top Q x + a^\top x + c \le u` (a rotated second-order cone each, below), and
:class:`~convexnn_pyomo.psd.PSDConstraint` blocks.  Other nonlinear rows, quadratic rows bounded
from below or with an indefinite :math:`Q`, are refused with a clear error (outer-approximate them
by cuts first, as ``convexnn.sdp`` does for the activations).

A quadratic row with :math:`Q = F^\top F` (:math:`F` from the diagonal when :math:`Q` is
diagonal, as in sums of squared residuals, else from an eigendecomposition of :math:`Q` on its
variables, at most ``DENSE_QUADRATIC_MAX`` of them) and :math:`r = u - c - a^\top x` is
:math:`\|F x\|^2 \le r`, i.e. :math:`\|(2 F x,\; r - 1)\|_2 \le r + 1`: one second-order
cone of dimension ``rank(F) + 2``.

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

__all__ = ["CLARABEL_STATUS", "ConicSolver", "refusal"]

#: a quadratic row whose Q is not diagonal is factorized densely over its variables, up to this many
DENSE_QUADRATIC_MAX = 2000

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


def _finite(bound) -> float | None:
    """A constraint's bound as a float, or None when absent or infinite."""
    if bound is None:
        return None
    v = float(value(bound))
    return v if math.isfinite(v) else None


class _ConicProblem:
    r"""A Pyomo model as Clarabel's data: :math:`\min \tfrac12 x^\top P x + q^\top x` subject to
    :math:`b - A x \in \mathcal{K}` (zero cone: equalities; nonnegative cone: inequalities and
    variable bounds; one second-order cone per convex quadratic row; one PSD-triangle cone per
    :class:`PSDConstraint`, entries in svec order)."""

    def __init__(self, model):
        self.index: dict[int, int] = {}
        self.vars: list = []
        objs = list(model.component_data_objects(Objective, active=True, descend_into=True))
        if len(objs) != 1:
            raise ValueError(f"convexnn_conic needs one active objective, found {len(objs)}")
        self.sense = -1.0 if objs[0].sense == maximize else 1.0
        self._objective(objs[0].expr)
        self.rows_eq, self.rows_le = [], []  # (coefs, rhs): coefs x == rhs / coefs x <= rhs
        self.soc: list[list] = []  # per cone, its rows (coefs, rhs) of b - A x
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
        return self._linear(generate_standard_repn(expr, compute_values=True, quadratic=False), what)

    def _linear(self, repn, what: str, quadratic: bool = False) -> tuple[dict, float]:
        """The linear part and constant of a repn (a clear error when it has nonlinear terms, or
        quadratic ones unless ``quadratic``)."""
        if repn.nonlinear_expr is not None or (repn.quadratic_vars and not quadratic):
            raise ValueError(f"convexnn_conic: {what} is not affine or convex quadratic; only linear and convex "
                             "quadratic constraints (<=) and PSD blocks are supported")
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
        Q = self._form(repn, s)
        if any(i != j for i, j in Q) and len({k for ij in Q for k in ij}) > DENSE_QUADRATIC_MAX:
            return  # too large to factorize here: not checked (a non-diagonal P is the model's promise)
        self._factor("the objective" + (" (maximised)" if s < 0 else ""), Q)

    def _constraint(self, con) -> None:
        repn = generate_standard_repn(con.body, compute_values=True, quadratic=True)
        lo, up = _finite(con.lower), _finite(con.upper)
        if repn.quadratic_vars and repn.nonlinear_expr is None:
            self._quadratic_row(con.name, repn, lo, up)
            return
        coefs, const = self._linear(repn, f"constraint {con.name}")
        if lo is not None and up is not None and abs(lo - up) < 1e-12:
            self.rows_eq.append((coefs, lo - const))
            return
        if up is not None:
            self.rows_le.append((coefs, up - const))
        if lo is not None:
            self.rows_le.append(({k: -c for k, c in coefs.items()}, const - lo))

    def _quadratic_row(self, name: str, repn, lo: float | None, up: float | None) -> None:
        r""":math:`x^\top Q x + a^\top x + c \le u` as the cone of the module's docstring."""
        if lo is None and up is None:
            return  # no finite bound: the row constrains nothing
        if lo is not None:
            raise ValueError(f"convexnn_conic: constraint {name} bounds a quadratic from below or fixes it (not "
                             "convex); only convex quadratic rows q(x) <= u are supported")
        coefs, const = self._linear(repn, f"constraint {name}", quadratic=True)
        F = self._factor(f"constraint {name}", self._form(repn))
        rhs = up - const
        rows = [(coefs, rhs + 1.0), (coefs, rhs - 1.0)]
        rows += [({k: -2.0 * c for k, c in row.items()}, 0.0) for row in F]
        self.soc.append(rows)

    def _form(self, repn, scale: float = 1.0) -> dict[tuple[int, int], float]:
        """A repn's quadratic form as ``{(i, j): c}`` over columns ``i <= j`` (``c`` multiplies
        :math:`x_i x_j`), times ``scale``."""
        Q: dict[tuple[int, int], float] = {}
        for (v1, v2), c in zip(repn.quadratic_vars, repn.quadratic_coefs):
            i, j = sorted((self.col(v1), self.col(v2)))
            Q[i, j] = Q.get((i, j), 0.0) + scale * float(c)
        return Q

    @staticmethod
    def _factor(what: str, Q: dict[tuple[int, int], float]) -> list[dict]:
        r"""Rows of :math:`F` with :math:`F^\top F = Q` (as ``{column: coefficient}``), or a clear error
        when :math:`Q` is not positive semidefinite (eigenvalues below ``-1e-10`` times the largest
        in magnitude; those as small count as zero)."""
        if all(i == j for i, j in Q):
            if any(c < 0 for c in Q.values()):
                raise ValueError(f"convexnn_conic: {what} has a negative square (not convex)")
            return [{i: math.sqrt(c)} for (i, _), c in Q.items() if c > 0]
        cols = sorted({k for ij in Q for k in ij})
        if len(cols) > DENSE_QUADRATIC_MAX:
            raise ValueError(f"convexnn_conic: {what} has a non-diagonal quadratic form on {len(cols)} variables (at "
                             f"most {DENSE_QUADRATIC_MAX} are factorized)")
        pos = {k: n for n, k in enumerate(cols)}
        M = np.zeros((len(cols), len(cols)))
        for (i, j), c in Q.items():  # c multiplies x_i x_j: half on each side off the diagonal
            M[pos[i], pos[j]] += c if i == j else c / 2
            M[pos[j], pos[i]] += 0.0 if i == j else c / 2
        lam, V = np.linalg.eigh(M)
        tol = 1e-10 * float(np.abs(lam).max())
        if lam.min() < -tol:
            raise ValueError(f"convexnn_conic: {what} is not convex (its quadratic form has the eigenvalue "
                             f"{lam.min():.3g})")
        return [{cols[n]: math.sqrt(l) * V[n, e] for n in range(len(cols)) if V[n, e] != 0.0}
                for e, l in enumerate(lam) if l > tol]

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

        rows = [*self.rows_eq, *self.rows_le, *(row for cone in self.soc for row in cone),
                *(row for _, block in self.psd for row in block)]
        entries = [(r, k, c) for r, (coefs, _) in enumerate(rows) for k, c in coefs.items()]
        A = sparse.csc_matrix(
            ([e[2] for e in entries], ([e[0] for e in entries], [e[1] for e in entries])),
            shape=(len(rows), len(self.vars)),
        )
        cones = [clarabel.ZeroConeT(len(self.rows_eq))] if self.rows_eq else []
        cones += [clarabel.NonnegativeConeT(len(self.rows_le))] if self.rows_le else []
        cones += [clarabel.SecondOrderConeT(len(cone)) for cone in self.soc]
        cones += [clarabel.PSDTriangleConeT(n) for n, _ in self.psd]
        n = len(self.vars)
        P = sparse.csc_matrix(([e[2] for e in self.P], ([e[0] for e in self.P], [e[1] for e in self.P])), shape=(n, n))
        q = np.zeros(n)
        for k, c in self.q.items():
            q[k] = c
        return sparse.triu(P, format="csc"), q, A, np.array([r for _, r in rows], dtype=float), cones


def refusal(model) -> str | None:
    """Why ``convexnn_conic`` would refuse ``model`` (a nonconvex or nonlinear row or objective), or
    None when it takes it; the model's rows are read once, as a solve would."""
    try:
        _ConicProblem(model)
    except ValueError as exc:
        return str(exc)
    return None


@register_solver("convexnn_conic", doc="Linear/QP objective, linear, convex quadratic and PSD constraints via Clarabel (pip)")
class ConicSolver(ConvexnnSolverBase):
    """Clarabel for LP/QP objectives, linear and convex quadratic constraints and PSD blocks.

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
