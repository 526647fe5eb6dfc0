"""ReLU: its DC split, the relaxation and exactness, training, and the exact big-M model for global solvers."""

import numpy as np
import pyomo.environ as pyo
import pytest
from conftest import max_violation, requires_solver

import convexnn_pyomo as cnn
from convexnn_pyomo.activations import AutoDCActivation
from convexnn_pyomo.model import var_matrix
from convexnn_pyomo.solvers import require_solver
from convexnn_pyomo.transformations import get_src_constraints, get_transformed_constraints

SOLVER = "ipopt_casadi"
RELU_NETS = [([3, 4, 1], ["relu", "identity"]), ([4, 3, 3, 1], ["relu", "relu", "identity"]),
             ([3, 3, 3, 2], ["relu", "sigmoid", "identity"])]


def _problem(sizes, acts, m, seed):
    rng = np.random.default_rng(seed)
    net = cnn.Network(sizes, acts).init_he(seed)
    for b in net.biases:
        b += rng.normal(scale=0.3, size=b.shape)  # some units active, some not
    return net, rng.uniform(-1, 1, size=(m, sizes[0])), rng.uniform(size=(m, sizes[-1]))


def test_relu_split_pieces_and_errors():
    relu = cnn.get_activation("relu")
    z = np.linspace(-3, 3, 61)
    np.testing.assert_array_equal(relu.p(z) - relu.q(z), np.maximum(z, 0))
    np.testing.assert_array_equal(relu.q(z), 0.0)
    for zk in z:  # p is the maximum of its pieces, q of its one piece
        assert max(pyo.value(e) for e in relu.p_pieces(float(zk))) == relu.p(zk)
        assert max(pyo.value(e) for e in relu.q_pieces(float(zk))) == 0.0
        assert pyo.value(relu.pyomo_expr(float(zk))) == max(zk, 0.0)
    np.testing.assert_array_equal(relu.derivative(z), (z > 0).astype(float))
    assert relu.second_derivative_bound is None
    with pytest.raises(ValueError, match=r"convex and piecewise linear.*get_activation\('relu'\)"):
        AutoDCActivation("relu", relu.value, relu.derivative, relu.pyomo_expr, None)


def test_relu_dc_inequalities_are_the_linear_epigraph():
    """(7) for ReLU: (u+x)/2 >= 0, (u+x)/2 >= z, (u-x)/2 >= 0, all linear; u = x = ReLU(z) is feasible
    and x above ReLU(z) with u = ReLU(z) is not."""
    net, X, Y = _problem([2, 3, 1], ["relu", "identity"], 4, 0)
    model = cnn.build_training_model(net, X, Y)
    pyo.TransformationFactory("convexnn.parabolic").apply_to(model)
    cons = get_transformed_constraints(model.layer[1].activation[0, 0])
    assert len(cons) == 3
    assert all(c.body.polynomial_degree() == 1 for c in cons)
    cnn.set_lifted_values(model, net)
    assert max_violation(model, cons) < 1e-12
    x = model.layer[1].x[0, 0]
    x.set_value(x.value + 0.1)
    assert max_violation(model, cons) == pytest.approx(0.05)


@pytest.mark.parametrize("sizes, acts", RELU_NETS)
def test_lifted_relu_point_is_feasible_for_the_parabolic_relaxation(sizes, acts):
    for seed in range(3):
        net, X, Y = _problem(sizes, acts, 6, seed)
        model = cnn.build_training_model(net, X, Y)
        assert max_violation(model) < 1e-10
        pyo.TransformationFactory("convexnn.parabolic").apply_to(model)
        cnn.set_lifted_values(model, net)
        assert max_violation(model) < 1e-10
        u = model.layer[1].parabolic.u
        np.testing.assert_allclose(var_matrix(u, (sizes[1], 6)), np.maximum(net.forward_pass(X).z[0], 0))


@pytest.mark.parametrize("sizes, acts", RELU_NETS)
def test_exactness_weights_make_a_relu_round_exact(sizes, acts):
    """Large eta (2 on the exactness weights) gives an exact ReLU round: the numpy forward pass of the
    solution's weights reproduces the solver's z and x; eta = 1e-3 does not."""
    for seed in range(2):
        net, X, Y = _problem(sizes, acts, 15, seed)
        gaps = {}
        for eta in (2.0, 1e-3):
            model = cnn.build_training_model(net, X, Y, reduction="mean")
            pyo.TransformationFactory("convexnn.parabolic").apply_to(model)
            pyo.TransformationFactory("convexnn.regularize").apply_to(model, eta=eta, reference=net)
            cnn.update_reference(model, net, **cnn.exactness_weights(model, net))
            assert pyo.check_optimal_termination(pyo.SolverFactory(SOLVER).solve(model))
            gaps[eta] = max(cnn.constraint_gaps(model))
            if eta == 2.0:
                sol = cnn.network_from_model(model)
                fp = sol.forward_pass(X)
                for blk in cnn.layer_blocks(model):
                    l = blk.index_l
                    np.testing.assert_allclose(var_matrix(blk.z, fp.z[l - 1].shape), fp.z[l - 1], atol=1e-6)
                    if not blk.is_output:
                        np.testing.assert_allclose(var_matrix(blk.x, fp.x[l].shape), fp.x[l], atol=1e-6)
                assert sol.loss(X, Y) <= net.loss(X, Y) + 1e-8
        assert gaps[2.0] <= 1e-5 and gaps[1e-3] > 1e-3, gaps


def test_relu_network_trains_on_breast_cancer():
    from convexnn_pyomo.data import load_breast_cancer

    ds = load_breast_cancer()
    idx = np.random.default_rng(0).choice(ds.m, 100, replace=False)
    X, Y = ds.X[idx], ds.y[idx]
    net = cnn.Network([X.shape[1], 6, 6, 1], ["relu", "relu", "identity"]).init_he(0)
    res = cnn.train(net, X, Y, rounds=3, round_solver=SOLVER)
    acc = res.history.loc[res.history.status == "accepted", "true_loss"].to_numpy()
    assert np.all(np.diff(np.r_[res.initial_loss, acc]) <= 1e-9)
    assert res.final_loss == pytest.approx(res.network.loss(X, Y))
    assert res.final_loss <= 0.5 * res.initial_loss, res.history


def _tiny_global_model():
    """1-2-1 ReLU network, 6 samples with random targets, |w|, |b| <= 1, ReLU in big-M form."""
    rng = np.random.default_rng(0)
    X, Y = rng.uniform(-1, 1, size=(6, 1)), rng.normal(size=6)
    net = cnn.Network([1, 2, 1], ["relu", "identity"]).init_he(0)
    model = cnn.build_training_model(net, X, Y)
    pyo.TransformationFactory("convexnn.bound").apply_to(model, weight_bound=1.0, bias_bound=1.0)
    pyo.TransformationFactory("convexnn.relu_bigm").apply_to(model)
    return model, X, Y


def test_relu_bigm_is_exact_on_the_box_and_maps_its_constraints():
    """Every point of the big-M set has x = ReLU(z); the forward pass (with the matching binaries)
    is feasible; the constraints it adds map back to (2c)."""
    model, X, Y = _tiny_global_model()
    blk = model.layer[1]
    assert not blk.activation.active
    src = blk.activation[1, 3]
    cons = get_transformed_constraints(src)
    assert len(cons) == 4 and all(get_src_constraints(c) == [src] for c in cons)
    assert max_violation(model) < 1e-10  # the He network lies in the box on this data
    z, x, on = blk.z[1, 3], blk.x[1, 3], blk.relu_bigm.active_unit[1, 3]
    assert z.lb < 0 < z.ub and x.lb == 0 and abs(z.value) > 1e-3
    on.set_value(1 - on.value)  # the other binary value cuts the forward pass off
    assert max_violation(model, cons) > 1e-3
    for zval in np.linspace(z.lb, z.ub, 7):  # the big-M set at fixed z: x = ReLU(z) and nothing else
        feasible = set()
        for onval in (0, 1):
            for xval in [*np.linspace(x.lb, x.ub, 11), max(zval, 0.0)]:
                z.set_value(zval)
                on.set_value(onval)
                x.set_value(xval)
                if max_violation(model, cons) <= 1e-12:
                    feasible.add(round(float(xval), 12))
        assert feasible == {round(max(float(zval), 0.0), 12)}, (zval, feasible)
    with pytest.raises(ValueError, match="already relaxed or transformed"):
        pyo.TransformationFactory("convexnn.relu_bigm").apply_to(model)
    bare = cnn.build_training_model(cnn.Network([1, 2, 1], ["relu", "identity"]).init_he(0), X, Y)
    with pytest.raises(ValueError, match="needs bounds on .*apply TransformationFactory\\('convexnn.bound'\\)"):
        pyo.TransformationFactory("convexnn.relu_bigm").apply_to(bare)
    sig = cnn.build_training_model(cnn.Network([1, 2, 1], ["sigmoid", "identity"]).init_he(0), X, Y)
    with pytest.raises(ValueError, match="no hidden ReLU layer"):
        pyo.TransformationFactory("convexnn.relu_bigm").apply_to(sig)


@requires_solver("gurobi_direct_minlp", "scip_nl")
def test_tiny_relu_global_optimum_agrees_between_gurobi_and_scip():
    """Both global solvers prove the same optimum of the big-M model, and it is the true loss of the
    weights they return (the model is exact, not a relaxation)."""
    results = {}
    for solver in ("gurobi_direct_minlp", "scip_nl"):
        model, X, Y = _tiny_global_model()
        n_vars = len({id(v) for v in model.component_data_objects(pyo.Var)})
        assert n_vars <= 2000
        res = require_solver(solver).solve(model, time_limit=30)
        assert pyo.check_optimal_termination(res)
        results[solver] = res.incumbent_objective
        assert cnn.network_from_model(model).loss(X, Y) == pytest.approx(res.incumbent_objective, abs=1e-5)
        assert res.objective_bound == pytest.approx(res.incumbent_objective, rel=1e-3, abs=1e-6)
    assert results["gurobi_direct_minlp"] == pytest.approx(results["scip_nl"], rel=1e-4), results
    assert results["scip_nl"] > 0.1  # a nontrivial instance: the targets are not representable
