"""The sample-by-sample interior point (solvers/schur_ipm.py) solves the direct round's problem.

Two paths to the same problem: its optimum is Ipopt's on every architecture and loss; its Newton
step, computed by eliminating the samples around the Schur complement, equals a dense solve of the
condensed KKT system assembled from CasADi's own derivatives of the whole problem; chunking the
samples changes nothing; the solution is feasible for every row of (9).
"""

from __future__ import annotations

import casadi as ca
import numpy as np
import pytest

import convexnn_pyomo as cnn
from convexnn_pyomo.solvers.casadi_direct import DirectParabolicRound

from test_casadi_direct import ARCHITECTURES, OPTIONS, _labels, _problem


def _pair(arch, m, seed, reduction="mean", loss="squared", **schur):
    net, X, Y, reference, eta, weights = _problem(arch, m, seed)
    Y = _labels(Y, loss)
    rounds = []
    for solver, extra in (("ipopt", {}), ("schur", {"schur_options": schur})):
        rnd = DirectParabolicRound(net, X, Y, reduction=reduction, eta=1.0, ipopt_options=OPTIONS, loss=loss,
                                   solver=solver, **extra)
        rnd.recentre(reference, eta, **weights)
        rounds.append(rnd)
    return rounds, (X, Y, reference, reduction)


_CASES = [(a, "squared", r) for a in ARCHITECTURES for r in ("mean", "sum")] + [
    (a, loss, r) for a, loss in [("sigmoid-1hidden-1out", "logistic"), ("tanh-2hidden-2out", "softmax")]
    for r in ("mean", "sum")]


@pytest.mark.parametrize("arch,loss,reduction", _CASES)
def test_same_optimum_as_ipopt(arch, loss, reduction):
    (ipopt, schur), (X, Y, reference, reduction) = _pair(arch, 40, 21, reduction, loss)
    a, b = ipopt.solve(), schur.solve()
    assert a["ok"] and b["ok"] and b["iterations"] > 0
    assert np.abs(ipopt.solution().get_flat() - schur.solution().get_flat()).max() < 1e-5
    assert schur.relaxed_objective() == pytest.approx(ipopt.relaxed_objective(), rel=1e-5, abs=1e-8)
    f, g = schur.evaluate(schur._x_sol)  # the solution is feasible for every row of (9)
    assert f == pytest.approx(b["objective"], rel=1e-12)
    assert np.abs(g[schur.equality_rows]).max() < 1e-7 and g[~schur.equality_rows].max() < 1e-7
    lbx = schur.lower_bounds  # the bounds W, X >= 0 it does not impose hold: (5c), (5d) imply them
    assert (schur._x_sol[np.isfinite(lbx)] >= -1e-9).all()
    if loss != "softmax":  # softmax is blind to a common shift of the z's: their gap is not unique
        assert np.allclose(schur.gaps(), ipopt.gaps(), atol=1e-4)
    assert schur.relaxed_objective() <= reference.loss(X, Y, reduction, loss=loss) + 1e-7


def _condensed_dense(rnd, ipm, st):
    """``[[H + J_I^T Sigma J_I, J_E^T], [J_E, 0]]`` of the whole problem from CasADi's AD of ``rnd.nlp``."""
    nlp = rnd.nlp
    x, p, f, g = nlp["x"], nlp["p"], nlp["f"], nlp["g"]
    n = ipm.ns + ipm.nv * ipm.m
    lam = ca.MX.sym("lam", g.numel())
    lag = ipm.omega * f + ca.dot(lam, g)
    fn = ca.Function("kkt", [x, p, lam], [ca.hessian(lag, x)[0], ca.jacobian(g, x)])
    mult = np.concatenate([st.lam0, st.M.ravel(order="F")])
    H, J = (np.array(a) for a in fn(np.concatenate([st.s, st.V.ravel(order="F")]), rnd.parameters, mult))
    H, J = H[:n, :n], J[:, :n]
    eq = rnd.equality_rows
    sig = np.concatenate([st.lam0 / st.t0, (st.M / st.T).ravel(order="F")])
    A = H + J[~eq].T @ (sig[~eq][:, None] * J[~eq])
    return np.block([[A, J[eq].T], [J[eq], np.zeros((eq.sum(), eq.sum()))]]), J, eq


@pytest.mark.parametrize("augmentation", [0.0, 1.0])
def test_elimination_equals_a_dense_solve_of_the_condensed_system(augmentation):
    """At an interior iterate, the step of the elimination (shared ``ds``, every ``dv_j``, ``dy_j``)
    is the dense solve of the condensed Newton system, with or without the augmented blocks
    ``A_vv + rho J_Ev^T J_Ev``; refinement leaves nothing of the unreduced one."""
    (_, rnd), _ = _pair("tanh-2hidden-2out", 9, 5, max_iter=3, chunk_size=4, augmentation=augmentation)
    ipm = rnd._schur
    rnd.solve()
    st = ipm.state
    r = ipm._residual(st)
    factors, S = ipm._factor(st)
    comp = np.where(ipm.ineq[:, None], st.T * st.M - 1e-3, 0.0)
    rhs = ipm._rhs(st, r, comp, st.t0 * st.lam0 - 1e-3)
    d = ipm._direction(st, rhs, factors, S)
    K, J, eq = _condensed_dense(rnd, ipm, st)
    # right-hand side of the condensed system: -(rd + J_I^T w), -rE
    w = np.concatenate([(st.lam0 * rhs.rI0 - rhs.rc0) / st.t0, ((st.M * rhs.rI - rhs.rc) / st.T).ravel(order="F")])
    w[eq] = 0.0
    rd = np.concatenate([rhs.rd_s, rhs.rd_v.ravel(order="F")])
    sol = np.linalg.solve(K, np.concatenate([-(rd + J.T @ w), -np.concatenate([[], rhs.rE.ravel(order="F")])]))
    n = rd.size
    assert np.allclose(sol[:ipm.ns], d.s, rtol=1e-7, atol=1e-9)
    assert np.allclose(sol[ipm.ns:n], d.V.ravel(order="F"), rtol=1e-7, atol=1e-9)
    assert np.allclose(sol[n:], d.M[~ipm.ineq].ravel(order="F"), rtol=1e-7, atol=1e-9)
    refined = ipm._solve(st, rhs, factors, S)
    assert ipm._remainder(st, refined, rhs).size(ipm.m) <= 1e-8 * rhs.size(ipm.m)


def test_near_the_optimum_the_schur_complement_stays_psd_and_refinement_converges():
    """With slacks near zero (Sigma ~ 1e9) the sample terms of S cancel to O(1): the factored form
    ``A_ss - G^T G + F^T F`` keeps S positive semidefinite (an explicit inverse of A_vv made it
    indefinite here and refinement diverge) and refinement meets the unreduced system."""
    (_, rnd), _ = _pair("softplus-2hidden-1out", 40, 21, max_iter=9)  # 3 iterations before the optimum
    rnd.solve()
    ipm = rnd._schur
    st = ipm.state
    factors, S = ipm._factor(st)
    sig = (st.M / st.T)[ipm.ineq]
    assert sig.max() > 1e9  # the ill-conditioned regime this is about
    assert np.linalg.eigvalsh(S)[0] > 0.0
    r = ipm._residual(st)
    mu = ipm._norms(st, r, 0.0)["mu"]
    comp = np.where(ipm.ineq[:, None], st.T * st.M - 0.1 * mu, 0.0)
    rhs = ipm._rhs(st, r, comp, st.t0 * st.lam0 - 0.1 * mu)
    d = ipm._solve(st, rhs, factors, S)
    assert ipm._remainder(st, d, rhs).size(ipm.m) <= 1e-8 * rhs.size(ipm.m)


def test_chunks_do_not_change_the_iterates():
    (_, one), _ = _pair("softplus-2hidden-1out", 23, 3)
    (_, chunked), _ = _pair("softplus-2hidden-1out", 23, 3, chunk_size=7)  # 7 + 7 + 7 + 2 samples
    a, b = one.solve(), chunked.solve()
    assert a["ok"] and b["ok"] and a["iterations"] == b["iterations"]
    assert np.abs(one._x_sol - chunked._x_sol).max() < 1e-9


def test_recentred_second_round_reaches_ipopts_optimum():
    (ipopt, schur), (X, Y, *_) = _pair("sigmoid-1hidden-1out", 30, 8)
    assert ipopt.solve()["ok"] and schur.solve()["ok"]
    for rnd in (ipopt, schur):
        ref = rnd.solution()
        rnd.recentre(ref, 2.0, **rnd.exactness_weights(ref))
    assert ipopt.solve()["ok"] and schur.solve()["ok"]
    assert np.abs(ipopt.solution().get_flat() - schur.solution().get_flat()).max() < 1e-5


def test_limits_and_bad_options_report_clearly():
    (_, rnd), _ = _pair("sigmoid-1hidden-1out", 10, 2)
    out = rnd.solve(options={"max_iter": 1})
    assert not out["ok"] and out["return_status"] == "Maximum_Iterations_Exceeded" and out["iterations"] == 1
    out = rnd.solve(time_limit=1e-9)
    assert not out["ok"] and out["time_limit"] and out["return_status"] == "Maximum_WallTime_Exceeded"
    with pytest.raises(ValueError, match="not options of solver='schur'"):
        rnd.solve(options={"mu_strategy": "adaptive"})
    assert rnd.solve()["ok"]  # the options of one call do not stick
    net, X, Y, *_ = _problem("sigmoid-1hidden-1out", 10, 2)
    with pytest.raises(ValueError, match="group_size"):
        DirectParabolicRound(net, X, Y, solver="schur", group_size=5)
    with pytest.raises(ValueError, match="solver must be one of"):
        DirectParabolicRound(net, X, Y, solver="mumps")


def test_train_with_the_schur_round_solver_matches_ipopt():
    """Algorithm 1 (adaptive schedule) takes the same first rounds with either round solver."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(60, 3))
    Y = np.tanh(X @ np.array([[0.5], [-1.0], [0.3]]))
    net = cnn.Network([3, 4, 1], "sigmoid").init_he(0)
    runs = [cnn.train(net, X, Y, rounds=3, backend="direct", round_solver=s) for s in ("ipopt", "schur")]
    a, b = (r.history for r in runs)
    assert list(a["status"]) == list(b["status"])
    assert np.allclose(a["true_loss"], b["true_loss"], rtol=1e-4)  # the solvers stop at ~1e-6 relative
    with pytest.raises(ValueError, match="round_solver='schur' solves direct rounds only"):
        cnn.train(net, X, Y, rounds=1, backend="pyomo", round_solver="schur")


def test_cholesky_shifts_a_roundoff_indefinite_block_and_refuses_an_indefinite_one():
    from convexnn_pyomo.solvers.schur_ipm import _cholesky

    rng = np.random.default_rng(0)
    B = rng.normal(size=(3, 5, 4))
    a = B @ B.transpose(0, 2, 1) * 1e6  # rank 4 of 5: PSD, singular
    a[1] -= 1e-9 * np.eye(5)  # one block indefinite at the level of roundoff
    L = _cholesky(a)
    assert np.allclose(L @ L.transpose(0, 2, 1), a, rtol=0, atol=1e-6 * np.abs(a).max())
    with pytest.raises(np.linalg.LinAlgError):
        _cholesky(np.array([np.diag([1.0, -1.0])]))
