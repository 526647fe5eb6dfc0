"""An Ipopt that ``pip install`` brings: Ipopt 3.14 + MUMPS from CasADi's wheel, as a Pyomo solver.

Why this route (recorded in ``docs/solvers.md``): ``idaes get-extensions`` downloads its binaries
and cannot run offline, the ``cyipopt`` wheels need a system Ipopt, and Pyomo's own NL interface
needs an ``ipopt`` executable.  CasADi's wheel carries ``libipopt`` with MUMPS, so we translate the
Pyomo model into a CasADi expression graph (exact first and second derivatives by CasADi's
algorithmic differentiation) and call Ipopt through ``casadi.nlpsol``.

Mutable Params and fixed Vars become CasADi *parameters*: a model solved repeatedly with new
parameter values (the rounds of Algorithm 1) is translated and compiled once, then re-solved with
new values.  Any structural change (a constraint added, activated or deactivated, a Var fixed or
unfixed, a new objective) is detected and triggers a fresh translation.

Use it exactly like any Pyomo solver::

    pyo.SolverFactory("ipopt_casadi").solve(model, tee=True, options={"max_iter": 500})
"""

from __future__ import annotations

import math
import time
import weakref
from typing import Any

from pyomo.core.expr import (
    AbsExpression,
    DivisionExpression,
    EqualityExpression,
    Expr_ifExpression,
    InequalityExpression,
    MaxExpression,
    MinExpression,
    NegationExpression,
    PowExpression,
    ProductExpression,
    RangedExpression,
    SumExpression,
    UnaryFunctionExpression,
)
from pyomo.core.expr.numvalue import native_numeric_types
from pyomo.environ import (
    Constraint,
    Objective,
    SolverFactory,
    Suffix,
    maximize,
    value,
)
from pyomo.opt import SolverResults, SolverStatus, TerminationCondition

from .base import LegacySolverMixin, store_solution

__all__ = ["CasadiIpopt"]

try:  # CasADi is a dependency of the package; without it available() says what to install
    import casadi as ca
except ImportError:  # pragma: no cover - exercised only without casadi
    ca = None

_UNARY = {
    "exp": lambda a: ca.exp(a),
    "log": lambda a: ca.log(a),
    "log10": lambda a: ca.log10(a),
    "sqrt": lambda a: ca.sqrt(a),
    "sin": lambda a: ca.sin(a),
    "cos": lambda a: ca.cos(a),
    "tan": lambda a: ca.tan(a),
    "asin": lambda a: ca.asin(a),
    "acos": lambda a: ca.acos(a),
    "atan": lambda a: ca.atan(a),
    "sinh": lambda a: ca.sinh(a),
    "cosh": lambda a: ca.cosh(a),
    "tanh": lambda a: ca.tanh(a),
    "asinh": lambda a: ca.asinh(a),
    "acosh": lambda a: ca.acosh(a),
    "atanh": lambda a: ca.atanh(a),
    "abs": lambda a: ca.fabs(a),
    "ceil": lambda a: ca.ceil(a),
    "floor": lambda a: ca.floor(a),
}

# Ipopt's return_status -> (SolverStatus, TerminationCondition)
_STATUS = {
    "Solve_Succeeded": (SolverStatus.ok, TerminationCondition.optimal),
    "Solved_To_Acceptable_Level": (SolverStatus.ok, TerminationCondition.locallyOptimal),
    "Feasible_Point_Found": (SolverStatus.ok, TerminationCondition.feasible),
    "Infeasible_Problem_Detected": (SolverStatus.warning, TerminationCondition.infeasible),
    "Diverging_Iterates": (SolverStatus.warning, TerminationCondition.unbounded),
    "Maximum_Iterations_Exceeded": (SolverStatus.warning, TerminationCondition.maxIterations),
    "Maximum_CpuTime_Exceeded": (SolverStatus.warning, TerminationCondition.maxTimeLimit),
    "Maximum_WallTime_Exceeded": (SolverStatus.warning, TerminationCondition.maxTimeLimit),
    "Search_Direction_Becomes_Too_Small": (SolverStatus.warning, TerminationCondition.other),
    "Restoration_Failed": (SolverStatus.warning, TerminationCondition.other),
    "Error_In_Step_Computation": (SolverStatus.error, TerminationCondition.error),
    "Not_Enough_Degrees_Of_Freedom": (SolverStatus.error, TerminationCondition.error),
    "Invalid_Number_Detected": (SolverStatus.error, TerminationCondition.error),
    "User_Requested_Stop": (SolverStatus.aborted, TerminationCondition.userInterrupt),
}


class UnsupportedExpressionError(TypeError):
    pass


class _Translator:
    """Walks Pyomo expressions into CasADi SX, collecting variables and parameters."""

    def __init__(self):
        self.var_index: dict[int, int] = {}
        self.vars: list = []
        self.var_syms: list = []
        self.par_index: dict[int, int] = {}
        self.params: list = []  # mutable ParamData or fixed VarData
        self.par_syms: list = []
        self._memo: dict[int, Any] = {}

    def _var(self, v):
        if v.fixed:
            return self._param(v)
        k = self.var_index.get(id(v))
        if k is None:
            k = self.var_index[id(v)] = len(self.vars)
            self.vars.append(v)
            self.var_syms.append(ca.SX.sym(f"x{k}"))
        return self.var_syms[k]

    def _param(self, p):
        k = self.par_index.get(id(p))
        if k is None:
            k = self.par_index[id(p)] = len(self.params)
            self.params.append(p)
            self.par_syms.append(ca.SX.sym(f"p{k}"))
        return self.par_syms[k]

    def walk(self, node):
        if node.__class__ in native_numeric_types:
            return float(node)
        if not hasattr(node, "is_expression_type"):
            return float(value(node))
        if node.is_expression_type():
            if not node.is_named_expression_type():
                return self._walk_expr(node)
            # named Expressions are persistent model objects: translate each once.  (Temporary
            # expressions must not be memoised by id: Python reuses ids of freed objects.)
            key = id(node)
            hit = self._memo.get(key)
            if hit is None or hit[0] is not node:
                hit = self._memo[key] = (node, self.walk(node.expr))
            return hit[1]
        if node.is_variable_type():
            return self._var(node)
        if node.is_parameter_type():
            mutable = getattr(node.parent_component(), "mutable", False)
            return self._param(node) if mutable else float(value(node))
        return float(value(node))

    def _walk_expr(self, node):
        args = [self.walk(a) for a in node.args]
        if isinstance(node, SumExpression):
            const = sum(a for a in args if isinstance(a, float))
            syms = [a for a in args if not isinstance(a, float)]
            if not syms:
                return const
            out = syms[0] if len(syms) == 1 else ca.sum1(ca.vertcat(*syms))  # one call for long sums
            return out + const if const else out
        if isinstance(node, ProductExpression):
            return args[0] * args[1]
        if isinstance(node, DivisionExpression):
            return args[0] / args[1]
        if isinstance(node, PowExpression):
            base, exp = args
            return base**exp
        if isinstance(node, NegationExpression):
            return -args[0]
        if isinstance(node, AbsExpression):
            return ca.fabs(args[0])
        if isinstance(node, UnaryFunctionExpression):
            fn = _UNARY.get(node.getname())
            if fn is None:
                raise UnsupportedExpressionError(f"ipopt_casadi: unsupported function {node.getname()!r}")
            return fn(args[0])
        if isinstance(node, Expr_ifExpression):
            return ca.if_else(args[0], args[1], args[2])
        if isinstance(node, MaxExpression):
            out = args[0]
            for a in args[1:]:
                out = ca.fmax(out, a)
            return out
        if isinstance(node, MinExpression):
            out = args[0]
            for a in args[1:]:
                out = ca.fmin(out, a)
            return out
        if isinstance(node, InequalityExpression):
            return args[0] < args[1] if node.strict else args[0] <= args[1]
        if isinstance(node, EqualityExpression):
            return args[0] == args[1]
        if isinstance(node, RangedExpression):
            return ca.logic_and(args[0] <= args[1], args[1] <= args[2])
        raise UnsupportedExpressionError(
            f"ipopt_casadi cannot translate a {type(node).__name__} expression"
        )


class _CompiledNLP:
    """A translated model: CasADi solver plus the Pyomo objects in its variable/row order."""

    def __init__(self, block, options: dict, tee: bool):
        objs = list(block.component_data_objects(Objective, active=True, descend_into=True))
        if len(objs) != 1:
            raise ValueError(
                f"ipopt_casadi needs exactly one active objective, the model has {len(objs)}"
            )
        from ..psd import psd_constraints

        if psd_constraints(block):
            raise ValueError(
                "ipopt_casadi cannot handle PSD constraints (the model has active PSDConstraint blocks); "
                "solve it with SolverFactory('convexnn_conic')"
            )
        self.objective = objs[0]
        self.sense = -1.0 if self.objective.sense == maximize else 1.0
        tr = _Translator()
        f = self.sense * tr.walk(self.objective.expr)
        self.constraints = []
        g = []
        for con in block.component_data_objects(Constraint, active=True, descend_into=True):
            body = tr.walk(con.body)
            if isinstance(body, float):
                lo, up = value(con.lower), value(con.upper)
                if (lo is not None and body < lo - 1e-9) or (up is not None and body > up + 1e-9):
                    raise ValueError(f"constraint {con.name} is constant and violated")
                continue
            self.constraints.append(con)
            g.append(body)
        self.vars = tr.vars
        self.params = tr.params
        x = ca.vertcat(*tr.var_syms) if tr.var_syms else ca.SX(0, 1)
        p = ca.vertcat(*tr.par_syms) if tr.par_syms else ca.SX(0, 1)
        nlp = {"x": x, "f": f if not isinstance(f, float) else ca.SX(f), "g": ca.vertcat(*g) if g else ca.SX(0, 1), "p": p}
        ipopt_opts = {"print_level": 5 if tee else 0, "sb": "yes"}
        ipopt_opts.update(options)
        self.solver = ca.nlpsol(
            "convexnn_ipopt",
            "ipopt",
            nlp,
            {"ipopt": ipopt_opts, "print_time": False, "error_on_fail": False},
        )
        self.key = _structure_key(block)
        self.options_key = repr(sorted(options.items())) + str(tee)

    def __len__(self):
        return len(self.vars)


def _structure_key(block) -> tuple:
    cons = tuple(
        (id(c), id(c.expr)) for c in block.component_data_objects(Constraint, active=True, descend_into=True)
    )
    objs = tuple(
        (id(o), id(o.expr), int(o.sense))
        for o in block.component_data_objects(Objective, active=True, descend_into=True)
    )
    return cons, objs


def _fixed_key(nlp: _CompiledNLP) -> tuple:
    return tuple(v.fixed for v in nlp.vars) + tuple(
        p.fixed for p in nlp.params if p.is_variable_type()
    )


_CACHE: "weakref.WeakKeyDictionary[Any, _CompiledNLP]" = weakref.WeakKeyDictionary()


def _bound(val, default):
    if val is None:
        return default
    return float(val)


@SolverFactory.register(
    "ipopt_casadi",
    doc="Ipopt 3.14 (MUMPS) bundled in CasADi's wheel, driven through a Pyomo-to-CasADi translation",
)
class CasadiIpopt(LegacySolverMixin):
    """Pyomo solver plugin (legacy ``SolverFactory`` interface) for the embedded Ipopt.

    ``solve`` returns a :class:`pyomo.opt.SolverResults` and loads the primal solution into the
    model's Vars (and duals into an IMPORT ``dual`` Suffix when the model declares one).  Options
    are Ipopt options (``max_iter``, ``tol``, ``max_cpu_time``, ...).
    """

    name = "ipopt_casadi"
    module = "casadi"
    pip = "pip install casadi"
    timelimit_option = "max_wall_time"

    # -- legacy solver protocol -----------------------------------------------------------------
    def available(self, exception_flag: bool = True) -> bool:
        return super().available(exception_flag) and bool(ca.has_nlpsol("ipopt"))

    def warm_start_capable(self) -> bool:
        return True

    # -- solve ---------------------------------------------------------------------------------
    def solve(self, model, tee: bool = False, load_solutions: bool = True, options=None,
              timelimit: float | None = None, symbolic_solver_labels: bool = False, **kwds) -> SolverResults:
        """Solve ``model`` (a Pyomo Block) with the embedded Ipopt."""
        self.available(exception_flag=True)
        # `pyomo solve` passes report_timing: record the solution in model.solutions for its report
        record_solution = "report_timing" in kwds
        for k in ("keepfiles", "report_timing", "logfile", "warmstart"):
            kwds.pop(k, None)
        if kwds:
            raise ValueError(f"ipopt_casadi.solve got unknown keyword arguments: {sorted(kwds)}")
        opts = self.merged_options(options, timelimit)
        if not hasattr(model, "component_data_objects"):
            raise TypeError("ipopt_casadi.solve expects a Pyomo model or block")

        t0 = time.perf_counter()
        nlp = _CACHE.get(model)
        rebuild = (
            nlp is None
            or nlp.key != _structure_key(model)
            or nlp.options_key != repr(sorted(opts.items())) + str(tee)
            or getattr(nlp, "fixed_key", None) != _fixed_key(nlp)
        )
        if rebuild:
            nlp = _CompiledNLP(model, opts, tee)
            nlp.fixed_key = _fixed_key(nlp)
            _CACHE[model] = nlp
        build_seconds = time.perf_counter() - t0

        x0, lbx, ubx = [], [], []
        for v in nlp.vars:
            lb, ub = _bound(v.lb, -math.inf), _bound(v.ub, math.inf)
            val = v.value
            if val is None:
                val = 0.0 if lb <= 0.0 <= ub else (lb if math.isfinite(lb) else ub)
            x0.append(min(max(float(val), lb), ub))
            lbx.append(lb)
            ubx.append(ub)
        pvals = [float(value(p)) for p in nlp.params]
        for p, pv in zip(nlp.params, pvals):
            if not math.isfinite(pv):
                raise ValueError(f"parameter {p.name} has the non-finite value {pv}")
        lbg = [_bound(value(c.lower), -math.inf) for c in nlp.constraints]
        ubg = [_bound(value(c.upper), math.inf) for c in nlp.constraints]

        t1 = time.perf_counter()
        sol = nlp.solver(x0=x0, lbx=lbx, ubx=ubx, lbg=lbg, ubg=ubg, p=pvals)
        solve_seconds = time.perf_counter() - t1
        stats = nlp.solver.stats()
        return_status = stats.get("return_status", "unknown")
        results = self.new_results(_STATUS, return_status, solve_seconds)
        status = results.solver.status
        results.solver.iterations = int(stats.get("iter_count", -1))
        results.solver.build_time = build_seconds
        results.solver.rebuilt = rebuild
        results.problem.name = model.name
        results.problem.number_of_variables = len(nlp.vars)
        results.problem.number_of_constraints = len(nlp.constraints)
        results.problem.number_of_objectives = 1
        fval = float(sol["f"]) * nlp.sense
        results.problem.lower_bound = results.problem.upper_bound = fval

        if load_solutions and status in (SolverStatus.ok, SolverStatus.warning):
            xs = sol["x"].full().ravel()
            for v, xv in zip(nlp.vars, xs):
                v.set_value(float(xv), skip_validation=True)
            if record_solution:
                store_solution(model, results, nlp.vars, fval)
            dual = model.component("dual")
            if isinstance(dual, Suffix) and dual.import_enabled():
                lam = sol["lam_g"].full().ravel()
                for c, lv in zip(nlp.constraints, lam):
                    dual[c] = -float(lv) * nlp.sense
        return results
