"""The solver plugins on pyomo.contrib.solver's conventions: known optima, bounds, statuses, the
time limit, parameter reuse, both APIs, solver discovery and missing packages."""

import math
import sys

import numpy as np
import pyomo.environ as pyo
import pytest
from conftest import requires_solver
from pyomo.contrib.solver.common.factory import SolverFactory
from pyomo.contrib.solver.common.results import SolutionStatus, TerminationCondition
from pyomo.contrib.solver.common.util import NoOptimalSolutionError

import convexnn_pyomo as cnn
from convexnn_pyomo.solvers import SolverNotAvailableError, get_solver, require_solver
from convexnn_pyomo.solvers.casadi_ipopt import IPOPT_STATUS

EXTRA = 'pip install "convexnn-pyomo[solvers]"'
NO_RAISE = {"load_solutions": False, "raise_exception_on_nonoptimal_result": False}


def _circle():
    # min (x-1)^2 + (y-2)^2  s.t.  x^2 + y^2 <= 1  ->  (1, 2)/sqrt(5), multiplier sqrt(5) - 1
    m = pyo.ConcreteModel()
    m.x, m.y = pyo.Var(), pyo.Var()
    m.o = pyo.Objective(expr=(m.x - 1) ** 2 + (m.y - 2) ** 2)
    m.c = pyo.Constraint(expr=m.x**2 + m.y**2 <= 1)
    m.dual = pyo.Suffix(direction=pyo.Suffix.IMPORT)
    return m


def test_known_nlp_optimum_and_duals():
    m = _circle()
    res = pyo.SolverFactory("ipopt_casadi").solve(m)  # the legacy API
    assert res.solver.termination_condition == pyo.TerminationCondition.optimal
    assert pyo.check_optimal_termination(res)
    assert m.x.value == pytest.approx(1 / math.sqrt(5), abs=1e-7)
    assert m.y.value == pytest.approx(2 / math.sqrt(5), abs=1e-7)
    assert abs(m.dual[m.c]) == pytest.approx(math.sqrt(5) - 1, rel=1e-6)
    m2 = _circle()  # the new API: nothing loaded until asked, duals from the solution loader
    res = SolverFactory("ipopt_casadi").solve(m2, load_solutions=False)
    assert m2.x.value is None and pyo.check_optimal_termination(res)
    assert abs(res.solution_loader.get_duals()[m2.c]) == pytest.approx(math.sqrt(5) - 1, rel=1e-6)
    res.solution_loader.load_vars()
    assert m2.y.value == pytest.approx(2 / math.sqrt(5), abs=1e-7)
    assert res.incumbent_objective == pytest.approx((math.sqrt(5) - 1) ** 2, rel=1e-7)


def test_mutable_params_change_the_solution_without_rebuilding():
    m = pyo.ConcreteModel()
    m.x = pyo.Var([0, 1])
    m.p = pyo.Param([0, 1], mutable=True, initialize=0.0)
    m.e = pyo.Expression(expr=sum((m.x[i] - m.p[i]) ** 2 for i in (0, 1)))
    m.o = pyo.Objective(expr=m.e)
    opt = SolverFactory("ipopt_casadi")
    assert opt.solve(m).extra_info.rebuilt
    m.p.store_values({0: 3.0, 1: -2.0})
    res = opt.solve(m)
    assert not res.extra_info.rebuilt
    assert (m.x[0].value, m.x[1].value) == (pytest.approx(3.0), pytest.approx(-2.0))
    res = opt.solve(m, time_limit=50.0)  # new options: a new Ipopt instance, not a new translation
    assert not res.extra_info.rebuilt
    m.c = pyo.Constraint(expr=m.x[0] <= 1)  # structural change: rebuilt
    res = opt.solve(m)
    assert res.extra_info.rebuilt and m.x[0].value == pytest.approx(1.0, abs=1e-7)
    m.x[1].fix(5.0)
    res = opt.solve(m)
    assert res.extra_info.rebuilt and m.x[1].value == 5.0
    assert pyo.SolverFactory("ipopt_casadi").solve(m).solver.rebuilt is False  # legacy results carry extra_info


def test_warm_start_reuses_the_last_multipliers():
    """``warm_start_init_point`` re-solves from the last primal-dual point: the perturbed circle's
    optimum (a moved centre, the same structure) in fewer iterations than from a cold start."""
    m = _circle()
    m.cx = pyo.Param(mutable=True, initialize=1.0)
    m.o.set_value((m.x - m.cx) ** 2 + (m.y - 2) ** 2)
    opt, warm = SolverFactory("ipopt_casadi"), {"warm_start_init_point": "yes", "mu_init": 1e-6,
                                                "warm_start_bound_push": 1e-9, "warm_start_mult_bound_push": 1e-9}
    cold_its = opt.solve(m).extra_info.iteration_count
    m.cx = 1.01
    res = opt.solve(m, solver_options=warm)
    assert not res.extra_info.rebuilt and pyo.check_optimal_termination(res)
    r = math.hypot(1.01, 2.0)
    assert (m.x.value, m.y.value) == (pytest.approx(1.01 / r, abs=1e-7), pytest.approx(2.0 / r, abs=1e-7))
    assert res.extra_info.iteration_count < cold_its


def test_maximize_bounds_and_infeasible_status():
    m = pyo.ConcreteModel()
    m.x = pyo.Var(bounds=(0, 2))
    m.o = pyo.Objective(expr=m.x - m.x**2 / 8, sense=pyo.maximize)  # bound x = 2 active
    res = SolverFactory("ipopt_casadi").solve(m)
    assert m.x.value == pytest.approx(2.0, abs=1e-6)
    assert res.incumbent_objective == pytest.approx(1.5, abs=1e-6)
    assert res.objective_bound is None  # a local solver proves no bound
    legacy = pyo.SolverFactory("ipopt_casadi").solve(m)
    assert legacy.problem.lower_bound == pytest.approx(1.5, abs=1e-6) and legacy.problem.upper_bound is None
    m.c = pyo.Constraint(expr=m.x >= 3)
    res = SolverFactory("ipopt_casadi").solve(m, **NO_RAISE)
    assert res.termination_condition == TerminationCondition.locallyInfeasible
    assert res.solution_status == SolutionStatus.infeasible and not pyo.check_optimal_termination(res)
    assert pyo.SolverFactory("ipopt_casadi").solve(m).solver.termination_condition == pyo.TerminationCondition.infeasible
    with pytest.raises(NoOptimalSolutionError):
        SolverFactory("ipopt_casadi").solve(m)


def test_iteration_limit_is_reported():
    m = pyo.ConcreteModel()
    m.x = pyo.Var([0, 1], initialize=-1.2)
    m.o = pyo.Objective(expr=100 * (m.x[1] - m.x[0] ** 2) ** 2 + (1 - m.x[0]) ** 2)
    res = pyo.SolverFactory("ipopt_casadi").solve(m, options={"max_iter": 2})
    assert res.solver.termination_condition == pyo.TerminationCondition.maxIterations
    assert res.solver.iterations == 2
    res = SolverFactory("ipopt_casadi").solve(m, solver_options={"max_iter": 2}, **NO_RAISE)
    assert res.termination_condition == TerminationCondition.iterationLimit
    assert res.extra_info.iteration_count == 2 and res.extra_info.return_status == "Maximum_Iterations_Exceeded"
    assert res.solution_loader.get_number_of_solutions() == 1  # the last iterate can still be loaded
    assert IPOPT_STATUS["Maximum_Iterations_Exceeded"] == (TerminationCondition.iterationLimit, SolutionStatus.unknown)


# -- both APIs, time limits and bounds on training models --------------------------------------------


def _round_model(seed=0, m=12, eta=1.0):
    """One regularized round (9) of a 3-2-1 sigmoid network on ``m`` breast_cancer samples."""
    from convexnn_pyomo.data import load_breast_cancer

    ds = load_breast_cancer()
    X, Y = ds.X[:m, :3], ds.y[:m]
    net = cnn.Network([3, 2, 1], ["sigmoid", "identity"]).init_he(seed)
    model = cnn.build_training_model(net, X, Y)
    pyo.TransformationFactory("convexnn.parabolic").apply_to(model)
    cnn.set_lifted_values(model, net)
    pyo.TransformationFactory("convexnn.regularize").apply_to(model, eta=eta, reference=net)
    return model, net, X, Y


def _objective(model):
    return next(model.component_data_objects(pyo.Objective, active=True))


def _weights(model) -> np.ndarray:
    return cnn.network_from_model(model).get_flat()


def test_new_and_legacy_api_give_the_same_optimum():
    new, _, X, Y = _round_model()
    res = SolverFactory("ipopt_casadi").solve(new, time_limit=60.0, solver_options={"tol": 1e-10})
    legacy = _round_model()[0]
    lres = pyo.SolverFactory("ipopt_casadi").solve(legacy, timelimit=60.0, options={"tol": 1e-10})
    assert pyo.check_optimal_termination(res) and pyo.check_optimal_termination(lres)
    assert res.incumbent_objective == pytest.approx(pyo.value(_objective(new)), rel=1e-12)
    assert lres.problem.upper_bound == pytest.approx(res.incumbent_objective, rel=1e-9)  # min: upper = incumbent
    assert lres.problem.lower_bound is None
    np.testing.assert_allclose(_weights(legacy), _weights(new), atol=1e-7)
    assert cnn.network_from_model(new).loss(X, Y) > 0


def test_time_limit_is_honoured_by_every_plugin_under_one_name():
    model = _round_model(m=40)[0]
    for time_limit in (0.0, 1e-6):
        res = SolverFactory("ipopt_casadi").solve(model, time_limit=time_limit, **NO_RAISE)
        assert res.termination_condition == TerminationCondition.maxTimeLimit, res.extra_info.return_status
        assert res.incumbent_objective is None and not pyo.check_optimal_termination(res)
    with pytest.raises(NoOptimalSolutionError):
        SolverFactory("ipopt_casadi").solve(model, time_limit=1e-6)
    legacy = pyo.SolverFactory("ipopt_casadi").solve(model, timelimit=1e-6)
    assert legacy.solver.termination_condition == pyo.TerminationCondition.maxTimeLimit
    assert pyo.check_optimal_termination(SolverFactory("ipopt_casadi").solve(model, time_limit=60.0))


@requires_solver("scip_nl", "convexnn_conic")
def test_time_limit_reaches_scip_and_clarabel():
    from convexnn_pyomo.experiments.tightness import Instance, _bounded_model

    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1.0]])
    inst = Instance("xor", [2, 2, 1], ["sigmoid", "identity"], X, np.array([0, 1, 1, 0.0]), 3.0)
    res = SolverFactory("scip_nl").solve(_bounded_model(inst, 3.0, elementary=True)[1], time_limit=0.0, **NO_RAISE)
    assert res.termination_condition == TerminationCondition.maxTimeLimit, res.extra_info.return_status
    model = _bounded_model(inst, 3.0)[1]
    pyo.TransformationFactory("convexnn.sdp").apply_to(model)
    res = SolverFactory("convexnn_conic").solve(model, time_limit=0.0, **NO_RAISE)
    assert res.termination_condition == TerminationCondition.maxTimeLimit, res.extra_info.return_status
    res = SolverFactory("convexnn_sdp_cuts").solve(model, time_limit=0.0, **NO_RAISE)
    assert res.termination_condition == TerminationCondition.maxTimeLimit and res.extra_info.cut_rounds == 1


def test_resolve_after_a_param_change_reuses_the_translation_and_moves_to_the_new_optimum():
    model = _round_model(eta=1.0)[0]
    opt = require_solver("ipopt_casadi")  # the contract the training algorithm uses
    assert opt.solve(model, time_limit=60.0, **NO_RAISE).extra_info.rebuilt
    other = cnn.Network([3, 2, 1], ["sigmoid", "identity"]).init_he(7)
    cnn.update_reference(model, other, eta=5.0)
    cnn.set_lifted_values(model, other)
    res = opt.solve(model, time_limit=60.0, solver_options={"tol": 1e-10}, **NO_RAISE)
    assert not res.extra_info.rebuilt and pyo.check_optimal_termination(res)
    assert isinstance(res.extra_info.iteration_count, int) and res.extra_info.iteration_count > 0
    res.solution_loader.load_vars()
    fresh = _round_model(seed=7, eta=5.0)[0]  # the same problem built from scratch
    fres = SolverFactory("ipopt_casadi").solve(fresh, solver_options={"tol": 1e-10})
    assert fres.extra_info.rebuilt
    assert res.incumbent_objective == pytest.approx(fres.incumbent_objective, rel=1e-8)
    np.testing.assert_allclose(_weights(model), _weights(fresh), atol=1e-6)


def _qp(sense=pyo.minimize):
    # min (x-1)^2 + (y-2)^2  s.t.  x + y <= 1, 0 <= x, y <= 3  ->  (0, 1), objective 2
    # max -(x-1)^2 - (y-2)^2  (the same optimum, objective -2)
    m = pyo.ConcreteModel()
    m.x, m.y = pyo.Var(bounds=(0, 3)), pyo.Var(bounds=(0, 3))
    sign = 1.0 if sense == pyo.minimize else -1.0
    m.o = pyo.Objective(expr=sign * ((m.x - 1) ** 2 + (m.y - 2) ** 2), sense=sense)
    m.c = pyo.Constraint(expr=m.x + m.y <= 1)
    return m


@pytest.mark.parametrize("solver", ["convexnn_conic", "scip_nl"])
@pytest.mark.parametrize("sense", [pyo.minimize, pyo.maximize])
def test_conic_and_global_solvers_prove_a_true_bound(solver, sense):
    ok, why = cnn.solvers.check_solver(solver)
    if not ok:
        pytest.skip(f"{solver} not available ({why}): {EXTRA}")
    m = _qp(sense)
    optimum = 2.0 if sense == pyo.minimize else -2.0
    res = SolverFactory(solver).solve(m)
    assert pyo.check_optimal_termination(res)
    assert (m.x.value, m.y.value) == (pytest.approx(0.0, abs=1e-3), pytest.approx(1.0, abs=1e-3))  # flat: 2 + 2x^2
    assert res.incumbent_objective == pytest.approx(optimum, abs=1e-6)
    if sense == pyo.minimize:  # a lower bound on the minimum, an upper bound on the maximum
        assert optimum - 1e-6 <= res.objective_bound <= optimum + 1e-8
    else:
        assert optimum - 1e-8 <= res.objective_bound <= optimum + 1e-6
    assert SolverFactory("ipopt_casadi").solve(_qp(sense)).objective_bound is None


# -- discovery and missing packages ------------------------------------------------------------------


def test_solver_discovery_and_clear_errors():
    df = cnn.available_solvers()
    assert {"solver", "available", "reason", "install"} <= set(df.columns)
    assert bool(df.set_index("solver").loc["ipopt_casadi", "available"])
    assert cnn.default_nlp_solver() in ("ipopt", "ipopt_casadi")
    with pytest.raises(RuntimeError, match="not available.*Available here: .*ipopt_casadi"):
        cnn.require_solver("no_such_solver_xyz")
    for name in df.solver:  # every listed name gives a new-API solver, usable or not
        assert get_solver(name).api_version().name == "V2"


@pytest.mark.parametrize("module, solvers", [
    ("pyscipopt", ["scip_nl"]),
    ("clarabel", ["convexnn_conic", "convexnn_sdp_cuts"]),
    ("casadi", ["ipopt_casadi"]),
])
def test_a_missing_package_names_what_to_install(monkeypatch, module, solvers):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now fails
    hint = "pip install casadi" if module == "casadi" else EXTRA
    for name in solvers:
        assert not SolverFactory(name).available()
        assert pyo.SolverFactory(name).available(exception_flag=False) is False
        with pytest.raises(SolverNotAvailableError, match=f"{module}.*{hint.replace('[', '.').replace(']', '.')}"):
            SolverFactory(name).solve(_qp())
        with pytest.raises(SolverNotAvailableError, match="not available.*Install: " + hint.split()[0]):
            require_solver(name)
        row = cnn.available_solvers().set_index("solver").loc[name]
        assert not row.available and module in row.reason and hint in row.install


def test_studies_without_the_solvers_extra_end_in_one_error_line(monkeypatch, tmp_path, capsys):
    from convexnn_pyomo.cli import main
    from convexnn_pyomo.experiments import tightness

    monkeypatch.setitem(sys.modules, "pyscipopt", None)
    inst = tightness.Instance("xor", [2, 2, 1], ["sigmoid", "identity"], np.eye(2), np.ones(2), 1.0)
    with pytest.raises(SolverNotAvailableError, match="scip_nl.*pyscipopt"):
        tightness.solve_global(inst, solver="scip_nl")
    with pytest.raises(SolverNotAvailableError, match="convexnn-pyomo.solvers."):
        tightness.tightness_study([inst])
    assert main(["tightness", "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and EXTRA in err and "Traceback" not in err
    assert not (tmp_path / "t").exists()
    # Pyomo's Gurobi and HiGHS interfaces cache their imports: say that only the embedded Ipopt is here
    monkeypatch.setattr(tightness, "check_solver", lambda name: (name == "ipopt_casadi", "not installed"))
    assert main(["compare-solvers", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and EXTRA in err


# -- convex quadratic rows in the conic plugin ---------------------------------------------------------


@requires_solver("convexnn_conic")
def test_clarabel_takes_a_convex_quadratic_row_as_a_cone():
    """The circle's known optimum (1, 2)/sqrt(5), the row active; a non-diagonal convex row agrees with
    Ipopt's optimum."""
    m = _circle()
    del m.dual
    res = SolverFactory("convexnn_conic").solve(m)
    assert pyo.check_optimal_termination(res)
    s5 = math.sqrt(5.0)
    assert (m.x.value, m.y.value) == (pytest.approx(1 / s5, abs=1e-6), pytest.approx(2 / s5, abs=1e-6))
    assert res.incumbent_objective == pytest.approx((s5 - 1) ** 2, rel=1e-7)

    def tilted():
        t = pyo.ConcreteModel()
        t.x, t.y = pyo.Var(), pyo.Var(bounds=(None, 0.3))
        t.o = pyo.Objective(expr=-2 * t.x - t.y)
        t.c = pyo.Constraint(expr=(t.x + t.y) ** 2 + 0.25 * (t.x - t.y) ** 2 + t.x <= 2)
        return t

    a, b = tilted(), tilted()
    SolverFactory("convexnn_conic").solve(a)
    SolverFactory("ipopt_casadi").solve(b)
    assert pyo.value(a.o) == pytest.approx(pyo.value(b.o), rel=1e-6)
    assert (a.x.value, a.y.value) == (pytest.approx(b.x.value, abs=1e-5), pytest.approx(b.y.value, abs=1e-5))


@requires_solver("convexnn_conic")
@pytest.mark.parametrize("row, message", [
    (lambda m: m.x**2 + m.y**2 >= 1, "from below"),
    (lambda m: m.x**2 - m.y**2 <= 1, "negative square"),
    (lambda m: m.x * m.y <= 1, "not convex"),
    (lambda m: pyo.exp(m.x) <= 1, "not affine or convex quadratic"),
])
def test_clarabel_refuses_a_row_that_is_not_convex_quadratic(row, message):
    m = pyo.ConcreteModel()
    m.x, m.y = pyo.Var(), pyo.Var()
    m.o = pyo.Objective(expr=m.x + m.y)
    m.c = pyo.Constraint(expr=row(m))
    with pytest.raises(ValueError, match=message):
        SolverFactory("convexnn_conic").solve(m)


@requires_solver("convexnn_conic")
def test_clarabel_refuses_a_nonconvex_objective_and_ignores_infinite_bounds():
    """Maximising a convex square is not a convex program: refused, not solved to a wrong optimum.
    A quadratic row bounded by infinity constrains nothing, as a row without bounds."""
    m = pyo.ConcreteModel()
    m.x, m.y = pyo.Var(bounds=(-1, 1)), pyo.Var(bounds=(-1, 1))
    m.o = pyo.Objective(expr=m.x**2 + 0.3 * m.y, sense=pyo.maximize)
    with pytest.raises(ValueError, match="objective .maximised. has a negative square"):
        SolverFactory("convexnn_conic").solve(m)
    m.o.sense = pyo.minimize
    m.c = pyo.Constraint(expr=pyo.inequality(-float("inf"), m.x**2 + m.y**2, float("inf")))
    res = SolverFactory("convexnn_conic").solve(m)
    assert res.incumbent_objective == pytest.approx(-0.3, abs=1e-7)
    assert (m.x.value, m.y.value) == (pytest.approx(0.0, abs=1e-6), pytest.approx(-1.0, abs=1e-6))
