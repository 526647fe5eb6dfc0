r"""An interior-point method for one round's convex problem that eliminates sample by sample.

The round's problem (9) (:class:`~.casadi_direct.DirectParabolicRound`) has *arrow* structure:
shared variables :math:`s` (weights, biases, :math:`W`; ~10^2 of them) and, for every sample
:math:`j`, variables :math:`v_j` and rows :math:`g_j(s, v_j)` that touch :math:`s` and
:math:`v_j` only,

.. math::
    \min_{s, v}\ \omega f_0(s) + \omega \sum_j f_j(s, v_j)\quad \text{s.t.}\quad
    g_0(s) \le 0,\quad g_{E,j}(s, v_j) = 0,\quad g_{I,j}(s, v_j) \le 0 .

It is convex: :math:`f` is convex, the :math:`g_I` are convex ((5a), (5b), (5d), (7)) and the
:math:`g_E` affine ((2b) of layer 1, (2c) of a linear activation).  The bounds
:math:`W, X \ge 0` of the Pyomo model are implied by the rows ((5c):
:math:`W_i \ge \|w_i\|^2`, (5d): :math:`X_j \ge \|x_j\|^2`), so the feasible set, and the
optimum, are the same without them.

Newton's method on the perturbed KKT conditions with slacks :math:`t` (:math:`g_I + t = 0`,
:math:`t \circ \lambda = \sigma\mu`) eliminates :math:`t` and :math:`\lambda`,
:math:`\Delta\lambda = \Sigma(J_I\Delta x + r_I) - T^{-1}r_c`, :math:`\Sigma = T^{-1}\Lambda`, and
leaves per sample

.. math::
    \begin{pmatrix} A_{vv} & J_{Ev}^T\\ J_{Ev} & 0\end{pmatrix}
    \begin{pmatrix}\Delta v_j\\ \Delta y_j\end{pmatrix} =
    \begin{pmatrix} b_{v} - A_{vs}\Delta s\\ -r_E - J_{Es}\Delta s\end{pmatrix},\qquad
    A = \nabla^2\mathcal L + J_I^T\Sigma J_I ,

so with :math:`Y = A_{vv}^{-1}A_{vs}`, :math:`Z = A_{vv}^{-1}J_{Ev}^T`, :math:`P = J_{Ev}Z`,
:math:`E = J_{Ev}Y - J_{Es}` the shared step solves the dense :math:`n_s \times n_s` system

.. math::
    \Bigl(A_{ss} - \sum_j \bigl(A_{vs}^T Y - E^T P^{-1} E\bigr)_j\Bigr)\Delta s
    = b_s - \sum_j \bigl(Y^T b_v - E^T P^{-1} h\bigr)_j,\qquad h = J_{Ev}A_{vv}^{-1}b_v + r_E ,

and :math:`\Delta y_j = P^{-1}(h - E\Delta s)`, :math:`\Delta v_j = A_{vv}^{-1}b_v - Y\Delta s - Z\Delta y_j`.
It is computed in factored form.  :math:`A_{vv}` is first augmented by
:math:`\rho J_{Ev}^T J_{Ev}` (and :math:`A_{vs}`, :math:`A_{ss}`, :math:`b` alike: :math:`\rho J_E^T`
times the equality rows added to the stationarity rows, so the step is unchanged; a variable
fixed by an equality and touched only by inactive rows keeps curvature).  Then
:math:`A_{vv} = LL^T`, :math:`G = L^{-1}A_{vs}`, :math:`C = L^{-1}J_{Ev}^T`,
:math:`P = C^TC = L_PL_P^T`, :math:`F = L_P^{-1}(C^TG - J_{Es})`, and each sample adds
:math:`A_{ss} - G^TG + F^TF` to the Schur complement.  Near the optimum the active rows have
:math:`\Sigma \sim 10^9` and these terms cancel to O(1); the factored form keeps every share
positive semidefinite, where an explicit :math:`A_{vv}^{-1}` left the sum indefinite.
Work and memory are linear in :math:`m` with no ordering phase: every sample's block is
factorized alone (batched dense LAPACK on chunks of samples) and the sums over samples are single
matrix products.  The per-sample blocks are CasADi functions of the same symbols as the Ipopt path
(:class:`~.casadi_direct._Formulation`), mapped over a chunk of samples.

Steps: Mehrotra's predictor-corrector, one step length for all variables (fraction to the
boundary 0.995), backtracking on the norm of the perturbed KKT residual.  The objective is scaled
by :math:`\omega` so that one sample's terms are O(1) (``omega = m`` for a mean loss).  Stops when
the primal residual, the dual residual (the shared part divided by ``m``) and the average
complementarity are below ``tol``, like Ipopt's ``tol``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from pyomo.common.config import ConfigDict, ConfigValue, NonNegativeFloat, PositiveFloat, PositiveInt

from .casadi_translator import casadi as ca

__all__ = ["SchurInteriorPoint", "SchurResult"]


class _SampleFunctions:
    r"""CasADi functions of one sample (mapped over a chunk) and of the shared rows.

    Per sample, with multipliers ``mult`` of all its rows and ``sig`` (:math:`\Sigma`; the
    augmentation :math:`\rho` on the equality rows), :math:`\ell = \omega f + \text{mult}^T g`:

    - ``kkt``: :math:`A_{vv}, A_{vs}, \sum_j A_{ss}` (:math:`A = \nabla^2\ell + J^T\,\text{diag(sig)}\,J`),
      :math:`J_{Ev}, J_{Es}`;
    - ``resid``: :math:`g`, :math:`\sum_j f`, :math:`\sum_j\nabla_s\ell`, :math:`\nabla_v\ell`;
    - ``jtv``: :math:`J_v^T w`, :math:`\sum_j J_s^T w`; ``jvp``: :math:`J_s\,\Delta s + J_v\,\Delta v`.
    """

    def __init__(self, fm):
        s, ps, v, pv = fm.S.vector(), fm.PS.vector(), fm.V.vector(), fm.PV.vector()
        ng, eq = fm.G.size, ~fm.inequality_mask(False)
        mult, sig, w, om = ca.SX.sym("mult", ng), ca.SX.sym("sig", ng), ca.SX.sym("w", ng), ca.SX.sym("omega")
        ds, dv = ca.SX.sym("ds", s.numel()), ca.SX.sym("dv", v.numel())
        g, f = fm.g, fm.f
        ell = om * f + ca.dot(mult, g)
        js, jv = ca.jacobian(g, s), ca.jacobian(g, v)
        H, _ = ca.hessian(ell, ca.vertcat(s, v))
        ns = s.numel()
        wj = ca.diag(sig)
        a_vv = H[ns:, ns:] + ca.mtimes(jv.T, ca.mtimes(wj, jv))
        a_vs = H[ns:, :ns] + ca.mtimes(jv.T, ca.mtimes(wj, js))
        a_ss = H[:ns, :ns] + ca.mtimes(js.T, ca.mtimes(wj, js))
        rows_e = [int(i) for i in np.flatnonzero(eq)]
        ins, shared_ins = [s, ps, v, pv, om], [0, 1, 4]
        # sparse outputs (their nonzeros only), the sample blocks transposed: the buffers then read
        # as C-ordered (c, rows, cols) arrays once scattered (see _Scatter)
        outs = [ca.triu(a_vv), a_vs.T, ca.triu(a_ss), jv[rows_e, :].T, js[rows_e, :].T]
        self.kkt = ca.Function("sample_kkt", ins + [mult, sig], outs)
        self.kkt_reduce = (shared_ins, [2])
        self.resid = ca.Function("sample_resid", ins + [mult], [g, f, ca.gradient(ell, s), ca.gradient(ell, v)])
        self.resid_reduce = (shared_ins, [1, 2])
        self.jtv = ca.Function("sample_jtv", ins + [w], [ca.mtimes(jv.T, w), ca.mtimes(js.T, w)])
        self.jtv_reduce = (shared_ins, [1])
        self.jvp = ca.Function("sample_jvp", ins + [ds, dv], [ca.mtimes(js, ds) + ca.mtimes(jv, dv)])
        self.jvp_reduce = (shared_ins + [5], [])
        # the unreduced Newton matrix times (ds, dv, dmult): for iterative refinement
        dm = ca.SX.sym("dmult", ng)
        h_ss, h_sv, h_vv = H[:ns, :ns], H[:ns, ns:], H[ns:, ns:]
        self.apply = ca.Function("sample_apply", ins + [mult, ds, dv, dm], [
            ca.mtimes(h_ss, ds) + ca.mtimes(h_sv, dv) + ca.mtimes(js.T, dm),
            ca.mtimes(h_sv.T, ds) + ca.mtimes(h_vv, dv) + ca.mtimes(jv.T, dm), ca.mtimes(js, ds) + ca.mtimes(jv, dv)])
        self.apply_reduce = (shared_ins + [6], [0])
        # the shared rows g_0(s) <= 0 and the shared objective f_0(s)
        mult0, sig0 = ca.SX.sym("mult0", fm.GS.size), ca.SX.sym("sig0", fm.GS.size)
        ell0 = om * fm.fs + ca.dot(mult0, fm.gs)
        j0 = ca.jacobian(fm.gs, s)
        h0 = ca.hessian(ell0, s)[0] + ca.mtimes(j0.T, ca.mtimes(ca.diag(sig0), j0))
        self.shared = ca.Function("shared", [s, ps, om, mult0, sig0],
                                  [fm.gs, fm.fs, ca.gradient(ell0, s), ca.densify(h0), ca.densify(j0)])
        self.equality = eq
        self._maps: dict = {}

    def mapped(self, name: str, n: int) -> "_Mapped":
        """``name`` mapped over ``n`` samples, shared inputs passed once, sums over samples done inside."""
        key = (name, n)
        if key not in self._maps:
            reduce_in, reduce_out = getattr(self, f"{name}_reduce")
            fn = getattr(self, name).map(f"{name}_{n}", "serial", n, reduce_in, reduce_out)
            self._maps[key] = _Mapped(fn, n, reduce_in, reduce_out)
        return self._maps[key]


class _Mapped:
    """A mapped Function evaluated on NumPy buffers (no ``DM`` conversion): shared inputs are 1-D,
    per-sample inputs ``(k, n)`` arrays; per-sample outputs come back as ``(n, nnz)`` arrays of one
    sample's nonzeros per row, summed outputs as 1-D nonzeros."""

    def __init__(self, fn, n: int, reduce_in, reduce_out):
        self.fn, self.n, self.shared_in, self.summed = fn, n, set(reduce_in), set(reduce_out)
        self.buf, self.run = fn.buffer()
        self.out = [np.empty(fn.nnz_out(i)) for i in range(fn.n_out())]
        for i, o in enumerate(self.out):
            self.buf.set_res(i, memoryview(o))

    def __call__(self, *args) -> list[np.ndarray]:
        keep = []  # the buffers must outlive the call
        for i, a in enumerate(args):
            a = np.asarray(a, float)
            a = np.ascontiguousarray(a.ravel() if i in self.shared_in else a.T).ravel()
            if a.size != self.fn.nnz_in(i):
                raise ValueError(f"input {i} of {self.fn.name()}: {a.size} values, expected {self.fn.nnz_in(i)}")
            keep.append(a)
            self.buf.set_arg(i, memoryview(a))
        self.run()
        return [o.copy() if i in self.summed else o.reshape(self.n, -1).copy() for i, o in enumerate(self.out)]


def _scatter(nz: np.ndarray, sparsity, shape: tuple, transpose: bool = False, symmetric: bool = False) -> np.ndarray:
    """Dense ``(n, *shape)`` (or ``shape`` for 1-D ``nz``) blocks from nonzeros in ``sparsity``'s order;
    ``transpose``: the pattern is the block's transpose; ``symmetric``: it is an upper triangle."""
    rows, cols = (np.asarray(a, dtype=int) for a in sparsity.get_triplet())
    if transpose:
        rows, cols = cols, rows
    out = np.zeros(nz.shape[:-1] + tuple(shape))
    out[..., rows, cols] = nz
    if symmetric:
        off = rows != cols
        out[..., cols[off], rows[off]] = nz[..., off]
    return out


@dataclass
class _Factor:
    """One chunk's eliminated blocks in factored form (see the module docstring)."""

    lo: int
    hi: int
    Li: np.ndarray  # (c, nv, nv): L^{-1}, A_vv = L L^T
    G: np.ndarray  # (c, nv, ns): L^{-1} A_vs
    C: np.ndarray  # (c, nv, nE): L^{-1} J_Ev^T
    LPi: np.ndarray  # (c, nE, nE): L_P^{-1}, P = C^T C = L_P L_P^T
    F: np.ndarray  # (c, nE, ns): L_P^{-1} E, E = C^T G - J_Es


def _cholesky(a: np.ndarray, tries: int = 5) -> np.ndarray:
    """Batched Cholesky factor of the symmetric ``a``; where roundoff makes a block indefinite,
    ``100^k eps`` times its largest diagonal entry (``k <= tries``: at most ~2e-6 of it) is added
    until it factorizes; a block indefinite beyond that raises ``LinAlgError``."""
    shift = None  # formed only if a block fails: the common case pays one factorization
    for k in range(tries + 1):
        try:
            return np.linalg.cholesky(a if k == 0 else a + 100.0 ** k * np.finfo(float).eps * shift)
        except np.linalg.LinAlgError:
            shift = np.abs(np.diagonal(a, axis1=1, axis2=2)).max(axis=1)[:, None, None] * np.eye(a.shape[1])
    raise np.linalg.LinAlgError("a sample block is not positive definite")


@dataclass
class SchurResult:
    """How a solve ended: ``status`` uses Ipopt's return-status names."""

    status: str
    iterations: int
    x: np.ndarray
    objective: float
    seconds: float
    history: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in ("Solve_Succeeded", "Solved_To_Acceptable_Level")


@dataclass
class _State:
    """Primal-dual point: ``s``, ``V`` (nv x m), multipliers ``M`` (ng x m: ``y`` on the equality
    rows, :math:`\\lambda` on the others), slacks ``T`` (ng x m, 1 on the equality rows, unused),
    and the shared rows' ``lam0``, ``t0``."""

    s: np.ndarray
    V: np.ndarray
    M: np.ndarray
    T: np.ndarray
    lam0: np.ndarray
    t0: np.ndarray

    def plus(self, d: "_State") -> "_State":
        return _State(self.s + d.s, self.V + d.V, self.M + d.M, self.T + d.T, self.lam0 + d.lam0, self.t0 + d.t0)

    def moved(self, d: "_State", alpha: float, ineq: np.ndarray) -> "_State":
        T = self.T + alpha * d.T
        T[~ineq] = 1.0
        return _State(self.s + alpha * d.s, self.V + alpha * d.V, self.M + alpha * d.M, T,
                      self.lam0 + alpha * d.lam0, self.t0 + alpha * d.t0)


@dataclass
class _Rhs:
    """Right-hand side of the Newton system: stationarity (``rd_s``, ``rd_v``), equality rows,
    inequality rows (``rI``, ng x m, zero on the equality rows), shared rows, complementarity."""

    rd_s: np.ndarray
    rd_v: np.ndarray
    rE: np.ndarray
    rI: np.ndarray
    rI0: np.ndarray
    rc: np.ndarray
    rc0: np.ndarray

    def size(self, m: int) -> float:
        """Largest entry, the shared stationarity divided by ``m`` (as the stopping test)."""
        return max(float(np.abs(a).max(initial=0.0)) for a in
                   (self.rd_s / m, self.rd_v, self.rE, self.rI, self.rI0, self.rc, self.rc0))


@dataclass
class _Residual:
    f: float  # the unscaled objective
    g: np.ndarray  # (ng, m)
    g0: np.ndarray
    rd_s: np.ndarray
    rd_v: np.ndarray


class SchurInteriorPoint:
    """Primal-dual interior point for :class:`~.casadi_direct.DirectParabolicRound`'s problem (module docstring).

    ``fm`` is the round's formulation, ``m`` the number of samples, ``omega`` the objective scale.
    :meth:`solve` takes the start ``x0`` and the parameters ``p`` in the round's layout.
    """

    CONFIG = ConfigDict("schur_ipm")
    CONFIG.declare("tol", ConfigValue(default=1e-8, domain=PositiveFloat,
                                      description="primal and complementarity (mean t * lambda) tolerance"))
    CONFIG.declare("dual_tol", ConfigValue(default=1e-6, domain=PositiveFloat,
                                           description="dual tolerance, per sample in the scaled objective "
                                                       "(Ipopt's dual infeasibility times omega)"))
    CONFIG.declare("acceptable_tol", ConfigValue(default=1e-6, domain=PositiveFloat,
                                                 description="every residual below this when no step decreases "
                                                             "the KKT residual: Solved_To_Acceptable_Level"))
    CONFIG.declare("max_iter", ConfigValue(default=200, domain=PositiveInt, description="interior-point iterations"))
    CONFIG.declare("max_wall_time", ConfigValue(default=None, domain=PositiveFloat, description="seconds for one solve"))
    CONFIG.declare("chunk_size", ConfigValue(default=4000, domain=PositiveInt,
                                             description="samples per batched elimination (memory of one chunk)"))
    CONFIG.declare("slack_push", ConfigValue(default=1e-2, domain=PositiveFloat,
                                             description="smallest starting slack, relative to max(1, |g|)"))
    CONFIG.declare("regularization", ConfigValue(default=1e-10, domain=NonNegativeFloat,
                                                 description="added to the diagonal of every sample block "
                                                             "and of the Schur complement"))
    CONFIG.declare("augmentation", ConfigValue(default=1.0, domain=NonNegativeFloat,
                                               description="rho of the augmented sample blocks "
                                                           "A_vv + rho J_Ev^T J_Ev (same step; 0: none)",
                                               doc="a variable fixed by an equality row and touched only by "
                                                   "inactive inequalities has almost no curvature in A_vv; "
                                                   "adding rho J_E^T (J_E dx + r_E) = 0 to the stationarity "
                                                   "rows keeps A_vv invertible without changing the step"))
    CONFIG.declare("refinement", ConfigValue(default=3, domain=int,
                                             description="iterative-refinement steps on the unreduced Newton system"))
    CONFIG.declare("centrality", ConfigValue(default=1e-3, domain=PositiveFloat,
                                             description="every t_i lambda_i stays above this times their mean"))
    CONFIG.declare("print_level", ConfigValue(default=0, domain=int, description="0: silent; 1: a line per iteration"))

    def __init__(self, fm, m: int, omega: float, **kwds):
        self.config = self.CONFIG(kwds)
        self.fm, self.m, self.omega = fm, int(m), float(omega)
        self.fn = _SampleFunctions(fm)
        self.ineq = ~self.fn.equality
        self.ns, self.nv, self.ng, self.ng0 = fm.S.size, fm.V.size, fm.G.size, fm.GS.size

    # -------------------------------------------------------------------------------- evaluation
    def _chunks(self):
        c = self.config.chunk_size
        return [(lo, min(lo + c, self.m)) for lo in range(0, self.m, c)]

    def _call(self, name: str, lo: int, hi: int, st: _State, *extra) -> list[np.ndarray]:
        """``name`` on samples ``lo:hi``; per-sample outputs as ``(k, hi - lo)``, sums 1-D (dense outputs only)."""
        mapped = self.fn.mapped(name, hi - lo)
        out = mapped(st.s, self.ps, st.V[:, lo:hi], self.pv[:, lo:hi], self.omega, *extra)
        return [o if i in mapped.summed else o.T for i, o in enumerate(out)]

    def _residual(self, st: _State) -> _Residual:
        g = np.empty((self.ng, self.m))
        rd_v = np.empty((self.nv, self.m))
        f, rd_s = 0.0, np.zeros(self.ns)
        for lo, hi in self._chunks():
            g[:, lo:hi], fj, gs, rd_v[:, lo:hi] = self._call("resid", lo, hi, st, st.M[:, lo:hi])
            f, rd_s = f + float(fj[0]), rd_s + gs
        g0, f0, grad0, _, _ = self.fn.shared(st.s, self.ps, self.omega, st.lam0, np.zeros(self.ng0))
        return _Residual(f + float(f0), g, np.asarray(g0).ravel(), rd_s + np.asarray(grad0).ravel(), rd_v)

    def _norms(self, st: _State, r: _Residual, target: float) -> dict:
        """The parts of the perturbed KKT residual (complementarity against ``target``)."""
        I = self.ineq
        comp = np.concatenate([(st.T[I] * st.M[I]).ravel(), st.t0 * st.lam0])
        prim = np.concatenate([r.g[~I].ravel(), (r.g[I] + st.T[I]).ravel(), r.g0 + st.t0])
        dual = np.concatenate([r.rd_s / self.m, r.rd_v.ravel()])
        return {"primal": prim, "dual": dual, "comp": comp - target, "mu": float(comp.mean()) if comp.size else 0.0}

    @staticmethod
    def _merit(parts: dict) -> float:
        return float(np.sqrt(sum(float(np.dot(parts[k], parts[k])) for k in ("primal", "dual", "comp"))))

    # -------------------------------------------------------------------------------- the Newton system
    def _factor(self, st: _State) -> tuple[list[_Factor], np.ndarray]:
        """Every sample block eliminated; returns the chunks' factors and the Schur complement ``S``."""
        ns, nv, delta = self.ns, self.nv, self.config.regularization
        sig = np.where(self.ineq[:, None], st.M / st.T, self.config.augmentation)  # rho on the equality rows
        _, _, _, h0, j0 = self.fn.shared(st.s, self.ps, self.omega, st.lam0, np.zeros(self.ng0))
        self._h0, self._j0 = np.asarray(h0), np.asarray(j0)
        S, factors = self._h0 + self._j0.T @ (self._j0 * (st.lam0 / st.t0)[:, None]), []
        for lo, hi in self._chunks():
            c = hi - lo
            mapped = self.fn.mapped("kkt", c)
            a_vv, a_vs, a_ss, j_ev, j_es = mapped(st.s, self.ps, st.V[:, lo:hi], self.pv[:, lo:hi], self.omega,
                                                  st.M[:, lo:hi], sig[:, lo:hi])
            sp, nE = self.fn.kkt.sparsity_out, int(self.fn.equality.sum())
            avv = _scatter(a_vv, sp(0), (nv, nv), symmetric=True) + delta * np.eye(nv)
            avs = _scatter(a_vs, sp(1), (nv, ns), transpose=True)
            jev, jes = _scatter(j_ev, sp(3), (nE, nv), transpose=True), _scatter(j_es, sp(4), (nE, ns), transpose=True)
            S += _scatter(a_ss, sp(2), (ns, ns), symmetric=True)
            Li = np.linalg.inv(_cholesky(avv))
            G, C = Li @ avs, Li @ jev.transpose(0, 2, 1)
            LPi = np.linalg.inv(_cholesky(C.transpose(0, 2, 1) @ C))
            F = LPi @ (C.transpose(0, 2, 1) @ G - jes)
            S -= G.reshape(-1, ns).T @ G.reshape(-1, ns)  # each sample's part as -G^T G + F^T F: stays PSD
            S += F.reshape(-1, ns).T @ F.reshape(-1, ns)
            factors.append(_Factor(lo, hi, Li, G, C, LPi, F))
        S = 0.5 * (S + S.T) + delta * np.eye(ns)
        return factors, S

    def _rhs(self, st: _State, r: _Residual, rc: np.ndarray, rc0: np.ndarray) -> _Rhs:
        """The Newton system's right-hand side at ``st`` for complementarity residuals ``rc``, ``rc0``."""
        I = self.ineq[:, None]
        return _Rhs(r.rd_s, r.rd_v, r.g[~self.ineq], np.where(I, r.g + st.T, 0.0), r.g0 + st.t0,
                    np.where(I, rc, 0.0), rc0)

    def _direction(self, st: _State, rhs: _Rhs, factors: list[_Factor], S: np.ndarray) -> _State:
        """The step ``d`` with ``K d = -rhs`` (``K``: the unreduced Newton matrix), by elimination."""
        I = self.ineq
        w = np.where(I[:, None], (st.M * rhs.rI - rhs.rc) / st.T, 0.0)
        w[~I] = self.config.augmentation * rhs.rE  # rho J_E^T r_E: the augmented rows' right-hand side
        w0 = (st.lam0 * rhs.rI0 - rhs.rc0) / st.t0
        b_v = np.empty((self.nv, self.m))
        b_s = -(rhs.rd_s + self._j0.T @ w0)
        for lo, hi in self._chunks():
            jv_w, js_w = self._call("jtv", lo, hi, st, w[:, lo:hi])
            b_v[:, lo:hi] = -(rhs.rd_v[:, lo:hi] + jv_w)
            b_s -= js_w
        rhs_s, parts = b_s.copy(), []
        for fc in factors:
            u = fc.Li @ b_v[:, fc.lo:fc.hi].T[:, :, None]  # (c, nv, 1)
            k = fc.LPi @ (fc.C.transpose(0, 2, 1) @ u + rhs.rE[:, fc.lo:fc.hi].T[:, :, None])
            rhs_s -= fc.G.reshape(-1, self.ns).T @ u.ravel() - fc.F.reshape(-1, self.ns).T @ k.ravel()
            parts.append((u, k))
        ds = np.linalg.solve(S, rhs_s)
        dV, dM, dT = np.empty((self.nv, self.m)), np.zeros((self.ng, self.m)), np.zeros((self.ng, self.m))
        for fc, (u, k) in zip(factors, parts):
            dy = fc.LPi.transpose(0, 2, 1) @ (k - fc.F @ ds[:, None])
            dV[:, fc.lo:fc.hi] = (fc.Li.transpose(0, 2, 1) @ (u - fc.G @ ds[:, None] - fc.C @ dy))[:, :, 0].T
            dM[~I, fc.lo:fc.hi] = dy[:, :, 0].T
        for lo, hi in self._chunks():
            jdx = self._call("jvp", lo, hi, st, ds, dV[:, lo:hi])[0]
            dT[I, lo:hi] = -rhs.rI[I, lo:hi] - jdx[I]
        dM[I] = -(rhs.rc[I] + st.M[I] * dT[I]) / st.T[I]
        dt0 = -rhs.rI0 - self._j0 @ ds
        return _State(ds, dV, dM, dT, -(rhs.rc0 + st.lam0 * dt0) / st.t0, dt0)

    def _remainder(self, st: _State, d: _State, rhs: _Rhs) -> _Rhs:
        """``K d + rhs``: what ``d`` leaves of the Newton system (exact products, for refinement)."""
        I = self.ineq
        rd_v, jdx, rd_s = np.empty((self.nv, self.m)), np.empty((self.ng, self.m)), rhs.rd_s.copy()
        for lo, hi in self._chunks():
            a_s, a_v, jd = self._call("apply", lo, hi, st, st.M[:, lo:hi], d.s, d.V[:, lo:hi], d.M[:, lo:hi])
            rd_s += a_s
            rd_v[:, lo:hi], jdx[:, lo:hi] = a_v + rhs.rd_v[:, lo:hi], jd
        rd_s += self._h0 @ d.s + self._j0.T @ d.lam0
        return _Rhs(rd_s, rd_v, jdx[~I] + rhs.rE, np.where(I[:, None], jdx + d.T + rhs.rI, 0.0),
                    self._j0 @ d.s + d.t0 + rhs.rI0,
                    np.where(I[:, None], st.M * d.T + st.T * d.M + rhs.rc, 0.0),
                    st.lam0 * d.t0 + st.t0 * d.lam0 + rhs.rc0)

    def _solve(self, st: _State, rhs: _Rhs, factors: list[_Factor], S: np.ndarray, refine: bool = True) -> _State:
        """:meth:`_direction` with iterative refinement on the unreduced system (``refinement`` steps at
        most, while what is left exceeds ``1e-9`` of the right-hand side)."""
        d = self._direction(st, rhs, factors, S)
        size = rhs.size(self.m)
        for _ in range(self.config.refinement if refine else 0):
            rem = self._remainder(st, d, rhs)
            if rem.size(self.m) <= 1e-9 * size:
                break
            d = d.plus(self._direction(st, rem, factors, S))
        return d

    # -------------------------------------------------------------------------------- the iteration
    def _start(self, x0: np.ndarray) -> _State:
        """``x0`` with slacks pushed inside (at least ``slack_push * max(1, |g|)``), multipliers 1 and 0 (equalities)."""
        s = x0[:self.ns].copy()
        V = x0[self.ns:self.ns + self.nv * self.m].reshape(self.nv, self.m, order="F").copy()
        st = _State(s, V, np.zeros((self.ng, self.m)), np.ones((self.ng, self.m)), np.ones(self.ng0), np.ones(self.ng0))
        r = self._residual(st)
        push = self.config.slack_push
        st.T = np.where(self.ineq[:, None], np.maximum(-r.g, push * np.maximum(1.0, np.abs(r.g))), 1.0)
        st.M = np.where(self.ineq[:, None], np.ones((1, self.m)), 0.0)
        st.t0 = np.maximum(-r.g0, push * np.maximum(1.0, np.abs(r.g0)))
        return st

    def _max_step(self, st: _State, d: _State, tau: float) -> float:
        I = self.ineq
        ratios = [np.ones(1)]
        for v, dv in ((st.T[I], d.T[I]), (st.M[I], d.M[I]), (st.t0, d.t0), (st.lam0, d.lam0)):
            neg = dv < 0
            ratios.append(-tau * v[neg] / dv[neg])
        return float(min(r.min() for r in ratios if r.size))

    def _products(self, st: _State) -> np.ndarray:
        return np.concatenate([(st.T[self.ineq] * st.M[self.ineq]).ravel(), st.t0 * st.lam0])

    def _spread(self, st: _State) -> float:
        """``min(t * lambda) / mean(t * lambda)``: how central the point is (1: perfectly)."""
        c = self._products(st)
        return float(c.min() / c.mean()) if c.size else 1.0

    def _centred_step(self, st: _State, d: _State, alpha: float, gamma: float) -> float:
        r"""The longest of ``alpha, alpha/2, ...`` whose point stays in the neighbourhood
        :math:`t_i\lambda_i \ge \gamma\,\overline{t\lambda}` (slacks far below the average
        complementarity make :math:`\Sigma` too large for an accurate elimination)."""
        for _ in range(200):
            if self._spread(st.moved(d, alpha, self.ineq)) >= gamma:
                break
            alpha *= 0.9
        return alpha

    def _converged(self, parts: dict, acceptable: bool = False) -> bool:
        cfg = self.config
        tol, dual_tol = (cfg.acceptable_tol, cfg.acceptable_tol) if acceptable else (cfg.tol, cfg.dual_tol)
        return (np.abs(parts["primal"]).max(initial=0) <= tol and parts["mu"] <= tol
                and np.abs(parts["dual"]).max(initial=0) <= dual_tol)

    def solve(self, x0: np.ndarray, p: np.ndarray, max_wall_time: float | None = None) -> SchurResult:
        """Solve from ``x0`` (the round's ``x`` layout) at parameters ``p``; never raises on a failed solve."""
        t_start, cfg = time.perf_counter(), self.config
        limit = max_wall_time if max_wall_time is not None else cfg.max_wall_time
        nps = self.fm.PS.size
        self.ps, self.pv = p[:nps], p[nps:].reshape(self.fm.PV.size, self.m, order="F")
        timings = {"factor": 0.0, "direction": 0.0, "residual": 0.0}
        st = self._start(np.asarray(x0, float))
        r = self._residual(st)
        parts, history, status, it = self._norms(st, r, 0.0), [], "Maximum_Iterations_Exceeded", 0
        for it in range(cfg.max_iter + 1):
            if self._converged(parts):
                status = "Solve_Succeeded"
                break
            if it == cfg.max_iter:
                break
            if limit is not None and time.perf_counter() - t_start > limit:
                status = "Maximum_WallTime_Exceeded"
                break
            try:
                st, r, parts, row = self._iterate(st, r, parts, timings)
            except np.linalg.LinAlgError as err:
                status = f"error: singular Newton system ({err})"
                break
            history.append(row)
            if cfg.print_level:
                print(f"schur-ipm {it + 1:3d}  f {r.f:.8e}  primal {row['primal']:.1e}  dual {row['dual']:.1e}  "
                      f"mu {row['mu']:.1e}  alpha {row['alpha']:.3f}  {time.perf_counter() - t_start:.1f} s", flush=True)
            if row["alpha"] == 0.0:  # no decrease along the Newton step: the precision floor
                ok = self._converged(parts, acceptable=True)
                status = "Solved_To_Acceptable_Level" if ok else "Search_Direction_Becomes_Too_Small"
                break
        x = np.concatenate([st.s, st.V.ravel(order="F")])
        self.state = st
        return SchurResult(status, len(history), x, r.f, time.perf_counter() - t_start, history, timings)

    def _step(self, st: _State, r: _Residual, d: _State, mu: float, target: float):
        """Fraction to the boundary, the centrality neighbourhood, then :meth:`_line_search`."""
        a_max = self._max_step(st, d, max(0.995, 1.0 - mu))
        alpha = self._centred_step(st, d, a_max, min(self.config.centrality, 0.5 * self._spread(st)))
        return self._line_search(st, r, d, alpha, target)

    def _line_search(self, st: _State, r: _Residual, d: _State, alpha: float, target: float):
        """Backtracking on the perturbed KKT residual from ``alpha``; ``(st, r, 0.0)`` if it never decreases."""
        merit0 = self._merit(self._norms(st, r, target))
        for _ in range(20):
            cand = st.moved(d, alpha, self.ineq)
            r_c = self._residual(cand)
            if self._merit(self._norms(cand, r_c, target)) <= (1.0 - 1e-4 * alpha) * merit0:
                return cand, r_c, alpha
            alpha *= 0.5
        return st, r, 0.0

    def _iterate(self, st: _State, r: _Residual, parts: dict, timings: dict):
        """One predictor-corrector step with backtracking; returns the new point, residual, norms and a history row."""
        I, t0 = self.ineq, time.perf_counter()
        factors, S = self._factor(st)
        t1 = time.perf_counter()
        mu = parts["mu"]
        comp = np.where(I[:, None], st.T * st.M, 0.0)
        aff = self._solve(st, self._rhs(st, r, comp, st.t0 * st.lam0), factors, S, refine=False)  # sets sigma only
        a_aff = self._max_step(st, aff, 1.0)
        nxt = st.moved(aff, a_aff, I)
        mu_aff = float(np.concatenate([(nxt.T[I] * nxt.M[I]).ravel(), nxt.t0 * nxt.lam0]).mean())
        sigma = min(1.0, (mu_aff / mu) ** 3) if mu > 0 else 0.0
        target = sigma * mu
        rc = comp + np.where(I[:, None], aff.T * aff.M - target, 0.0)
        d = self._solve(st, self._rhs(st, r, rc, st.t0 * st.lam0 + aff.t0 * aff.lam0 - target), factors, S)
        t2 = time.perf_counter()
        trial, r_t, alpha = self._step(st, r, d, mu, target)
        if alpha == 0.0:  # an aggressive target spoils descent: the plain Newton step for a tenth of mu
            target = max(target, 0.1 * mu)
            d = self._solve(st, self._rhs(st, r, comp - np.where(I[:, None], target, 0.0), st.t0 * st.lam0 - target),
                            factors, S)
            trial, r_t, alpha = self._step(st, r, d, mu, target)
        del factors
        parts = self._norms(trial, r_t, 0.0)
        timings["factor"] += t1 - t0
        timings["direction"] += t2 - t1
        timings["residual"] += time.perf_counter() - t2
        row = {"objective": r_t.f, "primal": float(np.abs(parts["primal"]).max(initial=0)),
               "dual": float(np.abs(parts["dual"]).max(initial=0)), "mu": parts["mu"], "alpha": alpha, "sigma": sigma}
        return trial, r_t, parts, row
