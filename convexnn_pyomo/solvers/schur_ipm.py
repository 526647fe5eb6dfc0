r"""An interior-point method for arrow-structured convex programs that eliminates sample by sample.

The problem (:class:`~.arrow.ArrowProblem`, derived from the Pyomo model of a round) has shared
variables :math:`s` (weights, biases, :math:`W`; ~10^2 of them), per sample :math:`j` variables
:math:`v_j` and rows :math:`g(s, v_j) \le 0` (or :math:`= 0`) that touch :math:`s` and :math:`v_j`
only, and a few *linking rows* :math:`a_0(s) + \sum_j a(s, v_j) \le 0` (or :math:`= 0`): sums over
samples such as the class-wise bounds (19) or demographic parity, and every row on the weights
alone (:math:`a = 0`):

.. math::
    \min_{s, v}\ \omega f_0(s) + \omega \sum_j f(s, v_j) \quad \text{s.t.}\quad
    g_{E}(s, v_j) = 0,\ g_{I}(s, v_j) \le 0\ \forall j,\qquad a_E(s, v) = 0,\ a_I(s, v) \le 0 .

It is convex (convex :math:`f`, :math:`g_I`, :math:`a_I`; affine :math:`g_E`, :math:`a_E`).

Newton's method on the perturbed KKT conditions with slacks :math:`t` (:math:`g_I + t = 0`,
:math:`t \circ \lambda = \sigma\mu`) eliminates the per-sample slacks and multipliers,
:math:`\Delta\lambda = \Sigma(J_I\Delta x + r_I) - T^{-1}r_c`, :math:`\Sigma = T^{-1}\Lambda`.
The linking rows keep their multipliers :math:`\lambda_L` as unknowns beside :math:`\Delta s`:
with :math:`D = T_L \Lambda_L^{-1}` (0 on equality rows) their Newton rows read
:math:`J_L \Delta x - D\,\Delta\lambda_L = -r_L + \Lambda_L^{-1} r_{c,L}`, so the *shared unknown*
is :math:`\hat s = (\Delta s, \Delta\lambda_L)` and each sample couples to it through
:math:`A_{v\hat s} = [A_{vs},\ J_{Lv}^T]`.  Per sample the system is

.. math::
    \begin{pmatrix} A_{vv} & J_{Ev}^T\\ J_{Ev} & 0\end{pmatrix}
    \begin{pmatrix}\Delta v_j\\ \Delta y_j\end{pmatrix} =
    \begin{pmatrix} b_{v} - A_{v\hat s}\Delta \hat s\\ -r_E - J_{E\hat s}\Delta \hat s\end{pmatrix},\qquad
    A = \nabla^2\mathcal L + J_I^T\Sigma J_I ,

computed in factored form: :math:`A_{vv}` is first augmented by :math:`\rho J_{Ev}^T J_{Ev}`
(:math:`\rho J_E^T` times the equality rows added to the stationarity rows: the same step; a
variable fixed by an equality and touched only by inactive rows keeps curvature), then
:math:`A_{vv} = LL^T`, :math:`G = L^{-1}A_{v\hat s}`, :math:`C = L^{-1}J_{Ev}^T`,
:math:`P = C^TC = L_PL_P^T`, :math:`F = L_P^{-1}(C^TG - J_{E\hat s})`, and each sample adds
:math:`-G^TG + F^TF` to the dense, symmetric quasi-definite matrix

.. math::
    S = \begin{pmatrix} H_0 + \sum_j A_{ss} & J_{Ls}^T\\ J_{Ls} & -D\end{pmatrix}
        - \sum_j \bigl(G^TG - F^TF\bigr)_j

(near the optimum the active rows have :math:`\Sigma \sim 10^9` and the :math:`A_{ss}` and
:math:`G^TG` terms cancel to O(1); the factored form keeps their difference positive
semidefinite, where an explicit :math:`A_{vv}^{-1}` left it indefinite).  Work and memory are
linear in :math:`m` with one ordering of a single sample's block, planned once: every sample's
block is factorized alone by the sparse compiled kernels of :mod:`.elimination` (threads over
chunks of samples) and the sums over samples are a few BLAS products per chunk.  The per-sample
blocks are CasADi functions of the problem's symbols, mapped over a chunk, and compiled to C with
their loop over samples (``compile``: :mod:`.compiled`, cached on disk, called without the GIL)
from ``COMPILE_FROM`` samples.

Scaling, as Ipopt's ``nlp_scaling_method=gradient-based``: at the start every row (of every
sample) is multiplied by :math:`\min(1, 100/\|\nabla g_r\|_\infty)` and the objective by
:math:`\omega = \omega_0 \min(1, 100/\|\omega_0\nabla f\|_\infty)` (the shared gradient per sample),
:math:`\omega_0` the caller's (``m`` for a mean loss: one sample's terms are O(1)); the tolerances
apply to the scaled problem.  Raw, unscaled data (features or targets of 10^4) then solve like
scaled ones.

Steps: Mehrotra's predictor-corrector, one step length for all variables (fraction to the
boundary 0.995), backtracking on the norm of the perturbed KKT residual.  Stops when the primal
residual, the dual residual (the shared part divided by ``m``) and the average complementarity
are below ``tol``, like Ipopt's ``tol``; a wall-time limit is checked every iteration.  When the
multipliers of rows that stay violated grow past ``infeasible_multiplier`` the round is reported
``Infeasible_Problem_Detected`` with the row, its violation and its multiplier as evidence.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np
from pyomo.common.config import Bool, ConfigDict, ConfigValue, In, NonNegativeFloat, PositiveFloat, PositiveInt

from ..distributed import SampleShards
from ..threads import blas_threads
from .casadi_translator import casadi as ca
from . import fused
from .elimination import ChunkFactor, Elimination

__all__ = ["SchurInteriorPoint", "SchurResult"]

#: Ipopt's nlp_scaling_max_gradient
MAX_GRADIENT = 100.0

#: a step shorter than this at an acceptable point is the precision floor (Solved_To_Acceptable_Level):
#: there the elimination's rounding, not the distance to the optimum, limits the Newton step (0.5
#: ended the third round of the raw-features test in Search_Direction_Becomes_Too_Small)
ACCEPTABLE_ALPHA = 0.1

#: ``compile="auto"`` compiles from this many samples (a first compilation took 6.8 s, cached
#: afterwards; at m = 10^4 on two threads an iteration took 0.64 s compiled and 1.27 s in the
#: virtual machine, which holds the GIL: ``benchmarks/compiled_round.py --m 10000 --threads 2``);
#: counted over all MPI ranks (each rank's 5,000 of 10^4 samples in the virtual machine took 21.0 s
#: against 17.3 s for one process compiled)
COMPILE_FROM = 10_000

#: fewer samples run as one chunk on one thread: handing chunks to threads costs more than it
#: saves (8-6-6-1 with (19), virtual machine: 122 ms an iteration on one thread, 147 ms on two at
#: m = 500; 500 and 376 ms at m = 2,000)
PARALLEL_FROM = 1_000


def _dense(outputs: list) -> list:
    """Every output with all its entries stored (structural zeros too): read as dense arrays."""
    return [ca.densify(ca.SX(o)) for o in outputs]


def _rowmax(J):
    """Largest absolute entry of every row of ``J`` (SX), as a column."""
    return ca.vertcat(*[ca.mmax(ca.fabs(J[r, :])) for r in range(J.size1())]) if J.size1() else ca.SX(0, 1)


class _SampleFunctions:
    r"""CasADi functions of one sample (mapped over a chunk) and of the shared part.

    Every per-sample function takes ``(s, ps, v, pv, omega, d, dL)`` first: the variables,
    parameters, objective scale and row scales (``d`` of the sample's rows, ``dL`` of the linking
    rows); with multipliers ``mult`` of the sample's rows and ``lam`` of the linking rows,
    :math:`\ell = \omega f + \text{mult}^T (d\circ g) + \lambda^T (d_L \circ a)`, and ``sig``
    (:math:`\Sigma`; the augmentation :math:`\rho` on the equality rows):

    - ``kkt``: :math:`A_{vv}, A_{vs}, \sum_j A_{ss}, J_{Ev}, J_{Es}, J_{Lv}, \sum_j J_{Ls}`;
      ``coupling``: its :math:`A_{vs}, J_{Lv}` alone;
    - ``resid``: :math:`g`, :math:`\sum_j f`, :math:`\sum_j\nabla_s\ell`, :math:`\nabla_v\ell`, :math:`\sum_j a`;
    - ``jtv``: :math:`J_v^T w`, :math:`\sum_j J_s^T w`; ``jvp``: :math:`J\Delta x`, :math:`\sum_j J_{L}\Delta x_j`;
    - ``apply``: the unreduced Newton matrix times a direction (iterative refinement);
    - ``scale``: unscaled row gradients' largest entries and the objective gradient (scaling).
    """

    def __init__(self, P):
        s, ps, v, pv = P.s, P.ps, P.v, P.pv
        ns, ng, nL = P.ns, P.ng, P.n_link
        d, dL, om = ca.SX.sym("d", ng), ca.SX.sym("dL", nL), ca.SX.sym("omega")
        mult, sig, lam = ca.SX.sym("mult", ng), ca.SX.sym("sig", ng), ca.SX.sym("lam", nL)
        w, ds, dv = ca.SX.sym("w", ng), ca.SX.sym("ds", ns), ca.SX.sym("dv", P.nv)
        dm, dlam = ca.SX.sym("dmult", ng), ca.SX.sym("dlam", nL)
        g, a, f = d * P.g, dL * P.a, P.f
        ell = om * f + ca.dot(mult, g) + ca.dot(lam, a)
        js, jv, jls, jlv = ca.jacobian(g, s), ca.jacobian(g, v), ca.jacobian(a, s), ca.jacobian(a, v)
        H, _ = ca.hessian(ell, ca.vertcat(s, v))
        h_ss, h_sv, h_vv = H[:ns, :ns], H[:ns, ns:], H[ns:, ns:]
        wj = ca.diag(sig)
        a_vv = h_vv + ca.mtimes(jv.T, ca.mtimes(wj, jv))
        a_vs = h_sv.T + ca.mtimes(jv.T, ca.mtimes(wj, js))
        a_ss = h_ss + ca.mtimes(js.T, ca.mtimes(wj, js))
        self.equality = np.asarray(P.eq, dtype=bool)
        rows_e = [int(i) for i in np.flatnonzero(self.equality)]
        ins, shared = [s, ps, v, pv, om, d, dL], [0, 1, 4, 6]
        # sparse outputs (their nonzeros only), the sample blocks transposed: the buffers then read
        # as C-ordered (c, rows, cols) arrays once scattered (see _scatter)
        self.kkt = ca.Function("sample_kkt", ins + [mult, lam, sig], [
            ca.triu(a_vv), a_vs.T, ca.triu(a_ss), jv[rows_e, :].T, js[rows_e, :].T, jlv, ca.densify(jls)])
        self.kkt_reduce = (shared + [8], [2, 6])
        # kkt's coupling blocks alone (A_vs, J_Lv: the same expressions, so the same values), for
        # the steps of a round that does not keep them (``coupling="recompute"``)
        self.coupling = ca.Function("sample_coupling", ins + [mult, lam, sig], [a_vs.T, jlv])
        self.coupling_reduce = (shared + [8], [])
        self.resid = ca.Function("sample_resid", ins + [mult, lam],
                                 _dense([g, f, ca.gradient(ell, s), ca.gradient(ell, v), a]))
        self.resid_reduce = (shared + [8], [1, 2, 4])
        self.jtv = ca.Function("sample_jtv", ins + [w], _dense([ca.mtimes(jv.T, w), ca.mtimes(js.T, w)]))
        self.jtv_reduce = (shared, [1])
        self.jvp = ca.Function("sample_jvp", ins + [ds, dv], _dense([
            ca.mtimes(js, ds) + ca.mtimes(jv, dv), ca.mtimes(jls, ds) + ca.mtimes(jlv, dv)]))
        self.jvp_reduce = (shared + [7], [1])
        self.apply = ca.Function("sample_apply", ins + [mult, lam, ds, dv, dm, dlam], _dense([
            ca.mtimes(h_ss, ds) + ca.mtimes(h_sv, dv) + ca.mtimes(js.T, dm) + ca.mtimes(jls.T, dlam),
            ca.mtimes(h_sv.T, ds) + ca.mtimes(h_vv, dv) + ca.mtimes(jv.T, dm) + ca.mtimes(jlv.T, dlam),
            ca.mtimes(js, ds) + ca.mtimes(jv, dv), ca.mtimes(jls, ds) + ca.mtimes(jlv, dv)]))
        self.apply_reduce = (shared + [8, 9, 12], [0, 3])
        raw_g, raw_a = P.g, P.a
        self.scale = ca.Function("sample_scale", ins, _dense([
            ca.fmax(_rowmax(ca.jacobian(raw_g, s)), _rowmax(ca.jacobian(raw_g, v))),
            _rowmax(ca.jacobian(raw_a, v)), ca.densify(ca.jacobian(raw_a, s)),
            ca.mmax(ca.fabs(ca.gradient(f, v))) if P.nv else ca.SX(0), ca.gradient(f, s)]))
        self.scale_reduce = (shared, [2, 4])
        # the shared part: a_0(s) and f_0(s)
        a0 = dL * P.a0
        ell0 = om * P.fs + ca.dot(lam, a0)
        self.shared = ca.Function("shared", [s, ps, om, dL, lam], _dense([
            a0, P.fs, ca.gradient(ell0, s), ca.hessian(ell0, s)[0], ca.jacobian(a0, s)]))
        self.shared_scale = ca.Function("shared_scale", [s, ps], _dense([ca.jacobian(P.a0, s), ca.gradient(P.fs, s)]))
        self._maps: dict = {}

    #: the functions evaluated every iteration (what :meth:`compile` compiles)
    PER_ITERATION = ("kkt", "resid", "jtv", "jvp", "apply")

    def compile(self, extra: tuple[str, ...] = ()) -> None:
        """Compile the per-iteration functions (and ``extra`` ones) with their loop over samples
        (:func:`~.compiled.compiled_map`: C code, called without the GIL)."""
        from .compiled import compiled_map

        self._kernels = {name: compiled_map(getattr(self, name)) for name in (*self.PER_ITERATION, *extra)}
        self._maps.clear()

    def mapped(self, name: str, n: int):
        """``name`` mapped over ``n`` samples, shared inputs passed once, sums over samples done inside."""
        reduce_in, reduce_out = getattr(self, f"{name}_reduce")
        kernel = getattr(self, "_kernels", {}).get(name)
        if kernel is not None:
            return _CompiledMapped(kernel, n, reduce_in, reduce_out)
        key = (name, n, threading.get_ident())  # one buffer per thread
        if key not in self._maps:
            fn = getattr(self, name).map(f"{name}_{n}", "serial", n, reduce_in, reduce_out)
            self._maps[key] = _Mapped(fn, n, reduce_in, reduce_out)
        return self._maps[key]


class _CompiledMapped:
    """A compiled kernel (:class:`~.compiled.MappedKernel`) with :class:`_Mapped`'s call convention;
    per-sample inputs are read and ``out`` written where they lie (no copies)."""

    def __init__(self, kernel, n: int, reduce_in, reduce_out):
        self.kernel, self.n, self.shared_in, self.summed = kernel, n, set(reduce_in), set(reduce_out)

    def __call__(self, *args, out: list | None = None) -> list[np.ndarray]:
        return self.kernel(self.n, args, self.shared_in, self.summed, out)


class _Mapped:
    """A mapped Function evaluated on NumPy buffers (no ``DM`` conversion): shared inputs are 1-D,
    per-sample inputs ``(k, n)`` arrays; per-sample outputs come back as ``(nnz, n)`` arrays (views
    of sample-major ones, or written into ``out``), summed outputs as 1-D nonzeros."""

    def __init__(self, fn, n: int, reduce_in, reduce_out):
        self.fn, self.n, self.shared_in, self.summed = fn, n, set(reduce_in), set(reduce_out)
        self.buf, self.run = fn.buffer()
        self.out = [np.empty(fn.nnz_out(i)) for i in range(fn.n_out())]
        for i, o in enumerate(self.out):
            self.buf.set_res(i, memoryview(o))

    def __call__(self, *args, out: list | None = None) -> list[np.ndarray]:
        keep = []  # the buffers must outlive the call
        for i, a in enumerate(args):
            a = np.asarray(a, float)
            a = np.ascontiguousarray(a.ravel() if i in self.shared_in else a.T).ravel()
            if a.size != self.fn.nnz_in(i):
                raise ValueError(f"input {i} of {self.fn.name()}: {a.size} values, expected {self.fn.nnz_in(i)}")
            keep.append(a)
            self.buf.set_arg(i, memoryview(a))
        self.run()
        res = [o.copy() if i in self.summed else o.reshape(self.n, -1).copy().T for i, o in enumerate(self.out)]
        for i, target in enumerate(out or []):
            if target is not None:
                target[...] = res[i]
                res[i] = target
        return res


def _available_memory() -> int | None:
    """MemAvailable of ``/proc/meminfo`` in bytes (None where there is none)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


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






@dataclass(frozen=True)
class _Pattern:
    """Row and column indices of the kkt function's sparse blocks, as :class:`~.elimination.Elimination`
    reads them: ``avv`` (upper triangle of A_vv), ``avh`` (A_vs and J_Lv^T: variable, shared unknown),
    ``jev`` (equality row, variable), ``jes`` (equality row, shared variable)."""

    avv: tuple
    avh: tuple
    jev: tuple
    jes: tuple

    @classmethod
    def of(cls, kkt, ns: int) -> "_Pattern":
        def triplet(i):
            r, c = kkt.sparsity_out(i).get_triplet()
            return np.asarray(r, dtype=np.int64), np.asarray(c, dtype=np.int64)

        (vr, vc), (s_r, s_c), (l_r, l_c) = triplet(0), triplet(1), triplet(5)
        (ev_r, ev_c), (es_r, es_c) = triplet(3), triplet(4)
        # outputs 1 (A_vs^T), 3 (J_Ev^T), 4 (J_Es^T) are transposed; 5 (J_Lv) is not
        return cls((vr, vc), (np.concatenate([s_c, l_c]), np.concatenate([s_r, ns + l_r])),
                   (ev_c, ev_r), (es_c, es_r))

    def elimination(self, nv: int, nsh: int, nE: int) -> Elimination:
        return Elimination(self.avv, self.avh, self.jev, self.jes, nv, nsh, nE)


#: the shifts tried on a sample block that does not factorize: ``100^k eps`` times its largest
#: diagonal entry (roundoff), then, like Ipopt's inertia correction, ``1e-4, 1e-3, ..., 1e12``
SHIFTS_RELATIVE = np.array([100.0 ** k * np.finfo(float).eps for k in range(1, 6)])
SHIFTS_ABSOLUTE = np.array([1e-4 * 10.0 ** k for k in range(17)])


@dataclass
class SchurResult:
    """How a solve ended: ``status`` uses Ipopt's return-status names; ``message`` says why in words
    (for a failure: the residuals at the end, or the evidence of infeasibility); ``s``, ``V``,
    ``lam``, ``M``: the last iterate (shared and per-sample variables, linking-row and per-sample
    multipliers of the *unscaled* rows)."""

    status: str
    iterations: int
    s: np.ndarray
    V: np.ndarray
    objective: float
    seconds: float
    message: str = ""
    lam: np.ndarray | None = None
    M: np.ndarray | None = None
    history: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    directions: int = 0  # Newton systems solved (predictors, correctors, refinements)
    primal: float = float("nan")  # the last iterate's primal residual (scaled rows, as ``tol``)

    def flops(self, ipm: "SchurInteriorPoint") -> float:
        """Floating-point operations of this solve's eliminations and steps, counted from the block
        patterns (:attr:`~.elimination.Elimination.flops`; the per-sample functions' evaluations and
        the shared ``(ns + nL)``-square solves not counted)."""
        per = ipm._elim.flops
        return float(ipm.m * (self.iterations * per["factor"] + self.directions * per["solve"]))

    @property
    def ok(self) -> bool:
        return self.status in ("Solve_Succeeded", "Solved_To_Acceptable_Level")

    @property
    def infeasible(self) -> bool:
        return self.status == "Infeasible_Problem_Detected"

    def stalled_feasible(self, tol: float) -> bool:
        """The solve stopped short of its tolerances (no step decreased the KKT residual, or
        ``max_iter``) at an iterate whose rows hold to ``tol`` (scaled): a point of the round's
        feasible set, near its optimum but not proved optimal."""
        return (self.status in ("Search_Direction_Becomes_Too_Small", "Maximum_Iterations_Exceeded")
                and self.primal <= tol and bool(np.isfinite(self.objective)))


@dataclass
class _State:
    r"""Primal-dual point: ``s``, ``V`` (nv x m), per-sample multipliers ``M`` (ng x m: ``y`` on the
    equality rows, :math:`\lambda` on the others) and slacks ``T`` (1 on the equality rows, unused),
    linking multipliers ``lam`` and slacks ``t`` (nL)."""

    s: np.ndarray
    V: np.ndarray
    M: np.ndarray
    T: np.ndarray
    lam: np.ndarray
    t: np.ndarray

    def moved(self, d: "_State", alpha: float, ineq: np.ndarray, ineq_link: np.ndarray) -> "_State":
        T, t = self.T + alpha * d.T, self.t + alpha * d.t
        T[~ineq] = 1.0
        t[~ineq_link] = 1.0
        return _State(self.s + alpha * d.s, self.V + alpha * d.V, self.M + alpha * d.M, T, self.lam + alpha * d.lam, t)


@dataclass
class _Rhs:
    """Right-hand side of the Newton system: stationarity (``rd_s``, ``rd_v``), the samples' equality
    rows ``rE``, inequality rows ``rI`` (ng x m, zero on the equality rows), linking rows ``rL``,
    complementarity ``rc`` (ng x m) and ``rcL`` (zero on equality rows)."""

    rd_s: np.ndarray
    rd_v: np.ndarray
    rE: np.ndarray
    rI: np.ndarray
    rL: np.ndarray
    rc: np.ndarray
    rcL: np.ndarray
    top: float | None = None  # the per-sample parts' largest entry on this rank, where already known

    def size(self, m: int, shards: SampleShards) -> float:
        """Largest entry, the shared stationarity divided by ``m`` (all samples, as the stopping
        test); the per-sample parts' maximum over every rank."""
        local = self.top if self.top is not None else max(fused.absmax(a) for a in (self.rd_v, self.rE, self.rI,
                                                                                    self.rc))
        shared = max(float(np.abs(a).max(initial=0.0)) for a in (self.rd_s / m, self.rL, self.rcL))
        return max(shards.max(local), shared)


@dataclass
class _Residual:
    f: float  # the unscaled objective
    g: np.ndarray  # (ng, m), scaled rows
    aL: np.ndarray  # (nL,), scaled linking rows
    rd_s: np.ndarray
    rd_v: np.ndarray


class SchurInteriorPoint:
    r"""Primal-dual interior point for an :class:`~.arrow.ArrowProblem` (module docstring).

    ``problem`` gives the symbols; ``omega`` is the caller's objective scale :math:`\\omega_0`.
    :meth:`solve` takes the start ``(s, V)`` and the parameters ``(ps, pv)`` (``V``, ``pv``: one
    column per sample) and never raises on a failed solve.  ``shards``
    (:class:`~convexnn_pyomo.distributed.SampleShards`): the problem holds one MPI rank's samples;
    every sum over samples (the Schur complement, right-hand sides, residual norms, step lengths,
    the stop tests) is reduced over the ranks, so every rank takes the iterates of one process.
    """

    CONFIG = ConfigDict("schur_ipm")
    CONFIG.declare("tol", ConfigValue(default=1e-8, domain=PositiveFloat,
                                      description="primal and complementarity (mean t * lambda) tolerance"))
    CONFIG.declare("dual_tol", ConfigValue(default=1e-8, domain=PositiveFloat,
                                           description="dual tolerance, per sample in the scaled objective "
                                                       "(Ipopt's dual infeasibility times omega)"))
    CONFIG.declare("acceptable_tol", ConfigValue(default=1e-5, domain=PositiveFloat,
                                                 description="every residual below this when no step decreases "
                                                             "the KKT residual: Solved_To_Acceptable_Level"))
    CONFIG.declare("acceptable_dual_tol", ConfigValue(default=1e-4, domain=PositiveFloat,
                                                      description="dual tolerance of Solved_To_Acceptable_Level"))
    CONFIG.declare("floor_dual_tol", ConfigValue(default=1e-2, domain=PositiveFloat,
                                                 description="dual tolerance at the precision floor (no step "
                                                             "decreases the KKT residual five times in a row), with "
                                                             "primal and complementarity below acceptable_tol "
                                                             "(Ipopt's acceptable_dual_inf_tol is 1e10)"))
    CONFIG.declare("max_iter", ConfigValue(default=200, domain=PositiveInt, description="interior-point iterations"))
    CONFIG.declare("max_wall_time", ConfigValue(default=None, domain=PositiveFloat,
                                                description="seconds for one solve, checked every iteration"))
    CONFIG.declare("chunk_size", ConfigValue(default=1000, domain=PositiveInt,
                                             description="samples per batched elimination (memory of one chunk)"))
    CONFIG.declare("slack_push", ConfigValue(default=1e-2, domain=PositiveFloat,
                                             description="smallest starting slack, relative to max(1, |g|)"))
    CONFIG.declare("regularization", ConfigValue(default=1e-10, domain=NonNegativeFloat,
                                                 description="added to the diagonal of every sample block "
                                                             "and of the Schur complement"))
    CONFIG.declare("augmentation", ConfigValue(default=1.0, domain=NonNegativeFloat,
                                               description="rho of the augmented sample blocks "
                                                           "A_vv + rho J_Ev^T J_Ev (same step; 0: none)"))
    CONFIG.declare("refinement", ConfigValue(default=3, domain=int,
                                             description="iterative-refinement steps on the unreduced Newton system"))
    CONFIG.declare("centrality", ConfigValue(default=1e-3, domain=PositiveFloat,
                                             description="every t_i lambda_i stays above this times their mean"))
    CONFIG.declare("scaling", ConfigValue(default=True, domain=Bool,
                                          description="gradient-based scaling of rows and objective (as Ipopt's)"))
    CONFIG.declare("mu_init", ConfigValue(default=1.0, domain=NonNegativeFloat,
                                          description="starting multipliers mu_init / slack (0: all 1)"))
    CONFIG.declare("warm_start", ConfigValue(default=False, domain=Bool,
                                             description="start from the multipliers of the last solve"))
    CONFIG.declare("infeasible_multiplier", ConfigValue(default=1e10, domain=PositiveFloat,
                                                        description="a violated row whose multiplier exceeds this "
                                                                    "(scaled problem) reports infeasibility"))
    CONFIG.declare("threads", ConfigValue(default=min(2, os.cpu_count() or 1), domain=PositiveInt,
                                          description="threads over the chunks of samples (eliminations)"))
    CONFIG.declare("compile", ConfigValue(default="auto", domain=In(["auto", "always", "never"]),
                                          description="the per-sample functions compiled to C (cached on disk) "
                                                      "instead of CasADi's virtual machine: 'auto' from "
                                                      "COMPILE_FROM samples when a C compiler is found"))
    CONFIG.declare("coupling", ConfigValue(default="auto", domain=In(["auto", "keep", "recompute"]),
                                           description="the samples' coupling blocks A_vs, J_Lv between the "
                                                       "factorization and the steps: 'keep' them (a fifth of "
                                                       "the peak memory of a round at m = 10^6), 'recompute' them per chunk in "
                                                       "each step (same iterates, more time), 'auto': recompute "
                                                       "when the round would need more than half the "
                                                       "available memory"))
    CONFIG.declare("print_level", ConfigValue(default=0, domain=int, description="0: silent; 1: a line per iteration"))

    def __init__(self, problem, omega: float = 1.0, shards: SampleShards | None = None, **kwds):
        self.config = self.CONFIG(kwds)
        self.problem, self.m, self.omega0 = problem, int(problem.m), float(omega)
        self.shards = shards if shards is not None else SampleShards.serial(self.m)
        if self.shards.m != self.m:
            raise ValueError(f"shards holds {self.shards.m} samples on this rank, the problem {self.m}")
        self.total = self.shards.total  # samples over every rank
        self.fn = _SampleFunctions(problem)
        self.compiled = self._compile()
        self.ineq = ~self.fn.equality
        self._iI, self._iE = np.flatnonzero(self.ineq), np.flatnonzero(~self.ineq)  # for the fused kernels
        self.ineq_link = ~np.asarray(problem.eq_link, dtype=bool)
        self.ns, self.nv, self.ng, self.nL = problem.ns, problem.nv, problem.ng, problem.n_link
        self.nE = int(self.fn.equality.sum())
        self._elim = _Pattern.of(self.fn.kkt, self.ns).elimination(self.nv, self.ns + self.nL, self.nE)
        self.recompute = self._recomputes_coupling()
        if self.recompute and self.compiled:
            self.fn.compile(extra=("coupling",))
        self._factored_at: _State | None = None  # the state of the last factorization, to recompute
        self.last: SchurResult | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._directions = 0

    def bytes_per_sample(self) -> int:
        """Estimated memory of a round per sample: the kept factors and coupling blocks plus a dozen
        vectors of the sample's variables and rows (iterate, directions, residuals, scaling): 16.7 KB
        for the 8-6-6-1 round, where the one-thread rows of docs/scaling.md fit 16.8 KB."""
        e = self._elim
        kept = e.lpat[0][-1] + e.ppat[0][-1] + len(e.avh[0]) + len(e.jev[0]) + len(e.jes[0])
        return int(8 * (kept + 12 * (self.nv + self.ng)))

    def _recomputes_coupling(self) -> bool:
        """``coupling``: 'auto' recomputes when the samples of every rank on this machine times
        ``bytes_per_sample()`` exceed half of MemAvailable (Linux; elsewhere it keeps them)."""
        mode = self.config.coupling
        if mode != "auto":
            return mode == "recompute"
        here = self.shards.machine_samples()  # collective: before any rank may return
        available = _available_memory()
        return available is not None and here * self.bytes_per_sample() > 0.5 * available

    def _compile(self) -> bool:
        """Compile the per-sample functions as ``compile`` says; a missing compiler is an error for
        'always', a warning for 'auto' (the virtual machine is used)."""
        from .compiled import CompilerUnavailable

        mode = self.config.compile
        if mode == "never" or (mode == "auto" and self.total < COMPILE_FROM):  # over all ranks: a large run
            return False
        try:
            self.fn.compile()
        except CompilerUnavailable as err:
            if mode == "always":
                raise
            warnings.warn(f"the structured round runs in CasADi's virtual machine (a round at m = 10^4 "
                          f"took 1.38x longer there): {err}", RuntimeWarning, stacklevel=3)
            return False
        return True

    # -------------------------------------------------------------------------------- evaluation
    def _chunks(self) -> list[tuple[int, int]]:
        """Samples split into equal chunks of at most ``chunk_size``, as many as a multiple of ``threads``
        (each thread gets the same work); one chunk below ``PARALLEL_FROM`` samples."""
        t = self.config.threads if self.m >= PARALLEL_FROM else 1
        n = -(-self.m // self.config.chunk_size)
        n = max(1, min(self.m, -(-n // t) * t))
        edges = np.linspace(0, self.m, n + 1).round().astype(int)
        return [(int(lo), int(hi)) for lo, hi in zip(edges[:-1], edges[1:])]

    def _call(self, name: str, lo: int, hi: int, s: np.ndarray, V: np.ndarray, *extra,
              out: list | None = None) -> list[np.ndarray]:
        """``name`` on samples ``lo:hi``; per-sample outputs as ``(k, hi - lo)`` (written into ``out``'s
        arrays where given), sums 1-D (dense outputs only)."""
        mapped = self.fn.mapped(name, hi - lo)
        return mapped(s, self.ps, V[:, lo:hi], self.pv[:, lo:hi], self.omega, self.d[:, lo:hi], self.dL, *extra,
                      out=out)

    def _residual(self, st: _State) -> _Residual:
        g, rd_v = np.empty((self.ng, self.m)), np.empty((self.nv, self.m))
        f, rd_s, aL = 0.0, np.zeros(self.ns), np.zeros(self.nL)
        def chunk(lo, hi):
            _, fj, gs, _, aj = self._call("resid", lo, hi, st.s, st.V, st.M[:, lo:hi], st.lam,
                                          out=[g[:, lo:hi], None, None, rd_v[:, lo:hi], None])
            return fj, gs, aj

        for fj, gs, aj in self._map_chunks(chunk):  # summed in chunk order
            f, rd_s, aL = f + float(fj[0]), rd_s + gs, aL + aj
        f, rd_s, aL = self.shards.sum_each(np.array([f]), rd_s, aL)
        a0, f0, grad0, _, _ = self.fn.shared(st.s, self.ps, self.omega, self.dL, st.lam)
        return _Residual(float(f[0]) + float(f0), g, aL + a0.full().ravel(), rd_s + grad0.full().ravel(), rd_v)

    def _norms(self, st: _State, r: _Residual, target: float) -> dict:
        """The perturbed KKT residual's parts (complementarity against ``target``) as the largest
        primal and dual entries, the mean complementarity ``mu``, the dual scale ``s_d`` and the
        2-norm ``merit``, over every sample of every rank (two reductions) and the shared rows once."""
        I, IL = self.ineq, self.ineq_link
        sq = lambda a: float(np.dot(a.ravel(), a.ravel()))  # noqa: E731
        top = lambda a: float(np.abs(a).max(initial=0.0))  # noqa: E731

        def chunk(lo, hi):  # the chunk's sums of squares, complementarity, |multipliers|; largest entries
            g, T, M, rd_v = r.g[:, lo:hi], st.T[:, lo:hi], st.M[:, lo:hi], r.rd_v[:, lo:hi]
            comp, prim = T[I] * M[I], (g[~I], g[I] + T[I])
            return (np.array([sum(sq(p) for p in prim) + sq(rd_v) + sq(comp - target), comp.sum(), comp.size,
                              np.abs(M).sum(), M.size]),
                    np.array([max(top(p) for p in prim), top(rd_v)]))

        parts = self._map_chunks(chunk)
        compL = st.t[IL] * st.lam[IL]
        primL, dualS = np.concatenate([r.aL[~IL], r.aL[IL] + st.t[IL]]), r.rd_s / self.total
        sums = self.shards.sum(np.sum([p[0] for p in parts], axis=0))
        big = self.shards.max(np.max([p[1] for p in parts], axis=0))
        n_comp, n_mult = sums[2] + compL.size, sums[4] + st.lam.size
        mult = sums[3] + float(np.abs(st.lam).sum())
        return {"primal": max(big[0], top(primL)),
                "dual": max(big[1], top(dualS)),
                "mu": (sums[1] + float(compL.sum())) / n_comp if n_comp else 0.0,
                "s_d": max(1.0, mult / n_mult / 100.0) if n_mult else 1.0,
                "merit": float(np.sqrt(sums[0] + sq(primL) + sq(dualS) + sq(compL - target)))}

    @staticmethod
    def _merit(parts: dict) -> float:
        return parts["merit"]

    # -------------------------------------------------------------------------------- scaling
    def _scale(self, s: np.ndarray, V: np.ndarray) -> None:
        """Row scales ``d`` (ng x m), ``dL`` and the objective scale ``omega`` at the start (module docstring)."""
        self.d, self.dL, self.omega = np.ones((self.ng, self.m)), np.ones(self.nL), self.omega0
        if not self.config.scaling:
            return
        row, link_v = np.zeros((self.ng, self.m)), np.zeros(self.nL)
        j0, grad0 = (a.full() for a in self.fn.shared_scale(s, self.ps))
        link_s, grad_s, grad_v = j0.reshape(self.nL, self.ns), grad0.ravel(), 0.0
        link_local, grad_local = np.zeros_like(link_s), np.zeros_like(grad_s)
        for lo, hi in self._chunks():
            r, lv, ls, gv, gs = self._call("scale", lo, hi, s, V)
            row[:, lo:hi] = r
            link_v = np.maximum(link_v, lv.max(axis=1, initial=0.0))
            link_local, grad_local = link_local + ls.reshape(self.nL, self.ns, order="F"), grad_local + gs
            grad_v = max(grad_v, float(gv.max(initial=0.0)))
        link_local, grad_local = self.shards.sum_each(link_local, grad_local)
        link_s, grad_s = link_s + link_local, grad_s + grad_local
        top_v = self.shards.max(np.concatenate([link_v, [grad_v]]))
        link_v, grad_v = top_v[:-1], float(top_v[-1])
        self.d = np.minimum(1.0, MAX_GRADIENT / np.maximum(row, 1e-300))
        self.dL = np.minimum(1.0, MAX_GRADIENT / np.maximum(np.maximum(link_v, np.abs(link_s).max(axis=1, initial=0.0)),
                                                            1e-300))
        top = self.omega0 * max(grad_v, float(np.abs(grad_s).max(initial=0.0)) / self.total)
        self.omega = self.omega0 * min(1.0, MAX_GRADIENT / top) if top > 0 else self.omega0

    # -------------------------------------------------------------------------------- the Newton system
    def _factor(self, st: _State) -> tuple[list[ChunkFactor], np.ndarray]:
        """Every sample block eliminated (chunks on ``threads`` threads); returns the chunks' factors
        and the Schur complement ``S`` on ``(ds, dlambda_L)``."""
        ns, nL, delta = self.ns, self.nL, self.config.regularization
        self._factored_at = st if self.recompute else None
        _, _, _, h0, j0 = self.fn.shared(st.s, self.ps, self.omega, self.dL, st.lam)
        self._h0, self._j0 = h0.full(), j0.full().reshape(nL, ns)
        S, JL = np.zeros((ns + nL, ns + nL)), np.zeros((nL, ns))
        self._shift = np.zeros(self.m)
        try:
            parts = self._map_chunks(lambda lo, hi: self._eliminate(st, lo, hi))
            error = None
        except np.linalg.LinAlgError as err:
            parts, error = [], err
        if self.shards.any(error is not None):  # a singular block on one rank ends the solve on every rank
            raise np.linalg.LinAlgError(self.shards.first("" if error is None else str(error)))
        factors = [f for f, _, _, _ in parts]
        for _, share, jl, _ in parts:
            S += share
            JL += jl
        S, JL, corrected = self.shards.sum_each(S, JL, np.array([sum(c for _, _, _, c in parts)], dtype=float))
        self._corrected = int(corrected[0])
        S[:ns, :ns] += self._h0
        JL += self._j0
        S[:ns, ns:] += JL.T
        S[ns:, :ns] += JL
        S = 0.5 * (S + S.T)
        S[ns:, ns:] -= np.diag(np.where(self.ineq_link, st.t / np.where(self.ineq_link, st.lam, 1.0), 0.0) + delta)
        S[:ns, :ns] += delta * np.eye(ns)
        return factors, S

    def _map_chunks(self, fn) -> list:
        """``fn(lo, hi)`` for every chunk, on ``threads`` threads, in chunk order."""
        return self._map_factors(lambda c: fn(*c), self._chunks())

    def _map_factors(self, fn, items: list) -> list:
        """``fn(item)`` for every item (one per chunk), on ``threads`` threads (the compiled kernels
        and NumPy's products release the GIL), in order: sums over chunks stay deterministic."""
        if self.config.threads <= 1 or len(items) == 1:
            return [fn(x) for x in items]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.config.threads)
        return list(self._pool.map(fn, items))

    def _sigma(self, st: _State, lo: int, hi: int) -> np.ndarray:
        r"""The chunk's :math:`\Sigma = \lambda / t` on the inequality rows, the augmentation
        :math:`\rho` on the equality rows (built per chunk: no full-size array)."""
        return np.where(self.ineq[:, None], st.M[:, lo:hi] / st.T[:, lo:hi], self.config.augmentation)

    def _eliminate(self, st: _State, lo: int, hi: int):
        """One chunk's factors (:class:`~.elimination.Elimination`), its share of ``S`` (the ``A_ss``
        block and ``F^T F - G^T G``), its part of the linking rows' Jacobian on ``s`` and how many
        blocks needed an inertia correction."""
        ns, kkt = self.ns, self.fn.kkt
        avv, jev, jes = (np.empty((kkt.nnz_out(o), hi - lo)) for o in (0, 3, 4))
        avh, out = self._coupling_buffer(hi - lo)
        _, _, a_ss, _, _, _, j_ls = self._call("kkt", lo, hi, st.s, st.V, st.M[:, lo:hi], st.lam,
                                               self._sigma(st, lo, hi), out=[avv, out[0], None, jev, jes, out[1], None])
        try:
            fc, share, shift = self._elim.factor(avv, avh, jev, jes, self.config.regularization, SHIFTS_RELATIVE,
                                                 SHIFTS_ABSOLUTE)
        except np.linalg.LinAlgError as err:
            raise np.linalg.LinAlgError(f"samples {self.shards.offset + lo}:{self.shards.offset + hi}: {err}") from None
        fc.lo, fc.hi = lo, hi
        if self.recompute:  # the steps evaluate it again (_coupled)
            fc.avh = None
        self._shift[lo:hi] = shift  # the system solved is A_vv + shift I: refinement works on that one
        share[:ns, :ns] += _scatter(a_ss, self.fn.kkt.sparsity_out(2), (ns, ns), symmetric=True)
        return fc, share, j_ls.reshape(self.nL, ns, order="F"), int((shift > 1e-6).sum())

    def _coupled(self, fc: ChunkFactor) -> ChunkFactor:
        """``fc`` with its coupling blocks: kept, or evaluated again at the factorization's point."""
        if fc.avh is not None:
            return fc
        st = self._factored_at
        lo, hi = fc.lo, fc.hi
        avh, out = self._coupling_buffer(hi - lo)
        self._call("coupling", lo, hi, st.s, st.V, st.M[:, lo:hi], st.lam, self._sigma(st, lo, hi), out=out)
        return replace(fc, avh=self._elim.tiles(avh))

    def _coupling_buffer(self, c: int) -> tuple[np.ndarray, list]:
        """A chunk's coupling nonzeros ``(nnz, c)`` as :class:`~.elimination.Elimination` reads them
        (one column per sample) and its two parts, :math:`A_{vs}` and :math:`J_{Lv}`, as views the
        per-sample functions write into."""
        n_vs = self.fn.coupling.nnz_out(0)
        avh = np.empty((n_vs + self.fn.coupling.nnz_out(1), c))
        return avh, [avh[:n_vs], avh[n_vs:]]

    def _rhs(self, st: _State, r: _Residual, rc: np.ndarray, rcL: np.ndarray) -> _Rhs:
        """The Newton system's right-hand side at ``st`` for complementarity residuals ``rc`` (zero on
        the equality rows; used as it is, not copied), ``rcL``."""
        I, IL = self.ineq[:, None], self.ineq_link
        return _Rhs(r.rd_s, r.rd_v, r.g[~self.ineq], np.where(I, r.g + st.T, 0.0), np.where(IL, r.aL + st.t, r.aL),
                    rc, np.where(IL, rcL, 0.0))

    def _direction(self, st: _State, rhs: _Rhs, factors: list[ChunkFactor], S: np.ndarray,
                   into: _State | None = None) -> _State:
        """The step ``d`` with ``K d = -rhs`` (``K``: the unreduced Newton matrix), by elimination;
        with ``into``, added to that state chunk by chunk and returned (a refinement then holds one
        direction, not two)."""
        IL, ns = self.ineq_link, self.ns
        self._directions += 1
        rho, rE_all = self.config.augmentation, rhs.rE

        def reduce(fc):  # the chunk's right-hand side b_v and its part of the shared one
            lo, hi = fc.lo, fc.hi
            w = np.empty((self.ng, hi - lo))  # on the equality rows rho r_E: rho J_E^T r_E augments
            fused.reduce_weights(w, st.M, st.T, rhs.rI, rhs.rc, rE_all, rho, self._iI, self._iE, lo)
            jv_w, js_w = self._call("jtv", lo, hi, st.s, st.V, w, out=[np.empty((self.nv, hi - lo)), None])
            b, rE = jv_w, rE_all[:, lo:hi]
            b += rhs.rd_v[:, lo:hi]
            np.negative(b, out=b)  # b = -(rd_v + J_v^T w), one column per sample
            return b, rE, js_w, self._elim.reduce(self._coupled(fc), b, rE)

        parts = self._map_factors(reduce, factors)
        lam = np.where(IL, st.lam, 1.0)
        local = np.zeros(ns + self.nL)
        for _, _, js_w, part in parts:
            local[:ns] += js_w
            local += part
        (local,) = self.shards.sum_each(local)
        rhs_hat = np.concatenate([-rhs.rd_s, -rhs.rL + np.where(IL, rhs.rcL / lam, 0.0)]) - local
        dh = np.linalg.solve(S, rhs_hat)
        if into is None:
            into = _State(np.zeros(ns), np.zeros((self.nv, self.m)), np.zeros((self.ng, self.m)),
                          np.zeros((self.ng, self.m)), np.zeros(self.nL), np.zeros(self.nL))

        def back(item):  # the chunk's steps, added into the state
            fc, (b, rE, _, _) = item
            lo, hi = fc.lo, fc.hi
            dv, dy = self._elim.back(self._coupled(fc), b, rE, dh)
            jdx, jl = self._call("jvp", lo, hi, st.s, st.V, dh[:ns], dv, out=[np.empty((self.ng, hi - lo)), None])
            fused.back_update(into.V, into.M, into.T, dv, dy, jdx, rhs.rI, rhs.rc, st.M, st.T, self._iI, self._iE, lo)
            return jl

        jl_dx = np.zeros(self.nL)
        for jl in self._map_factors(back, list(zip(factors, parts))):
            jl_dx += jl
        (jl_dx,) = self.shards.sum_each(jl_dx)
        jl_dx += self._j0 @ dh[:ns]
        into.s += dh[:ns]
        into.lam += dh[ns:]
        into.t += np.where(IL, -rhs.rL - jl_dx, 0.0)
        return into

    def _remainder(self, st: _State, d: _State, rhs: _Rhs) -> _Rhs:
        """``K d + rhs``: what ``d`` leaves of the Newton system (exact products, for refinement)."""
        IL = self.ineq_link
        rd_v, rE = np.empty((self.nv, self.m)), np.empty((self.nE, self.m))
        rI, rc = np.zeros((self.ng, self.m)), np.zeros((self.ng, self.m))  # zero on the equality rows
        rd_s, jl_dx = np.zeros(self.ns), np.zeros(self.nL)

        def chunk(lo, hi):  # the per-sample parts written chunk by chunk (no full-size temporaries)
            v, jd = rd_v[:, lo:hi], np.empty((self.ng, hi - lo))
            a_s, _, _, jl = self._call("apply", lo, hi, st.s, st.V, st.M[:, lo:hi], st.lam, d.s, d.V[:, lo:hi],
                                       d.M[:, lo:hi], d.lam, out=[None, v, jd, None])
            top = fused.remainder_parts(v, rhs.rd_v, self._shift, d.V, jd, rE, rhs.rE, rI, d.T, rhs.rI, rc, st.M, st.T,
                                        d.M, rhs.rc, self._iI, self._iE, lo)
            return a_s, jl, top

        top = 0.0
        for a_s, jl, t in self._map_chunks(chunk):
            rd_s, jl_dx, top = rd_s + a_s, jl_dx + jl, max(top, t)
        rd_s, jl_dx = self.shards.sum_each(rd_s, jl_dx)
        rd_s += rhs.rd_s + self._h0 @ d.s + self._j0.T @ d.lam
        jl_dx += self._j0 @ d.s
        return _Rhs(rd_s, rd_v, rE, rI, jl_dx + np.where(IL, d.t, 0.0) + rhs.rL, rc,
                    np.where(IL, st.lam * d.t + st.t * d.lam + rhs.rcL, 0.0), top)

    def _solve(self, st: _State, rhs: _Rhs, factors: list[ChunkFactor], S: np.ndarray, refine: bool = True) -> _State:
        """:meth:`_direction` with iterative refinement on the unreduced system (``refinement`` steps at
        most, while what is left exceeds ``1e-9`` of the right-hand side)."""
        d = self._direction(st, rhs, factors, S)
        size = rhs.size(self.total, self.shards)
        for _ in range(self.config.refinement if refine else 0):
            rem = self._remainder(st, d, rhs)
            if rem.size(self.total, self.shards) <= 1e-9 * size:
                break
            self._direction(st, rem, factors, S, into=d)  # added in place: one direction in memory
            del rem
        return d

    # -------------------------------------------------------------------------------- the iteration
    def _start(self, s: np.ndarray, V: np.ndarray) -> _State:
        """Slacks pushed inside (at least ``slack_push * max(1, |g|)``); multipliers 1 on the inequality
        rows, 0 on the equality rows, or the last solve's (``warm_start``) where they are positive."""
        I, IL, push = self.ineq[:, None], self.ineq_link, self.config.slack_push
        st = _State(s, V, np.zeros((self.ng, self.m)), np.ones((self.ng, self.m)), np.zeros(self.nL), np.ones(self.nL))
        r = self._residual(st)
        st.T = np.where(I, np.maximum(-r.g, push * np.maximum(1.0, np.abs(r.g))), 1.0)
        st.t = np.where(IL, np.maximum(-r.aL, push * np.maximum(1.0, np.abs(r.aL))), 1.0)
        mu0 = self.config.mu_init  # on the central path t * lambda = mu0: rows far from active start near 0
        st.M = np.where(I, mu0 / st.T if mu0 else np.ones_like(st.T), 0.0)
        st.lam = np.where(IL, mu0 / st.t if mu0 else np.ones_like(st.t), 0.0)
        last = self.last
        if self.config.warm_start and last is not None and last.M is not None and last.M.shape == st.M.shape:
            st.M = np.where(I, np.clip(last.M / self.d, 1e-2, 1e2), last.M / self.d)
            st.lam = np.where(IL, np.clip(last.lam / self.dL, 1e-2, 1e2), last.lam / self.dL)
        return st

    def _max_step(self, st: _State, d: _State, tau: float) -> float:
        """The fraction to the boundary: the longest step (at most 1) that keeps every slack and
        multiplier of the inequality rows above ``1 - tau`` of its value (chunks on the threads)."""
        IL = self.ineq_link

        def longest(pairs) -> float:
            best = 1.0
            for v, dv in pairs:
                neg = dv < 0
                if neg.any():
                    best = min(best, float((-tau * v[neg] / dv[neg]).min()))
            return best

        chunks = self._map_chunks(lambda lo, hi: fused.boundary_step(st.T, d.T, st.M, d.M, self._iI, lo, hi, tau))
        return self.shards.min(min(min(chunks), longest(((st.t[IL], d.t[IL]), (st.lam[IL], d.lam[IL])))))

    def _products(self, st: _State, d: _State | None = None, alpha: float = 0.0) -> tuple[float, float, int]:
        """The complementarity products ``t_i lambda_i`` at ``st`` (or at ``st + alpha d``, built
        without the moved point's other variables): their smallest value, mean and number over
        every rank (``inf, 0, 0`` when there is none)."""
        IL = self.ineq_link
        dT, dM = (st.T, st.M) if d is None else (d.T, d.M)

        def chunk(lo, hi):  # the products of the chunk's samples: smallest, sum, number
            low, total = fused.products(st.T, st.M, dT, dM, alpha, d is not None, self._iI, lo, hi)
            return low, total, self._iI.size * (hi - lo)

        parts = self._map_chunks(chunk)
        cL = st.t[IL] * st.lam[IL] if d is None else (st.t[IL] + alpha * d.t[IL]) * (st.lam[IL] + alpha * d.lam[IL])
        total, n = self.shards.sum(np.array([sum(p[1] for p in parts), sum(p[2] for p in parts)]))
        total, n = total + float(cL.sum()), n + cL.size
        low = min(self.shards.min(min(p[0] for p in parts)), float(cL.min(initial=np.inf)))
        return low, (float(total / n) if n else 0.0), int(n)

    def _spread(self, st: _State, d: _State | None = None, alpha: float = 0.0) -> float:
        """``min(t * lambda) / mean(t * lambda)`` (at ``st + alpha d``): how central the point is (1: perfectly)."""
        low, mean, n = self._products(st, d, alpha)
        return float(low / mean) if n and mean > 0 else 1.0

    def _centred_step(self, st: _State, d: _State, alpha: float, gamma: float) -> float:
        r"""The longest of ``alpha, 0.9 alpha, ...`` whose point stays in the neighbourhood
        :math:`t_i\lambda_i \ge \gamma\,\overline{t\lambda}` (slacks far below the average
        complementarity make :math:`\Sigma` too large for an accurate elimination)."""
        for _ in range(200):
            if self._spread(st, d, alpha) >= gamma:
                break
            alpha *= 0.9
        return alpha

    def _converged(self, parts: dict, acceptable: bool = False, floor: bool = False) -> bool:
        r"""Ipopt's test: primal residual, complementarity and the dual residual divided by
        :math:`s_d = \max(1, \overline{|\lambda|} / 100)` (large multipliers loosen it) below the tolerances;
        ``acceptable`` (short steps): ``acceptable_tol`` and ``acceptable_dual_tol``; ``floor`` (no step
        decreases the residual any more): ``acceptable_tol`` and ``floor_dual_tol``."""
        cfg = self.config
        tol, dual_tol = (cfg.acceptable_tol, cfg.acceptable_dual_tol) if acceptable else (cfg.tol, cfg.dual_tol)
        if floor:
            tol, dual_tol = cfg.acceptable_tol, cfg.floor_dual_tol
        return parts["primal"] <= tol and parts["mu"] <= tol and parts["dual"] <= dual_tol * parts["s_d"]

    def solve(self, s0: np.ndarray, V0: np.ndarray, ps: np.ndarray, pv: np.ndarray,
              max_wall_time: float | None = None) -> SchurResult:
        """Solve from ``(s0, V0)`` at parameters ``(ps, pv)``; never raises on a failed solve.  BLAS runs
        one thread meanwhile: the ``threads`` work on chunks (more BLAS threads would only spin)."""
        try:
            with blas_threads(1):
                return self._solve_ipm(s0, V0, ps, pv, max_wall_time)
        finally:
            self._factored_at = None  # the last iterate's state is not kept between solves

    def _solve_ipm(self, s0, V0, ps, pv, max_wall_time) -> SchurResult:
        t_start, cfg = time.perf_counter(), self.config
        limit = max_wall_time if max_wall_time is not None else cfg.max_wall_time
        self.ps, self.pv = np.asarray(ps, float), np.asarray(pv, float).reshape(-1, self.m)
        timings = {"factor": 0.0, "direction": 0.0, "residual": 0.0}
        self._directions = 0
        s0, V0 = np.asarray(s0, float), np.asarray(V0, float).reshape(self.nv, self.m)
        self._scale(s0, V0)
        st = self._start(s0.copy(), V0)  # never written in place: every step builds a new V (no copy of m columns)
        r = self._residual(st)
        parts, history, status, message = self._norms(st, r, 0.0), [], "Maximum_Iterations_Exceeded", ""
        stalls = 0
        for it in range(cfg.max_iter + 1):
            if self._converged(parts):
                status = "Solve_Succeeded"
                break
            evidence = self._infeasibility(st, r)
            if evidence:
                status, message = "Infeasible_Problem_Detected", evidence
                break
            if it == cfg.max_iter:
                break
            if self.shards.any(limit is not None and time.perf_counter() - t_start > limit):
                status = "Maximum_WallTime_Exceeded"
                break
            try:
                st, r, parts, row = self._iterate(st, r, parts, timings)
            except np.linalg.LinAlgError as err:
                status = "Error_In_Step_Computation"
                message = f"singular Newton system ({err})"
                break
            history.append(row)
            if cfg.print_level:
                print(f"schur-ipm {it + 1:3d}  f {r.f:.8e}  primal {row['primal']:.1e}  dual {row['dual']:.1e}  "
                      f"mu {row['mu']:.1e}  alpha {row['alpha']:.3f}  {time.perf_counter() - t_start:.1f} s", flush=True)
            stalls = stalls + 1 if row["alpha"] < 1e-3 else 0
            if row["alpha"] < ACCEPTABLE_ALPHA and self._converged(parts, acceptable=True):  # the precision floor
                status = "Solved_To_Acceptable_Level"
                break
            if row["alpha"] == 0.0 or stalls >= 5:  # no (real) decrease along the Newton step: the precision floor
                ok = self._converged(parts, acceptable=True)
                if not ok and self._converged(parts, floor=True):
                    ok, message = True, "at the precision floor: " + self._describe("Solved_To_Acceptable_Level", parts,
                                                                                    len(history))
                status = "Solved_To_Acceptable_Level" if ok else "Search_Direction_Becomes_Too_Small"
                break
        if status not in ("Solve_Succeeded", "Solved_To_Acceptable_Level") and not message:
            message = self._describe(status, parts, len(history))
        self.last = SchurResult(status, len(history), st.s, st.V, r.f, time.perf_counter() - t_start, message,
                                st.lam * self.dL, st.M * self.d, history, timings, self._directions,
                                float(parts["primal"]))
        return self.last

    def _describe(self, status: str, parts: dict, iterations: int) -> str:
        """Why a solve stopped, in words: the residuals it ended with."""
        prim, dual = parts["primal"], parts["dual"]
        return (f"{status} after {iterations} iterations: primal residual {prim:.2e} (tol {self.config.tol:g}), "
                f"dual {dual:.2e} (tol {self.config.dual_tol * parts['s_d']:g}), complementarity {parts['mu']:.2e}; "
                f"objective scale {self.omega:.3g}")

    def _infeasibility(self, st: _State, r: _Residual) -> str:
        """Evidence that the rows admit no point: a row still violated (by more than ``acceptable_tol``,
        scaled) whose multiplier passed ``infeasible_multiplier``; '' otherwise."""
        big, tol = self.config.infeasible_multiplier, self.config.acceptable_tol
        I, IL = self.ineq, self.ineq_link
        link_viol = np.where(IL, np.maximum(r.aL, 0.0), np.abs(r.aL))
        hit = np.flatnonzero((np.abs(st.lam) > big) & (link_viol > tol))
        if hit.size:
            k = hit[np.argmax(link_viol[hit])]
            return (f"{self.problem.link_names[k]} stays violated by {link_viol[k] / self.dL[k]:.4g} while its "
                    f"multiplier grew to {abs(st.lam[k]) / self.dL[k]:.3g}")
        viol = np.where(I[:, None], np.maximum(r.g, 0.0), np.abs(r.g))
        mask = (np.abs(st.M) > big) & (viol > tol)
        if not self.shards.any(mask.any()):
            return ""
        text = ""
        if mask.any():
            row, j = np.unravel_index(np.argmax(np.where(mask, viol, -1.0)), viol.shape)
            text = (f"{self.problem.row_names[row]} of sample {self.shards.offset + j} stays violated by "
                    f"{viol[row, j] / self.d[row, j]:.4g} while its multiplier grew to "
                    f"{abs(st.M[row, j]) / self.d[row, j]:.3g}")
        return self.shards.first(text)

    def _step(self, st: _State, r: _Residual, d: _State, mu: float, target: float):
        """Fraction to the boundary, the centrality neighbourhood, then :meth:`_line_search`."""
        a_max = self._max_step(st, d, max(0.995, 1.0 - mu))
        alpha = self._centred_step(st, d, a_max, min(self.config.centrality, 0.5 * self._spread(st)))
        return self._line_search(st, r, d, alpha, target)

    def _line_search(self, st: _State, r: _Residual, d: _State, alpha: float, target: float):
        """Backtracking on the perturbed KKT residual from ``alpha``; ``(st, r, 0.0)`` if it never decreases."""
        merit0 = self._merit(self._norms(st, r, target))
        for _ in range(20):
            cand = st.moved(d, alpha, self.ineq, self.ineq_link)
            r_c = self._residual(cand)
            if self._merit(self._norms(cand, r_c, target)) <= (1.0 - 1e-4 * alpha) * merit0:
                return cand, r_c, alpha
            alpha *= 0.5
        return st, r, 0.0

    def _iterate(self, st: _State, r: _Residual, parts: dict, timings: dict):
        """One predictor-corrector step with backtracking; returns the new point, residual, norms and a history row."""
        I, IL, t0 = self.ineq, self.ineq_link, time.perf_counter()
        factors, S = self._factor(st)
        t1 = time.perf_counter()
        mu = parts["mu"]
        comp, compL = np.where(I[:, None], st.T * st.M, 0.0), np.where(IL, st.t * st.lam, 0.0)
        aff = self._solve(st, self._rhs(st, r, comp, compL), factors, S, refine=False)  # sets sigma only
        _, mu_aff, _ = self._products(st, aff, self._max_step(st, aff, 1.0))
        sigma = min(1.0, (mu_aff / mu) ** 3) if mu > 0 else 0.0
        target = sigma * mu
        rc = np.where(I[:, None], aff.T * aff.M - target, 0.0)
        rc += comp
        rcL = compL + np.where(IL, aff.t * aff.lam - target, 0.0)
        del aff, comp  # the memory of two states' worth less during the corrector
        d = self._solve(st, self._rhs(st, r, rc, rcL), factors, S)
        del rc
        t2 = time.perf_counter()
        trial, r_t, alpha = self._step(st, r, d, mu, target)
        if alpha == 0.0:  # an aggressive target spoils descent: the plain Newton step for a tenth of mu
            target = max(target, 0.1 * mu)
            comp = np.where(I[:, None], st.T * st.M, 0.0)
            d = self._solve(st, self._rhs(st, r, comp - np.where(I[:, None], target, 0.0),
                                          compL - np.where(IL, target, 0.0)), factors, S)
            trial, r_t, alpha = self._step(st, r, d, mu, target)
        del factors
        parts = self._norms(trial, r_t, 0.0)
        timings["factor"] += t1 - t0
        timings["direction"] += t2 - t1
        timings["residual"] += time.perf_counter() - t2
        row = {"objective": r_t.f, "primal": parts["primal"], "corrected": self._corrected,
               "dual": parts["dual"], "mu": parts["mu"], "alpha": alpha, "sigma": sigma}
        return trial, r_t, parts, row
