r"""Element-wise work of :class:`~.schur_ipm.SchurInteriorPoint`'s steps, fused per chunk (numba, no GIL).

The interior point keeps its per-sample state as ``(rows, m)`` arrays (one column per sample); a
chunk is the columns ``lo:hi``.  Written with NumPy, every update of the inequality rows copied the
rows it read (``M[I, lo:hi]`` with a boolean ``I``) and built a temporary per operation; these
kernels make one pass over the chunk's rows, reading and writing the arrays where they lie.  Row
lists: ``iI`` the inequality rows, ``iE`` the equality rows (in the order of the equality blocks).
The arithmetic is NumPy's, operation for operation (no fused multiply-adds), so the steps are
those of the NumPy expressions they replace, bit for bit.
"""

from __future__ import annotations

import numpy as np

from .jit import import_numba

numba = import_numba()

__all__ = ["absmax", "back_update", "boundary_step", "products", "reduce_weights", "remainder_parts"]

_JIT = {"nogil": True, "cache": True}


@numba.njit(**_JIT)
def reduce_weights(w, M, T, rI, rc, rE, rho, iI, iE, lo):
    r"""The chunk's :math:`w` (``(ng, c)``): :math:`(\lambda r_I - r_c) / t` on the inequality rows,
    :math:`\rho\, r_E` on the equality rows (``rE``: ``(nE, m)``)."""
    for r in iI:
        for j in range(w.shape[1]):
            w[r, j] = (M[r, lo + j] * rI[r, lo + j] - rc[r, lo + j]) / T[r, lo + j]
    for a in range(iE.size):
        r = iE[a]
        for j in range(w.shape[1]):
            w[r, j] = rho * rE[a, lo + j]


@numba.njit(**_JIT)
def back_update(V, Mo, To, dv, dy, jdx, rI, rc, M, T, iI, iE, lo):
    r"""Add the chunk's steps into the state ``(V, Mo, To)``: :math:`\Delta v`, :math:`\Delta y` on the
    equality rows and, on the inequality rows, :math:`\Delta t = -r_I - J\Delta x` and
    :math:`\Delta\lambda = -(r_c + \lambda\,\Delta t) / t` (``M``, ``T``: the current point)."""
    c = dv.shape[1]
    for i in range(dv.shape[0]):
        for j in range(c):
            V[i, lo + j] += dv[i, j]
    for a in range(iE.size):
        r = iE[a]
        for j in range(c):
            Mo[r, lo + j] += dy[a, j]
    for r in iI:
        for j in range(c):
            dt = -rI[r, lo + j] - jdx[r, j]
            To[r, lo + j] += dt
            Mo[r, lo + j] -= (rc[r, lo + j] + M[r, lo + j] * dt) / T[r, lo + j]


@numba.njit(**_JIT)
def remainder_parts(v, rd_v, shift, dV, jd, rE, rhs_E, rI, dT, rhs_I, rc, M, T, dM, rhs_c, iI, iE, lo):
    r"""The chunk's part of :math:`K d + r` after the products ``v`` (:math:`A d` on the samples'
    variables, ``(nv, c)``, completed in place) and ``jd`` (:math:`J d`, ``(ng, c)``): the
    stationarity with the inertia shift, the equality rows, the inequality rows and the
    complementarity (written into the ``(rows, m)`` arrays ``rE``, ``rI``, ``rc``); returns the
    largest absolute value written (the chunk's part of :meth:`~.schur_ipm._Rhs.size`)."""
    c, top = v.shape[1], 0.0
    for i in range(v.shape[0]):
        for j in range(c):
            v[i, j] = (v[i, j] + rd_v[i, lo + j]) + shift[lo + j] * dV[i, lo + j]
            top = max(top, abs(v[i, j]))
    for a in range(iE.size):
        r = iE[a]
        for j in range(c):
            rE[a, lo + j] = jd[r, j] + rhs_E[a, lo + j]
            top = max(top, abs(rE[a, lo + j]))
    for r in iI:
        for j in range(c):
            rI[r, lo + j] = (jd[r, j] + dT[r, lo + j]) + rhs_I[r, lo + j]
            rc[r, lo + j] = (M[r, lo + j] * dT[r, lo + j] + T[r, lo + j] * dM[r, lo + j]) + rhs_c[r, lo + j]
            top = max(top, abs(rI[r, lo + j]), abs(rc[r, lo + j]))
    return top


@numba.njit(**_JIT)
def absmax(a):
    """``max |a|`` of a 2-D array (0 if empty), without NumPy's full-size temporary of ``|a|``."""
    top = 0.0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            top = max(top, abs(a[i, j]))
    return top


@numba.njit(**_JIT)
def boundary_step(T, dT, M, dM, iI, lo, hi, tau):
    r"""The longest step (at most 1) that keeps the chunk's slacks and multipliers of the inequality
    rows above ``1 - tau`` of their values: :math:`\min(1, \min_{d<0} -\tau x / d)`."""
    best = 1.0
    for r in iI:
        for j in range(lo, hi):
            if dT[r, j] < 0.0:
                best = min(best, -tau * T[r, j] / dT[r, j])
            if dM[r, j] < 0.0:
                best = min(best, -tau * M[r, j] / dM[r, j])
    return best


@numba.njit(**_JIT)
def products(T, M, dT, dM, alpha, moved, iI, lo, hi):
    r"""The chunk's complementarity products :math:`t_i\lambda_i` on the inequality rows (at
    ``(T + alpha dT) (M + alpha dM)`` when ``moved``): their smallest value and their sum."""
    low, total = np.inf, 0.0
    for r in iI:
        for j in range(lo, hi):
            c = (T[r, j] + alpha * dT[r, j]) * (M[r, j] + alpha * dM[r, j]) if moved else T[r, j] * M[r, j]
            low = min(low, c)
            total += c
    return low, total

