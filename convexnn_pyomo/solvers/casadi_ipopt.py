"""An Ipopt that ``pip install`` brings: Ipopt 3.14 + MUMPS from CasADi's wheel, as a Pyomo solver.

Why this route (recorded in ``docs/solvers.md``): ``idaes get-extensions`` downloads its binaries
and cannot run offline, the ``cyipopt`` wheels need a system Ipopt, and Pyomo's own NL interface
needs an ``ipopt`` executable.  CasADi's wheel carries ``libipopt`` with MUMPS, so we translate the
Pyomo model into a CasADi expression graph (exact first and second derivatives by CasADi's
algorithmic differentiation, :mod:`.casadi_translator`) and call Ipopt through ``casadi.nlpsol``.

Mutable Params and fixed Vars become CasADi *parameters*: a model solved repeatedly with new
parameter values (the rounds of Algorithm 1) is translated and compiled once, then re-solved with
new values (``results.extra_info.rebuilt`` is ``False``).  Any structural change (a constraint
added, activated or deactivated, a Var fixed or unfixed, a new objective) is detected and triggers
a fresh translation; new options (e.g. another ``time_limit``) only a new Ipopt instance.  With
Ipopt's ``warm_start_init_point="yes"`` a re-solve also starts from the multipliers of the last
solve of the same translation.

Use it like any ``pyomo.contrib.solver`` solver, or through the legacy factory::

    SolverFactory("ipopt_casadi").solve(model, time_limit=60, solver_options={"max_iter": 500})
    pyo.SolverFactory("ipopt_casadi").solve(model, tee=True, options={"max_iter": 500})
"""

from __future__ import annotations

import math
import weakref
from typing import Any

from pyomo.common.timing import default_timer
from pyomo.contrib.solver.common.base import Availability
from pyomo.contrib.solver.common.results import Results, SolutionStatus, TerminationCondition
from pyomo.environ import Constraint, Objective, maximize, value

from ..psd import psd_constraints
from .base import ConvexnnSolverBase, PointSolutionLoader, StatusTable, map_status, register_solver
from .casadi_translator import Translator
from .casadi_translator import casadi as ca

__all__ = ["IPOPT_STATUS", "CasadiIpopt"]

_TC, _SS = TerminationCondition, SolutionStatus
#: Ipopt's ``return_status`` -> (termination condition, solution status), after Pyomo's own Ipopt
#: interface (ASL solve codes 0-99 converged, 200 infeasible, 300 unbounded, 400 limits, 500 errors);
#: statuses that leave a usable iterate keep it (solution status ``unknown``), hard errors do not.
IPOPT_STATUS: StatusTable = {
    "Solve_Succeeded": (_TC.convergenceCriteriaSatisfied, _SS.optimal),
    "Solved_To_Acceptable_Level": (_TC.convergenceCriteriaSatisfied, _SS.optimal),
    "Feasible_Point_Found": (_TC.convergenceCriteriaSatisfied, _SS.feasible),
    "Infeasible_Problem_Detected": (_TC.locallyInfeasible, _SS.infeasible),
    "Diverging_Iterates": (_TC.unbounded, _SS.unknown),
    "Maximum_Iterations_Exceeded": (_TC.iterationLimit, _SS.unknown),
    "Maximum_CpuTime_Exceeded": (_TC.maxTimeLimit, _SS.unknown),
    "Maximum_WallTime_Exceeded": (_TC.maxTimeLimit, _SS.unknown),
    "Search_Direction_Becomes_Too_Small": (_TC.minStepLength, _SS.unknown),
    "Restoration_Failed": (_TC.error, _SS.unknown),
    "User_Requested_Stop": (_TC.interrupted, _SS.noSolution),
    "Error_In_Step_Computation": (_TC.error, _SS.noSolution),
    "Not_Enough_Degrees_Of_Freedom": (_TC.error, _SS.noSolution),
    "Invalid_Number_Detected": (_TC.error, _SS.noSolution),
}


class _CompiledNLP:
    """A translated model: the CasADi NLP, the Pyomo objects in its variable/row order, and the
    Ipopt instance for the last options (made anew only when the options change)."""

    def __init__(self, block):
        objs = list(block.component_data_objects(Objective, active=True, descend_into=True))
        if len(objs) != 1:
            raise ValueError(
                f"ipopt_casadi needs exactly one active objective, the model has {len(objs)}"
            )
        if psd_constraints(block):
            raise ValueError(
                "ipopt_casadi cannot handle PSD constraints (the model has active PSDConstraint blocks); "
                "solve it with SolverFactory('convexnn_conic')"
            )
        self.objective = objs[0]
        self.sense = -1.0 if self.objective.sense == maximize else 1.0
        tr = Translator()
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
        self.nlp = {"x": x, "f": f if not isinstance(f, float) else ca.SX(f), "g": ca.vertcat(*g) if g else ca.SX(0, 1), "p": p}
        self.key = _structure_key(block)
        self.fixed_key = _fixed_key(self)
        self.solver, self.options_key = None, None
        self.multipliers = None  # (lam_x, lam_g) of the last solve: Ipopt's warm start

    def ipopt(self, options: dict, tee: bool):
        """The CasADi Ipopt instance for ``options`` (a new one only when they changed: a new
        time limit costs an Ipopt set-up, not a translation)."""
        key = repr(sorted(options.items())) + str(tee)
        if key != self.options_key:
            ipopt_opts = {"print_level": 5 if tee else 0, "sb": "yes", **options}
            self.solver = ca.nlpsol(
                "convexnn_ipopt", "ipopt", self.nlp, {"ipopt": ipopt_opts, "print_time": False, "error_on_fail": False}
            )
            self.options_key = key
        return self.solver

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


_CACHE: weakref.WeakKeyDictionary[Any, _CompiledNLP] = weakref.WeakKeyDictionary()


def _bound(val, default):
    if val is None:
        return default
    return float(val)


def _compiled(model) -> tuple[_CompiledNLP, bool]:
    """The cached translation of ``model``, made anew (second value ``True``) when its structure or
    the fixed status of its variables changed."""
    nlp = _CACHE.get(model)
    rebuild = nlp is None or nlp.key != _structure_key(model) or nlp.fixed_key != _fixed_key(nlp)
    if rebuild:
        nlp = _CACHE[model] = _CompiledNLP(model)
    return nlp, rebuild


def _run(nlp: _CompiledNLP, solver, warm: bool = False) -> dict:
    """One Ipopt call from the Vars' current values, bounds and the Params' current values; with
    ``warm`` also from the multipliers of the last solve of the same translation (if any)."""
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
    duals = {"lam_x0": nlp.multipliers[0], "lam_g0": nlp.multipliers[1]} if warm and nlp.multipliers else {}
    sol = solver(x0=x0, lbx=lbx, ubx=ubx, lbg=lbg, ubg=ubg, p=pvals, **duals)
    nlp.multipliers = (sol["lam_x"], sol["lam_g"])
    return sol


@register_solver(
    "ipopt_casadi",
    doc="Ipopt 3.14 (MUMPS) bundled in CasADi's wheel, driven through a Pyomo-to-CasADi translation",
)
class CasadiIpopt(ConvexnnSolverBase):
    """Ipopt 3.14 + MUMPS from CasADi's wheel (a local NLP solver: ``objective_bound`` is ``None``).

    ``solver_options`` are Ipopt options (``max_iter``, ``tol``, ...); ``time_limit`` becomes
    Ipopt's ``max_wall_time``.  ``extra_info``: ``iteration_count``, ``return_status`` (Ipopt's,
    mapped by :data:`IPOPT_STATUS`), ``rebuilt`` (translated anew), ``build_time``, ``solve_time``.
    Duals load into an IMPORT ``dual`` Suffix (``results.solution_loader.get_duals()``).
    """

    module = "casadi"
    time_limit_option = "max_wall_time"

    def available(self) -> Availability:
        if not super().available() or not ca.has_nlpsol("ipopt"):
            return Availability.NotFound
        return Availability.FullLicense

    def solver_options(self, config) -> dict:
        options = super().solver_options(config)
        if options.get(self.time_limit_option, 1.0) <= 0.0:  # Ipopt takes only positive limits
            options[self.time_limit_option] = 1e-9
        return options

    def _solve(self, model, config, results: Results) -> None:
        if not hasattr(model, "component_data_objects"):
            raise TypeError("ipopt_casadi.solve expects a Pyomo model or block")
        t0 = default_timer()
        nlp, rebuilt = _compiled(model)
        solver = nlp.ipopt(self.solver_options(config), bool(config.tee))
        t1 = default_timer()
        sol = _run(nlp, solver, str(self.solver_options(config).get("warm_start_init_point", "no")).lower() == "yes")
        stats = solver.stats()
        return_status = stats.get("return_status", "unknown")
        results.termination_condition, results.solution_status = map_status(IPOPT_STATUS, return_status)
        if results.solution_status in (SolutionStatus.optimal, SolutionStatus.feasible):
            results.incumbent_objective = float(sol["f"]) * nlp.sense
        info = results.extra_info
        info.iteration_count = int(stats.get("iter_count", -1))
        info.return_status = return_status
        info.rebuilt, info.build_time, info.solve_time = rebuilt, t1 - t0, default_timer() - t1
        if results.solution_status != SolutionStatus.noSolution:
            constraints, lam, sense = nlp.constraints, sol["lam_g"].full().ravel(), nlp.sense
            results.solution_loader = PointSolutionLoader(
                model, nlp.vars, sol["x"].full().ravel(), solver=self.name,
                duals=lambda: {c: -float(lv) * sense for c, lv in zip(constraints, lam)},
            )
