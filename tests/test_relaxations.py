"""Bounds, McCormick, SDP, global solvers: sandwich inequalities and solver agreement."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyomo.environ as pyo
import pytest
from conftest import max_violation, requires_solver

import convexnn_pyomo as cnn
from convexnn_pyomo.experiments.tightness import (
    GUROBI_SIZE_LIMIT,
    Instance,
    ipopt_multistart,
    relaxation_bound,
    solve_global,
)
from convexnn_pyomo.psd import PSDConstraint, psd_constraints
from convexnn_pyomo.solvers import solve_sdp_relaxation
from convexnn_pyomo.transformations import RELAXATIONS, get_relaxation
from convexnn_pyomo.transformations.parabolic import ParabolicRelaxation
from convexnn_pyomo.transformations.sdp import _add_cuts

ROOT = Path(__file__).resolve().parent.parent
needs_gurobi = requires_solver("gurobi_direct_minlp")
needs_scip = requires_solver("scip_nl")
needs_conic = requires_solver("convexnn_conic")


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


@needs_scip
@needs_conic
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
    # SCIP closes bc-3-2-1-m16's gap only after minutes: a time-limited run still gives valid bounds
    s = solve_global(inst, inst.weight_bound, time_limit=15, solver="scip_nl")
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


@needs_conic
def test_conic_plugin_solves_textbook_sdps():
    # max eigenvalue: min t  s.t.  t I - C >= 0
    C = np.array([[2.0, 1, 0], [1, 3, 1], [0, 1, 4]])
    m = pyo.ConcreteModel()
    m.t = pyo.Var()
    m.o = pyo.Objective(expr=m.t)
    m.lmi = PSDConstraint()
    m.lmi.set_matrix([[(m.t if r == c else 0) - C[r, c] for c in range(3)] for r in range(3)])
    assert pyo.check_optimal_termination(pyo.SolverFactory("convexnn_conic").solve(m))
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


@needs_conic
def test_sdp_cuts_are_refined_until_the_dc_inequalities_hold():
    inst = _instances()[2]
    net = cnn.Network(inst.sizes, inst.activations).init_he(0)
    model = cnn.build_training_model(net, inst.X, inst.Y)
    pyo.TransformationFactory("convexnn.bound").apply_to(model, weight_bound=0.25, bias_bound=0.25)
    pyo.TransformationFactory("convexnn.sdp").apply_to(model, initial_cuts=2)
    res = solve_sdp_relaxation(model, tol=1e-6)
    assert res.extra_info.dc_violation <= 1e-6
    # every cut, including those the loop added, is mapped to the activation equality it replaces
    for blk in cnn.layer_blocks(model):
        rblk = cnn.get_relaxation_block(blk)
        if blk.is_output:
            continue
        mapped = [c for src in blk.activation.values() for c in cnn.get_transformed_constraints(src)]
        assert len(rblk.dc_cuts) >= 2 * 2 * len(blk.activation)
        assert {id(c) for c in mapped} == {id(c) for c in rblk.dc_cuts.values()}


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


@needs_scip
def test_study_uses_each_instances_own_box():
    from convexnn_pyomo.experiments.tightness import tightness_study

    a, b = _instances()[1], _instances()[1]
    b.weight_bound = 0.25
    b.name = "narrow"
    df = tightness_study([a, b], relaxations=("mccormick",), time_limit=30, starts=1)
    assert list(df.weight_bound) == [0.5, 0.25]
    assert df.global_optimum.iloc[1] >= df.global_optimum.iloc[0] - 1e-6  # a smaller box cannot fit better


# ---------------------------------------------------------------- maps, lifting, dispatch


def _net_in_box(inst, seed, box=0.25):
    rng = np.random.default_rng(seed)
    net = cnn.Network(inst.sizes, inst.activations).init_he(seed)
    net.set_parameters([rng.uniform(-box, box, w.shape) for w in net.weights],
                       [rng.uniform(-box, box, b.shape) for b in net.biases])
    return net


def _relaxed(inst, relaxation, net, bound_first=True, **options):
    model = cnn.build_training_model(net, inst.X, inst.Y)
    if bound_first:
        pyo.TransformationFactory("convexnn.bound").apply_to(model, weight_bound=0.25, bias_bound=0.25)
    pyo.TransformationFactory(f"convexnn.{relaxation}").apply_to(model, **options)
    return model


def _satisfied(con, tol=1e-9) -> bool:
    if isinstance(con, PSDConstraint._ComponentDataClass):
        return con.min_eigenvalue() > -tol
    return max_violation(None, [con]) < tol


@pytest.mark.parametrize("relaxation", sorted(RELAXATIONS))
def test_maps_are_complete_and_the_lifted_point_satisfies_every_replacement(relaxation):
    inst = _instances()[2]
    model = _relaxed(inst, relaxation, _net_in_box(inst, 0))
    sources = 0
    for blk in cnn.layer_blocks(model):
        rblk = cnn.get_relaxation_block(blk)
        relaxed = list(rblk.component_data_objects(pyo.Constraint, active=True)) + [
            b for b in psd_constraints(model) if b.parent_block() is rblk
        ]
        for con in relaxed:  # every relaxed constraint replaces deactivated sources that list it back
            src = cnn.get_src_constraints(con)
            assert src and all(not s.active and any(c is con for c in cnn.get_transformed_constraints(s)) for s in src)
        for src in blk.component_data_objects(pyo.Constraint, descend_into=False):
            if not src.active:  # every deactivated source has replacements that list it back
                sources += 1
                new = cnn.get_transformed_constraints(src)
                assert new and all(any(s is src for s in cnn.get_src_constraints(c)) for c in new)
    assert sources == 16 * (1 + 2)  # (2b) of layer 2 (1 node) and (2c) of layer 1 (2 nodes), 16 samples
    for seed in range(3):  # a network in the box, lifted, satisfies every replacement of every source
        net = _net_in_box(inst, 10 + seed)
        cnn.set_lifted_values(model, net)
        for blk in cnn.layer_blocks(model):
            for src in blk.component_data_objects(pyo.Constraint, descend_into=False):
                assert src.active or all(_satisfied(c) for c in cnn.get_transformed_constraints(src)), src.name


def test_sdp_reads_its_options_and_maps_every_cut():
    inst = _instances()[2]
    net = _net_in_box(inst, 0)
    for kwds, cuts in (({"options": {"initial_cuts": 2}}, 2), ({"initial_cuts": 3}, 3), ({}, 9)):
        model = _relaxed(inst, "sdp", net, **kwds)
        act = model.layer[1].activation[1, 5]
        assert len(cnn.get_transformed_constraints(act)) == 2 * cuts  # a p cut and a q cut per point
    blk = model.layer[1]
    rblk = cnn.get_relaxation_block(blk)
    _add_cuts(rblk, blk, blk.activation_function, 1, 5, 0.3)  # as the cut loop does
    new = cnn.get_transformed_constraints(act)
    assert len(new) == 2 * 9 + 2 and all(cnn.get_src_constraints(c) == [act] for c in new)


def test_relaxations_are_registered_with_what_they_support():
    assert set(RELAXATIONS) == {"parabolic", "mccormick", "sdp"}
    for name, cls in RELAXATIONS.items():
        assert type(pyo.TransformationFactory(f"convexnn.{name}")) is cls
        assert cls.supports_regularization
    assert [n for n, c in RELAXATIONS.items() if c.requires_bounds] == ["mccormick"]
    assert [n for n, c in RELAXATIONS.items() if c.requires_conic_solver] == ["sdp"]
    assert [n for n, c in RELAXATIONS.items() if not c.exact_for_large_eta] == ["mccormick"]
    inst = _instances()[2]
    model = cnn.build_training_model(_net_in_box(inst, 0), inst.X, inst.Y)
    with pytest.raises(ValueError, match="needs bounds"):
        pyo.TransformationFactory("convexnn.mccormick").apply_to(model)
    assert all(c.active for c in model.component_data_objects(pyo.Constraint))  # nothing half-done

    class Unregularizable(ParabolicRelaxation):
        supports_regularization = False

    Unregularizable().apply_to(model)
    assert isinstance(get_relaxation(model.layer[2]), Unregularizable)
    with pytest.raises(ValueError, match="not defined over Unregularizable"):
        pyo.TransformationFactory("convexnn.regularize").apply_to(model, eta=1.0)


@pytest.mark.parametrize("relaxation", sorted(RELAXATIONS))
def test_regularizer_brackets_are_built_by_each_relaxation(relaxation):
    """At any lifted point every bracket of (8) is its exact distance, whatever the relaxation;
    only the lifted ``W_ii`` of the parabolic and SDP relaxations moves the weight part off it."""
    inst = _instances()[2]
    ref, other = _net_in_box(inst, 0), _net_in_box(inst, 1)
    model = _relaxed(inst, relaxation, ref)
    pyo.TransformationFactory("convexnn.regularize").apply_to(model, eta=1.0, reference=ref, mu_z=2.0)
    reg = cnn.get_regularization_block(model)
    cnn.set_lifted_values(model, ref)
    assert abs(pyo.value(reg.r)) < 1e-10
    cnn.set_lifted_values(model, other)
    fr, fo = ref.forward_pass(inst.X), other.forward_pass(inst.X)
    dw = sum(np.sum((a - b) ** 2) for a, b in zip(other.weights, ref.weights))
    dx = np.sum((fo.x[1] - fr.x[1]) ** 2)  # layer 2's input
    assert pyo.value(reg.r_weights) == pytest.approx(2.0 * dw, rel=1e-10)
    assert pyo.value(reg.r_inputs) == pytest.approx(2.0 * dx, rel=1e-10)
    assert pyo.value(reg.r_activations) >= 0
    blk = model.layer[2]
    rel, rblk = get_relaxation(blk), cnn.get_relaxation_block(blk)
    squares = rel.lifted_weight_squares(blk, rblk)
    assert (squares is None) == (relaxation == "mccormick") == (not rel.has_input_slack(blk, rblk))
    assert rel.lifted_weight_squares(model.layer[1], cnn.get_relaxation_block(model.layer[1])) is None
    if squares is not None:  # a W_ii slack of 0.1 costs mu_z * 0.1 in r
        squares[0].set_value(squares[0].value + 0.1)
        assert pyo.value(reg.r_weights) == pytest.approx(2.0 * dw + 0.2, rel=1e-10)


@pytest.mark.parametrize("relaxation", sorted(RELAXATIONS))
def test_bound_after_a_relaxation_bounds_its_lifted_variables_validly(relaxation):
    inst = _instances()[2]
    model = _relaxed(inst, relaxation, _net_in_box(inst, 0), bound_first=RELAXATIONS[relaxation].requires_bounds)
    pyo.TransformationFactory("convexnn.bound").apply_to(model, weight_bound=0.25, bias_bound=0.25)
    assert cnn.transformations.get_bounds(model) == {"weight_bound": 0.25, "bias_bound": 0.25}
    blk = model.layer[2]
    rel, rblk = get_relaxation(blk), cnn.get_relaxation_block(blk)
    squares = rel.lifted_weight_squares(blk, rblk)
    assert squares is None or all(v.ub == pytest.approx(len(blk.inputs) * 0.25**2) for v in squares.values())
    assert all(v.ub is not None for v in cnn.get_relaxation_block(model.layer[1]).u.values())
    for seed in range(10):  # every network in the box, lifted, lies within every bound
        cnn.set_lifted_values(model, _net_in_box(inst, 20 + seed))
        for v in model.component_data_objects(pyo.Var):
            assert (v.lb is None or v.value >= v.lb - 1e-12) and (v.ub is None or v.value <= v.ub + 1e-12), v.name


def _solve_round(model, relaxation) -> float:
    if RELAXATIONS[relaxation].requires_conic_solver:
        res = solve_sdp_relaxation(model, tol=1e-7)
    else:
        res = pyo.SolverFactory("ipopt_casadi").solve(model)
    assert pyo.check_optimal_termination(res)
    return pyo.value(next(model.component_data_objects(pyo.Objective, active=True)))


@needs_conic  # the SDP round; the other two use the embedded Ipopt
def test_regularized_rounds_lie_between_the_relaxation_bound_and_the_reference_loss():
    r"""For each relaxation, r >= 0 on its feasible set and r = 0 at the lifted reference, so
    bound <= (9) at eta_1 <= (9) at eta_2 <= loss(reference) for eta_1 < eta_2.  The SDP's set
    projects into the parabolic one with the same brackets (``Wm_ii`` for ``W_ii``), so its round is
    the higher of the two; McCormick's and the parabolic sets are not nested (no order between them).
    At a large eta the parabolic and SDP rounds are exact; McCormick's is not: (8) pins ``w`` and
    ``x`` but not the products ``v``, which keep the whole envelope."""
    inst = _instances()[2]
    ref = _net_in_box(inst, 0)
    loss = ref.loss(inst.X, inst.Y)
    rounds = {}
    for relaxation, cls in sorted(RELAXATIONS.items()):
        model = _relaxed(inst, relaxation, ref)
        cnn.set_lifted_values(model, ref)
        values = [_solve_round(model, relaxation)]
        pyo.TransformationFactory("convexnn.regularize").apply_to(model, eta=1.0, reference=ref)
        for eta in (1.0, 1000.0):
            cnn.update_reference(model, ref, eta=eta)
            cnn.set_lifted_values(model, ref)
            values.append(_solve_round(model, relaxation))
        tol = 1e-6 * loss
        assert values[0] <= values[1] + tol and values[1] <= values[2] + tol and values[2] <= loss + tol, (relaxation, values)
        rounds[relaxation] = values[1]
        gap = max(cnn.constraint_gaps(model))
        true_loss = cnn.network_from_model(model).loss(inst.X, inst.Y)
        if cls.exact_for_large_eta:
            assert gap < 1e-6 and values[2] == pytest.approx(true_loss, rel=1e-3), (relaxation, gap, values, true_loss)
        else:
            assert gap > 1e-2 and values[2] < true_loss - 0.1 * loss, (relaxation, gap, values, true_loss)
    assert rounds["sdp"] >= rounds["parabolic"] - 1e-4
