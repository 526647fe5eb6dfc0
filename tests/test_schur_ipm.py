"""The Schur interior point's linear algebra (solvers/schur_ipm.py), on problems derived from the
Pyomo model of a round (tests/test_structured.py compares whole solves with Ipopt):

* the elimination solves the unreduced Newton system, linking rows included;
* that Newton matrix is the derivative of the KKT residual (finite differences);
* the inertia correction touches only the blocks that need it;
* scaling, chunks and warm starts do not change the optimum.
"""

import copy

import numpy as np
import pytest

import convexnn_pyomo as cnn
from convexnn_pyomo.algorithms.rounds import StructuredRound
from convexnn_pyomo.solvers import elimination as el
from convexnn_pyomo.solvers.schur_ipm import SHIFTS_ABSOLUTE, SHIFTS_RELATIVE, SchurInteriorPoint, _Rhs


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
    d = copy.deepcopy(st)  # a direction of the right shapes, filled below
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


def _sparse(X):
    """Nonzeros of every block of ``X (c, r, k)`` as ``(values (nnz, c), rows, cols)`` (one pattern)."""
    r, k = np.nonzero(np.abs(X).sum(axis=0))
    return np.ascontiguousarray(X[:, r, k].T), r.astype(np.int64), k.astype(np.int64)


def _blocks(c=5, nv=6, nsh=4, nE=2, seed=0):
    rng = np.random.default_rng(seed)
    B = rng.normal(size=(c, nv, nv))
    A = B @ B.transpose(0, 2, 1) + 0.1 * np.eye(nv)
    Ah = rng.normal(size=(c, nv, nsh)) * (rng.random((nv, nsh)) < 0.6)
    J, Js = rng.normal(size=(c, nE, nv)), rng.normal(size=(c, nE, nsh))
    return A, Ah, J, Js


def _factor(A, Ah, J, Js):
    c, nv, nsh = Ah.shape
    nE = J.shape[1]
    iu = np.triu_indices(nv)
    avv = np.ascontiguousarray(A[:, iu[0], iu[1]].T)
    sp = [_sparse(Ah), _sparse(J), _sparse(Js)]
    elim = el.Elimination(iu, sp[0][1:], sp[1][1:], sp[2][1:], nv, nsh, nE)
    fc, share, shift = elim.factor(avv, sp[0][0], sp[1][0], sp[2][0], 0.0, SHIFTS_RELATIVE, SHIFTS_ABSOLUTE)
    return elim, fc, share, shift


def _unpack(Lv, pattern):
    ptr, col = pattern
    L = np.zeros((len(ptr) - 1, len(ptr) - 1))
    for i in range(len(ptr) - 1):
        L[i, col[ptr[i]:ptr[i + 1]]] = Lv[ptr[i]:ptr[i + 1]]
    return L


@pytest.mark.parametrize("c", [5, 2 * el.BLOCK + 3])  # one partial block; two full blocks and a partial one
def test_elimination_kernel_is_the_dense_schur_complement_and_solve(c):
    A, Ah, J, Js = _blocks(c=c)
    c, nv, nsh = Ah.shape
    nE = J.shape[1]
    elim, fc, share, shift = _factor(A, Ah, J, Js)
    assert not shift.any()
    # the same from the full per-sample KKT blocks: S_j = -[Ah; Js]^T K^{-1} [Ah; Js], K = [[A, J^T], [J, 0]]
    ref = np.zeros((nsh, nsh))
    for j in range(c):
        K = np.block([[A[j], J[j].T], [J[j], np.zeros((nE, nE))]])
        R = np.vstack([Ah[j], Js[j]])
        ref -= R.T @ np.linalg.solve(K, R)
        L = _unpack(fc.Lp[j // el.BLOCK, :, j % el.BLOCK], elim.lpat)
        np.testing.assert_allclose(L @ L.T, A[j][np.ix_(elim.perm, elim.perm)], atol=1e-12)
    np.testing.assert_allclose(share, ref, atol=1e-10)
    rng = np.random.default_rng(1)
    b, rE, dh = rng.normal(size=(c, nv)), rng.normal(size=(c, nE)), rng.normal(size=nsh)
    red = elim.reduce(fc, b.T, rE.T)  # one column per sample, read where they lie (strided views)
    dV, dY = elim.back(fc, b.T, rE.T, dh)
    red_ref = np.zeros(nsh)
    for j in range(c):
        K = np.block([[A[j], J[j].T], [J[j], np.zeros((nE, nE))]])
        x = np.linalg.solve(K, np.concatenate([b[j], -rE[j]]))  # the step at dh = 0
        red_ref += np.vstack([Ah[j], Js[j]]).T @ x
        step = np.linalg.solve(K, np.concatenate([b[j] - Ah[j] @ dh, -rE[j] - Js[j] @ dh]))
        np.testing.assert_allclose(np.concatenate([dV[:, j], dY[:, j]]), step, atol=1e-10)
    np.testing.assert_allclose(red, red_ref, atol=1e-10)


def test_inertia_correction_touches_only_the_indefinite_blocks():
    A, Ah, J, Js = _blocks(nE=0)
    A[3] = A[3] - np.diag([500.0, 0, 0, 0, 0, 0])  # a negative eigenvalue
    elim, fc, _, shift = _factor(A, Ah, J, Js)
    assert (shift > 0).sum() == 1 and shift[3] > 0
    p = elim.perm
    for k in (0, 1, 2, 4):
        L = _unpack(fc.Lp[k // el.BLOCK, :, k % el.BLOCK], elim.lpat)
        np.testing.assert_allclose(L, np.linalg.cholesky(A[k][np.ix_(p, p)]), atol=1e-12)
    L3 = _unpack(fc.Lp[0, :, 3], elim.lpat)
    A3 = A[3][np.ix_(p, p)]
    assert np.all(np.linalg.eigvalsh(L3 @ L3.T - A3) > 0)  # a positive shift
    np.testing.assert_allclose(L3 @ L3.T, A3 + shift[3] * np.eye(6), atol=1e-9)


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
    # several chunks on two threads: the compiled loops run without the GIL, side by side
    from convexnn_pyomo.solvers import schur_ipm

    monkeypatch.setattr(schur_ipm, "PARALLEL_FROM", 1)
    vm = SchurInteriorPoint(ipm.problem, omega=ipm.omega0, compile="never", chunk_size=7, threads=2)
    cc = SchurInteriorPoint(ipm.problem, omega=ipm.omega0, compile="always", chunk_size=7, threads=2)
    assert not vm.compiled and cc.compiled and len(list(tmp_path.glob("*.so"))) == len(cc.fn.PER_ITERATION)
    a, b = vm.solve(*args), cc.solve(*args)
    assert a.ok and b.ok and a.iterations == b.iterations
    np.testing.assert_allclose(b.s, a.s, rtol=1e-9, atol=1e-12)
    again = SchurInteriorPoint(ipm.problem, omega=ipm.omega0, compile="always")  # from the cache
    assert again.compiled and len(list(tmp_path.glob("*.so"))) == len(cc.fn.PER_ITERATION)


def test_compiled_loop_reads_and_writes_the_callers_rows_where_they_lie(tmp_path, monkeypatch):
    """The compiled loop over samples takes per-sample inputs as ``(nnz, n)`` arrays of any strides
    (a chunk's columns of row-per-entry state) and writes outputs into given arrays: the values of
    CasADi's own evaluation, sample by sample, over more samples than one work block (64)."""
    from convexnn_pyomo.solvers.casadi_translator import casadi as ca
    from convexnn_pyomo.solvers.compiled import compiled_map, compiler

    if compiler() is None:
        pytest.skip("no C compiler on this machine")
    monkeypatch.setenv("CONVEXNN_KERNEL_CACHE", str(tmp_path))
    x, p, y = ca.SX.sym("x", 3), ca.SX.sym("p", 2), ca.SX.sym("y", 2)
    fn = ca.Function("strided_probe", [x, p, y], [ca.vertcat(x[0] * p[0] + y[1], ca.sin(x[2]) * y[0]),
                                                   ca.dot(x, x) + p[1], ca.densify(ca.vertcat(y[0] - x[1], x[2]))])
    kernel, n, rng = compiled_map(fn), 150, np.random.default_rng(0)
    X = rng.normal(size=(3, 400))[:, 100:100 + n]  # columns of a wider array: entries 400 apart
    P, Y = rng.normal(size=2), np.asfortranarray(rng.normal(size=(2, n)))  # shared; sample-contiguous
    first = np.full((5, 300), np.nan)
    target = first[1:3, 50:50 + n]  # written in place, the rest untouched
    out0, out1, out2 = kernel(n, [X, P, Y], {1}, {1}, out=[target, None, None])
    assert out0 is target and out2.shape == (2, n)
    ref = [np.asarray(v) for v in fn.map(n)(X, np.tile(P[:, None], n), Y)]
    np.testing.assert_allclose(target, ref[0], rtol=1e-14)
    np.testing.assert_allclose(out1, ref[1].sum(), rtol=1e-13)
    np.testing.assert_allclose(out2, ref[2], rtol=1e-14)
    assert np.isnan(first[0]).all() and np.isnan(first[3:]).all() and np.isnan(first[1:3, :50]).all()
    with pytest.raises(ValueError, match="shape"):
        kernel(n, [X.T, P, Y], {1}, {1})


def test_native_code_gives_the_portable_codes_results_bit_for_bit(tmp_path, monkeypatch):
    """The kernels are compiled for this machine's vector units (``NATIVE``) without fused
    multiply-adds: every output of the round's per-sample functions equals the portable build's
    exactly; a compiler that refuses the native flags gets the portable ones."""
    from convexnn_pyomo.solvers import compiled

    if compiled.compiler() is None:
        pytest.skip("no C compiler on this machine")
    ipm, st, _ = _ipm(acts=("sigmoid", "identity"))
    fn, n = ipm.fn.kkt, ipm.m
    args = [st.s, ipm.ps, st.V, ipm.pv, ipm.omega, ipm.d, ipm.dL, st.M, st.lam, ipm._sigma(st, 0, n)]
    monkeypatch.setenv("CONVEXNN_KERNEL_CACHE", str(tmp_path / "native"))
    native = compiled.compiled_map(fn)(n, args, set(ipm.fn.kkt_reduce[0]), set(ipm.fn.kkt_reduce[1]))
    monkeypatch.setattr(compiled, "NATIVE", ("-this-flag-does-not-exist",))
    monkeypatch.setenv("CONVEXNN_KERNEL_CACHE", str(tmp_path / "portable"))
    portable = compiled.compiled_map(fn)(n, args, set(ipm.fn.kkt_reduce[0]), set(ipm.fn.kkt_reduce[1]))
    assert len(list((tmp_path / "portable").glob("*.so"))) == 1  # the fallback's library
    for a, b in zip(native, portable):
        np.testing.assert_array_equal(a, b)


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


def test_fused_kernels_are_the_numpy_expressions_bit_for_bit():
    """The step's element-wise work on a chunk, fused (``solvers/fused.py``), against the NumPy
    expressions it replaced, on the columns lo:hi of (rows, m) arrays."""
    from convexnn_pyomo.solvers import fused

    rng = np.random.default_rng(3)
    ng, nv, m, lo, hi, rho = 7, 4, 50, 10, 37, 0.7
    I = np.array([True, False, True, True, False, True, True])
    iI, iE = np.flatnonzero(I), np.flatnonzero(~I)
    c = hi - lo
    M, T, rI, rc, dT, dM = (rng.uniform(0.1, 2.0, size=(ng, m)) for _ in range(6))
    rE, V = rng.normal(size=(iE.size, m)), rng.normal(size=(nv, m))
    w = np.empty((ng, c))
    fused.reduce_weights(w, M, T, rI, rc, rE, rho, iI, iE, lo)
    np.testing.assert_array_equal(w[I], (M[I, lo:hi] * rI[I, lo:hi] - rc[I, lo:hi]) / T[I, lo:hi])
    np.testing.assert_array_equal(w[~I], rho * rE[:, lo:hi])
    dv, dy, jdx = rng.normal(size=(nv, c)), rng.normal(size=(iE.size, c)), rng.normal(size=(ng, c))
    Vo, Mo, To = V.copy(), M.copy(), T.copy()
    fused.back_update(Vo, Mo, To, dv, dy, jdx, rI, rc, M, T, iI, iE, lo)
    dTc = -rI[I, lo:hi] - jdx[I]
    np.testing.assert_array_equal(Vo[:, lo:hi], V[:, lo:hi] + dv)
    np.testing.assert_array_equal(Mo[~I, lo:hi], M[~I, lo:hi] + dy)
    np.testing.assert_array_equal(To[I, lo:hi], T[I, lo:hi] + dTc)
    np.testing.assert_array_equal(Mo[I, lo:hi], M[I, lo:hi] - (rc[I, lo:hi] + M[I, lo:hi] * dTc) / T[I, lo:hi])
    assert np.array_equal(np.delete(Vo, np.s_[lo:hi], axis=1), np.delete(V, np.s_[lo:hi], axis=1))
    rd_v, shift, jd = rng.normal(size=(nv, m)), rng.uniform(size=m), rng.normal(size=(ng, c))
    v0 = rng.normal(size=(nv, c))
    v, oE, oI, oc = v0.copy(), np.zeros((iE.size, m)), np.zeros((ng, m)), np.zeros((ng, m))
    top = fused.remainder_parts(v, rd_v, shift, V, jd, oE, rE, oI, dT, rI, oc, M, T, dM, rc, iI, iE, lo)
    assert top == max(np.abs(a).max() for a in (v, oE, oI, oc))
    np.testing.assert_array_equal(v, v0 + rd_v[:, lo:hi] + shift[lo:hi] * V[:, lo:hi])
    np.testing.assert_array_equal(oE[:, lo:hi], jd[~I] + rE[:, lo:hi])
    np.testing.assert_array_equal(oI[I, lo:hi], jd[I] + dT[I, lo:hi] + rI[I, lo:hi])
    np.testing.assert_array_equal(oc[I, lo:hi], M[I, lo:hi] * dT[I, lo:hi] + T[I, lo:hi] * dM[I, lo:hi] + rc[I, lo:hi])
    assert fused.absmax(-3.0 * M) == np.abs(-3.0 * M).max() and fused.absmax(np.zeros((0, 3))) == 0.0
    dT -= 1.0
    neg = dT[I, lo:hi] < 0
    ratio = (-0.99 * T[I, lo:hi][neg] / dT[I, lo:hi][neg]).min()
    assert fused.boundary_step(T, dT, M, dM, iI, lo, hi, 0.99) == min(1.0, ratio)
    low, total = fused.products(T, M, dT, dM, 0.5, True, iI, lo, hi)
    prod = (T[I, lo:hi] + 0.5 * dT[I, lo:hi]) * (M[I, lo:hi] + 0.5 * dM[I, lo:hi])
    assert low == prod.min() and total == pytest.approx(prod.sum(), rel=1e-14)
