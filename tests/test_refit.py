"""The output layer's exact problem (convexnn_pyomo.algorithms.refit): optimality against an
independent KKT solve, agreement of its two solvers, and its place in Algorithm 1."""

import numpy as np
import pytest

import convexnn_pyomo as cnn
from convexnn_pyomo.algorithms.refit import OutputLayerStep, _solver, refit_applies, refit_output_layer
from convexnn_pyomo.algorithms.sequential import SequentialRelaxation
from convexnn_pyomo.algorithms.steps import Evaluator, Proposal, StepProposal
from convexnn_pyomo.model import build_output_layer_model
from convexnn_pyomo.solvers.registry import check_solver

needs_clarabel = pytest.mark.skipif(not check_solver("convexnn_conic")[0], reason="clarabel (the solvers extra) is not installed")


def _data(m=80, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(m, 3))
    X[:, 0] = (rng.random(m) < 0.4).astype(float)  # the group column
    Y = (X[:, 1] + 1.5 * X[:, 0] + 0.3 * rng.normal(size=m) > 0.5).astype(float)[:, None]
    net = cnn.Network([3, 4, 1], ["sigmoid", "identity"]).init_he(seed)
    return net, X, Y


def _hidden(net, X):
    return np.c_[net.forward_pass(X).x[net.n_layers - 1].T, np.ones(len(X))]


def _same_hidden_layers(a, b):
    return all(np.array_equal(u, v) for u, v in zip(a.weights[:-1] + a.biases[:-1], b.weights[:-1] + b.biases[:-1]))


@needs_clarabel
def test_the_refit_is_the_least_squares_output_layer_on_the_parity_bound():
    """Unconstrained least squares on the hidden features breaks parity 0.01, so the optimum lies on
    the bound: the KKT system of min |H w - y|^2 s.t. a.w = s eps (s the side it breaks) gives it."""
    net, X, Y = _data()
    eps = 0.01
    H, y, g = _hidden(net, X), Y[:, 0], X[:, 0]
    a = H[g == 0].mean(0) - H[g == 1].mean(0)
    free = np.linalg.lstsq(H, y, rcond=None)[0]
    side = np.sign(a @ free)
    assert abs(a @ free) > eps
    p = H.shape[1]
    kkt = np.block([[2 * H.T @ H, a[:, None]], [a[None, :], np.zeros((1, 1))]])
    expected = np.linalg.solve(kkt, np.r_[2 * H.T @ y, side * eps])[:p]
    bound = cnn.DemographicParity(0, eps)
    new = refit_output_layer(net, X, Y, [bound])
    got = np.r_[new.weights[-1][0], new.biases[-1]]
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert bound.violation(new, X, Y) <= 1e-6
    assert _same_hidden_layers(new, net)


@needs_clarabel
def test_clarabel_and_ipopt_give_the_same_output_layer():
    net, X, Y = _data(seed=1)
    bounds = [cnn.OutputBounds(0.0, 1.0), cnn.DemographicParity(0, 0.02)]
    model = build_output_layer_model(net, X, Y)
    assert _solver(model, "auto").__class__.__name__ == "ConicSolver"  # a QP goes to Clarabel
    ev = Evaluator(X, Y, bounds)
    conic = refit_output_layer(net, X, Y, bounds, solver="convexnn_conic")
    ipopt = refit_output_layer(net, X, Y, bounds, solver="ipopt_casadi")
    assert ev.violation(conic) <= 1e-6 and ev.violation(ipopt) <= 1e-6
    assert ev.loss(conic) == pytest.approx(ev.loss(ipopt), rel=1e-6)
    np.testing.assert_allclose(conic.weights[-1], ipopt.weights[-1], atol=1e-4)


@needs_clarabel
def test_an_inactive_group_loss_bound_gives_least_squares_through_its_cone():
    """Group-loss bounds are convex quadratic rows: 'auto' takes Clarabel (second-order cones).  The
    start breaks the bound; least squares on its hidden features (with the refit's ridge, which these
    ill-conditioned features feel at 1e-3) meets it, so it is the optimum."""
    from convexnn_pyomo.algorithms.refit import REFIT_RIDGE

    net, X, Y = _data(seed=2)
    bound = cnn.GroupLossBounds(0, 0.2)
    model = build_output_layer_model(net, X, Y)
    bound.add_to(model)
    assert _solver(model, "auto").__class__.__name__ == "ConicSolver"
    H = _hidden(net, X)
    free = np.linalg.solve(H.T @ H + REFIT_RIDGE * len(X) * np.eye(H.shape[1]), H.T @ Y[:, 0])
    r = (H @ free - Y[:, 0]) ** 2
    assert bound.violation(net, X, Y) > 0 and max(r[X[:, 0] == 0].mean(), r[X[:, 0] == 1].mean()) < 0.2
    new = refit_output_layer(net, X, Y, [bound])
    assert bound.violation(new, X, Y) <= 1e-6
    np.testing.assert_allclose(np.r_[new.weights[-1][0], new.biases[-1]], free, atol=1e-5)


def _lagrange_refit(H, y, member, kappa):
    r"""min |H w - y|^2 s.t. |H_g w - y_g|^2 <= kappa |G| with the row active: w(lam) solves
    (H^T H + lam H_g^T H_g) w = H^T y + lam H_g^T y_g, and lam > 0 is found by bisection (the group's
    loss falls as lam grows)."""
    Hg, yg = H[member], y[member]

    def w_of(lam):
        return np.linalg.solve(H.T @ H + lam * Hg.T @ Hg, H.T @ y + lam * Hg.T @ yg)

    def excess(lam):
        return np.mean((Hg @ w_of(lam) - yg) ** 2) - kappa

    lo, hi = 0.0, 1.0
    while excess(hi) > 0:
        hi *= 2
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if excess(mid) > 0 else (lo, mid)
    return w_of(hi)


@needs_clarabel
def test_an_active_group_loss_bound_agrees_with_its_lagrange_solution_and_ipopt():
    """The larger group's least-squares loss, lowered by 10 %: the optimum lies on that group's row
    (the other group's row loose at it, checked).  Clarabel's cone, Ipopt and the one-multiplier Lagrange
    solution give the same output layer."""
    net, X, Y = _data(m=120, seed=13)
    H, y, g = _hidden(net, X), Y[:, 0], X[:, 0]
    free = np.linalg.lstsq(H, y, rcond=None)[0]
    losses = {v: np.mean((H[g == v] @ free - y[g == v]) ** 2) for v in (0.0, 1.0)}
    worst = max(losses, key=losses.get)
    kappa = 0.9 * losses[worst]
    assert losses[1 - worst] < kappa
    bound = cnn.GroupLossBounds(0, kappa)
    expected = _lagrange_refit(H, y, g == worst, kappa)
    other = g == 1 - worst  # loose at the Lagrange point: that point is the convex problem's optimum
    assert np.mean((H[other] @ expected - y[other]) ** 2) < kappa
    conic = refit_output_layer(net, X, Y, [bound], solver="convexnn_conic")
    ipopt = refit_output_layer(net, X, Y, [bound], solver="ipopt_casadi")
    best = np.sum((H @ expected - y) ** 2)
    for new in (conic, ipopt):  # the loss to the solvers' tolerances; the weights to about its square root
        w = np.r_[new.weights[-1][0], new.biases[-1]]
        assert np.sum((H @ w - y) ** 2) == pytest.approx(best, rel=1e-7)
        np.testing.assert_allclose(w, expected, atol=2e-4)
        assert bound.group_losses(new, X, Y)[worst] == pytest.approx(kappa, abs=1e-7)
        assert _same_hidden_layers(new, net)


def test_bounds_no_output_layer_meets_give_none():
    net, X, Y = _data(seed=3)
    assert refit_output_layer(net, X, Y, [cnn.OutputBounds(lower=1.0), cnn.OutputBounds(upper=0.0)]) is None


def test_only_constraints_on_the_output_layer_are_refitted():
    assert refit_applies([cnn.OutputBounds(0.0, 1.0), cnn.DemographicParity(0, 0.1), cnn.GroupLossBounds(0, 0.2)])
    assert not refit_applies([cnn.DecisionParity(0, 0.1)])  # linearised: not convex in the outputs
    assert not refit_applies([cnn.OutputBounds(0.0, 1.0), cnn.WeightNormBounds(2.0)])
    assert not refit_applies([])
    net, X, Y = _data()
    with pytest.raises(ValueError, match="on_output_layer"):
        refit_output_layer(net, X, Y, [cnn.DecisionParity(0, 0.1)])


def test_the_refit_ends_the_feasibility_phase_at_its_first_round():
    """Targets at 0 and 3 under outputs in [0, 1]: the first elastic round's step leaves the real
    network outside the bounds; refitting that step's output layer meets them, so phase 1 takes
    one round, and the constrained rounds keep the bounds with a non-increasing loss."""
    net, X, Y = _data(seed=4)
    Y = 3.0 * Y
    bound = cnn.OutputBounds(0.0, 1.0)
    assert bound.violation(net, X, Y) > 0
    res = SequentialRelaxation(hard_constraints=bound, rounds=4).solve(net, X, Y)
    h = res.history
    assert res.feasible and list(h.phase) == [1, 2, 2, 2] and h.violation.iloc[0] <= 1e-6
    # every round's step broke the bounds by the relaxation's gap, and each refit met them
    assert res.message.endswith("output-layer refits: 4 tried, 4 met the constraints")
    assert (h.true_loss[h.status == "accepted"].diff().dropna() <= 1e-9).all()
    off = SequentialRelaxation(hard_constraints=bound, rounds=4, refit_output_layer=False).solve(net, X, Y)
    assert off.history.violation.iloc[0] > 1e-6  # without it the first round's network still breaks them


class _Infeasible(StepProposal):
    """Proposes a fixed network (one that breaks the bounds)."""

    name = "fixed"

    def __init__(self, net):
        self.net = net

    def propose(self, current, candidate, ev, previous_steps):
        return Proposal(1.0, self.net, ev.loss(self.net), ev.violation(self.net))


def test_an_infeasible_proposal_is_replaced_by_its_refit():
    net, X, Y = _data(seed=5)
    bounds = [cnn.OutputBounds(0.0, 1.0), cnn.DemographicParity(0, 0.05)]
    ev = Evaluator(X, Y, bounds)
    far = net.copy()
    far.biases[-1] = far.biases[-1] + 5.0  # every output above 1
    assert ev.violation(far) > 1
    prop = OutputLayerStep(_Infeasible(far)).propose(net, far, ev, [])
    assert prop.violation <= 1e-6 and prop.step == 1.0
    assert _same_hidden_layers(prop.network, far)
    kept = OutputLayerStep(_Infeasible(net.copy())).propose(net, net, Evaluator(X, Y, [cnn.OutputBounds(-1e3, 1e3)]), [])
    assert kept.network is not None and np.array_equal(kept.network.weights[-1], net.weights[-1])  # feasible: untouched


def test_a_run_out_of_time_gets_no_refit():
    """The run's clock bounds the refit: with nothing left the proposal stays as it was, with time
    left it is refitted as without a clock."""
    net, X, Y = _data(seed=5)
    ev = Evaluator(X, Y, [cnn.OutputBounds(0.0, 1.0), cnn.DemographicParity(0, 0.05)])
    far = net.copy()
    far.biases[-1] = far.biases[-1] + 5.0
    late = OutputLayerStep(_Infeasible(far), time_left=lambda: 0.0).propose(net, far, ev, [])
    assert late.violation > 1 and late.network is far
    timely = OutputLayerStep(_Infeasible(far), time_left=lambda: 60.0).propose(net, far, ev, [])
    assert timely.violation <= 1e-6 and _same_hidden_layers(timely.network, far)


def test_a_large_nonquadratic_refit_is_skipped_under_auto(monkeypatch):
    """Beyond NLP_REFIT_MAX_SAMPLES a problem Clarabel does not take (here without Clarabel) gets no
    refit with solver='auto'; with Clarabel, group-loss bounds are refitted at any size."""
    from convexnn_pyomo.algorithms import refit
    from convexnn_pyomo.solvers import registry

    net, X, Y = _data(seed=2)
    monkeypatch.setattr(refit, "NLP_REFIT_MAX_SAMPLES", 50)
    if check_solver("convexnn_conic")[0]:
        assert refit_output_layer(net, X, Y, [cnn.GroupLossBounds(0, 0.2)]) is not None  # Clarabel: no limit
    real = registry.check_solver
    monkeypatch.setattr(registry, "check_solver", lambda name: (False, "absent") if name == "convexnn_conic" else real(name))
    assert refit_output_layer(net, X, Y, [cnn.GroupLossBounds(0, 0.2)]) is None  # 80 samples > 50
    assert refit_output_layer(net, X, Y, [cnn.GroupLossBounds(0, 0.2)], solver="ipopt_casadi") is not None


@pytest.mark.parametrize("solver", [pytest.param("convexnn_conic", marks=needs_clarabel), "ipopt_casadi"])
def test_one_built_problem_refits_other_hidden_layers_as_a_fresh_one(solver):
    """The problem built at one network, refitted at another (new x^L in the mutable Params): the
    same output layer as a problem built at that other network."""
    from convexnn_pyomo.algorithms.refit import OutputLayerProblem

    net, X, Y = _data(seed=6)
    other = cnn.Network([3, 4, 1], ["sigmoid", "identity"]).init_he(7)
    bounds = [cnn.OutputBounds(0.0, 1.0), cnn.DemographicParity(0, 0.02)]
    problem = OutputLayerProblem(net, X, Y, bounds, solver=solver)
    first, reused = problem.refit(net), problem.refit(other)
    fresh = refit_output_layer(other, X, Y, bounds, solver=solver)
    assert _same_hidden_layers(reused, other) and not np.allclose(first.weights[-1], reused.weights[-1])
    np.testing.assert_allclose(np.r_[reused.weights[-1][0], reused.biases[-1]],
                               np.r_[fresh.weights[-1][0], fresh.biases[-1]], atol=1e-6)


@needs_clarabel
def test_a_row_clarabel_refuses_sends_the_refit_to_the_nlp_solver():
    """A user's nonconvex quadratic row on the output layer: 'auto' must not pick Clarabel (which
    refuses it with an error inside Algorithm 1) but the NLP solver."""
    import pyomo.environ as pyo

    net, X, Y = _data(seed=2)
    model = build_output_layer_model(net, X, Y)
    out = model.layer[net.n_layers]
    model.saddle = pyo.Constraint(expr=out.w[0, 0] * out.w[0, 1] <= 1.0)
    assert _solver(model, "auto").__class__.__name__ != "ConicSolver"
    del model.saddle
    assert _solver(model, "auto").__class__.__name__ == "ConicSolver"


def test_a_refit_no_solver_takes_is_counted_as_skipped(monkeypatch):
    """Beyond NLP_REFIT_MAX_SAMPLES without Clarabel the proposal stays as it was and the run's log
    says why no refit ran; two proposals sharing a log build the problem once."""
    from convexnn_pyomo.algorithms import refit
    from convexnn_pyomo.algorithms.refit import RefitLog
    from convexnn_pyomo.solvers import registry

    net, X, Y = _data(seed=5)
    ev = Evaluator(X, Y, [cnn.OutputBounds(0.0, 1.0), cnn.DemographicParity(0, 0.05)])
    far = net.copy()
    far.biases[-1] = far.biases[-1] + 5.0
    real = registry.check_solver
    monkeypatch.setattr(registry, "check_solver", lambda name: (False, "absent") if name == "convexnn_conic" else real(name))
    monkeypatch.setattr(refit, "NLP_REFIT_MAX_SAMPLES", 50)
    builds = []
    real_init = refit.OutputLayerProblem.__init__
    monkeypatch.setattr(refit.OutputLayerProblem, "__init__", lambda self, *a, **k: builds.append(1) or real_init(self, *a, **k))
    log = RefitLog()
    first, second = OutputLayerStep(_Infeasible(far), log=log), OutputLayerStep(_Infeasible(far), log=log)
    for step in (first, second, first):
        assert step.propose(net, far, ev, []).network is far
    assert (log.tried, log.met, log.skipped) == (0, 0, 3) and "no solver takes" in log.summary()
    assert log.problem is not None and len(builds) == 1  # built once for both proposals


@needs_clarabel
def test_a_quadratic_row_with_an_infinite_lower_bound_still_goes_to_clarabel():
    """Pyomo keeps a bound of -inf: such a row is bounded above only, so it is conic."""
    import pyomo.environ as pyo

    net, X, Y = _data(seed=2)
    model = build_output_layer_model(net, X, Y)
    out = model.layer[net.n_layers]
    model.ring = pyo.Constraint(expr=pyo.inequality(-float("inf"), out.w[0, 0] ** 2 + out.w[0, 1] ** 2, 100.0))
    assert _solver(model, "auto").__class__.__name__ == "ConicSolver"


@pytest.mark.parametrize("solver", [pytest.param("convexnn_conic", marks=needs_clarabel), "ipopt_casadi"])
def test_collinear_hidden_features_give_the_least_norm_output_layer(solver):
    """Raw inputs near 1000 saturate every hidden sigmoid the same way on every sample: all rows of
    the hidden features equal one vector h, so every output layer with h.w + b = mean(y) is a
    least-squares optimum.  The refit's ridge takes the one of least norm, mean(y) (h, 1) / |(h, 1)|^2
    (without it Clarabel returned weights of order 1e10 on such data, docs/algorithm.md)."""
    rng = np.random.default_rng(9)
    X = 1000.0 + rng.random((60, 3))
    Y = (rng.random((60, 1)) < 0.4).astype(float)
    net = cnn.Network([3, 4, 1], ["sigmoid", "identity"]).init_he(9)
    H = net.forward_pass(X).x[1].T
    assert np.ptp(H, axis=0).max() < 1e-12  # one hidden vector for every sample
    h1 = np.r_[H[0], 1.0]
    expected = Y.mean() * h1 / (h1 @ h1)
    new = refit_output_layer(net, X, Y, [cnn.OutputBounds(0.0, 1.0)], solver=solver)
    np.testing.assert_allclose(np.r_[new.weights[-1][0], new.biases[-1]], expected, atol=1e-5)
    assert new.loss(X, Y) == pytest.approx(float(((Y - Y.mean()) ** 2).sum()), rel=1e-7)
