"""Relaxation bounds, Theorem 1 (exactness for large eta), Algorithm 1, hard constraints, CLI."""

import json

import numpy as np
import pandas as pd
import pyomo.environ as pyo
import pytest
from conftest import requires_module

import convexnn_pyomo as cnn
from convexnn_pyomo.constraints import ClasswiseMisfitBounds
from convexnn_pyomo.model import var_matrix
from convexnn_pyomo.solvers.arrow import NotSeparableError
from convexnn_pyomo.algorithms import AdaptiveSchedule, PaperSchedule, PyomoRounds, SequentialRelaxation
from convexnn_pyomo.training import HISTORY_COLUMNS, train

SOLVER = "ipopt_casadi"


def _solve(model):
    res = pyo.SolverFactory(SOLVER).solve(model)
    assert pyo.check_optimal_termination(res), res.solver.message
    return res


def test_large_eta_makes_the_relaxation_exact(small_problem):
    """Theorem 1: with eta large the convex solution satisfies (2b)-(2c); checked by the numpy
    forward pass of the solution's weights, not by the solver's own variables."""
    net, X, Y = small_problem
    model = cnn.build_training_model(net, X, Y)
    pyo.TransformationFactory("convexnn.parabolic").apply_to(model)
    eta = 10 * np.abs(net.predict(X) - Y[:, None]).sum()  # above the measured threshold ||f - y||_1
    pyo.TransformationFactory("convexnn.regularize").apply_to(model, eta=eta, reference=net)
    _solve(model)
    sol = cnn.network_from_model(model)
    fp = sol.forward_pass(X)
    for blk in cnn.layer_blocks(model):
        l = blk.index_l
        z = var_matrix(blk.z, fp.z[l - 1].shape)
        np.testing.assert_allclose(z, fp.z[l - 1], atol=1e-6)
        if not blk.is_output:
            np.testing.assert_allclose(var_matrix(blk.x, fp.x[l].shape), fp.x[l], atol=1e-6)
    # Theorem 1, second part: the new weights are no worse than the reference
    assert sol.loss(X, Y) <= net.loss(X, Y) + 1e-8


def test_small_eta_relaxation_is_not_exact(small_problem):
    """The other side of the threshold: with tiny eta the relaxed solution leaves (2c)."""
    net, X, Y = small_problem
    model = cnn.build_training_model(net, X, Y)
    pyo.TransformationFactory("convexnn.parabolic").apply_to(model)
    pyo.TransformationFactory("convexnn.regularize").apply_to(model, eta=1e-3, reference=net)
    _solve(model)
    assert max(cnn.constraint_gaps(model)) > 1e-3


def test_relaxation_bound_is_below_exact_objective_with_hard_constraints(small_problem):
    """eta = 0: the relaxation's optimum bounds the exact objective at any feasible point."""
    net, X, Y = small_problem
    for seed in range(3):
        other = cnn.Network(net.sizes, net.activations).init_he(seed)
        cons = ClasswiseMisfitBounds(kappa=None, kappa_factor=1.0)
        # kappa from this network's own misfit (x1.01): its forward pass is feasible for (19)
        cons = ClasswiseMisfitBounds(kappa={c: 1.01 * v for c, v in cons.misfits(other, X, Y).items()})
        model = cnn.build_training_model(other, X, Y)
        pyo.TransformationFactory("convexnn.parabolic").apply_to(model)
        cons.add_to(model)
        assert cons.violation(other, X, Y) == 0.0
        _solve(model)
        assert pyo.value(model.objective) <= other.loss(X, Y) + 1e-6


@pytest.mark.parametrize(
    "sizes, activations",
    [([3, 4, 1], ["sigmoid", "identity"]), ([4, 3, 3, 1], ["sigmoid", "sigmoid", "identity"]),
     ([3, 4, 2], ["tanh", "identity"]), ([3, 3, 3, 1], ["softplus", "sigmoid", "identity"])],
)
def test_exactness_weights_make_eta_2_exact(sizes, activations):
    """Theorem 1 at the default schedule's weights: with mu from the first-order thresholds and
    eta = 2 the round is exact (numpy forward pass of the solution's weights reproduces the solver's
    z^L) and no worse than the reference; with the same weights and eta = 1e-3 it is not exact."""
    rng = np.random.default_rng(11)
    for seed in range(2):
        net = cnn.Network(sizes, activations).init_he(seed)
        X, Y = rng.uniform(size=(15, sizes[0])), rng.uniform(size=(15, sizes[-1]))
        gaps = {}
        for eta in (2.0, 1e-3):
            model = cnn.build_training_model(net, X, Y, reduction="mean")
            pyo.TransformationFactory("convexnn.parabolic").apply_to(model)
            pyo.TransformationFactory("convexnn.regularize").apply_to(model, eta=eta, reference=net)
            weights = cnn.exactness_weights(model, net)
            assert set(weights["mu_z"]) == set(range(1, len(sizes))) and min(weights["mu_z"].values()) > 0
            cnn.update_reference(model, net, **weights)
            _solve(model)
            gaps[eta] = max(cnn.constraint_gaps(model))
            if eta == 2.0:
                sol = cnn.network_from_model(model)
                out = model.layer[len(sizes) - 1]
                np.testing.assert_allclose(var_matrix(out.z, (sizes[-1], 15)), sol.forward_pass(X).z[-1], atol=1e-5)
                assert sol.loss(X, Y) <= net.loss(X, Y) + 1e-8
        assert gaps[2.0] <= 1e-5 and gaps[1e-3] > 1e-3, gaps


def test_update_reference_rejects_bad_weights(small_problem):
    net, X, Y = small_problem
    model = cnn.build_training_model(net, X, Y, reduction="mean")
    pyo.TransformationFactory("convexnn.parabolic").apply_to(model)
    pyo.TransformationFactory("convexnn.regularize").apply_to(model, eta=1.0, reference=net)
    with pytest.raises(ValueError, match="positive"):
        cnn.update_reference(model, net, mu_z=-1.0)
    with pytest.raises(ValueError, match="one value per layer"):
        cnn.update_reference(model, net, mu_z=[1.0, 2.0])
    with pytest.raises(ValueError, match="no value for layer 2"):
        cnn.update_reference(model, net, mu_p={1: 1.0})
    cnn.update_reference(model, net, mu_z=[1.0, 2.0, 3.0], mu_p={1: 4.0, 2: 5.0})
    assert [pyo.value(model.regularization.mu_z[l]) for l in (1, 2, 3)] == [1.0, 2.0, 3.0]
    assert pyo.value(model.regularization.mu_p[2]) == 5.0


@pytest.mark.parametrize("schedule", ["paper", "default"])
def test_accepted_true_losses_never_increase(small_problem, schedule):
    net, X, Y = small_problem
    res = train(net, X, Y, schedule=schedule, rounds=6, round_solver=SOLVER)
    h = res.history
    assert list(h.columns) == HISTORY_COLUMNS and len(h) >= 1
    acc = h.loc[h.status == "accepted", "true_loss"].to_numpy()
    losses = np.r_[res.initial_loss, acc]
    assert np.all(np.diff(losses) <= 1e-9), losses
    assert res.final_loss == pytest.approx(res.network.loss(X, Y))
    assert res.final_loss <= res.initial_loss


def test_default_schedule_makes_real_progress(small_problem):
    net, X, Y = small_problem
    res = train(net, X, Y, rounds=8, round_solver=SOLVER)
    assert res.final_loss < 0.8 * res.initial_loss, res.history


@requires_module("torch")
def test_default_schedule_reaches_adams_loss_on_breast_cancer():
    """Issue 2's yardstick at m = 100: the default schedule reaches the loss of 2,000 full-batch
    Adam steps (lr 0.005) from the same He initialisation, within 20 convex rounds (measured: 12)."""
    from convexnn_pyomo.baselines import train_adam
    from convexnn_pyomo.data import load_breast_cancer

    ds = load_breast_cancer()
    idx = np.random.default_rng(0).choice(ds.m, 100, replace=False)
    X, Y = ds.X[idx], ds.y[idx]
    net = cnn.Network([8, 6, 6, 1], ["sigmoid", "sigmoid", "identity"]).init_he(0)
    target = float(train_adam(net, X, Y, steps=2000, lr=0.005).losses[-1])
    res = train(net, X, Y, rounds=20, target_loss=target, round_solver=SOLVER)
    assert res.status == "target_reached", (target, res.history[["round", "true_loss", "status"]])
    assert res.network.loss(X, Y) <= target


def test_hard_constraints_hold_for_the_real_network(small_problem):
    """(19) with kappa below the initial misfit: the returned weights satisfy it by forward pass."""
    net, X, Y = small_problem
    cons = ClasswiseMisfitBounds(kappa_factor=0.5)
    before = cons.misfits(net, X, Y)
    kappas = cons.kappas(Y)
    assert any(before[c] > kappas[c] for c in kappas), "the test needs an initially violated bound"
    res = train(net, X, Y, rounds=15, hard_constraints=cons, round_solver=SOLVER)
    assert res.violation <= 1e-6, res.history
    after = cons.misfits(res.network, X, Y)
    assert all(after[c] <= kappas[c] + 1e-6 for c in kappas)


def test_callable_hard_constraint_on_weights(small_problem):
    """A user callable that bounds the output weights; checked on the returned network."""
    net, X, Y = small_problem

    def bound_output_weights(model):
        out = model.layer[3]
        model.wbound = pyo.Constraint(out.inputs, rule=lambda m, k: out.w[0, k] <= 0.3)

    assert np.any(net.weights[2] > 0.3), "the test needs an initially violated bound"
    res = train(net, X, Y, rounds=6, hard_constraints=bound_output_weights, round_solver=SOLVER)
    assert res.violation <= 1e-6, res.history
    assert np.all(res.network.weights[2] <= 0.3 + 1e-6)
    assert res.feasible and "violated" not in res.message


def test_solver_failure_keeps_best_weights(small_problem):
    net, X, Y = small_problem
    # without stalled iterates: a one-iteration solve's point may meet the rows (then it is a candidate)
    res = train(net, X, Y, rounds=5, round_solver=PyomoRounds(solver=SOLVER, options={"max_iter": 1},
                                                             stalled_iterates=False))
    assert res.status == "solver_failed" and res.termination == "iterationLimit"
    assert res.history.status.iloc[-1] == "solver_failed" and res.history.termination.iloc[-1] == "iterationLimit"
    np.testing.assert_array_equal(res.network.get_flat(), net.get_flat())  # nothing accepted: the start


def test_train_rejects_bad_arguments(small_problem):
    net, X, Y = small_problem
    with pytest.raises(ValueError, match="schedule"):
        train(net, X, Y, schedule="fast")
    with pytest.raises(ValueError, match="eta"):
        AdaptiveSchedule(eta=-1.0)
    with pytest.raises(ValueError, match="eta floor"):
        AdaptiveSchedule(eta_floor=0.0)
    with pytest.raises(ValueError, match="mu must be three positive numbers"):
        AdaptiveSchedule(mu=(1.0, -1.0, 1.0))
    with pytest.raises(ValueError, match="mu must be three positive numbers"):
        PaperSchedule(mu=2.0)
    # the options train took before the schedule and round-solver objects
    for removed in ("method", "eta", "solver", "solver_options", "backend", "relaxation"):
        with pytest.raises(TypeError, match=removed):
            train(net, X, Y, **{removed: 1})
    with pytest.raises(ValueError, match="eta"):
        SequentialRelaxation(eta=2.0)
    with pytest.raises(RuntimeError, match="not available"):
        train(net, X, Y, round_solver="no_such_solver_xyz")


def test_cli_train_writes_weights_history_and_summary(tmp_path, capsys):
    from convexnn_pyomo.cli import main

    out = tmp_path / "run"
    code = main(["train", "--dataset", "breast_cancer", "--samples", "25", "--hidden", "4,3", "--rounds", "3",
                 "--seed", "1", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.count("round ") >= 1
    hist = pd.read_csv(out / "history.csv")
    assert list(hist.columns) == HISTORY_COLUMNS and 1 <= len(hist) <= 3
    summary = json.loads((out / "summary.json").read_text())
    for key in ("initial_loss", "final_loss", "rounds", "seconds", "schedule", "solver"):
        assert key in summary
    net = cnn.Network.load(out / "weights.npz")
    assert net.sizes == [8, 4, 3, 1]
    assert summary["final_loss"] <= summary["initial_loss"]


def test_cli_reports_bad_input_without_traceback(tmp_path, capsys):
    from convexnn_pyomo.cli import main

    csv = tmp_path / "d.csv"
    csv.write_text("a,b,label\n1,2,0\n3,4,1\n")
    assert main(["train", "--data", str(csv), "--target", "nope", "--out", str(tmp_path / "o")]) == 2
    assert "no target column 'nope'" in capsys.readouterr().err


def test_warm_start_runs_adam_first(small_problem):
    pytest.importorskip("torch", reason="the warm start uses the PyTorch Adam baseline")
    net, X, Y = small_problem
    res = SequentialRelaxation(rounds=2, warm_start=50).solve(net, X, Y)
    h = res.history
    assert h.status.iloc[0] == "warm_start" and h["round"].iloc[0] == 0
    assert h.true_loss.iloc[0] < res.initial_loss  # Adam made progress before the rounds
    assert res.rounds == 2 and res.final_loss <= h.true_loss.iloc[0] + 1e-12


def test_time_limit_also_bounds_the_solve_in_progress(small_problem):
    net, X, Y = small_problem
    import time as _time

    t0 = _time.perf_counter()
    # stop rules off (20 samples are interpolated within 3 s): only the time limit can end the run
    res = train(net, X, Y, rounds=300, time_limit=3.0, schedule=AdaptiveSchedule(loss_fraction=1e-300, patience=10**6))
    assert _time.perf_counter() - t0 < 3.0 + 10.0  # one model build and translation may come on top
    assert res.status == "time_limit"
    acc = res.history[res.history.status == "accepted"]
    assert res.final_loss == pytest.approx(acc.true_loss.iloc[-1] if len(acc) else res.initial_loss)


def test_exact_rounds_report_a_relaxed_objective_not_below_their_true_loss(small_problem):
    """On the feasible set r >= 0, so an exact round's relaxed objective (loss + eta r) is at least
    the true loss of its own solution (the paper schedule takes that solution as it is).  Ipopt's
    default bound_relax_factor (1e-8) relaxes W, X >= 0 and broke this (25.1375 < 25.1628, m = 100);
    the rounds run with bound_relax_factor = 0."""
    net, X, Y = small_problem
    h = train(net, X, Y, schedule=PaperSchedule(eta=1000.0), rounds=2, round_solver=SOLVER).history
    exact = h[(h.bilinear_gap <= 1e-6) & (h.activation_gap <= 1e-6)]
    assert len(exact) == 2, h
    assert (exact.relaxed_objective >= exact.true_loss * (1 - 1e-9)).all(), h
    relaxed = train(net, X, Y, schedule=PaperSchedule(eta=1000.0), rounds=1,
                    round_solver=PyomoRounds(solver=SOLVER, options={"bound_relax_factor": 1e-8})).history
    assert relaxed.relaxed_objective.iloc[0] < relaxed.true_loss.iloc[0]  # the defect, with Ipopt's default


def test_adaptive_schedule_stops_once_the_data_are_interpolated(small_problem):
    """The README's `convexnn train` example ran 300 rounds after interpolating its data (loss 2e-6
    by round 10): the adaptive schedule stops when the loss falls below loss_fraction (1e-5) of
    the smaller of the initial loss and the best constant output's, with status converged, long
    before the round limit."""
    net, X, Y = small_problem  # 103 weights, 20 samples: interpolation is reachable
    res = train(net, X, Y, rounds=60, round_solver=SOLVER)
    reference = min(res.initial_loss, float(((Y - Y.mean()) ** 2).sum()))
    assert res.status == "converged", res.history
    assert res.final_loss <= 1e-5 * reference
    assert res.rounds < 60 and "below" in res.message
    # one round less would not have stopped: the rule fired at the first round below the fraction
    before = res.history[res.history.status == "accepted"].true_loss.iloc[:-1]
    assert (before > 1e-5 * reference).all()


def test_an_absurd_start_does_not_make_the_relative_stop_fire():
    """Output biases at 1e4 (as raw, unscaled data give): 1e-5 of the initial loss is a loss any
    round reaches, and the run stopped as converged two rounds in, far above the best constant
    output's loss.  The stop's scale is the smaller of the two."""
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(60, 3))
    Y = X[:, :1] + 0.3 * rng.normal(size=(60, 1))  # noisy: no interpolation
    net = cnn.Network([3, 4, 1], "sigmoid").init_he(0)
    net.biases[-1] += 1e4
    res = train(net, X, Y, rounds=6)
    constant = float(((Y - Y.mean()) ** 2).sum())
    assert res.final_loss < constant  # trained past the constant output ...
    assert res.final_loss < 1e-5 * res.initial_loss  # where the old rule stopped the run
    assert res.rounds == 6 and "below" not in res.message  # the new one goes on: the data are not interpolated


def test_the_stop_scale_is_the_smaller_of_the_initial_and_the_constant_loss():
    from convexnn_pyomo.algorithms.schedules import RoundOutcome

    s = AdaptiveSchedule()  # loss_fraction 1e-5

    def scale(constant):
        return s.reference_loss(RoundOutcome(True, True, 0.0, 1.0, 10.0, constant_loss=constant))

    assert scale(None) == 10.0 and scale(20.0) == 10.0 and scale(1.0) == 1.0


@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_constant_targets_still_stop_as_converged(loss):
    """A constant fits constant targets (one class): no constant scale (Evaluator.constant_loss None),
    so the run stops once 1e-5 of the initial loss is reached; with the constant's loss, ~0, as the
    scale it ran every round."""
    from convexnn_pyomo.algorithms.steps import Evaluator
    from convexnn_pyomo.losses import get_loss

    rng = np.random.default_rng(0)
    X = rng.uniform(size=(40, 3))
    Y = np.full((40, 1), 0.3 if loss == "squared" else 1.0)
    assert Evaluator(X, Y, loss_function=get_loss(loss)).constant_loss() is None
    res = train(cnn.Network([3, 4, 1], "sigmoid").init_he(0), X, Y, loss=loss, rounds=15)
    assert res.status == "converged" and res.rounds < 15 and "below" in res.message


def test_targets_with_a_large_offset_keep_the_constant_scale():
    """Northings near 5.3e6 varying by 100: the best constant's loss is tiny beside the zero output's,
    yet a constant does not fit them; the scale stays the constant's (the review's case stopped as
    converged after one round, above the constant's loss)."""
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(60, 3))
    Y = 5.3e6 + 100.0 * np.sin(3.0 * X[:, :1]) + rng.normal(size=(60, 1))
    from convexnn_pyomo.algorithms.steps import Evaluator

    assert Evaluator(X, Y).constant_loss() == pytest.approx(float(((Y - Y.mean()) ** 2).sum()))
    res = train(cnn.Network([3, 4, 1], "sigmoid").init_he(0), X, Y, rounds=3)
    assert "below" not in res.message and res.rounds == 3


def test_adaptive_stop_rule_counts_exact_small_improvements_in_a_row():
    from convexnn_pyomo.algorithms.schedules import RoundOutcome

    s = AdaptiveSchedule(rel_tol=1e-3, patience=2, loss_fraction=1e-9)
    small_exact = RoundOutcome(accepted=True, exact=True, improvement=1e-4, loss=1.0, initial_loss=10.0)
    small_inexact = RoundOutcome(accepted=True, exact=False, improvement=1e-4, loss=1.0, initial_loss=10.0)
    big = RoundOutcome(accepted=True, exact=True, improvement=0.1, loss=1.0, initial_loss=10.0)
    assert s.converged(small_exact) is None
    assert s.converged(small_inexact) is None  # an inexact round resets the count
    assert s.converged(small_exact) is None
    assert s.converged(big) is None  # so does a real improvement
    assert s.converged(small_exact) is None and "2 exact rounds" in s.converged(small_exact)


def test_algorithm_class_and_train_are_one_path(small_problem):
    """`train` is a thin wrapper: the class with the same options gives the same history."""
    net, X, Y = small_problem
    a = train(net, X, Y, rounds=3, round_solver=SOLVER)
    algo = SequentialRelaxation(rounds=3)
    b = algo.solve(net, X, Y, round_solver=SOLVER)
    cols = ["round", "true_loss", "eta", "status", "step"]
    pd.testing.assert_frame_equal(a.history[cols], b.history[cols], rtol=1e-6)
    assert algo.config.rounds == 3 and algo.config.schedule.name == "adaptive"
    with pytest.raises(ValueError, match="rounds"):
        SequentialRelaxation(rounds=0)


def test_mccormick_rounds_train_inside_the_weight_box(small_problem):
    """relaxation='mccormick': the regularizer is defined for it (exact proximal terms); the run
    keeps accepted losses monotone and the weights inside convexnn.bound's box (5)."""
    net, X, Y = small_problem
    res = train(net, X, Y, rounds=3, round_solver=PyomoRounds(solver=SOLVER, relaxation="mccormick"))
    acc = res.history.loc[res.history.status == "accepted", "true_loss"].to_numpy()
    assert len(acc) >= 1 and np.all(np.diff(np.r_[res.initial_loss, acc]) <= 1e-9)
    assert res.final_loss < res.initial_loss
    assert max(np.abs(w).max() for w in res.network.weights) <= 5.0 + 1e-6
    with pytest.raises(ValueError, match="relaxation"):
        PyomoRounds(relaxation="sdp")


def test_schur_and_pyomo_round_solvers_train_alike(small_problem):
    """Two paths to the same rounds: the Pyomo model on every sample (solved by Ipopt) and the
    structured round (the default, solved by the Schur interior point) give the same accepted
    losses and eta schedule; the Pyomo rounds keep the model on every sample, the structured round
    its template."""
    net, X, Y = small_problem
    a = train(net, X, Y, rounds=4, round_solver=SOLVER)
    b = train(net, X, Y, rounds=4)
    assert (a.solver, b.solver) == (SOLVER, "schur")
    assert len(list(a.model.samples)) == len(Y) and len(list(b.model.samples)) < len(Y)
    cols = ["round", "status", "eta"]
    pd.testing.assert_frame_equal(a.history[cols], b.history[cols])
    # the two solvers' stopping tolerances: after 4 rounds the losses agree to a relative 3e-5, the
    # weights to an absolute 3e-5
    np.testing.assert_allclose(a.history.true_loss, b.history.true_loss, rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(a.network.get_flat(), b.network.get_flat(), rtol=1e-3, atol=1e-4)

    def couple(model):  # a product of two samples' outputs: neither a per-sample row nor a sum over samples
        out = cnn.layer_blocks(model)[-1]
        model.couple = pyo.Constraint(expr=out.z[0, min(model.samples)] * out.z[0, max(model.samples)] <= 10.0)

    with pytest.raises(NotSeparableError, match="couples samples"):  # asked for, the structured round refuses it
        train(net, X, Y, rounds=1, hard_constraints=couple, round_solver="schur")
    with pytest.warns(UserWarning, match="solving the Pyomo model on every sample instead"):  # auto falls back
        fallback = train(net, X, Y, rounds=1, hard_constraints=couple)
    assert fallback.solver == SOLVER and len(list(fallback.model.samples)) == len(Y)
    assert len(train(net, X, Y, rounds=1, hard_constraints=couple, round_solver=SOLVER).history) == 1  # Pyomo takes it


def test_the_adaptive_schedules_eta_floor():
    """eta is divided by 1.5 after an exact accepted round down to the floor (1 with the exactness
    weights, ``eta_floor`` when given), doubled after an inexact one and multiplied by 4 after a
    rejected one."""
    from convexnn_pyomo.algorithms.schedules import RoundOutcome

    exact = RoundOutcome(accepted=True, exact=True, improvement=1.0, loss=1.0, initial_loss=2.0)
    inexact = RoundOutcome(accepted=True, exact=False, improvement=1.0, loss=1.0, initial_loss=2.0)
    rejected = RoundOutcome(accepted=False, exact=True, improvement=0.0, loss=1.0, initial_loss=2.0)
    default, low = AdaptiveSchedule(), AdaptiveSchedule(eta=0.5, eta_floor=0.1)
    assert default.eta_floor == 1.0 and default.next_eta(1.2, exact) == 1.0
    assert AdaptiveSchedule(mu=(1.0, 1.0, 1.0), eta=5.0).eta_floor == 5.0  # fixed mu: eta is not a factor
    assert low.next_eta(0.5, exact) == pytest.approx(1 / 3) and low.next_eta(0.12, exact) == 0.1
    assert low.next_eta(0.5, inexact) == 1.0 and low.next_eta(0.5, rejected) == 2.0
