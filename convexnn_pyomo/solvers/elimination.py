r"""Compiled per-sample elimination for :class:`~.schur_ipm.SchurInteriorPoint` (numba, no GIL).

One sample's Newton block (module docstring of :mod:`.schur_ipm`) is

.. math::
    \begin{pmatrix} A & J^T\\ J & 0\end{pmatrix}
    \begin{pmatrix}\Delta v\\ \Delta y\end{pmatrix} =
    \begin{pmatrix} b - \hat A\,\Delta\hat s\\ -r_E - J_{\hat s}\Delta\hat s\end{pmatrix},

:math:`A = A_{vv}` (augmented, ``nv x nv``), :math:`\hat A = A_{v\hat s}` (``nv x nsh``),
:math:`J = J_{Ev}` (``nE x nv``), :math:`J_{\hat s} = J_{E\hat s}`.  With :math:`A = LL^T`,
:math:`G = L^{-1}\hat A`, :math:`C = L^{-1}J^T`, :math:`P = C^TC = L_PL_P^T` and
:math:`F = L_P^{-1}(C^TG - J_{\hat s})`, the sample adds :math:`F^TF - G^TG` to the Schur
complement.  :func:`factor_chunk` computes, per sample of a chunk, the factors
:math:`L, L_P` (kept for the step) and :math:`G, F` on their rows' column ranges (written into
chunk-wide buffers, so the sums :math:`G^TG` and :math:`F^TF` are a few large BLAS products,
then discarded; :class:`Elimination` plans the order and the ranges).  The step needs
only :math:`L, L_P` and the sparse blocks:

.. math::
    w = A^{-1}b,\quad q = P^{-1}(Jw + r_E),\quad z = A^{-1}(b - J^Tq),\qquad
    \text{right-hand side of } \hat s \mathrel{-}= \textstyle\sum_j \hat A^T z + J_{\hat s}^T q

(:func:`reduce_chunk`), and after the shared solve (:func:`back_chunk`)

.. math::
    y = b - \hat A\Delta\hat s,\quad \Delta y = P^{-1}(JA^{-1}y + r_E + J_{\hat s}\Delta\hat s),\quad
    \Delta v = A^{-1}(y - J^T\Delta y).

Sparse blocks are passed as ``(values (c, nnz), row index, column index)``; a factor is stored
as its entries in the order of its pattern ``(ptr, col)`` (row ``i``: columns
``col[ptr[i]:ptr[i + 1]]``, the diagonal last), computed in a packed work array (row ``i`` of a
lower triangle at ``i (i + 1) / 2``).  A block whose Cholesky factorization fails gets the shifts
``rel * max|diag|`` (roundoff), then ``abs`` (Ipopt's inertia correction; ``SHIFTS_RELATIVE``,
``SHIFTS_ABSOLUTE`` of :mod:`.schur_ipm`), and the shift used is returned.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

try:
    import numba
except ImportError as err:  # pragma: no cover - numba is a dependency
    raise ImportError("the structured round needs numba (pip install numba)") from err

__all__ = ["ChunkFactor", "Elimination", "back_chunk", "factor_chunk", "reduce_chunk"]

_JIT = {"nogil": True, "cache": True, "fastmath": {"reassoc", "contract"}, "error_model": "numpy"}


@numba.njit(**_JIT)
def _chol(A, Lp, n, ptr, col):
    """Packed Cholesky factor of the dense ``A`` into ``Lp``, row ``i`` nonzero in columns
    ``col[ptr[i]:ptr[i + 1]]`` (ascending, the diagonal last); False if a pivot is not positive."""
    Lp[:] = 0.0
    for i in range(n):
        ri = i * (i + 1) // 2
        for q in range(ptr[i], ptr[i + 1]):
            k = col[q]
            rk = k * (k + 1) // 2
            s = A[i, k]
            for qq in range(ptr[i], q):
                p = col[qq]
                s -= Lp[ri + p] * Lp[rk + p]
            if k == i:
                if not s > 0.0:
                    return False
                Lp[ri + i] = np.sqrt(s)
            else:
                Lp[ri + k] = s / Lp[rk + k]
    return True


@numba.njit(**_JIT)
def _chol_shifted(A, Lp, n, ptr, col, rel, absolute):
    """:func:`_chol` of ``A``, then of ``A + shift I`` over the shifts; returns the shift (-1: none worked)."""
    if _chol(A, Lp, n, ptr, col):
        return 0.0
    top = 0.0
    for i in range(n):
        top = max(top, abs(A[i, i]))
    for t in range(rel.size + absolute.size):
        shift = rel[t] * top if t < rel.size else absolute[t - rel.size]
        B = A.copy()
        for i in range(n):
            B[i, i] += shift
        if _chol(B, Lp, n, ptr, col):
            return shift
    return -1.0


@numba.njit(**_JIT)
def _compress(Lp, Lv, n, ptr, col):
    """The pattern's entries of the packed factor ``Lp``, in the pattern's order, into ``Lv``."""
    for i in range(n):
        ri = i * (i + 1) // 2
        for q in range(ptr[i], ptr[i + 1]):
            Lv[q] = Lp[ri + col[q]]


@numba.njit(**_JIT)
def _forward(Lv, X, n, ptr, col, lo, hi):
    """``X <- L^{-1} X`` in place (``Lv``: the factor's entries in the pattern's order); the
    nonzeros of row ``i`` of ``X`` lie in columns ``lo[i]:hi[i]`` (before and after: the symbolic
    analysis of :class:`Elimination`)."""
    for i in range(n):
        for q in range(ptr[i], ptr[i + 1] - 1):
            k = col[q]
            lik = Lv[q]
            for c in range(lo[k], hi[k]):
                X[i, c] -= lik * X[k, c]
        inv = 1.0 / Lv[ptr[i + 1] - 1]
        for c in range(lo[i], hi[i]):
            X[i, c] *= inv


@numba.njit(**_JIT)
def _solve_vec(Lv, x, n, ptr, col):
    """``x <- (L L^T)^{-1} x`` in place (``Lv`` as in :func:`_forward`)."""
    for i in range(n):
        s = x[i]
        for q in range(ptr[i], ptr[i + 1] - 1):
            s -= Lv[q] * x[col[q]]
        x[i] = s / Lv[ptr[i + 1] - 1]
    for i in range(n - 1, -1, -1):
        x[i] /= Lv[ptr[i + 1] - 1]
        xi = x[i]
        for q in range(ptr[i], ptr[i + 1] - 1):
            x[col[q]] -= Lv[q] * xi


@numba.njit(**_JIT)
def factor_chunk(avv, avv_r, avv_c, avh, avh_r, avh_c, jev, jev_r, jev_c, jes, jes_r, jes_c, nv, nsh, nE,
                 delta, rel, absolute, lptr, lcol, pptr, pcol, glo, ghi, flo, fhi, gpos, Lp, LPp, G, F, shift):
    """Factor every sample of a chunk (module docstring); returns the first sample whose block does
    not factorize even shifted, or -1.  ``avv``: upper-triangle nonzeros of :math:`A`; ``avh``: of
    :math:`\\hat A` (row: variable, column: shared unknown); ``jev``: of :math:`J` (row: equality
    row, column: variable); ``jes``: of :math:`J_{\\hat s}`; ``lptr, lcol`` (``pptr, pcol``): the
    pattern of :math:`L` (:math:`L_P`).  Outputs: the factors' entries in the patterns' order
    ``Lp (c, lptr[-1])``, ``LPp (c, pptr[-1])``,
    ``shift (c)``, and the rows of :math:`G` and :math:`F` restricted to their column ranges
    ``glo:ghi``, ``flo:fhi``: row ``i`` of sample ``j``'s ``G`` at
    ``G[gpos[0, i] + j gpos[1, i] + gpos[2, i]:][:ghi[i] - glo[i]]`` (the groups' layout of
    :class:`Elimination`), ``F`` as ``(c, nE, fhi - flo)``."""
    c = avv.shape[0]
    Lw, LPw = np.empty(nv * (nv + 1) // 2), np.empty(max(nE * (nE + 1) // 2, 1))
    Gj = np.empty((nv, nsh))
    Fj = np.empty((max(nE, 1), nsh))
    A = np.empty((nv, nv))
    Cm = np.empty((nv, nE))
    clo, chi = np.zeros(nv, dtype=np.int64), np.full(nv, nE, dtype=np.int64)
    P = np.empty((nE, nE))
    for j in range(c):
        A[:, :] = 0.0
        for t in range(avv_r.size):
            A[avv_r[t], avv_c[t]] = avv[j, t]
            A[avv_c[t], avv_r[t]] = avv[j, t]
        for i in range(nv):
            A[i, i] += delta
        sh = _chol_shifted(A, Lw, nv, lptr, lcol, rel, absolute)
        if sh < 0.0:
            return j
        shift[j] = sh
        _compress(Lw, Lp[j], nv, lptr, lcol)
        for i in range(nv):
            for col in range(glo[i], ghi[i]):
                Gj[i, col] = 0.0
        for t in range(avh_r.size):
            Gj[avh_r[t], avh_c[t]] = avh[j, t]
        _forward(Lp[j], Gj, nv, lptr, lcol, glo, ghi)
        for i in range(nv):
            at = gpos[0, i] + j * gpos[1, i] + gpos[2, i] - glo[i]
            for col in range(glo[i], ghi[i]):
                G[at + col] = Gj[i, col]
        if nE == 0:
            continue
        Cm[:, :] = 0.0
        for t in range(jev_r.size):
            Cm[jev_c[t], jev_r[t]] = jev[j, t]
        _forward(Lp[j], Cm, nv, lptr, lcol, clo, chi)
        for a in range(nE):
            for b in range(nE):
                s = 0.0
                for i in range(nv):
                    s += Cm[i, a] * Cm[i, b]
                P[a, b] = s
        if _chol_shifted(P, LPw, nE, pptr, pcol, rel, absolute) < 0.0:
            return j
        _compress(LPw, LPp[j], nE, pptr, pcol)
        Fj[:, :] = 0.0
        for t in range(jes_r.size):
            Fj[jes_r[t], jes_c[t]] = -jes[j, t]
        for a in range(nE):
            for i in range(nv):
                cia = Cm[i, a]
                if cia != 0.0:
                    for col in range(glo[i], ghi[i]):
                        Fj[a, col] += cia * Gj[i, col]
        _forward(LPp[j], Fj, nE, pptr, pcol, flo, fhi)
        for a in range(nE):
            for col in range(flo[0], fhi[0]):
                F[j, a, col - flo[0]] = Fj[a, col]
    return -1


@numba.njit(**_JIT)
def _equality_multiplier(LPp, pptr, pcol, jev, jev_r, jev_c, x, q, nE):
    """``q <- P^{-1}(J x + q)`` for one sample."""
    for t in range(jev_r.size):
        q[jev_r[t]] += jev[t] * x[jev_c[t]]
    _solve_vec(LPp, q, nE, pptr, pcol)


@numba.njit(**_JIT)
def _minus_solved_jt(Lp, lptr, lcol, jev, jev_r, jev_c, q, x, u, nv):
    """``x <- x - A^{-1} J^T q`` for one sample (``u``: work space)."""
    u[:] = 0.0
    for t in range(jev_r.size):
        u[jev_c[t]] += jev[t] * q[jev_r[t]]
    _solve_vec(Lp, u, nv, lptr, lcol)
    for i in range(nv):
        x[i] -= u[i]


@numba.njit(**_JIT)
def reduce_chunk(Lp, LPp, lptr, lcol, pptr, pcol, avh, avh_r, avh_c, jev, jev_r, jev_c, jes, jes_r, jes_c,
                 b, rE, perm, nv, nsh, nE):
    """``sum_j Â^T z_j + J_ŝ^T q_j`` over the chunk (module docstring); ``b (nv, c)`` (rows: the
    variables in the problem's order, read through ``perm``), ``rE (nE, c)``."""
    out = np.zeros(nsh)
    z, u, q = np.empty(nv), np.empty(nv), np.empty(nE)
    for j in range(b.shape[1]):
        for i in range(nv):
            z[i] = b[perm[i], j]
        _solve_vec(Lp[j], z, nv, lptr, lcol)
        if nE:
            for a in range(nE):
                q[a] = rE[a, j]
            _equality_multiplier(LPp[j], pptr, pcol, jev[j], jev_r, jev_c, z, q, nE)
            _minus_solved_jt(Lp[j], lptr, lcol, jev[j], jev_r, jev_c, q, z, u, nv)
            for t in range(jes_r.size):
                out[jes_c[t]] += jes[j, t] * q[jes_r[t]]
        for t in range(avh_r.size):
            out[avh_c[t]] += avh[j, t] * z[avh_r[t]]
    return out


@numba.njit(**_JIT)
def back_chunk(Lp, LPp, lptr, lcol, pptr, pcol, avh, avh_r, avh_c, jev, jev_r, jev_c, jes, jes_r, jes_c,
               b, rE, dh, perm, nv, nE, dV, dY):
    """The samples' steps after the shared one ``dh`` (module docstring) into ``dV (nv, c)`` (rows in
    the problem's order, written through ``perm``) and ``dY (nE, c)``; ``b``, ``rE`` as in
    :func:`reduce_chunk`."""
    x, u, q = np.empty(nv), np.empty(nv), np.empty(nE)
    for j in range(b.shape[1]):
        for i in range(nv):
            x[i] = b[perm[i], j]
        for t in range(avh_r.size):
            x[avh_r[t]] -= avh[j, t] * dh[avh_c[t]]
        _solve_vec(Lp[j], x, nv, lptr, lcol)
        if nE:
            for a in range(nE):
                q[a] = rE[a, j]
            for t in range(jes_r.size):
                q[jes_r[t]] += jes[j, t] * dh[jes_c[t]]
            _equality_multiplier(LPp[j], pptr, pcol, jev[j], jev_r, jev_c, x, q, nE)
            _minus_solved_jt(Lp[j], lptr, lcol, jev[j], jev_r, jev_c, q, x, u, nv)
            for a in range(nE):
                dY[a, j] = q[a]
        for i in range(nv):
            dV[perm[i], j] = x[i]


# ---------------------------------------------------------------------- symbolic analysis, driver
def _minimum_degree(adj: np.ndarray, coupling: np.ndarray) -> np.ndarray:
    """Greedy minimum-degree order of the graph ``adj``, ties and weight by ``coupling`` (how many
    shared unknowns a variable touches): variables coupled to many go last, so that
    :math:`L^{-1}\\hat A` stays sparse in the rows factored first."""
    adj, alive, order = adj.copy(), list(range(len(adj))), []
    np.fill_diagonal(adj, False)
    while alive:
        cost = [adj[i, alive].sum() + 0.05 * coupling[i] for i in alive]
        i = alive[int(np.argmin(cost))]
        order.append(i)
        alive.remove(i)
        nb = [k for k in alive if adj[i, k]]
        adj[np.ix_(nb, nb)] = True
    return np.array(order, dtype=np.int64)


def _fill(A: np.ndarray) -> np.ndarray:
    """Pattern of the Cholesky factor of the symmetric pattern ``A`` (lower triangle, diagonal included)."""
    L = np.tril(A | np.eye(len(A), dtype=bool))
    for k in range(len(A)):
        rows = np.flatnonzero(L[k + 1:, k]) + k + 1
        L[np.ix_(rows, rows)] |= np.tril(np.ones((rows.size, rows.size), dtype=bool))
    return L


def _rows(L: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(ptr, col)``: the columns of every row of the lower-triangular pattern ``L``, ascending."""
    cols = [np.flatnonzero(r[:i + 1]) for i, r in enumerate(L)]
    ptr = np.concatenate([[0], np.cumsum([c.size for c in cols])]).astype(np.int64)
    return ptr, (np.concatenate(cols) if cols else np.zeros(0)).astype(np.int64)


def _hull(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and one-past-last column of every row's nonzeros (0, 0 for an empty row)."""
    lo, hi = np.zeros(len(rows), dtype=np.int64), np.zeros(len(rows), dtype=np.int64)
    for i, r in enumerate(rows):
        nz = np.flatnonzero(r)
        if nz.size:
            lo[i], hi[i] = nz[0], nz[-1] + 1
    return lo, hi


@dataclass
class ChunkFactor:
    """One chunk's factors (kept for the steps): the entries of :math:`L`, :math:`L_P` in their
    patterns' order (:attr:`Elimination.lpat`, ``ppat``) and the sparse blocks."""

    Lp: np.ndarray
    LPp: np.ndarray
    avh: np.ndarray
    jev: np.ndarray
    jes: np.ndarray
    lo: int = 0  # the chunk's samples (set by the caller)
    hi: int = 0


class Elimination:
    r"""The per-sample elimination of one problem structure (module docstring).

    Built once from the sparsity patterns (triplets ``(rows, cols)``) of :math:`A` (upper
    triangle), :math:`\hat A`, :math:`J` and :math:`J_{\hat s}`, it orders the sample's variables
    (:func:`_minimum_degree`) and the shared unknowns (by the first row of :math:`G = L^{-1}\hat A`
    they appear in), so that every row of :math:`G` is nonzero in one short range of columns.  Rows
    with the same range form a group, and :math:`\sum_j G_j^TG_j` is one BLAS product per group and
    chunk on those columns only (for the 8-6-6-1 network with the class-wise bounds (19): 30% of the
    dense product's work).
    """

    def __init__(self, avv: tuple, avh: tuple, jev: tuple, jes: tuple, nv: int, nsh: int, nE: int):
        self.nv, self.nsh, self.nE = nv, nsh, nE
        A = np.zeros((nv, nv), dtype=bool)
        A[avv[0], avv[1]] = True
        A |= A.T
        Ah = np.zeros((nv, nsh), dtype=bool)
        Ah[avh[0], avh[1]] = True
        perm = _minimum_degree(A, Ah.sum(axis=1))
        L = _fill(A[np.ix_(perm, perm)])
        self.lpat, self.ppat = _rows(L), _rows(np.tril(np.ones((nE, nE), dtype=bool)))
        G = Ah[perm]
        for i in range(nv):
            for k in np.flatnonzero(L[i, :i]):
                G[i] |= G[k]
        first = np.where(G.any(axis=0), G.argmax(axis=0), nv)
        cperm = np.lexsort((np.arange(nsh), first)).astype(np.int64)  # shared unknowns by first row
        G = G[:, cperm]
        self.perm, self.cperm = perm, cperm
        ivar, icol = np.argsort(perm), np.argsort(cperm)
        self.glo, self.ghi = _hull(G)
        Js = np.zeros((nE, nsh), dtype=bool)
        Js[jes[0], icol[jes[1]]] = True
        # F's rows: E = C^T G - J_s mixed by the dense L_P^{-1}: one range for all, the hull of the
        # union of J_s's rows and the rows of G that C = L^{-1} J^T reaches
        C = np.zeros((nv, max(nE, 1)), dtype=bool)
        C[ivar[jev[1]], jev[0]] = True
        for i in range(nv):
            for k in np.flatnonzero(L[i, :i]):
                C[i] |= C[k]
        E = Js.any(axis=0) | G[C.any(axis=1)].any(axis=0)
        flo, fhi = _hull(E[None, :])
        self.flo, self.fhi = np.full(max(nE, 1), flo[0]), np.full(max(nE, 1), fhi[0])
        self.avv = (ivar[avv[0]], ivar[avv[1]])
        self.avh = (ivar[avh[0]], icol[avh[1]])
        self.jev = (jev[0], ivar[jev[1]])
        self.jes = (jes[0], icol[jes[1]])
        groups: dict = {}
        for i in range(nv):
            if self.ghi[i] > self.glo[i]:
                groups.setdefault((int(self.glo[i]), int(self.ghi[i])), []).append(i)
        self.groups = [(np.array(rows), lo, hi) for (lo, hi), rows in groups.items()]
        self._buffers: dict = {}
        self.flops = self._count(L, C, nE)

    def _count(self, L: np.ndarray, C: np.ndarray, nE: int) -> dict:
        r"""Floating-point operations per sample (a multiply-add counts 2), from the patterns:
        ``factor`` (the sparse Cholesky of :math:`A`, :math:`G = L^{-1}\hat A` on the rows' ranges,
        :math:`C`, :math:`P`, :math:`F`, and the groups' products :math:`G^TG`, :math:`F^TF`) and
        ``solve`` (one step: :func:`reduce_chunk` and :func:`back_chunk`)."""
        ptr, col = self.lpat
        chol = sum(2 * (q - ptr[i]) + 1 for i in range(self.nv) for q in range(ptr[i], ptr[i + 1]))
        width = self.ghi - self.glo
        forward = sum(2 * width[col[q]] for i in range(self.nv) for q in range(ptr[i], ptr[i + 1] - 1)) + width.sum()
        fw = int(self.fhi[0] - self.flo[0])
        equality = (2 * (ptr[-1] - self.nv) * nE + 2 * nE * nE * self.nv + 2 * int((C.sum(axis=1) * width).sum())
                    + nE * nE * fw) if nE else 0
        products = sum(2 * len(rows) * (hi - lo) ** 2 for rows, lo, hi in self.groups) + 2 * nE * fw * fw
        one_solve = 4 * ptr[-1]  # forward and backward with L
        solve = (2 + 2 * (nE > 0)) * 2 * one_solve + 4 * len(self.avh[0]) + 4 * len(self.jes[0])
        return {"factor": int(chol + forward + equality + products), "solve": int(solve)}

    def _layout(self, c: int) -> tuple[np.ndarray, list]:
        """Where the rows of :math:`G` go for a chunk of ``c`` samples: group after group, each a
        contiguous ``(c rows_g, width_g)`` matrix; ``gpos`` (base, per-sample stride, offset) per row."""
        gpos, views, base = np.zeros((3, self.nv), dtype=np.int64), [], 0
        for rows, lo, hi in self.groups:
            w = hi - lo
            for r, i in enumerate(rows):
                gpos[:, i] = base, len(rows) * w, r * w
            views.append((base, len(rows) * c, lo, hi))
            base += len(rows) * w * c
        return gpos, views, base

    def _buffer(self, c: int):
        """This thread's work space for a chunk of ``c`` samples (kept: no new pages every iteration)."""
        key = (threading.get_ident(), c)
        if key not in self._buffers:
            gpos, views, size = self._layout(c)
            fw = int(self.fhi[0] - self.flo[0])
            self._buffers[key] = (gpos, views, np.empty(size), np.empty((c, self.nE, fw)))
        return self._buffers[key]

    def factor(self, avv, avh, jev, jes, delta: float, rel, absolute):
        """Factor a chunk (nonzeros ``(c, nnz)`` in the patterns' order); returns ``(ChunkFactor,
        share of the Schur complement (nsh x nsh, F^T F - G^T G), shifts)``.  Raises
        ``LinAlgError`` if a block does not factorize even shifted."""
        c, nv, nsh, nE = avv.shape[0], self.nv, self.nsh, self.nE
        Lp, LPp, shift = np.empty((c, self.lpat[0][-1])), np.empty((c, self.ppat[0][-1])), np.zeros(c)
        gpos, views, G, F = self._buffer(c)
        bad = factor_chunk(avv, *self.avv, avh, *self.avh, jev, *self.jev, jes, *self.jes, nv, nsh, nE, delta, rel,
                           absolute, *self.lpat, *self.ppat, self.glo, self.ghi, self.flo, self.fhi, gpos, Lp, LPp,
                           G, F, shift)
        if bad >= 0:
            raise np.linalg.LinAlgError(f"the block of sample {bad} of the chunk is not positive definite, "
                                        "even with a shift of 1e12")
        share = np.zeros((nsh, nsh))
        for base, n, lo, hi in views:
            g = G[base:base + n * (hi - lo)].reshape(n, hi - lo)
            share[lo:hi, lo:hi] -= g.T @ g
        if nE:
            lo, hi = int(self.flo[0]), int(self.fhi[0])
            f = F.reshape(-1, hi - lo)
            share[lo:hi, lo:hi] += f.T @ f
        out = np.empty_like(share)
        out[np.ix_(self.cperm, self.cperm)] = share
        return ChunkFactor(Lp, LPp, avh, jev, jes), out, shift

    def _args(self, cf: ChunkFactor) -> tuple:
        return cf.Lp, cf.LPp, *self.lpat, *self.ppat, cf.avh, *self.avh, cf.jev, *self.jev, cf.jes, *self.jes

    def reduce(self, cf: ChunkFactor, b: np.ndarray, rE: np.ndarray) -> np.ndarray:
        r""":math:`\sum_j \hat A^T z_j + J_{\hat s}^T q_j` for ``b (nv, c)``, ``rE (nE, c)`` (one column
        per sample, any strides; module docstring)."""
        out = reduce_chunk(*self._args(cf), b, rE, self.perm, self.nv, self.nsh, self.nE)
        return out[np.argsort(self.cperm)]

    def back(self, cf: ChunkFactor, b: np.ndarray, rE: np.ndarray, dh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The samples' steps ``(dV (nv, c), dY (nE, c))`` after the shared step ``dh`` (``b``, ``rE``
        as in :meth:`reduce`)."""
        c = b.shape[1]
        dv, dy = np.empty((self.nv, c)), np.empty((self.nE, c))
        back_chunk(*self._args(cf), b, rE, np.ascontiguousarray(dh[self.cperm]), self.perm, self.nv, self.nE, dv, dy)
        return dv, dy
