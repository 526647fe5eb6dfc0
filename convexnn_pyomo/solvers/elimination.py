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
chunk-wide buffers, so the sums :math:`G^TG` and :math:`F^TF` are a few large BLAS
products, then discarded; :class:`Elimination` plans the order and the ranges).  The step needs
only :math:`L, L_P` and the sparse blocks:

.. math::
    w = A^{-1}b,\quad q = P^{-1}(Jw + r_E),\quad z = A^{-1}(b - J^Tq),\qquad
    \text{right-hand side of } \hat s \mathrel{-}= \textstyle\sum_j \hat A^T z + J_{\hat s}^T q

(:func:`reduce_chunk`), and after the shared solve (:func:`back_chunk`)

.. math::
    y = b - \hat A\Delta\hat s,\quad \Delta y = P^{-1}(JA^{-1}y + r_E + J_{\hat s}\Delta\hat s),\quad
    \Delta v = A^{-1}(y - J^T\Delta y).

Every sample of a problem has the same patterns, so the kernels work on samples side by side,
with their innermost loops over samples (vector instructions across samples, no index decoding
per sample): :func:`factor_chunk` ``FACTOR_BLOCK`` samples at a time, the steps ``BLOCK``.
Sparse blocks are passed as ``(values (nnz, c), row index, column index)`` (one column per
sample); a factor is stored as its entries in the order of its pattern ``(ptr, col)`` (row
``i``: columns ``col[ptr[i]:ptr[i + 1]]``, the diagonal last).  What the steps read (the factors
and the sparse blocks) is kept as tiles ``(c / BLOCK, nnz, BLOCK)``: one contiguous piece of
memory per block of samples, read as one stream.  A block whose Cholesky factorization fails
gets the shifts ``rel * max|diag|`` (roundoff), then ``abs`` (Ipopt's inertia correction;
``SHIFTS_RELATIVE``, ``SHIFTS_ABSOLUTE`` of :mod:`.schur_ipm`), and the shift used is returned.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from .jit import import_numba

try:
    numba = import_numba()
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


#: samples per block of the step kernels: a block's factor entries (196 x 64 doubles for the
#: 8-6-6-1 net) stay in the L2 cache over the block's four triangular solves, its vectors in L1
BLOCK = 64


#: samples factorized side by side (the inner loops of :func:`factor_chunk` run over them): a
#: block's rows of :math:`G` (about 2,300 x 16 doubles for the 8-6-6-1 net) stay in the L2 cache
FACTOR_BLOCK = 16
assert BLOCK % FACTOR_BLOCK == 0  # a factor block writes into one tile


@numba.njit(**_JIT)
def _cholesky_block(Lb, nb, ptr, col, pp, pa, pb, bad):
    r"""The Cholesky factors of ``nb`` samples side by side, in place: ``Lb (nnz, FACTOR_BLOCK)`` holds
    :math:`A`'s entries on the factor's pattern (one column per sample) and gets :math:`L`'s; entry
    ``q = (i, k)`` subtracts the products of the pairs ``pa[u], pb[u]`` (``u`` in ``pp[q]:pp[q + 1]``:
    the entries ``(i, p)``, ``(k, p)``, ``p < k``, in :func:`_chol`'s order).  ``bad[jj]``: the
    sample's block is not positive definite (its column is then meaningless)."""
    for jj in range(nb):
        bad[jj] = False
    for i in range(ptr.size - 1):
        for q in range(ptr[i], ptr[i + 1]):
            for u in range(pp[q], pp[q + 1]):
                x, y = pa[u], pb[u]
                for jj in range(nb):
                    Lb[q, jj] -= Lb[x, jj] * Lb[y, jj]
            k = col[q]
            if k == i:
                for jj in range(nb):
                    v = Lb[q, jj]
                    if v > 0.0:
                        Lb[q, jj] = np.sqrt(v)
                    else:
                        bad[jj] = True
                        Lb[q, jj] = 1.0
            else:
                d = ptr[k + 1] - 1
                for jj in range(nb):
                    Lb[q, jj] /= Lb[d, jj]


@numba.njit(**_JIT)
def _forward_block(Lb, Gb, nb, ptr, col, lo, hi, off):
    """``G <- L^{-1} G`` for ``nb`` samples side by side: row ``i`` of :math:`G` (nonzero in columns
    ``lo[i]:hi[i]``, before and after: the symbolic analysis of :class:`Elimination`) at rows
    ``off[i]:off[i] + hi[i] - lo[i]`` of ``Gb``, one column per sample."""
    for i in range(ptr.size - 1):
        for q in range(ptr[i], ptr[i + 1] - 1):
            k = col[q]
            for cc in range(lo[k], hi[k]):
                gi, gk = off[i] + cc - lo[i], off[k] + cc - lo[k]
                for jj in range(nb):
                    Gb[gi, jj] -= Lb[q, jj] * Gb[gk, jj]
        d = ptr[i + 1] - 1
        for jj in range(nb):
            inv = 1.0 / Lb[d, jj]
            for cc in range(off[i], off[i] + hi[i] - lo[i]):
                Gb[cc, jj] *= inv


@numba.njit(**_JIT)
def _shifted_column(avv, avv_r, avv_c, j, delta, Lb, jj, nv, ptr, col, rel, absolute, A, Lw, Lv):
    """Sample ``j``'s factor alone, with :func:`_chol_shifted`'s shifts, into column ``jj`` of ``Lb``;
    returns the shift (-1: none worked)."""
    A[:, :] = 0.0
    for t in range(avv_r.size):
        A[avv_r[t], avv_c[t]] = avv[t, j]
        A[avv_c[t], avv_r[t]] = avv[t, j]
    for i in range(nv):
        A[i, i] += delta
    sh = _chol_shifted(A, Lw, nv, ptr, col, rel, absolute)
    if sh >= 0.0:
        _compress(Lw, Lv, nv, ptr, col)
        Lb[:, jj] = Lv
    return sh


@numba.njit(**_JIT)
def factor_chunk(avv, avv_r, avv_c, avh, avh_r, avh_c, jev, jev_r, jev_c, jes, jes_r, jes_c, nv, nsh, nE,
                 delta, rel, absolute, lptr, lcol, pptr, pcol, glo, ghi, flo, fhi, gpos, Lp, LPp, G, F, shift,
                 a2q, pp, pa, pb, goff, ca_a, ca_i):
    """Factor every sample of a chunk (module docstring), ``FACTOR_BLOCK`` samples side by side;
    returns the first sample whose block does not factorize even shifted, or -1.

    Inputs ``(nnz, c)``, one column per sample: ``avv``: upper-triangle nonzeros of :math:`A`
    (``a2q``: their entries of the factor's pattern); ``avh``: of :math:`\\hat A` (row: variable,
    column: shared unknown); ``jev``: of :math:`J` (row: equality row, column: variable); ``jes``:
    of :math:`J_{\\hat s}`.  Patterns: ``lptr, lcol`` (``pptr, pcol``) of :math:`L` (:math:`L_P`);
    ``pp, pa, pb``: the Cholesky's pairs (:func:`_cholesky_block`); ``goff``: the rows of :math:`G`
    in a block; ``ca_a, ca_i``: the structural nonzeros of :math:`C` (:func:`_equality_factor_block`).
    Outputs: the factors' entries in the patterns' order ``Lp (lptr[-1], c)``, ``LPp (pptr[-1],
    c)``, ``shift (c)``, and the rows of :math:`G` and :math:`F` restricted to their column ranges
    ``glo:ghi``, ``flo:fhi``: row ``i`` of sample ``j``'s ``G`` at ``G[gpos[0, i] + j gpos[1, i] +
    gpos[2, i]:][:ghi[i] - glo[i]]`` (the groups' layout of :class:`Elimination`), ``F`` as ``(c,
    nE, fhi - flo)``.  A sample whose block needs a shift is factorized alone
    (:func:`_shifted_column`), with the same operations as without blocks."""
    c, nL, B = avv.shape[1], lptr[-1], FACTOR_BLOCK
    Lb, Gb, bad = np.empty((nL, B)), np.empty((goff[-1], B)), np.zeros(B, dtype=np.bool_)
    A, Lw, Lv = np.empty((nv, nv)), np.empty(nv * (nv + 1) // 2), np.empty(nL)
    fw, nP = fhi[0] - flo[0], pptr[-1]
    work = (np.empty((nv * nE, B)), np.empty((nE * nE, B)), np.empty((nE * fw, B)), np.empty((nP, B)),
            np.empty((nE, nE)), np.empty(max(nE * (nE + 1) // 2, 1)), np.empty(nP))
    for j0 in range(0, c, B):
        nb = min(B, c - j0)
        Lb[:, :nb] = 0.0
        for t in range(avv_r.size):
            for jj in range(nb):
                Lb[a2q[t], jj] = avv[t, j0 + jj]
        for i in range(nv):
            for jj in range(nb):
                Lb[lptr[i + 1] - 1, jj] += delta
        _cholesky_block(Lb, nb, lptr, lcol, pp, pa, pb, bad)
        for jj in range(nb):
            shift[j0 + jj] = 0.0
            if bad[jj]:
                shift[j0 + jj] = _shifted_column(avv, avv_r, avv_c, j0 + jj, delta, Lb, jj, nv, lptr, lcol, rel,
                                                 absolute, A, Lw, Lv)
                if shift[j0 + jj] < 0.0:
                    return j0 + jj
        Gb[:, :nb] = 0.0
        for t in range(avh_r.size):
            r = avh_r[t]
            for jj in range(nb):
                Gb[goff[r] + avh_c[t] - glo[r], jj] = avh[t, j0 + jj]
        _forward_block(Lb, Gb, nb, lptr, lcol, glo, ghi, goff)
        for i in range(nv):
            for jj in range(nb):
                at = gpos[0, i] + (j0 + jj) * gpos[1, i] + gpos[2, i]
                for cc in range(ghi[i] - glo[i]):
                    G[at + cc] = Gb[goff[i] + cc, jj]
        Lp[j0 // BLOCK, :, j0 % BLOCK:j0 % BLOCK + nb] = Lb[:, :nb]
        if nE:
            bad_j = _equality_factor_block(Lb, Gb, jev, jev_r, jev_c, jes, jes_r, jes_c, j0, nb, nv, nE, rel, absolute,
                                           lptr, lcol, pptr, pcol, glo, ghi, flo, fhi, goff, ca_a, ca_i, LPp, F, work)
            if bad_j >= 0:
                return bad_j
    return -1


@numba.njit(**_JIT)
def _forward_rows(Lb, X, nb, ptr, col, width):
    """``X <- L^{-1} X`` for ``nb`` samples side by side, ``X``'s row ``i`` of ``width`` entries at rows
    ``i width:(i + 1) width`` (one column per sample), ``L`` from the block ``Lb``."""
    for i in range(ptr.size - 1):
        for q in range(ptr[i], ptr[i + 1] - 1):
            k = col[q]
            for a in range(width):
                for jj in range(nb):
                    X[i * width + a, jj] -= Lb[q, jj] * X[k * width + a, jj]
        d = ptr[i + 1] - 1
        for jj in range(nb):
            inv = 1.0 / Lb[d, jj]
            for a in range(width):
                X[i * width + a, jj] *= inv


@numba.njit(**_JIT)
def _equality_factor_block(Lb, Gb, jev, jev_r, jev_c, jes, jes_r, jes_c, j0, nb, nv, nE, rel, absolute, lptr, lcol,
                           pptr, pcol, glo, ghi, flo, fhi, goff, ca_a, ca_i, LPp, F, work):
    """The equality blocks of ``nb`` samples side by side (:math:`C = L^{-1}J^T`, :math:`P = C^TC =
    L_PL_P^T`, :math:`F`; ``ca_a, ca_i``: the structural nonzeros of :math:`C`), with :math:`L` and
    :math:`G` from the blocks ``Lb``, ``Gb``; :math:`L_P` per sample; returns the first sample whose
    :math:`P` does not factorize even shifted, or -1."""
    Cb, Pb, Fb, LPb, P, LPw, LPv = work
    fw, f0 = fhi[0] - flo[0], flo[0]
    Cb[:, :nb] = 0.0
    for t in range(jev_r.size):
        for jj in range(nb):
            Cb[jev_c[t] * nE + jev_r[t], jj] = jev[t, j0 + jj]
    _forward_rows(Lb, Cb, nb, lptr, lcol, nE)
    for a in range(nE):
        for b in range(nE):
            for jj in range(nb):
                Pb[a * nE + b, jj] = 0.0
            for i in range(nv):
                for jj in range(nb):
                    Pb[a * nE + b, jj] += Cb[i * nE + a, jj] * Cb[i * nE + b, jj]
    for jj in range(nb):
        for a in range(nE):
            for b in range(nE):
                P[a, b] = Pb[a * nE + b, jj]
        if _chol_shifted(P, LPw, nE, pptr, pcol, rel, absolute) < 0.0:
            return j0 + jj
        _compress(LPw, LPv, nE, pptr, pcol)
        LPb[:, jj] = LPv
        LPp[(j0 + jj) // BLOCK, :, (j0 + jj) % BLOCK] = LPv
    Fb[:, :nb] = 0.0
    for t in range(jes_r.size):
        for jj in range(nb):
            Fb[jes_r[t] * fw + jes_c[t] - f0, jj] = -jes[t, j0 + jj]
    for u in range(ca_a.size):
        a, i = ca_a[u], ca_i[u]
        for cc in range(glo[i], ghi[i]):
            for jj in range(nb):
                Fb[a * fw + cc - f0, jj] += Cb[i * nE + a, jj] * Gb[goff[i] + cc - glo[i], jj]
    _forward_rows(LPb, Fb, nb, pptr, pcol, fw)
    for jj in range(nb):
        for a in range(nE):
            for cc in range(fw):
                F[j0 + jj, a, cc] = Fb[a * fw + cc, jj]
    return -1


@numba.njit(**_JIT)
def _solve_block(Lv, X, n, ptr, col, nb):
    """``X[:, :nb] <- (L L^T)^{-1} X[:, :nb]`` for the first ``nb`` samples of a block, one column per
    sample (``Lv (nnz, BLOCK)``: a tile of the factors' entries in the pattern's order); the inner
    loops run over the samples, which share the pattern (SIMD across samples)."""
    for i in range(n):
        for q in range(ptr[i], ptr[i + 1] - 1):
            k = col[q]
            for jj in range(nb):
                X[i, jj] -= Lv[q, jj] * X[k, jj]
        d = ptr[i + 1] - 1
        for jj in range(nb):
            X[i, jj] /= Lv[d, jj]
    for i in range(n - 1, -1, -1):
        d = ptr[i + 1] - 1
        for jj in range(nb):
            X[i, jj] /= Lv[d, jj]
        for q in range(ptr[i], ptr[i + 1] - 1):
            k = col[q]
            for jj in range(nb):
                X[k, jj] -= Lv[q, jj] * X[i, jj]


@numba.njit(**_JIT)
def _equality_block(Lp, LPp, lptr, lcol, pptr, pcol, jev, jev_r, jev_c, X, Q, U, nv, nE, nb):
    """``Q <- P^{-1}(J X + Q)``, then ``X <- X - A^{-1} J^T Q`` for a block of samples (``U``: work space)."""
    for t in range(jev_r.size):
        r, k = jev_r[t], jev_c[t]
        for jj in range(nb):
            Q[r, jj] += jev[t, jj] * X[k, jj]
    _solve_block(LPp, Q, nE, pptr, pcol, nb)
    U[:, :nb] = 0.0
    for t in range(jev_r.size):
        r, k = jev_r[t], jev_c[t]
        for jj in range(nb):
            U[k, jj] += jev[t, jj] * Q[r, jj]
    _solve_block(Lp, U, nv, lptr, lcol, nb)
    for i in range(nv):
        for jj in range(nb):
            X[i, jj] -= U[i, jj]


@numba.njit(**_JIT)
def _tile(x, out):
    """``out[b, t, jj] = x[t, b BLOCK + jj]`` (:meth:`Elimination.tiles`)."""
    c = x.shape[1]
    for b in range(out.shape[0]):
        nb = min(BLOCK, c - b * BLOCK)
        for t in range(x.shape[0]):
            for jj in range(nb):
                out[b, t, jj] = x[t, b * BLOCK + jj]


@numba.njit(**_JIT)
def _gather(b, rows, X, j0, nb):
    """``X[i, jj] = b[rows[i], j0 + jj]``: a block of samples' right-hand sides in the elimination's order."""
    for i in range(rows.size):
        for jj in range(nb):
            X[i, jj] = b[rows[i], j0 + jj]


@numba.njit(**_JIT)
def reduce_chunk(Lp, LPp, lptr, lcol, pptr, pcol, avh, avh_r, avh_c, jev, jev_r, jev_c, jes, jes_r, jes_c,
                 b, rE, perm, nv, nsh, nE):
    """``sum_j Â^T z_j + J_ŝ^T q_j`` over the chunk (module docstring); ``b (nv, c)`` (rows: the
    variables in the problem's order, read through ``perm``), ``rE (nE, c)``; blocks of ``BLOCK``
    samples, the factors and blocks as tiles ``(c / BLOCK, nnz, BLOCK)`` (:meth:`Elimination.tiles`)."""
    out = np.zeros(nsh)
    c = b.shape[1]
    Z, U, Q = np.empty((nv, BLOCK)), np.empty((nv, BLOCK)), np.empty((max(nE, 1), BLOCK))
    erows = np.arange(nE)
    for j0 in range(0, c, BLOCK):
        nb = min(BLOCK, c - j0)
        blk = j0 // BLOCK
        L, LP, H, JE, JS = Lp[blk], LPp[blk], avh[blk], jev[blk], jes[blk]
        _gather(b, perm, Z, j0, nb)
        _solve_block(L, Z, nv, lptr, lcol, nb)
        if nE:
            _gather(rE, erows, Q, j0, nb)
            _equality_block(L, LP, lptr, lcol, pptr, pcol, JE, jev_r, jev_c, Z, Q, U, nv, nE, nb)
            for t in range(jes_r.size):
                s, r = 0.0, jes_r[t]
                for jj in range(nb):
                    s += JS[t, jj] * Q[r, jj]
                out[jes_c[t]] += s
        for t in range(avh_r.size):
            s, r = 0.0, avh_r[t]
            for jj in range(nb):
                s += H[t, jj] * Z[r, jj]
            out[avh_c[t]] += s
    return out


@numba.njit(**_JIT)
def back_chunk(Lp, LPp, lptr, lcol, pptr, pcol, avh, avh_r, avh_c, jev, jev_r, jev_c, jes, jes_r, jes_c,
               b, rE, dh, perm, nv, nE, dV, dY):
    """The samples' steps after the shared one ``dh`` (module docstring) into ``dV (nv, c)`` (rows in
    the problem's order, written through ``perm``) and ``dY (nE, c)``; ``b``, ``rE`` as in
    :func:`reduce_chunk`."""
    c = b.shape[1]
    X, U, Q = np.empty((nv, BLOCK)), np.empty((nv, BLOCK)), np.empty((max(nE, 1), BLOCK))
    erows = np.arange(nE)
    for j0 in range(0, c, BLOCK):
        nb = min(BLOCK, c - j0)
        blk = j0 // BLOCK
        L, LP, H, JE, JS = Lp[blk], LPp[blk], avh[blk], jev[blk], jes[blk]
        _gather(b, perm, X, j0, nb)
        for t in range(avh_r.size):
            r, h = avh_r[t], dh[avh_c[t]]
            for jj in range(nb):
                X[r, jj] -= H[t, jj] * h
        _solve_block(L, X, nv, lptr, lcol, nb)
        if nE:
            _gather(rE, erows, Q, j0, nb)
            for t in range(jes_r.size):
                r, h = jes_r[t], dh[jes_c[t]]
                for jj in range(nb):
                    Q[r, jj] += JS[t, jj] * h
            _equality_block(L, LP, lptr, lcol, pptr, pcol, JE, jev_r, jev_c, X, Q, U, nv, nE, nb)
            for a in range(nE):
                for jj in range(nb):
                    dY[a, j0 + jj] = Q[a, jj]
        for i in range(nv):
            for jj in range(nb):
                dV[perm[i], j0 + jj] = X[i, jj]


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
    patterns' order (:attr:`Elimination.lpat`, ``ppat``) and the sparse blocks, all as tiles
    ``(c / BLOCK, nnz, BLOCK)`` (:meth:`Elimination.tiles`; sample ``j`` is ``[j // BLOCK, :, j %
    BLOCK]``), so that the step kernels run their inner loops over samples."""

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
        self._C = C
        self._blocked = self._block_plan()

    def _block_plan(self) -> tuple:
        """What :func:`factor_chunk` needs to factorize samples side by side: the factor's entry of
        every nonzero of :math:`A` (``a2q``), the Cholesky's pairs of every entry (``pp, pa, pb``, in
        :func:`_chol`'s order) and the first row of every row of :math:`G` in a block (``goff``)."""
        ptr, col = self.lpat
        at = {(i, int(col[q])): q for i in range(self.nv) for q in range(ptr[i], ptr[i + 1])}
        r, k = self.avv
        a2q = np.array([at[(max(x, y), min(x, y))] for x, y in zip(r, k)], dtype=np.int64)
        pp, pa, pb = [0], [], []
        for i in range(self.nv):
            for q in range(ptr[i], ptr[i + 1]):
                kq = int(col[q])
                for qq in range(ptr[i], q):
                    other = at.get((kq, int(col[qq])))
                    if other is not None:
                        pa.append(qq)
                        pb.append(other)
                pp.append(len(pa))
        goff = np.concatenate([[0], np.cumsum(self.ghi - self.glo)]).astype(np.int64)
        ca_i, ca_a = np.nonzero(self._C[:, :self.nE])
        order = np.lexsort((ca_i, ca_a))  # by equality row, then variable: the scalar loop's order
        return (a2q, *(np.array(x, dtype=np.int64) for x in (pp, pa, pb)), goff, ca_a[order].astype(np.int64),
                ca_i[order].astype(np.int64))

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
        """Factor a chunk (nonzeros ``(nnz, c)`` in the patterns' order, one column per sample); returns ``(ChunkFactor,
        share of the Schur complement (nsh x nsh, F^T F - G^T G), shifts)``.  Raises
        ``LinAlgError`` if a block does not factorize even shifted."""
        c, nv, nsh, nE = avv.shape[1], self.nv, self.nsh, self.nE
        nblk = -(-c // BLOCK)
        Lp, LPp = np.empty((nblk, self.lpat[0][-1], BLOCK)), np.empty((nblk, self.ppat[0][-1], BLOCK))
        shift = np.zeros(c)
        gpos, views, G, F = self._buffer(c)
        bad = factor_chunk(avv, *self.avv, avh, *self.avh, jev, *self.jev, jes, *self.jes, nv, nsh, nE, delta, rel,
                           absolute, *self.lpat, *self.ppat, self.glo, self.ghi, self.flo, self.fhi, gpos, Lp, LPp,
                           G, F, shift, *self._blocked)
        if bad >= 0:
            raise np.linalg.LinAlgError(f"the block of sample {bad} of the chunk is not positive definite, "
                                        "even with a shift of 1e12")
        # NumPy's products, not BLAS syrk through scipy: scipy's wrapper holds the GIL, and the
        # threads over chunks then ran one at a time (two threads 1.02x one; NumPy's 2.1x)
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
        return ChunkFactor(Lp, LPp, self.tiles(avh), self.tiles(jev), self.tiles(jes)), out, shift

    @staticmethod
    def tiles(x: np.ndarray) -> np.ndarray:
        """A chunk's ``(nnz, c)`` nonzeros as the step kernels read them: ``(c / BLOCK, nnz, BLOCK)``, one
        contiguous tile per block of samples (one stream through memory per block, where columns of
        the ``(nnz, c)`` array are ``nnz`` streams)."""
        nnz, c = x.shape
        out = np.zeros((-(-c // BLOCK), nnz, BLOCK))
        _tile(x, out)
        return out

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
