"""Bounds, McCormick, SDP, global solvers: sandwich inequalities and solver agreement."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyomo.environ as pyo
import pytest
from conftest import max_violation

import convexnn_pyomo as cnn
from convexnn_pyomo.experiments.tightness import (
    GUROBI_SIZE_LIMIT,
    Instance,
    ipopt_multistart,
    relaxation_bound,
    solve_global,
)
from convexnn_pyomo.psd import PSDConstraint, psd_constraints
from convexnn_pyomo.solvers.registry import _check
from convexnn_pyomo.transformations import solve_sdp_relaxation

ROOT = Path(__file__).resolve().parent.parent
needs_gurobi = pytest.mark.skipif(not _check("gurobi_direct_minlp")[0], reason="gurobipy not installed")
needs_scip = pytest.mark.skipif(not _check("scip_nl")[0], reason="pyscipopt not installed")


def _instances():
    from convexnn_pyomo.data import load_breast_cancer

    bc = load_breast_cancer()
    idx = np.random.default_rng(0).permutation(bc.m)
    xor = (np.array([[0, 0], [0, 1], [1, 0], [1, 1.0]]), np.array([0, 1, 1, 0.0]))
    return [
        Instance("xor", [2, 2, 1], ["sigmoid", "identity"], *xor, weight_bound=1.0),
        Instance("bc-3-1-1-m12", [3, 1, 1], ["sigmoid", "identity"], bc.X[idx[:12], :3], bc.y[idx[:12]], 0.5),
        Instance("bc-3-2-1-m16", [3, 2, 1], ["tanh", "identity"], bc.X[idx[:16], :3], bc.y[idx[:16]], 0.25),
    ]


@pytest.mark.parametrize("inst", _instances(), ids=lambda i: i.name)
def test_sandwich_parabolic_sdp_mccormick_below_global(inst):
    glob = solve_global(inst, inst.weight_bound, time_limit=60)
    assert glob["status"] == "optimal", glob
    bounds = {rel: relaxation_bound(inst, rel, inst.weight_bound)["bound"] for rel in ("parabolic", "sdp", "mccormick")}
    assert bounds["parabolic"] <= bounds["sdp"] + 1e-6  # the LMI implies (5a)-(5d)
    for rel, b in bounds.items():
        assert b <= glob["upper"] + 1e-6, (rel, b, glob)
    local, _ = ipopt_multistart(inst, starts=3, weight_bound=inst.weight_bound)
    assert local >= glob["lower"] - 1e-6


@needs_gurobi
@needs_scip
@pytest.mark.parametrize("inst", _instances()[1:], ids=lambda i: i.name)
def test_gurobi_and_scip_agree_within_their_gaps(inst):
    g = solve_global(inst, inst.weight_bound, time_limit=60, solver="gurobi_direct_minlp")
    assert max(g["variables"], g["constraints"]) <= GUROBI_SIZE_LIMIT
    s = solve_global(inst, inst.weight_bound, time_limit=60, solver="scip_nl")
    # each one's incumbent lies above the other's proven lower bound, up to the relative optimality
    # gap both stop at by default (Gurobi MIPGap 1e-4; SCIP limits/gap 0, but its feasibility tolerance)
    tol = 1e-4 * max(abs(g["upper"]), abs(s["upper"]), 1.0)
    assert g["upper"] >= s["lower"] - tol and s["upper"] >= g["lower"] - tol
    if g["status"] == s["status"] == "optimal":
        assert g["upper"] == pytest.approx(s["upper"], abs=1e-4, rel=1e-4)


def test_bound_transformation_contains_every_network_in_the_box():
    inst = _instances()[2]
    model = cnn.build_training_model(cnn.Network(inst.sizes, inst.activations).init_he(0), inst.X, inst.Y)
    pyo.TransformationFactory("convexnn.bound").apply_to(model, weight_bound=0.25, bias_bound=0.25)
    rng = np.random.default_rng(0)
    for _ in range(20):
        net = cnn.Network(inst.sizes, inst.activations)
        net.set_parameters([rng.uniform(-0.25, 0.25, w.shape) for w in net.init_he(0).weights],
                           [rng.uniform(-0.25, 0.25, b.shape) for b in net.biases])
        cnn.set_values_from_network(model, net)
        for v in model.component_data_objects(pyo.Var):
            assert v.lb - 1e-12 <= v.value <= v.ub + 1e-12, v.name


@pytest.mark.parametrize("relaxation", ["mccormick", "sdp"])
def test_lifted_point_is_feasible_for_mccormick_and_sdp(relaxation):
    inst = _instances()[2]
    rng = np.random.default_rng(1)
    net = cnn.Network(inst.sizes, inst.activations).init_he(0)
    net.set_parameters([np.clip(w, -0.25, 0.25) for w in net.weights], [rng.uniform(-0.2, 0.2, b.shape) for b in net.biases])
    model = cnn.build_training_model(net, inst.X, inst.Y)
    pyo.TransformationFactory("convexnn.bound").apply_to(model, weight_bound=0.25, bias_bound=0.25)
    pyo.TransformationFactory(f"convexnn.{relaxation}").apply_to(model)
    cnn.set_lifted_values(model, net)
    assert max_violation(model) < 1e-9
    for blk in psd_constraints(model):
        assert blk.min_eigenvalue() > -1e-9


def test_conic_plugin_solves_textbook_sdps():
    # max eigenvalue: min t  s.t.  t I - C >= 0
    C = np.array([[2.0, 1, 0], [1, 3, 1], [0, 1, 4]])
    m = pyo.ConcreteModel()
    m.t = pyo.Var()
    m.o = pyo.Objective(expr=m.t)
    m.lmi = PSDConstraint()
    m.lmi.set_matrix([[(m.t if r == c else 0) - C[r, c] for c in range(3)] for r in range(3)])
    assert pyo.SolverFactory("convexnn_conic").solve(m).solver.termination_condition == pyo.TerminationCondition.optimal
    assert m.t.value == pytest.approx(np.linalg.eigvalsh(C)[-1], abs=1e-6)
    # min <C, X>  s.t.  tr X = 1, X >= 0  ->  the smallest eigenvalue of C
    m2 = pyo.ConcreteModel()
    idx = [(r, c) for c in range(3) for r in range(c + 1)]
    m2.X = pyo.Var(idx)
    m2.o = pyo.Objective(expr=sum(C[r, c] * m2.X[r, c] * (1 if r == c else 2) for r, c in idx))
    m2.tr = pyo.Constraint(expr=sum(m2.X[i, i] for i in range(3)) == 1)
    m2.lmi = PSDConstraint()
    m2.lmi.set_matrix([[m2.X[min(r, c), max(r, c)] for c in range(3)] for r in range(3)])
    pyo.SolverFactory("convexnn_conic").solve(m2)
    assert pyo.value(m2.o) == pytest.approx(np.linalg.eigvalsh(C)[0], abs=1e-6)
    with pytest.raises(ValueError, match="PSD constraints"):
        pyo.SolverFactory("ipopt_casadi").solve(m2)


def test_sdp_cuts_are_refined_until_the_dc_inequalities_hold():
    inst = _instances()[2]
    net = cnn.Network(inst.sizes, inst.activations).init_he(0)
    model = cnn.build_training_model(net, inst.X, inst.Y)
    pyo.TransformationFactory("convexnn.bound").apply_to(model, weight_bound=0.25, bias_bound=0.25)
    pyo.TransformationFactory("convexnn.sdp").apply_to(model, initial_cuts=2)
    res = solve_sdp_relaxation(model, tol=1e-6)
    assert res.solver.dc_violation <= 1e-6


def test_pyomo_solve_runs_a_model_file(tmp_path):
    """`pyomo solve models/<file>.py` with the embedded Ipopt (the package registers it on start-up)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pyomo.scripting.pyomo_main", "solve", str(ROOT / "models" / "xor_exact.py"),
         "--solver=ipopt_casadi"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Number of solutions: 1" in out and "optimal" in out


def test_pyomo_convert_writes_nl_and_gms(tmp_path):
    for fmt in ("nl", "gms"):
        proc = subprocess.run(
            [sys.executable, "-m", "pyomo.scripting.pyomo_main", "convert", f"--output=xor.{fmt}",
             str(ROOT / "models" / "xor_exact.py")], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert (tmp_path / f"xor.{fmt}").stat().st_size > 100


def test_study_uses_each_instances_own_box():
    from convexnn_pyomo.experiments.tightness import tightness_study

    a, b = _instances()[1], _instances()[1]
    b.weight_bound = 0.25
    b.name = "narrow"
    df = tightness_study([a, b], relaxations=("mccormick",), time_limit=30, starts=1)
    assert list(df.weight_bound) == [0.5, 0.25]
    assert df.global_optimum.iloc[1] >= df.global_optimum.iloc[0] - 1e-6  # a smaller box cannot fit better
