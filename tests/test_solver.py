"""The embedded Ipopt plugin: known optima, parameter reuse, statuses, solver discovery."""

import math

import pyomo.environ as pyo
import pytest

import convexnn_pyomo as cnn


def test_known_nlp_optimum_and_duals():
    # min (x-1)^2 + (y-2)^2  s.t.  x^2 + y^2 <= 1  ->  (1, 2)/sqrt(5), multiplier sqrt(5) - 1
    m = pyo.ConcreteModel()
    m.x, m.y = pyo.Var(), pyo.Var()
    m.o = pyo.Objective(expr=(m.x - 1) ** 2 + (m.y - 2) ** 2)
    m.c = pyo.Constraint(expr=m.x**2 + m.y**2 <= 1)
    m.dual = pyo.Suffix(direction=pyo.Suffix.IMPORT)
    res = pyo.SolverFactory("ipopt_casadi").solve(m)
    assert res.solver.termination_condition == pyo.TerminationCondition.optimal
    assert m.x.value == pytest.approx(1 / math.sqrt(5), abs=1e-7)
    assert m.y.value == pytest.approx(2 / math.sqrt(5), abs=1e-7)
    assert abs(m.dual[m.c]) == pytest.approx(math.sqrt(5) - 1, rel=1e-6)


def test_mutable_params_change_the_solution_without_rebuilding():
    m = pyo.ConcreteModel()
    m.x = pyo.Var([0, 1])
    m.p = pyo.Param([0, 1], mutable=True, initialize=0.0)
    m.e = pyo.Expression(expr=sum((m.x[i] - m.p[i]) ** 2 for i in (0, 1)))
    m.o = pyo.Objective(expr=m.e)
    opt = pyo.SolverFactory("ipopt_casadi")
    assert opt.solve(m).solver.rebuilt
    m.p.store_values({0: 3.0, 1: -2.0})
    res = opt.solve(m)
    assert not res.solver.rebuilt
    assert (m.x[0].value, m.x[1].value) == (pytest.approx(3.0), pytest.approx(-2.0))
    m.c = pyo.Constraint(expr=m.x[0] <= 1)  # structural change: rebuilt
    res = opt.solve(m)
    assert res.solver.rebuilt and m.x[0].value == pytest.approx(1.0, abs=1e-7)
    m.x[1].fix(5.0)
    res = opt.solve(m)
    assert res.solver.rebuilt and m.x[1].value == 5.0


def test_maximize_bounds_and_infeasible_status():
    m = pyo.ConcreteModel()
    m.x = pyo.Var(bounds=(0, 2))
    m.o = pyo.Objective(expr=m.x - m.x**2 / 8, sense=pyo.maximize)  # bound x = 2 active
    res = pyo.SolverFactory("ipopt_casadi").solve(m)
    assert m.x.value == pytest.approx(2.0, abs=1e-6)
    assert res.problem.upper_bound == pytest.approx(1.5, abs=1e-6)
    m.c = pyo.Constraint(expr=m.x >= 3)
    res = pyo.SolverFactory("ipopt_casadi").solve(m)
    assert res.solver.termination_condition == pyo.TerminationCondition.infeasible


def test_iteration_limit_is_reported():
    m = pyo.ConcreteModel()
    m.x = pyo.Var([0, 1], initialize=-1.2)
    m.o = pyo.Objective(expr=100 * (m.x[1] - m.x[0] ** 2) ** 2 + (1 - m.x[0]) ** 2)
    res = pyo.SolverFactory("ipopt_casadi").solve(m, options={"max_iter": 2})
    assert res.solver.termination_condition == pyo.TerminationCondition.maxIterations


def test_solver_discovery_and_clear_errors():
    df = cnn.available_solvers()
    assert {"solver", "available", "reason", "install"} <= set(df.columns)
    assert bool(df.set_index("solver").loc["ipopt_casadi", "available"])
    assert cnn.default_nlp_solver() in ("ipopt", "ipopt_casadi")
    with pytest.raises(RuntimeError, match="not available.*Available here: .*ipopt_casadi"):
        cnn.require_solver("no_such_solver_xyz")
