"""The direct CasADi round (solvers/casadi_direct.py) is the Pyomo model's problem (9), and solves alike.

Every Pyomo variable and active constraint of ``build_training_model`` + ``convexnn.parabolic`` +
``convexnn.regularize`` is mapped, by component name and index, to an entry of the direct
problem's ``x`` and ``g``: the objective and every constraint agree at random points; both
solved give the same optimum; a re-centred round equals a freshly built one.
"""

from __future__ import annotations

import casadi as ca
import numpy as np
import pyomo.environ as pyo
import pytest

import convexnn_pyomo as cnn
from convexnn_pyomo.model import LayerBlockData
from convexnn_pyomo.solvers.casadi_direct import DirectParabolicRound

ARCHITECTURES = {
    "sigmoid-1hidden-1out": ([3, 4, 1], "sigmoid"),
    "tanh-2hidden-2out": ([3, 4, 3, 2], "tanh"),
    "softplus-2hidden-1out": ([2, 5, 4, 1], "softplus"),
    "sigmoid-linear-2out": ([3, 3, 4, 2], ["sigmoid", "identity"]),  # a linear hidden layer stays exact (2c)
}
OPTIONS = {"mu_strategy": "adaptive", "mumps_pivot_order": 5, "max_iter": 1000, "bound_relax_factor": 0.0, "tol": 1e-10}


def _problem(arch: str, m: int, seed: int):
    sizes, acts = ARCHITECTURES[arch]
    rng = np.random.default_rng(seed)
    net = cnn.Network(sizes, acts).init_he(seed)
    X, Y = rng.normal(size=(m, sizes[0])), rng.normal(size=(m, sizes[-1]))
    reference = net.with_flat(net.get_flat() + 0.3 * rng.normal(size=net.n_parameters))
    dc = [l for l in range(1, net.n_layers) if not net.activation(l).linear]
    weights = {"mu_z": {l: float(rng.uniform(0.3, 3)) for l in range(1, net.n_layers + 1)},
               "mu_p": {l: float(rng.uniform(0.3, 3)) for l in dc}, "mu_q": {l: float(rng.uniform(0.3, 3)) for l in dc}}
    return net, X, Y, reference, float(rng.uniform(0.5, 3)), weights


def _pyomo_round(net, X, Y, reduction, reference, eta, weights, loss="squared"):
    model = cnn.build_training_model(net, X, Y, reduction=reduction, loss=loss)
    pyo.TransformationFactory("convexnn.parabolic").apply_to(model)
    pyo.TransformationFactory("convexnn.regularize").apply_to(model, eta=1.0)
    cnn.update_reference(model, reference, eta=eta, **weights)
    return model


def _direct_round(net, X, Y, reduction, reference, eta, weights, **kwds):
    rnd = DirectParabolicRound(net, X, Y, reduction=reduction, eta=1.0, ipopt_options=OPTIONS, **kwds)
    rnd.recentre(reference, eta, **weights)
    return rnd


def _layer(component) -> int:
    b = component.parent_block()
    while not isinstance(b, LayerBlockData):
        b = b.parent_block()
    return b.index_l


def _split(name: str, idx: tuple):
    """Pyomo index -> (index without the sample, sample) for the direct problem's lookup."""
    if name in ("w", "b", "W", "weight_norm"):
        return idx, None
    if name in ("X", "input_norm"):
        return (), idx[0]
    return (idx[0],) + tuple(idx[2:]), idx[1]  # [i, j, k...] -> (i, k...), sample j


def _variable_map(model, rnd) -> list:
    """(Pyomo VarData, position in x) for every variable of the model."""
    out = []
    for v in model.component_data_objects(pyo.Var, descend_into=True):
        name = v.parent_component().local_name
        idx = v.index() if isinstance(v.index(), tuple) else (v.index(),)
        index, sample = _split(name, idx)
        out.append((v, rnd.variable_index(name, _layer(v), index, sample)))
    return out


def _constraint_map(model, rnd) -> list:
    """(Pyomo ConstraintData, row of g) for every active constraint of the model."""
    out = []
    for c in model.component_data_objects(pyo.Constraint, active=True, descend_into=True):
        name = c.parent_component().local_name
        idx = c.index() if isinstance(c.index(), tuple) else (c.index(),)
        index, sample = _split(name, idx)
        out.append((c, rnd.constraint_index(name, _layer(c), index, sample)))
    return out


def _excess(c) -> float:
    """``a - b`` of the Pyomo constraint ``a <= b`` or ``a == b`` (``<= 0`` or ``== 0`` when it holds)."""
    body = pyo.value(c.body)
    if c.equality or c.upper is not None:
        return body - pyo.value(c.upper)
    return pyo.value(c.lower) - body


def _labels(Y, loss):
    """Targets the loss accepts: squared any, logistic 0/1, softmax one-hot rows."""
    if loss == "logistic":
        return (Y > 0).astype(float)
    if loss == "softmax":
        return np.eye(Y.shape[1])[np.argmax(Y, axis=1)]
    return Y


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("arch,loss", [(a, "squared") for a in ARCHITECTURES]
                         + [("sigmoid-1hidden-1out", "logistic"), ("tanh-2hidden-2out", "softmax")])
def test_objective_and_constraints_equal_the_pyomo_model_at_random_points(arch, loss, reduction):
    net, X, Y, reference, eta, weights = _problem(arch, 7, seed=len(arch))
    Y = _labels(Y, loss)
    model = _pyomo_round(net, X, Y, reduction, reference, eta, weights, loss=loss)
    rnd = _direct_round(net, X, Y, reduction, reference, eta, weights, loss=loss)
    variables, constraints = _variable_map(model, rnd), _constraint_map(model, rnd)
    # one to one: every entry of x and g is one Pyomo component
    assert sorted(k for _, k in variables) == list(range(rnd.n_variables))
    assert sorted(k for _, k in constraints) == list(range(rnd.n_constraints))
    assert [bool(rnd.equality_rows[k]) for _, k in constraints] == [c.equality for c, _ in constraints]
    lb = rnd.lower_bounds
    assert all((v.lb if v.lb is not None else -np.inf) == lb[k] for v, k in variables)
    objective = next(model.component_data_objects(pyo.Objective, active=True))
    rng = np.random.default_rng(1)
    for _ in range(3):
        x = rng.normal(size=rnd.n_variables)
        x[lb == 0] = np.abs(x[lb == 0])
        for v, k in variables:
            v.set_value(float(x[k]))
        f, g = rnd.evaluate(x)
        assert f == pytest.approx(pyo.value(objective), rel=1e-9)
        expected = np.array([_excess(c) for c, _ in constraints])
        assert np.abs(g[[k for _, k in constraints]] - expected).max() <= 1e-9 * (1 + np.abs(expected).max())
        assert (g > 1e-6).any()  # random points violate some constraints: the comparison is not vacuous


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_lifted_reference_is_feasible_with_the_true_loss(arch):
    """At the reference's lifted point (the warm start) every constraint holds and r = 0."""
    net, X, Y, reference, eta, weights = _problem(arch, 9, seed=3)
    for reduction in ("mean", "sum"):
        rnd = _direct_round(net, X, Y, reduction, reference, eta, weights)
        f, g = rnd.evaluate(rnd.start)
        assert np.abs(g[rnd.equality_rows]).max() < 1e-12 and g.max() < 1e-12
        assert f == pytest.approx(reference.loss(X, Y, reduction), rel=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_exactness_weights_equal_the_pyomo_models(arch, reduction):
    net, X, Y, reference, eta, weights = _problem(arch, 11, seed=12)
    model = _pyomo_round(net, X, Y, reduction, reference, eta, weights)
    rnd = _direct_round(net, X, Y, reduction, reference, eta, weights)
    theirs, mine = cnn.exactness_weights(model, reference), rnd.exactness_weights(reference)
    assert mine.keys() == theirs.keys()
    for name in theirs:
        assert mine[name].keys() == theirs[name].keys()
        assert all(mine[name][l] == pytest.approx(v, rel=1e-12) for l, v in theirs[name].items())


@pytest.mark.parametrize("group_size", [None, 4, 6])
def test_mapped_derivatives_equal_casadi_automatic_derivatives(group_size):
    """The per-sample gradient, Jacobian and Hessian blocks, assembled, equal CasADi's AD of the
    whole problem (also with copies of the shared variables, groups of 4 + 3 and one group of 7)."""
    net, X, Y, reference, eta, weights = _problem("tanh-2hidden-2out", 7, seed=5)
    rnd = _direct_round(net, X, Y, "mean", reference, eta, weights, group_size=group_size)
    nlp, d = rnd.nlp, rnd.derivatives
    lam_f, lam_g = ca.MX.sym("lam_f"), ca.MX.sym("lam_g", rnd.n_constraints)
    lagrangian = lam_f * nlp["f"] + ca.dot(lam_g, nlp["g"])
    auto = ca.Function("auto", [nlp["x"], nlp["p"], lam_f, lam_g], [
        ca.gradient(nlp["f"], nlp["x"]), ca.jacobian(nlp["g"], nlp["x"]), ca.triu(ca.hessian(lagrangian, nlp["x"])[0])])
    rng = np.random.default_rng(2)
    x, lam, p = rng.normal(size=rnd.n_variables), rng.normal(size=rnd.n_constraints), rnd.parameters
    grad, jac, hess = (np.array(a) for a in auto(x, p, 0.7, lam))
    assert np.allclose(np.array(d["grad_f"](x, p)[1]), grad, rtol=1e-12, atol=1e-12)
    assert np.allclose(np.array(d["jac_g"](x, p)[1]), jac, rtol=1e-12, atol=1e-12)
    mine = d["hess_lag"](x, p, 0.7, lam)
    assert mine.sparsity().is_triu() and np.allclose(np.array(mine), hess, rtol=1e-12, atol=1e-12)
    assert np.abs(hess).max() > 0 and np.abs(jac).max() > 0


@pytest.mark.parametrize("arch,reduction", [(a, ("mean", "sum")[i % 2]) for i, a in enumerate(ARCHITECTURES)])
def test_same_optimum_as_the_pyomo_model(arch, reduction):
    net, X, Y, reference, eta, weights = _problem(arch, 40, seed=11)
    model = _pyomo_round(net, X, Y, reduction, reference, eta, weights)
    cnn.set_lifted_values(model, reference)
    res = pyo.SolverFactory("ipopt_casadi").solve(model, options=OPTIONS)
    assert pyo.check_optimal_termination(res)
    rnd = _direct_round(net, X, Y, reduction, reference, eta, weights)
    out = rnd.solve()
    assert out["ok"] and out["return_status"] == "Solve_Succeeded" and out["iterations"] > 0
    theirs, mine = cnn.network_from_model(model), rnd.solution()
    assert np.abs(mine.get_flat() - theirs.get_flat()).max() < 1e-5
    objective = next(model.component_data_objects(pyo.Objective, active=True))
    assert rnd.relaxed_objective() == pytest.approx(pyo.value(objective), rel=1e-7)
    assert out["objective"] == rnd.relaxed_objective()
    assert np.allclose(rnd.gaps(), cnn.constraint_gaps(model), atol=1e-5)
    # the relaxed optimum is no worse than the reference (feasible, r = 0 there)
    assert rnd.relaxed_objective() <= reference.loss(X, Y, reduction) + 1e-9


def test_recentred_round_equals_a_fresh_round():
    """recentre() leaves no stale parameter: a re-used round and a new one solve the same problem."""
    net, X, Y, reference, eta, weights = _problem("tanh-2hidden-2out", 30, seed=4)
    used = _direct_round(net, X, Y, "mean", reference, eta, weights)
    assert used.solve()["ok"]
    second = used.solution()
    new_weights = {k: {l: 2 * v + 0.1 for l, v in d.items()} for k, d in weights.items()}
    used.recentre(second, 1.7, **new_weights)
    fresh = _direct_round(second, X, Y, "mean", second, 1.7, new_weights)
    assert np.array_equal(used.parameters, fresh.parameters)
    assert np.array_equal(used.start, fresh.start)
    a, b = used.solve(), fresh.solve()
    assert a["ok"] and b["ok"] and a["iterations"] == b["iterations"]
    assert np.abs(used.solution().get_flat() - fresh.solution().get_flat()).max() < 1e-10
    assert used.relaxed_objective() == pytest.approx(fresh.relaxed_objective(), rel=1e-12)
    # and it differs from the first round's problem: the parameters did change
    assert not np.array_equal(used.parameters, _direct_round(net, X, Y, "mean", reference, eta, weights).parameters)


def test_warm_started_resolve_reaches_the_cold_optimum():
    """With warm_start_init_point the last multipliers seed the next round; the optimum is unchanged."""
    net, X, Y, reference, eta, weights = _problem("sigmoid-1hidden-1out", 30, seed=10)
    used = _direct_round(net, X, Y, "mean", reference, eta, weights)
    assert used.solve()["ok"]
    second = used.solution()
    used.recentre(second, eta, **weights)
    warm = used.solve(options={"warm_start_init_point": "yes", "mu_init": 1e-4})
    cold = _direct_round(net, X, Y, "mean", second, eta, weights)
    assert warm["ok"] and cold.solve()["ok"]
    assert np.abs(used.solution().get_flat() - cold.solution().get_flat()).max() < 1e-6
    assert used.relaxed_objective() == pytest.approx(cold.relaxed_objective(), rel=1e-8)


@pytest.mark.parametrize("variant", [{"parallelization": "thread", "n_threads": 2},
                                     {"nlpsol_options": {"expand": True}},
                                     {"mapped_derivatives": False}])
def test_evaluation_variants_solve_the_same_problem(variant):
    """The measured alternatives (threaded map, expanded SX, CasADi's own derivatives) agree with the default."""
    net, X, Y, reference, eta, weights = _problem("softplus-2hidden-1out", 12, seed=6)
    default = _direct_round(net, X, Y, "sum", reference, eta, weights)
    other = _direct_round(net, X, Y, "sum", reference, eta, weights, **variant)
    x = np.random.default_rng(3).normal(size=default.n_variables)
    f1, g1 = default.evaluate(x)
    f2, g2 = other.evaluate(x)
    assert f1 == pytest.approx(f2, rel=1e-14) and np.allclose(g1, g2, rtol=1e-14, atol=1e-14)
    assert default.solve()["ok"] and other.solve()["ok"]
    assert np.abs(default.solution().get_flat() - other.solution().get_flat()).max() < 1e-8


@pytest.mark.parametrize("arch,reduction", [("sigmoid-1hidden-1out", "mean"), ("tanh-2hidden-2out", "sum")])
def test_copies_of_the_shared_variables_give_the_same_round(arch, reduction):
    """``group_size``: the samples read copies ``c_k`` of the weights tied by ``c_k = s``; the lifted
    start is feasible with the same loss and the optimum is the one without copies."""
    net, X, Y, reference, eta, weights = _problem(arch, 23, seed=13)
    plain = _direct_round(net, X, Y, reduction, reference, eta, weights)
    copied = _direct_round(net, X, Y, reduction, reference, eta, weights, group_size=5)
    n = net.sizes
    ns = sum(n[l] * n[l - 1] + n[l] for l in range(1, len(n))) + sum(n[2:])  # w, b and W
    assert copied.n_groups == 5 and copied.n_variables == plain.n_variables + 5 * ns
    assert copied.n_constraints == plain.n_constraints + 5 * ns and copied.equality_rows[-5 * ns:].all()
    f, g = copied.evaluate(copied.start)
    assert np.abs(g[copied.equality_rows]).max() < 1e-12 and g.max() < 1e-12
    assert f == pytest.approx(reference.loss(X, Y, reduction), rel=1e-12)
    a, b = plain.solve(), copied.solve()
    assert a["ok"] and b["ok"]
    assert np.abs(plain.solution().get_flat() - copied.solution().get_flat()).max() < 1e-6
    assert copied.relaxed_objective() == pytest.approx(plain.relaxed_objective(), rel=1e-8)
    assert np.allclose(copied.gaps(), plain.gaps(), atol=1e-6)


def test_failed_solve_reports_and_does_not_raise():
    net, X, Y, reference, eta, weights = _problem("sigmoid-1hidden-1out", 20, seed=7)
    rnd = _direct_round(net, X, Y, "mean", reference, eta, weights)
    out = rnd.solve(options={"max_iter": 1})
    assert not out["ok"] and out["return_status"] == "Maximum_Iterations_Exceeded" and out["iterations"] == 1
    assert not out["time_limit"] and not out["infeasible"]
    out = rnd.solve(time_limit=1e-9)
    assert not out["ok"] and out["time_limit"] and out["return_status"] == "Maximum_WallTime_Exceeded"
    assert rnd.solve(time_limit=60)["ok"]  # the same round still solves, with another option set


@pytest.mark.parametrize("bad, match", [
    ({"reduction": "median"}, "reduction"),
    ({"parallelization": "gpu"}, "parallelization"),
    ({"eta": -1.0}, "eta"),
    ({"mu": (1.0, 1.0)}, "mu"),
    ({"group_size": 0}, "group_size"),
    ({"group_size": 2.5}, "group_size"),
])
def test_bad_arguments_raise_clear_errors(bad, match):
    net, X, Y, *_ = _problem("sigmoid-1hidden-1out", 5, seed=8)
    with pytest.raises(ValueError, match=match):
        DirectParabolicRound(net, X, Y, **bad)


def test_recentre_checks_the_layers_of_mu():
    net, X, Y, reference, eta, weights = _problem("tanh-2hidden-2out", 5, seed=9)
    rnd = _direct_round(net, X, Y, "mean", reference, eta, weights)
    before = rnd.parameters
    with pytest.raises(ValueError, match="mu_p"):
        rnd.recentre(reference, 1.0, mu_p={1: 1.0})
    with pytest.raises(ValueError, match="mu_z"):
        rnd.recentre(reference, 5.0, mu_z={1: 1.0, 2: -1.0, 3: 1.0})
    assert np.array_equal(rnd.parameters, before) and rnd.eta == eta  # a rejected call changes nothing
    with pytest.raises(ValueError, match="sizes"):
        rnd.recentre(cnn.Network([3, 2, 1], "tanh").init_he(0), 1.0)
