"""The Schur interior point's linear algebra (solvers/schur_ipm.py), on problems derived from the
Pyomo model of a round (tests/test_structured.py compares whole solves with Ipopt):

* the elimination solves the unreduced Newton system, linking rows included;
* that Newton matrix is the derivative of the KKT residual (finite differences);
* the inertia correction touches only the blocks that need it;
* scaling, chunks and warm starts do not change the optimum.
"""

import numpy as np
import pytest

import convexnn_pyomo as cnn
from convexnn_pyomo.algorithms.rounds import StructuredRound
from convexnn_pyomo.solvers.schur_ipm import SchurInteriorPoint, _cholesky, _Rhs


def _group(X):
    return (X[:, 0] > 0.5).astype(float)


def _ipm(acts=("relu", "identity"), m=30, constraints=None, **options):
    rng = np.random.default_rng(0)
    net = cnn.Network([3, 4, 1], list(acts)).init_he(0)
    X, Y = rng.uniform(size=(m, 3)), (rng.uniform(size=(m, 1)) > 0.6).astype(float)
    if constraints is None:
        constraints = [cnn.ClasswiseMisfitBounds(0.3), cnn.DemographicParity(_group, 0.02)]
    rnd = StructuredRound(net, X, Y, "mean", constraints, 2.0, (1.0, 1.0, 1.0))
    fp = net.forward_pass(X)
    rnd.recentre(net, 2.0, fp, **rnd.exactness_weights(net, fp))
    P = rnd.arrow
    ipm = SchurInteriorPoint(P, omega=float(m), **options)
    ps, pv = P.parameters()
    s0, V0 = P.start()
    ipm.ps, ipm.pv = ps, pv
    ipm._scale(s0, V0)
    return ipm, ipm._start(s0, V0), (s0, V0, ps, pv)


def _kkt(ipm, st):
    """The KKT residual as an _Rhs (complementarity target 0)."""
    r = ipm._residual(st)
    return ipm._rhs(st, r, np.where(ipm.ineq[:, None], st.T * st.M, 0.0), np.where(ipm.ineq_link, st.t * st.lam, 0.0))


def _flat(rhs: _Rhs) -> np.ndarray:
    return np.concatenate([np.ravel(a) for a in (rhs.rd_s, rhs.rd_v, rhs.rE, rhs.rI, rhs.rL, rhs.rc, rhs.rcL)])


def test_elimination_solves_the_unreduced_newton_system_with_linking_rows():
    ipm, st, _ = _ipm()
    assert ipm.nL > 0
    factors, S = ipm._factor(st)
    assert ipm._corrected == 0
    rhs = _kkt(ipm, st)
    d = ipm._direction(st, rhs, factors, S)
    left = ipm._remainder(st, d, rhs)  # K d + rhs
    assert np.abs(_flat(left)).max() <= 1e-8 * np.abs(_flat(rhs)).max()


def test_the_newton_matrix_is_the_derivative_of_the_kkt_residual():
    ipm, st, _ = _ipm(acts=("sigmoid", "identity"))
    rng = np.random.default_rng(1)
    d = st.plus(st)  # a direction of the right shapes, filled below
    for name in ("s", "V", "M", "T", "lam", "t"):
        setattr(d, name, rng.normal(size=np.shape(getattr(st, name))))
    base = _kkt(ipm, st)
    zero = _Rhs(*(np.zeros_like(a) for a in (base.rd_s, base.rd_v, base.rE, base.rI, base.rL, base.rc, base.rcL)))
    ipm._factor(st)  # sets the shared Hessian and Jacobian the products use
    Kd = _flat(ipm._remainder(st, d, zero))
    eps = 1e-6
    moved = st.moved(d, eps, ipm.ineq, ipm.ineq_link)
    fd = (_flat(_kkt(ipm, moved)) - _flat(base)) / eps
    np.testing.assert_allclose(fd, Kd, rtol=1e-4, atol=1e-4 * np.abs(Kd).max())


def test_inertia_correction_touches_only_the_indefinite_blocks():
    rng = np.random.default_rng(0)
    B = rng.normal(size=(5, 6, 6))
    A = B @ B.transpose(0, 2, 1) + 0.1 * np.eye(6)
    A[3] = A[3] - np.diag([500.0, 0, 0, 0, 0, 0])  # a negative eigenvalue
    L, shifts = _cholesky(A)
    assert (shifts > 0).sum() == 1 and shifts[3] > 0
    for k in (0, 1, 2, 4):
        np.testing.assert_allclose(L[k], np.linalg.cholesky(A[k]))
    assert np.all(np.linalg.eigvalsh(L[3] @ L[3].T - A[3]) > 0)  # a positive shift


@pytest.mark.parametrize("options", [{"scaling": False}, {"chunk_size": 7}, {"mu_init": 0.1}])
def test_options_do_not_change_the_optimum(options):
    ipm, _, args = _ipm(acts=("sigmoid", "identity"))
    ref = SchurInteriorPoint(ipm.problem, omega=ipm.omega0).solve(*args)
    other = SchurInteriorPoint(ipm.problem, omega=ipm.omega0, **options).solve(*args)
    assert ref.ok and other.ok
    np.testing.assert_allclose(other.s, ref.s, atol=1e-6)
    assert other.objective == pytest.approx(ref.objective, rel=1e-7)


def test_warm_start_from_the_last_multipliers_reaches_the_same_optimum():
    ipm, _, args = _ipm(acts=("sigmoid", "identity"), warm_start=True)
    first = ipm.solve(*args)
    second = ipm.solve(*args)
    assert first.ok and second.ok
    np.testing.assert_allclose(second.s, first.s, atol=1e-6)
    assert second.iterations <= first.iterations


def test_a_failed_solve_says_why():
    ipm, _, args = _ipm(acts=("sigmoid", "identity"), max_iter=2)
    res = ipm.solve(*args)
    assert not res.ok and res.status == "Maximum_Iterations_Exceeded"
    assert "after 2 iterations: primal residual" in res.message


def test_compiled_functions_give_the_virtual_machines_iterates(tmp_path, monkeypatch):
    """The per-sample functions compiled to C (cached by the hash of their code) evaluate the same
    numbers as CasADi's virtual machine: the same iterates, to rounding."""
    from convexnn_pyomo.solvers.compiled import compiler

    if compiler() is None:
        pytest.skip("no C compiler on this machine: compile='auto' uses the virtual machine")
    monkeypatch.setenv("CONVEXNN_KERNEL_CACHE", str(tmp_path))
    ipm, _, args = _ipm(acts=("sigmoid", "identity"))
    vm = SchurInteriorPoint(ipm.problem, omega=ipm.omega0, compile="never")
    cc = SchurInteriorPoint(ipm.problem, omega=ipm.omega0, compile="always")
    assert not vm.compiled and cc.compiled and len(list(tmp_path.glob("*.so"))) == len(cc.fn.PER_ITERATION)
    a, b = vm.solve(*args), cc.solve(*args)
    assert a.ok and b.ok and a.iterations == b.iterations
    np.testing.assert_allclose(b.s, a.s, rtol=1e-9, atol=1e-12)
    again = SchurInteriorPoint(ipm.problem, omega=ipm.omega0, compile="always")  # from the cache
    assert again.compiled and len(list(tmp_path.glob("*.so"))) == len(cc.fn.PER_ITERATION)


def test_compile_always_without_a_compiler_is_an_error_and_auto_falls_back(monkeypatch):
    from convexnn_pyomo.solvers import schur_ipm
    from convexnn_pyomo.solvers.compiled import CompilerUnavailable

    monkeypatch.setenv("CC", "no-such-compiler-anywhere")
    ipm, _, _ = _ipm(acts=("sigmoid", "identity"))
    with pytest.raises(CompilerUnavailable, match="no C compiler"):
        SchurInteriorPoint(ipm.problem, omega=ipm.omega0, compile="always")
    monkeypatch.setattr(schur_ipm, "COMPILE_FROM", 1)
    with pytest.warns(RuntimeWarning, match="virtual machine"):
        assert not SchurInteriorPoint(ipm.problem, omega=ipm.omega0).compiled
