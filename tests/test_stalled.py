"""A Schur round that stalls short of its tolerances at a point meeting its rows: that point is the
round's candidate (``SchurRounds(stalled_iterates=True)``, the default), judged by the real
network's loss and violation like any round's; no certificate and no convergence test uses it."""

import numpy as np
import pytest

import convexnn_pyomo as cnn
from convexnn_pyomo.algorithms import LineSearch, SequentialRelaxation
from convexnn_pyomo.algorithms.results import RunStatus
from convexnn_pyomo.algorithms.round_solvers import SchurRounds
from convexnn_pyomo.algorithms.rounds import STALLED, RoundSolve, StructuredRound
from convexnn_pyomo.algorithms.schedules import AdaptiveSchedule, PaperSchedule, RoundOutcome
from convexnn_pyomo.transformations import elastic


def _data(m=80, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(m, 3))
    Y = np.clip(X[:, :1] + 0.2 * X[:, 1:2] + 0.05 * rng.normal(size=(m, 1)), 0.0, 1.0)
    return cnn.Network([3, 4, 1], ["sigmoid", "identity"]).init_he(0), X, Y


def _run(stalled_iterates: bool):
    net, X, Y = _data()
    bound = cnn.OutputBounds(0.0, 1.0)
    # 10 interior-point iterations: every solve ends at max_iter with its rows met to 1e-5, short of 1e-8
    rounds = SchurRounds(options={"max_iter": 10}, stalled_iterates=stalled_iterates)
    return SequentialRelaxation(hard_constraints=bound, rounds=4, round_solver=rounds).solve(net, X, Y), bound, X, Y


def test_stalled_solves_give_candidates_the_real_network_is_judged_by():
    res, bound, X, Y = _run(True)
    assert res.status == RunStatus.ROUND_LIMIT and res.feasible
    assert bound.violation(res.network, X, Y) <= 1e-6
    assert res.history.message.str.startswith(STALLED).all()
    assert (res.history.status == "accepted").sum() >= 2
    h = res.history
    losses = h.true_loss[h.status == "accepted"].to_numpy()  # a rejected row records its proposal's loss
    assert np.all(np.diff(losses) <= 1e-12) and losses[-1] < 0.5 * res.initial_loss
    assert res.final_loss == losses[-1]
    assert f"{len(res.history)} rounds took a stalled solve's last iterate" in res.message


def test_without_stalled_iterates_the_same_solves_fail_the_run():
    res, _, _, _ = _run(False)
    assert res.status == RunStatus.SOLVER_FAILED and not res.history.message.str.startswith(STALLED).any()


def test_a_stalled_solve_certifies_nothing(monkeypatch):
    """The least violation from a stalled elastic solve only bounds the least violation from above:
    no certificate, where the same number from a finished solve is one."""
    net, X, Y = _data(m=20)
    rnd = StructuredRound(net, X, Y, "mean", [cnn.OutputBounds(0.0, 1.0)], 2.0, (1.0, 1.0, 1.0))
    monkeypatch.setattr(rnd, "relaxed_objective", lambda: 0.3)
    monkeypatch.setattr(elastic, "violations", lambda model: {"OutputBounds": 0.3})
    for stalled, certified in ((True, False), (False, True)):
        monkeypatch.setattr(rnd, "_certificate_solve",
                            lambda *a, s=stalled: RoundSolve(True, "optimal", False, False, 5, 0.1, stalled=s))
        assert bool(rnd.certify_infeasible(60.0, 1e-6)) is certified


@pytest.mark.parametrize("schedule", [AdaptiveSchedule(), PaperSchedule()])
def test_stalled_rounds_never_count_towards_convergence(schedule):
    small = {"accepted": True, "exact": True, "improvement": 0.0, "loss": 1.0, "initial_loss": 2.0}
    assert all(schedule.converged(RoundOutcome(**small, stalled=True)) is None for _ in range(5))
    assert any(schedule.converged(RoundOutcome(**small)) is not None for _ in range(5))


# -- the Pyomo round (PyomoRounds' stalled_iterates) ------------------------------------------------


def _pyomo_run(max_iter: int, stalled_iterates: bool, stalled_tol: float = 1e-6):
    from convexnn_pyomo.algorithms.round_solvers import PyomoRounds

    net, X, Y = _data()
    bound = cnn.OutputBounds(0.0, 1.0)
    rounds = PyomoRounds(options={"max_iter": max_iter}, stalled_iterates=stalled_iterates, stalled_tol=stalled_tol)
    # the line search's path, on which every round of this start stalls at 8 iterations (the test is
    # of the round solver; the feasible subspace search's longer steps reach a round that finishes)
    return SequentialRelaxation(hard_constraints=bound, rounds=4, round_solver=rounds,
                                schedule=_LineSearchSchedule()).solve(net, X, Y), bound, X, Y


class _LineSearchSchedule(AdaptiveSchedule):
    def step_proposal(self, has_constraints):
        return LineSearch()


def test_a_pyomo_round_at_its_iteration_limit_gives_its_point_when_it_meets_the_rows():
    """Ipopt stopped after 8 iterations, every row and bound of the round met to 1e-6: each round's
    point is a candidate, judged and accepted as any; without stalled iterates the run fails."""
    res, bound, X, Y = _pyomo_run(8, True)
    assert res.status == RunStatus.ROUND_LIMIT and res.feasible and bound.violation(res.network, X, Y) <= 1e-6
    assert res.history.message.str.startswith(STALLED).all() and (res.history.status == "accepted").all()
    assert np.all(np.diff(res.history.true_loss.to_numpy()) <= 1e-12)
    assert "4 rounds took a stalled solve's last iterate" in res.message
    off, _, _, _ = _pyomo_run(8, False)
    assert off.status == RunStatus.SOLVER_FAILED and not off.history.message.str.startswith(STALLED).any()
    # held to 1e-14, the points that break a row by 5e-7 are refused (those exact to rounding are not)
    strict, _, _, _ = _pyomo_run(8, True, stalled_tol=1e-14)
    h = strict.history
    refused = h.status == "solver_failed"
    assert refused.any() and not h.message[refused].str.startswith(STALLED).any()
    assert h.message[~refused].str.startswith(STALLED).all()


def test_progressive_hedging_takes_no_stalled_point_options():
    from convexnn_pyomo.algorithms.round_solvers import ShardedRounds

    for option in ({"stalled_iterates": False}, {"stalled_tol": 1e-3}):
        with pytest.raises(ValueError, match="stalled"):
            ShardedRounds(**option)


def test_a_pyomo_point_that_breaks_the_rows_is_refused_and_the_model_left_as_it_was():
    """After 2 Ipopt iterations the point breaks the round's rows by more than stalled_tol: the solve
    fails and the model keeps the values it had (the next solve starts from them)."""
    import pyomo.environ as pyo

    from convexnn_pyomo.algorithms.round_solvers import PyomoRounds
    from convexnn_pyomo.algorithms.rounds import IPOPT_DEFAULTS, max_violation

    net, X, Y = _data(m=30)
    rnd = PyomoRounds().build(net, X, Y, "mean", [cnn.OutputBounds(0.0, 1.0)], 2.0, (1.0, 1.0, 1.0), "squared")
    variables = list(rnd.model.component_data_objects(pyo.Var, descend_into=True))
    before = [v.value for v in variables]
    solve = rnd.solve(60.0, {"max_iter": 2})
    assert not solve.ok and not solve.stalled and solve.termination == "iterationLimit"
    assert [v.value for v in variables] == before
    res = rnd.opt.solve(rnd.model, solver_options={**IPOPT_DEFAULTS, "max_iter": 2}, load_solutions=False,
                        raise_exception_on_nonoptimal_result=False)
    res.solution_loader.load_vars()
    assert max_violation(rnd.model) > 1e-6  # what the refusal was about
