"""Losses (squared, logistic, softmax) and multi-output networks: numpy vs Pyomo, exactness, training."""

import numpy as np
import pyomo.environ as pyo
import pytest
from conftest import max_violation

import convexnn_pyomo as cnn
from convexnn_pyomo.algorithms import PyomoRounds, SchurRounds
from convexnn_pyomo.constraints import ClasswiseMisfitBounds
from convexnn_pyomo.losses import LOSSES, get_loss
from convexnn_pyomo.model import var_matrix
from convexnn_pyomo.training import train

SOLVER = "ipopt_casadi"


def _targets(name: str, rng, m: int, n_out: int) -> np.ndarray:
    """Labels that suit the loss: real values, 0/1, or one-hot rows."""
    if name == "squared":
        return rng.normal(size=(m, n_out))
    if name == "logistic":
        return rng.integers(0, 2, size=(m, n_out)).astype(float)
    return np.eye(n_out)[rng.integers(0, n_out, size=m)]


def _solve(model):
    res = pyo.SolverFactory(SOLVER).solve(model)
    assert pyo.check_optimal_termination(res), res.solver.message
    return res


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_values_gradients_and_pyomo_forms_agree(name):
    """Per-sample values against the textbook formula, gradients against finite differences, and
    both Pyomo forms against numpy, including logits of a few hundred (no overflow)."""
    rng = np.random.default_rng(0)
    loss = get_loss(name)
    z = rng.normal(scale=3.0, size=(3, 6))
    z[:, 0] = [400.0, -350.0, 20.0]  # the textbook exp(z) overflows here
    Y = _targets(name, rng, 6, 3)
    v = loss.value(z, Y)
    assert v.shape == (6,) and np.all(np.isfinite(v))
    textbook = {
        "squared": lambda zz, yy: np.sum((zz - yy.T) ** 2, axis=0),
        "logistic": lambda zz, yy: np.sum(np.log1p(np.exp(zz)) - yy.T * zz, axis=0),
        "softmax": lambda zz, yy: np.log(np.exp(zz).sum(axis=0)) - np.sum(yy.T * zz, axis=0),
    }[name]
    np.testing.assert_allclose(v[1:], textbook(z[:, 1:], Y[1:]), rtol=1e-12, atol=1e-12)
    g, h = loss.gradient(z, Y), 1e-6
    for i in range(3):
        e = np.zeros_like(z)
        e[i] = h
        np.testing.assert_allclose(g[i], (loss.value(z + e, Y) - loss.value(z - e, Y)) / (2 * h), rtol=1e-5, atol=1e-6)
    for j in range(6):
        assert pyo.value(loss.pyomo_expr(list(z[:, j]), list(Y[j]))) == pytest.approx(v[j], rel=1e-12, abs=1e-10)
        if j > 0:
            assert pyo.value(loss.elementary_expr(list(z[:, j]), list(Y[j]))) == pytest.approx(v[j], rel=1e-12, abs=1e-10)


@pytest.mark.parametrize("k", [3, 12])
def test_softmax_translates_to_casadi_in_size_linear_in_the_classes(k):
    """The log-sum-exp's shift is a nested maximum, each level used twice by the next: the CasADi
    graph shares it as the Pyomo expression does (walked as a tree it held 2^(k-1) copies: 12 classes
    gave 703,073 instructions per sample in the Schur round's functions).  Same value as numpy's."""
    import casadi as ca

    from convexnn_pyomo.solvers.casadi_translator import Translator

    m = pyo.ConcreteModel()
    m.z = pyo.Var(range(k))
    y = np.eye(k)[1]
    tr = Translator()
    sx = tr.walk(get_loss("softmax").pyomo_expr([m.z[i] for i in range(k)], list(y)))
    f = ca.Function("f", [ca.vertcat(*tr.var_syms)], [sx])
    assert f.n_instructions() <= 10 * k  # 26 at 3 classes, 107 at 12
    z = np.linspace(-3.0, 5.0, k)
    assert float(f(z)) == pytest.approx(float(get_loss("softmax").value(z[:, None], y[None, :])[0]), rel=1e-12)


def test_predictions_and_convexity():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(3, 5))
    p = get_loss("softmax").predict(z)
    np.testing.assert_allclose(p.sum(axis=0), 1.0)
    np.testing.assert_allclose(get_loss("softmax").predict(z.T, axis=1), p.T)
    np.testing.assert_allclose(get_loss("logistic").predict(z), 1 / (1 + np.exp(-z)))
    np.testing.assert_array_equal(get_loss("squared").predict(z), z)
    # convex in z: the loss at a midpoint is at most the mean of the losses at the ends
    for name in LOSSES:
        loss, Y = get_loss(name), _targets(name, rng, 5, 3)
        a, b = rng.normal(scale=4, size=(2, 3, 5))
        assert np.all(loss.value((a + b) / 2, Y) <= (loss.value(a, Y) + loss.value(b, Y)) / 2 + 1e-12)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_network_gradient_matches_finite_differences(name):
    rng = np.random.default_rng(2)
    net = cnn.Network([3, 4, 2], ["tanh", "identity"]).init_he(2)
    X, Y = rng.normal(size=(7, 3)), _targets(name, rng, 7, 2)
    theta = net.get_flat()
    value, g = net.loss_and_gradient(X, Y, reduction="mean", loss=name)
    assert value == pytest.approx(net.loss(X, Y, reduction="mean", loss=name))
    h = 1e-6
    fd = [(net.with_flat(theta + h * e).loss(X, Y, "mean", loss=name) - net.with_flat(theta - h * e).loss(X, Y, "mean", loss=name))
          / (2 * h) for e in np.eye(theta.size)]
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-7)


def test_bad_targets_and_names_are_explained():
    net = cnn.Network([2, 3, 1], ["sigmoid", "identity"]).init_he(0)
    X = np.ones((3, 2))
    with pytest.raises(ValueError, match="logistic loss needs labels 0/1.*softmax"):
        net.loss(X, [0.0, 1.0, 2.0], loss="logistic")
    with pytest.raises(ValueError, match="softmax loss needs one column per class"):
        cnn.build_training_model(net, X, [0.0, 1.0, 1.0], loss="softmax")
    two = cnn.Network([2, 3, 2], ["sigmoid", "identity"]).init_he(0)
    with pytest.raises(ValueError, match="one-hot"):
        two.loss(X, [[0.5, 0.6], [1, 0], [0, 1]], loss="softmax")
    with pytest.raises(ValueError, match="unknown loss 'hinge'.*logistic, softmax, squared"):
        get_loss("hinge")
    with pytest.raises(ValueError, match="logistic loss needs labels"):
        train(net, X, [0.0, 1.0, 3.0], loss="logistic", rounds=1, round_solver=SOLVER)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_model_objective_is_the_loss_and_records_it(name):
    rng = np.random.default_rng(3)
    net = cnn.Network([3, 4, 3], ["sigmoid", "identity"]).init_he(1)
    X, Y = rng.uniform(size=(6, 3)), _targets(name, rng, 6, 3)
    for elementary in (False, True):
        model = cnn.build_training_model(net, X, Y, reduction="mean", loss=name, elementary=elementary)
        assert cnn.get_training_problem(model).loss == get_loss(name)
        assert pyo.value(model.objective) == pytest.approx(net.loss(X, Y, "mean", loss=name), rel=1e-12)


def _round(net, X, Y, loss, eta, weights=True):
    """One regularized parabolic round centred at ``net``; returns the solved model."""
    model = cnn.build_training_model(net, X, Y, reduction="mean", loss=loss)
    pyo.TransformationFactory("convexnn.parabolic").apply_to(model)
    pyo.TransformationFactory("convexnn.regularize").apply_to(model, eta=eta, reference=net)
    if weights:
        cnn.update_reference(model, net, **cnn.exactness_weights(model, net))
    _solve(model)
    return model


def _assert_exact(model, net, X, Y, loss, tol):
    """The numpy forward pass of the solution's weights reproduces the solver's z^L and x, and the
    solution's true loss is no worse than the reference's (Theorem 1)."""
    sol = cnn.network_from_model(model)
    fp = sol.forward_pass(X)
    for blk in cnn.layer_blocks(model):
        l = blk.index_l
        np.testing.assert_allclose(var_matrix(blk.z, fp.z[l - 1].shape), fp.z[l - 1], atol=tol)
        if not blk.is_output:
            np.testing.assert_allclose(var_matrix(blk.x, fp.x[l].shape), fp.x[l], atol=tol)
    assert sol.loss(X, Y, loss=loss) <= net.loss(X, Y, loss=loss) + 1e-8


def test_logistic_relaxation_is_exact_at_large_eta_and_not_at_small():
    """Theorem 1 with the logistic loss and the paper's mu = 1: eta = 100 gives an exact round
    (eta = 1 did not on the second network), eta = 1e-3 an inexact one."""
    rng = np.random.default_rng(4)
    for seed in range(2):
        net = cnn.Network([3, 4, 3, 1], ["sigmoid", "tanh", "identity"]).init_he(seed)
        X, Y = rng.uniform(size=(15, 3)), _targets("logistic", rng, 15, 1)
        model = _round(net, X, Y, "logistic", eta=100.0, weights=False)
        _assert_exact(model, net, X, Y, "logistic", 1e-6)
        assert max(cnn.constraint_gaps(_round(net, X, Y, "logistic", eta=1e-3, weights=False))) > 1e-3


@pytest.mark.parametrize(
    "name, sizes, activations",
    [("logistic", [3, 4, 1], ["sigmoid", "identity"]), ("logistic", [3, 3, 3, 2], ["softplus", "tanh", "identity"]),
     ("softmax", [3, 4, 3], ["sigmoid", "identity"]), ("softmax", [4, 3, 3, 3], ["tanh", "relu", "identity"])],
)
def test_exactness_weights_make_eta_2_exact(name, sizes, activations):
    """As tests/test_training.py::test_exactness_weights_make_eta_2_exact for the squared loss: the
    exactness weights computed from the loss's own gradient make eta = 2 exact; eta = 1e-3 is not."""
    rng = np.random.default_rng(11)
    for seed in range(2):
        net = cnn.Network(sizes, activations).init_he(seed)
        X, Y = rng.uniform(size=(15, sizes[0])), _targets(name, rng, 15, sizes[-1])
        model = _round(net, X, Y, name, eta=2.0)
        assert max(cnn.constraint_gaps(model)) <= 1e-5
        _assert_exact(model, net, X, Y, name, 1e-5)
        assert max(cnn.constraint_gaps(_round(net, X, Y, name, eta=1e-3))) > 1e-3


def test_exactness_weights_follow_the_loss_gradient():
    """mu_z of the output layer is half the largest row sum of |G^L| with G^L = s * grad loss:
    different for each loss at the same network and data."""
    rng = np.random.default_rng(5)
    net = cnn.Network([3, 4, 2], ["sigmoid", "identity"]).init_he(0)
    X, Y = rng.uniform(size=(10, 3)), _targets("logistic", rng, 10, 2)
    fp = net.forward_pass(X)
    for name in ("squared", "logistic"):
        model = cnn.build_training_model(net, X, Y, reduction="mean", loss=name)
        pyo.TransformationFactory("convexnn.parabolic").apply_to(model)
        G = get_loss(name).gradient(fp.z[-1], Y) / 10
        mu = cnn.exactness_weights(model, net)["mu_z"][2]
        assert mu == pytest.approx(max(0.5 * np.abs(G).sum(axis=1).max(), 0.5 * np.abs(G).sum(axis=0).max() * 10))


def _accepted_losses(res, X, Y, loss) -> np.ndarray:
    """The initial and accepted true losses of a run, checked non-increasing; the final loss is
    the returned network's loss."""
    acc = res.history.loc[res.history.status == "accepted", "true_loss"].to_numpy()
    losses = np.r_[res.initial_loss, acc]
    assert len(acc) >= 1 and np.all(np.diff(losses) <= 1e-9), losses
    assert res.final_loss == pytest.approx(res.network.loss(X, Y, loss=loss))
    return losses


def test_logistic_training_never_increases_the_true_loss():
    from convexnn_pyomo.data import load_breast_cancer

    ds = load_breast_cancer()
    idx = np.random.default_rng(0).choice(ds.m, 60, replace=False)
    X, Y = ds.X[idx], ds.y[idx]
    net = cnn.Network([X.shape[1], 5, 1], ["sigmoid", "identity"]).init_he(0)
    res = train(net, X, Y, rounds=5, round_solver=SOLVER, loss="logistic")
    losses = _accepted_losses(res, X, Y, "logistic")
    assert res.final_loss < 0.5 * res.initial_loss, losses


def test_softmax_trains_on_three_iris_classes():
    from sklearn.datasets import load_iris

    iris = load_iris()
    idx = np.random.default_rng(0).choice(150, 45, replace=False)
    X = (iris.data - iris.data.mean(axis=0)) / iris.data.std(axis=0)
    X, Y = X[idx], np.eye(3)[iris.target[idx]]
    net = cnn.Network([4, 5, 3], ["tanh", "identity"]).init_he(0)
    res = train(net, X, Y, rounds=5, round_solver=SOLVER, loss="softmax")
    losses = _accepted_losses(res, X, Y, "softmax")
    assert res.final_loss < 0.2 * res.initial_loss, losses
    proba = get_loss("softmax").predict(res.network.predict(X), axis=1)
    assert (proba.argmax(axis=1) == iris.target[idx]).mean() >= 0.9


@pytest.mark.parametrize("round_solver", ["schur", "pyomo"])
def test_softmax_round_with_a_one_sample_class_reaches_its_optimum(round_solver):
    """A class with one sample saturates the softmax; the output-bias anchor of the regularizer
    keeps the round's optimum attained near the reference (without it Ipopt ran into its
    iteration limit on this very case: seed 2, 200 iterations).  The lifted reference is feasible
    with r = 0, so an optimal round is at most the reference's loss."""
    rng = np.random.default_rng(2)
    X, Y = rng.random((80, 4)), np.eye(4)[np.repeat(np.arange(4), [50, 20, 9, 1])]
    net = cnn.Network([4, 6, 4], ["sigmoid", "identity"]).init_he(2)
    rounds = (SchurRounds(options={"max_iter": 100}) if round_solver == "schur"
              else PyomoRounds(solver=SOLVER, options={"max_iter": 100}))
    res = train(net, X, Y, rounds=1, round_solver=rounds, loss="softmax")
    row = res.history.iloc[-1]
    assert row.status == "accepted", res.history.to_dict("records")
    assert row.relaxed_objective <= res.initial_loss + 1e-7


def test_saturating_losses_anchor_the_output_biases_only():
    assert [name for name, cls in LOSSES.items() if cls.saturating] == ["logistic", "softmax"]
    net = cnn.Network([2, 3, 3], ["sigmoid", "identity"]).init_he(0)
    X, Y = np.random.default_rng(0).random((5, 2)), np.eye(3)[[0, 1, 2, 0, 1]]
    model = cnn.build_training_model(net, X, Y, loss="softmax", reduction="mean")
    pyo.TransformationFactory("convexnn.parabolic").apply_to(model)
    pyo.TransformationFactory("convexnn.regularize").apply_to(model, eta=1.0, reference=net)
    reg = cnn.get_regularization_block(model)
    cnn.set_lifted_values(model, net)
    assert pyo.value(reg.r) == pytest.approx(0.0, abs=1e-12)  # zero at the lifted reference
    out = model.layer[2]
    out.b[1].set_value(out.b[1].value + 0.5)  # only the anchor sees a lone bias move (z is not moved)
    assert pyo.value(reg.r) == pytest.approx(pyo.value(reg.mu_z[2]) * 0.25, rel=1e-12)
    assert [l for l in reg.ref if reg.ref[l].component("b") is not None] == [2]


# -- multi-output networks (squared loss) -------------------------------------------------------------


def _multi_output_problem(seed=0, m=12):
    rng = np.random.default_rng(seed)
    net = cnn.Network([3, 4, 3], ["sigmoid", "identity"]).init_he(seed)
    X = rng.uniform(size=(m, 3))
    Y = np.c_[np.sin(3 * X[:, 0]), X[:, 1] * X[:, 2], X.sum(axis=1)]
    return net, X, Y


def test_multi_output_model_and_relaxation_contain_the_forward_pass():
    for seed in range(3):
        _, X, Y = _multi_output_problem(seed)
        net = cnn.Network([3, 4, 2, 3], ["tanh", "sigmoid", "identity"]).init_he(seed)
        model = cnn.build_training_model(net, X, Y)
        assert max_violation(model) < 1e-10
        assert pyo.value(model.objective) == pytest.approx(np.sum((net.predict(X) - Y) ** 2), rel=1e-12)
        pyo.TransformationFactory("convexnn.parabolic").apply_to(model)
        cnn.set_lifted_values(model, net)
        assert max_violation(model) < 1e-10
        w = cnn.exactness_weights(model, net)
        assert set(w["mu_z"]) == {1, 2, 3} and set(w["mu_p"]) == {1, 2}


def test_multi_output_training_agrees_with_the_numpy_forward_pass():
    """On every exact round of a run (both gaps <= exact_tol) the numpy forward pass of the round's
    solution reproduces the solver's z^L, for all three outputs."""
    from convexnn_pyomo.algorithms import SequentialRelaxation

    net, X, Y = _multi_output_problem()
    checked = []

    def check(row, best):
        if max(row["bilinear_gap"], row["activation_gap"]) <= 1e-4:
            model = algorithm.problem.model  # holds this round's solution
            out = cnn.layer_blocks(model)[-1]
            z_sol = cnn.network_from_model(model).forward_pass(X).z[-1]
            checked.append(np.abs(var_matrix(out.z, (3, len(Y))) - z_sol).max())

    algorithm = SequentialRelaxation(rounds=4, round_solver=SOLVER, progress=check)  # Pyomo rounds: reads the model
    res = algorithm.solve(net, X, Y)
    _accepted_losses(res, X, Y, "squared")
    assert res.final_loss < 0.5 * res.initial_loss
    assert res.final_loss == pytest.approx(np.sum((res.network.predict(X) - Y) ** 2))
    assert len(checked) >= 2 and max(checked) <= 1e-4, checked


def test_classwise_bounds_on_one_hot_outputs():
    """Classes of one-hot rows are their argmax; the bound (19) sums |z - y| over every output."""
    rng = np.random.default_rng(6)
    net = cnn.Network([3, 4, 3], ["sigmoid", "identity"]).init_he(0)
    labels = np.array([0, 1, 2, 1, 0, 2, 2, 1])
    X, Y = rng.uniform(size=(8, 3)), np.eye(3)[labels]
    cons = ClasswiseMisfitBounds(kappa_factor=1.0)
    classes = cons.classes(Y)
    assert {c: list(i) for c, i in classes.items()} == {0.0: [0, 4], 1.0: [1, 3, 7], 2.0: [2, 5, 6]}
    misfit = np.abs(net.predict(X) - Y).sum(axis=1)
    assert cons.misfits(net, X, Y) == pytest.approx({c: misfit[labels == c].sum() for c in (0.0, 1.0, 2.0)})
    tight = ClasswiseMisfitBounds(kappa={c: 1.01 * v for c, v in cons.misfits(net, X, Y).items()})
    model = cnn.build_training_model(net, X, Y)
    tight.add_to(model)
    assert tight.violation(net, X, Y) == 0.0
    out = cnn.layer_blocks(model)[-1]
    for (i, j), t in model.classwise_misfit.t.items():
        t.set_value(abs(out.z[i, j].value - Y[j, i]))
    assert max_violation(model) < 1e-10
    loose = ClasswiseMisfitBounds(kappa={c: 0.5 * v for c, v in cons.misfits(net, X, Y).items()})
    assert loose.violation(net, X, Y) > 0
    rows = ClasswiseMisfitBounds().classes(np.array([[0.5, 1.0], [0.5, 1.0], [2.0, 3.0]]))
    assert {c: list(i) for c, i in rows.items()} == {(0.5, 1.0): [0, 1], (2.0, 3.0): [2]}
