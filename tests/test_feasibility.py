"""The feasibility phase of Algorithm 1: from a start that violates the hard constraints, rounds
that minimise the largest relative violation until the real network meets them, then the
constrained rounds; a certificate when the relaxation admits no feasible point; a named end
otherwise."""

import numpy as np
import pytest

import convexnn_pyomo as cnn
from convexnn_pyomo.algorithms import SequentialRelaxation
from convexnn_pyomo.algorithms.results import RunStatus


def _data(m=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(m, 3))
    Y = np.clip(X[:, :1] + 0.2 * X[:, 1:2] + 0.05 * rng.normal(size=(m, 1)), 0.0, 1.0)
    net = cnn.Network([3, 4, 1], ["sigmoid", "identity"]).init_he(seed)
    net.weights[-1] *= 6.0  # outputs far outside [0, 1]: an infeasible start
    return net, X, Y


def test_an_infeasible_start_reaches_the_bounds_then_trains_under_them():
    net, X, Y = _data()
    bound = cnn.OutputBounds(0.0, 1.0)
    assert bound.violation(net, X, Y) > 0.5
    res = cnn.train(net, X, Y, hard_constraints=bound, rounds=12)
    h = res.history
    assert res.feasible and bound.violation(res.network, X, Y) <= 1e-6
    one, two = h[h.phase == 1], h[h.phase == 2]
    assert len(one) >= 1 and len(two) >= 1 and (h.phase.diff().dropna() >= 0).all()  # phase 1 first, once
    accepted = one[one.status == "accepted"].violation.to_numpy()
    assert (np.diff(accepted) < 0).all()  # every accepted phase-1 round lowered the real violation
    assert accepted[-1] <= 1e-6  # phase 1 ended at the first feasible network
    kept = two[two.status == "accepted"]
    assert (kept.violation <= 1e-6).all() and (np.diff(kept.true_loss.to_numpy()) <= 1e-9).all()


@pytest.mark.parametrize("round_solver", ["schur", "pyomo"])
def test_bounds_no_network_meets_are_certified_infeasible(round_solver):
    """z >= 1 and z <= 0 at every training point: the relaxation's least violation is 1 (the mean
    over samples of e_low + e_high), a certificate that no network meets both."""
    net, X, Y = _data(m=30)
    res = cnn.train(net, X, Y, hard_constraints=[cnn.OutputBounds(lower=1.0), cnn.OutputBounds(upper=0.0)],
                    rounds=5, round_solver=round_solver)
    assert res.status == RunStatus.INFEASIBLE and not res.feasible
    assert "certified infeasible: the least violation the relaxation admits is 1 " in res.message
    assert "output_bounds" in res.message  # which constraints, and by how much
    assert res.history.status.iloc[-1] == "infeasible" and len(res.history) <= 2  # a phase-1 round, the certificate


def _equality_beyond_bounds(m=400, seed=0):
    """z = 5 beside 0 <= z <= 1 (a 5-4-1 net, Gaussian inputs): the least relative violation is 0.8
    at every point (z = 1 breaks the equality by 4 of its scale 5; z = 5 the bound by 4 of 1)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(m, 5))
    Y = (X @ rng.normal(size=5) > 0).astype(float)
    rows = [cnn.OutputBounds(0.0, 1.0), cnn.LinearOutputEquality(np.array([[1.0]]), np.array([5.0]))]
    return cnn.Network([5, 4, 1], "sigmoid").init_he(0), X, Y, rows


def test_a_failed_certificate_solve_is_retried_with_wider_slacks():
    """From the first reference the Schur interior point's default start stops at minStepLength on
    the least-violation program; the retry with CERTIFICATE_RETRIES' options finishes it, so the
    run is certified after its first phase-1 round."""
    net, X, Y, rows = _equality_beyond_bounds()
    res = cnn.train(net, X, Y, hard_constraints=rows, rounds=5)
    assert res.status == RunStatus.INFEASIBLE and list(res.history.status) == ["accepted", "infeasible"]
    assert "the least violation the relaxation admits is 0.8 (" in res.message
    assert "output_equality.outputs by 4" in res.message


def test_an_unfinished_certificate_is_asked_again(monkeypatch):
    """Without the retries the first certificate solve fails: the question stays open (None, not a
    feasible relaxation) and the next phase-1 round asks again, which certifies."""
    from convexnn_pyomo.algorithms.rounds import StructuredRound

    monkeypatch.setattr(StructuredRound, "CERTIFICATE_RETRIES", ())
    net, X, Y, rows = _equality_beyond_bounds()
    res = cnn.train(net, X, Y, hard_constraints=rows, rounds=5)
    assert res.status == RunStatus.INFEASIBLE
    assert list(res.history.status) == ["accepted", "accepted", "infeasible"]


def test_certificate_retries_share_one_time_limit_and_stop_at_it():
    from types import SimpleNamespace

    from convexnn_pyomo.algorithms.rounds import RoundSolve, _ModelRound

    calls = []

    def solve(limit, options, hit=False):
        calls.append((limit, options))
        return RoundSolve(False, "maxTimeLimit" if hit else "minStepLength", False, hit, 5, 0.1)

    fake = SimpleNamespace(CERTIFICATE_RETRIES=({"slack_push": 1.0}, {"centrality": 1e-2}), _certificate_solve=solve,
                           _agree=bool)
    assert _ModelRound._finished_solve(fake, 30.0) is False
    assert [o for _, o in calls] == [{}, {"slack_push": 1.0}, {"centrality": 1e-2}]
    assert calls[0][0] == 30.0 and all(limit <= 30.0 for limit, _ in calls)  # one budget for all three
    calls.clear()
    fake._certificate_solve = lambda limit, options: solve(limit, options, hit=True)
    assert _ModelRound._finished_solve(fake, 30.0) is False and len(calls) == 1  # no retry after the time limit
    assert fake.certificate_timed_out
    calls.clear()
    fake._certificate_solve = solve
    assert _ModelRound._finished_solve(fake, 0.5) is False and calls == [(0.5, {})]  # the first runs, no retry fits


def test_an_unfinished_certificate_is_named_as_unknown(monkeypatch):
    """When no least-violation solve finishes the run does not claim the relaxation is feasible."""
    from convexnn_pyomo.algorithms.rounds import _ModelRound

    monkeypatch.setattr(_ModelRound, "_finished_solve", lambda self, time_limit: False)
    net, X, Y = _data()
    net.weights[-1] *= 3.0
    net.biases[-1] += 15.0
    res = SequentialRelaxation(hard_constraints=cnn.OutputBounds(0.0, 1.0), rounds=1, refit_output_layer=False).solve(net, X, Y)
    assert not res.feasible and res.status != RunStatus.INFEASIBLE
    assert "least-violation solve did not finish" in res.message and "is unknown" in res.message
    assert "; the relaxation admits a feasible point" not in res.message


def test_the_feasibility_phase_says_when_it_ran_out_of_rounds():
    net, X, Y = _data()
    net.weights[-1] *= 3.0  # farther out than one round of the violation search reaches
    net.biases[-1] += 15.0
    # refit_output_layer=False: the output layer's refit would end phase 1 at its first round
    res = SequentialRelaxation(hard_constraints=cnn.OutputBounds(0.0, 1.0), rounds=1, refit_output_layer=False).solve(net, X, Y)
    assert res.status == RunStatus.ROUND_LIMIT and not res.feasible
    assert "still violated by" in res.message and "the feasibility phase used its 1 rounds" in res.message
    assert "not certified infeasible" in res.message


def test_feasibility_rounds_is_a_budget_of_its_own():
    net, X, Y = _data()
    shared = cnn.train(net, X, Y, hard_constraints=cnn.OutputBounds(0.0, 1.0), rounds=3)
    own = SequentialRelaxation(hard_constraints=cnn.OutputBounds(0.0, 1.0), rounds=3,
                               feasibility_rounds=20).solve(net, X, Y)
    h = own.history
    assert own.feasible and (h.phase == 2).sum() == 3
    assert len(shared.history) <= 3


def test_without_the_phase_the_constrained_rounds_start_at_once():
    net, X, Y = _data()
    res = SequentialRelaxation(hard_constraints=cnn.OutputBounds(0.0, 1.0), rounds=2, feasibility=False).solve(net, X, Y)
    assert (res.history.phase == 2).all()


def test_the_violation_search_never_proposes_more_violation_than_the_line_search():
    """ViolationSearch's point never violates more than the line search's, up to the tolerance (a
    feasible boundary point may violate by up to ``constraint_tol`` where the line's violates by
    0): a feasible point on the step, else Powell's least violation over the subspace (the round's
    per-layer steps, the previous steps) when smaller than the line search's."""
    from convexnn_pyomo.algorithms import Evaluator, LineSearch, ViolationSearch

    net, X, Y = _data()
    bound = cnn.OutputBounds(0.0, 1.0)
    ev = Evaluator(X, Y, [bound])
    rng = np.random.default_rng(3)
    theta = net.get_flat()
    previous = [0.05 * rng.normal(size=theta.size) for _ in range(2)]
    better = 0
    for trial in range(4):
        candidate = net.with_flat(theta + 0.1 * rng.normal(size=theta.size))
        line = LineSearch().propose(net, candidate, ev, previous)
        search = ViolationSearch().propose(net, candidate, ev, previous)
        v0 = ev.violation(net)
        assert search.network is not None or line.network is None
        if search.network is not None:
            assert search.violation == pytest.approx(bound.violation(search.network, X, Y))
            assert search.violation < v0
            reference = line.violation if line.network is not None else v0
            assert search.violation <= max(reference, ev.constraint_tol)
            better += search.violation < reference
    assert better >= 1  # the search over the subspace found less violation than the line at least once


def test_the_violation_search_from_a_feasible_network_is_the_line_search():
    """Nothing to restore: the proposal is the line search's (its loss counts)."""
    from convexnn_pyomo.algorithms import Evaluator, LineSearch, ViolationSearch

    net, X, Y = _data()
    ev = Evaluator(X, Y, [cnn.OutputBounds(-100.0, 100.0)])  # met everywhere near the start
    candidate = net.with_flat(net.get_flat() * 0.5)
    line = LineSearch().propose(net, candidate, ev, [])
    search = ViolationSearch().propose(net, candidate, ev, [])
    assert line.network is not None and line.violation == 0.0
    assert search.step == line.step and search.loss == line.loss


def test_the_violation_search_stops_at_the_feasible_boundary_of_the_step():
    """From an infeasible network, along a step whose far end meets the bounds: the boundary step
    is feasible and a little shorter is not; the proposal is feasible and its loss is at most the
    boundary point's and below the far end's (the violation alone, flat on the feasible set, would
    not tell them apart); with previous steps in the subspace, the loss search still never ends
    above the boundary point's loss."""
    from convexnn_pyomo.algorithms import Evaluator, ViolationSearch

    net, X, Y = _data()
    bound = cnn.OutputBounds(0.0, 1.0)
    ev = Evaluator(X, Y, [bound])
    far = net.with_flat(net.get_flat())
    far.weights[-1] /= 60.0  # outputs well inside [0, 1] at t = 1
    far.biases[-1] = np.full_like(far.biases[-1], 0.5)
    assert ev.violation(net) > 0.5 and ev.violation(far) == 0.0
    search = ViolationSearch()
    theta0, d = net.get_flat(), far.get_flat() - net.get_flat()
    t = search._boundary(net, theta0, d, ev)
    assert 0.0 < t < 1.0 and ev.violation(net.with_flat(theta0 + t * d)) <= 1e-6
    assert ev.violation(net.with_flat(theta0 + t * (1 - 2.0 ** -8) * d)) > 1e-6
    boundary_loss = ev.loss(net.with_flat(theta0 + t * d))
    rng = np.random.default_rng(0)
    for previous in ([], [0.05 * rng.normal(size=theta0.size) for _ in range(2)]):
        p = search.propose(net, far, ev, previous)
        assert p.network is not None and p.violation <= 1e-6 and bound.violation(p.network, X, Y) <= 1e-6
        assert p.loss <= boundary_loss + 1e-12 and p.loss < ev.loss(far)


def _trained_start(m=120, seed=0):
    """A 3-4-1 network after three unconstrained rounds on ``_data`` (outputs inside the targets'
    range [0, 1]), with its data."""
    net, X, Y = _data(m, seed)
    net.weights[-1] /= 6.0
    return cnn.train(net, X, Y, rounds=3).network, X, Y


def _binding_start():
    """The trained network with its output layer shrunk so that every output is below 0.88, and the
    bound ``z <= 0.9``, which binds: the targets reach 1 and the unconstrained fit goes above 1."""
    net, X, Y = _trained_start()
    z = net.predict(X)
    assert z.max() > 1.0 and Y.max() == 1.0
    net.weights[-1] *= 0.5
    net.biases[-1] = net.biases[-1] - (net.predict(X).max() - 0.88)
    return net, X, Y, cnn.OutputBounds(upper=0.9)


def _random_steps(net, scale, seed, n=6):
    rng = np.random.default_rng(seed)
    theta = net.get_flat()
    previous = [0.05 * rng.normal(size=theta.size) for _ in range(2)]
    return previous, [net.with_flat(theta + scale * rng.normal(size=theta.size)) for _ in range(n)]


def test_the_feasible_subspace_search_is_the_subspace_search_when_nothing_binds():
    """Bounds far from every output: the proposal is the subspace search's point, with no
    ``unconstrained`` point, and its loss is at most the line search's."""
    from convexnn_pyomo.algorithms import Evaluator, FeasibleSubspaceSearch, LineSearch, SubspaceSearch

    net, X, Y = _trained_start()
    ev = Evaluator(X, Y, [cnn.OutputBounds(-100.0, 100.0)])
    previous, candidates = _random_steps(net, 0.2, 1, n=3)
    for candidate in candidates:
        sub = SubspaceSearch().propose(net, candidate, ev, previous)
        new = FeasibleSubspaceSearch().propose(net, candidate, ev, previous)
        line = LineSearch().propose(net, candidate, ev, previous)
        assert new.network is not None and new.violation == 0.0 and new.unconstrained is None
        np.testing.assert_array_equal(new.network.get_flat(), sub.network.get_flat())
        assert line.network is None or new.loss <= line.loss


def test_the_feasible_subspace_search_keeps_a_binding_bound():
    """A bound that binds (``_binding_start``): every proposal meets it (checked on the network itself), none has more loss than a feasible
    line-search point, a proposal whose subspace point broke the bound carries that point, and the
    segment towards it gives a lower loss than the line search's point (or than the start, where
    the line search finds nothing) at least once."""
    from convexnn_pyomo.algorithms import Evaluator, FeasibleSubspaceSearch, LineSearch, SubspaceSearch

    net, X, Y, bound = _binding_start()
    ev = Evaluator(X, Y, [bound])
    assert ev.violation(net) == 0.0
    loss0 = ev.loss(net)
    previous, candidates = _random_steps(net, 0.1, 2)
    binding = lower = 0
    for candidate in candidates:
        sub = SubspaceSearch().propose(net, candidate, ev, previous)
        line = LineSearch().propose(net, candidate, ev, previous)
        new = FeasibleSubspaceSearch().propose(net, candidate, ev, previous)
        broke = sub.network is not None and bound.violation(sub.network, X, Y) > 1e-6
        assert (new.unconstrained is not None) == broke
        if new.network is None:
            assert line.network is None and broke
            continue
        assert bound.violation(new.network, X, Y) <= 1e-6 and new.violation == bound.violation(new.network, X, Y)
        assert new.loss == pytest.approx(ev.loss(new.network))
        line_feasible = line.network is not None and line.violation <= 1e-6
        assert not line_feasible or new.loss <= line.loss
        binding += broke
        lower += broke and new.loss < (line.loss if line_feasible else loss0)
    assert binding >= 1 and lower >= 1


def test_no_boundary_point_towards_a_linearised_constraint():
    """Bisection towards the subspace point only when every constraint's rows relax it: not with a
    ``DecisionParity`` (its rows are a linearisation); without it a proposal whose subspace point
    broke the bound is the line search's step, which still carries that point."""
    from convexnn_pyomo.algorithms import Evaluator, FeasibleSubspaceSearch, LineSearch

    net, X, Y, bound = _binding_start()
    decision = cnn.DecisionParity(lambda X: X[:, 0] > 0.5, 0.5)
    search = FeasibleSubspaceSearch()
    assert search._bisects(Evaluator(X, Y, [bound]))
    assert not search._bisects(Evaluator(X, Y, [bound, decision]))
    assert FeasibleSubspaceSearch(boundary=True)._bisects(Evaluator(X, Y, [decision]))
    ev = Evaluator(X, Y, [bound])
    previous, candidates = _random_steps(net, 0.1, 2)
    broke = 0
    for candidate in candidates:
        line = LineSearch().propose(net, candidate, ev, previous)
        new = FeasibleSubspaceSearch(boundary=False).propose(net, candidate, ev, previous)
        if new.unconstrained is None:
            continue
        broke += 1
        assert (new.network is None) == (line.network is None) and new.loss == line.loss
        if new.network is not None:
            np.testing.assert_array_equal(new.network.get_flat(), line.network.get_flat())
    assert broke >= 1


def test_a_binding_search_point_is_refitted_and_the_better_point_kept():
    """Wrapped in the output layer's refit: where the subspace point broke the bound, the refit at
    its hidden layers runs (counted) and the proposal is the better feasible one of the two."""
    from convexnn_pyomo.algorithms import Evaluator, FeasibleSubspaceSearch
    from convexnn_pyomo.algorithms.refit import OutputLayerStep

    net, X, Y, bound = _binding_start()
    ev = Evaluator(X, Y, [bound])
    previous, candidates = _random_steps(net, 0.1, 2, n=3)
    step = OutputLayerStep(FeasibleSubspaceSearch(), solver="auto")
    for candidate in candidates:
        inner = FeasibleSubspaceSearch().propose(net, candidate, ev, previous)
        tried = step.log.tried
        new = step.propose(net, candidate, ev, previous)
        assert step.log.tried == tried + (inner.unconstrained is not None)
        assert new.network is not None and bound.violation(new.network, X, Y) <= 1e-6
        assert inner.network is None or new.loss <= inner.loss
    assert step.log.met >= 1


def test_constrained_runs_train_with_the_feasible_subspace_search():
    """Bounds that never bind: the default schedule's constrained run is not slower than the same run
    with the line search (its final loss after 6 rounds is lower on this start)."""
    from convexnn_pyomo.algorithms import AdaptiveSchedule, FeasibleSubspaceSearch, LineSearch

    class LineOnly(AdaptiveSchedule):
        def step_proposal(self, has_constraints):
            return LineSearch()

    assert isinstance(AdaptiveSchedule().step_proposal(True), FeasibleSubspaceSearch)
    net, X, Y = _data(m=200)
    net.weights[-1] /= 6.0
    bound = cnn.OutputBounds(-100.0, 100.0)
    runs = [SequentialRelaxation(hard_constraints=bound, rounds=6, schedule=s).solve(net, X, Y)
            for s in (AdaptiveSchedule(), LineOnly())]
    assert all(r.feasible for r in runs)
    assert runs[0].final_loss < runs[1].final_loss


def test_from_an_infeasible_network_the_feasible_subspace_search_is_the_line_search():
    from convexnn_pyomo.algorithms import Evaluator, FeasibleSubspaceSearch, LineSearch

    net, X, Y = _data()
    ev = Evaluator(X, Y, [cnn.OutputBounds(0.0, 1.0)])
    assert ev.violation(net) > 0.5
    candidate = net.with_flat(net.get_flat() * 0.5)
    line = LineSearch().propose(net, candidate, ev, [])
    new = FeasibleSubspaceSearch().propose(net, candidate, ev, [])
    assert line.network is not None and new.unconstrained is None
    assert (new.step, new.loss, new.violation) == (line.step, line.loss, line.violation)
    np.testing.assert_array_equal(new.network.get_flat(), line.network.get_flat())


def test_phase_one_uses_the_schedules_feasibility_proposal():
    """A schedule whose phase-1 proposal is the plain line search: the run still ends feasible, and
    the default (the violation search) needs no more phase-1 rounds on this start."""
    from convexnn_pyomo.algorithms import AdaptiveSchedule, LineSearch

    class LineOnly(AdaptiveSchedule):
        def feasibility_proposal(self):
            return LineSearch()

    net, X, Y = _data()
    bound = cnn.OutputBounds(0.0, 1.0)
    runs = {name: SequentialRelaxation(hard_constraints=bound, rounds=2, feasibility_rounds=30, schedule=schedule,
                                        refit_output_layer=False)
            .solve(net, X, Y) for name, schedule in (("line", LineOnly()), ("search", AdaptiveSchedule()))}
    ones = {name: int((r.history.phase == 1).sum()) for name, r in runs.items()}
    assert all(r.feasible for r in runs.values())
    assert ones["search"] < ones["line"]


@pytest.mark.parametrize("target, round_solver", [(3.0, "schur"), (0.5, "schur"), (3.0, "pyomo")])
def test_phase_one_steers_its_penalty_when_the_loss_outweighs_it(target, round_solver):
    r"""Constant targets under the bound ``z <= 1``, from outputs near 4.  The elastic round prices
    the largest relative violation 1 beside :math:`\rho` times the mean squared loss.  At
    :math:`\rho = 1` and target 3 its optimum is the relaxed :math:`z = 2.5` (:math:`1 = 2(3 - z)`),
    a relaxed violation of 1.5: the bound's multiplier :math:`2(3 - 1) = 4` exceeds the penalty
    :math:`1/\rho`.  rho drops to its floor 1e-3 (penalty 1000 > 4) and that round meets the bound.  With
    target 0.5, which the bound admits, rho stays 1.  (The round's point as it is, ``IdentityStep``,
    so that phase 1 cannot reach the bound by a longer step along the round's; the Pyomo round reads
    the new rho from the elastic block's mutable Param as the Schur round does.)"""
    from convexnn_pyomo.algorithms import AdaptiveSchedule, IdentityStep

    class Plain(AdaptiveSchedule):
        def feasibility_proposal(self):
            return IdentityStep()

    net, X, Y = _data()
    net.weights[-1] *= 0.05
    net.biases[-1][:] = 4.0
    bound = cnn.OutputBounds(upper=1.0)
    res = SequentialRelaxation(hard_constraints=bound, rounds=1, feasibility_rounds=5, schedule=Plain(),
                               round_solver=round_solver, feasibility_rho=1.0,
                               refit_output_layer=False).solve(net, X, np.full_like(Y, target))
    one = res.history[res.history.phase == 1]
    assert res.feasible and bound.violation(res.network, X, Y) <= 1e-6
    if target == 3.0:
        assert one.rho.tolist() == [1.0, SequentialRelaxation.FEASIBILITY_RHO_MIN]
        assert one.violation.iloc[0] == pytest.approx(1.5, abs=0.05)  # the real network near the relaxed z = 2.5
    else:
        assert one.rho.tolist() == [1.0]
    assert (res.history[res.history.phase == 2].rho.isna()).all()


def test_phase_one_refuses_a_feasible_step_that_multiplies_the_loss_above_rhos_floor():
    """The guard ``_overshoots``: a phase-1 proposal that meets the bound at more than
    FEASIBILITY_LOSS_GROWTH times the loss is refused while rho is above its floor (rho then drops
    to the floor), and taken at the floor.  The proposal is a fixed network with zero outputs,
    feasible under ``z <= 1`` and about 16 times per sample worse than a start that fits targets 4."""
    from convexnn_pyomo.algorithms import AdaptiveSchedule
    from convexnn_pyomo.algorithms.steps import Proposal, StepProposal

    net, X, _ = _data()
    net.weights[-1] *= 0.05
    net.biases[-1][:] = 4.0
    Y = net.predict(X) + 0.01
    zero = net.copy()
    zero.weights[-1][:] = 0.0
    zero.biases[-1][:] = 0.0

    class Zero(StepProposal):
        name = "zero"

        def propose(self, current, candidate, ev, previous_steps):
            return Proposal(1.0, zero, ev.loss(zero), ev.violation(zero))

    class Fixed(AdaptiveSchedule):
        def feasibility_proposal(self):
            return Zero()

    bound = cnn.OutputBounds(upper=1.0)
    runs = {rho: SequentialRelaxation(hard_constraints=bound, rounds=1, feasibility_rounds=3, schedule=Fixed(),
                                      feasibility_rho=rho, refit_output_layer=False).solve(net, X, Y)
            for rho in (1.0, 1e-3)}
    steered = runs[1.0].history[runs[1.0].history.phase == 1]
    assert steered.status.tolist()[:2] == ["rejected", "accepted"]
    assert steered.rho.tolist()[:2] == [1.0, SequentialRelaxation.FEASIBILITY_RHO_MIN]
    at_floor = runs[1e-3].history[runs[1e-3].history.phase == 1]
    assert at_floor.status.tolist()[0] == "accepted"
    assert all(r.feasible for r in runs.values())
