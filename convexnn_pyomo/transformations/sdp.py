r"""``convexnn.sdp``: the SDP relaxation (4) of (2b), for small ``m``, and tangent cuts for (7).

For a layer with a variable input, by the Schur complement (4) is one linear matrix inequality of
size ``n_{l-1} + n_l + m`` over full symmetric ``W`` (``n_l x n_l``) and ``X`` (``m x m``):

.. math::
    \begin{bmatrix} I & (w^l)^\top & x^l \\ w^l & W^l & z^l - b^l 1^\top \\
    (x^l)^\top & (z^l - b^l 1^\top)^\top & X^l \end{bmatrix} \succeq 0 .

Its 3x3 principal minors on ``(k, i, j)`` give back (5a)-(5d), so the SDP bound is at least the
parabolic one.  The model grows quadratically in ``m`` (``m(m+1)/2`` entries of ``X`` per layer).

Clarabel takes linear, quadratic-objective and PSD parts but not the DC inequalities (7), whose
convex parts ``p``, ``q`` are not conic-representable in general.  They are outer-approximated by
tangent cuts :math:`(u \pm x)/2 \ge f(\bar z) + f'(\bar z)(z - \bar z)` (valid because ``p`` and
``q`` are convex), started on a grid over the bounds of ``z`` and refined by
the solver ``convexnn_sdp_cuts`` (:func:`convexnn_pyomo.solvers.solve_sdp_relaxation`) until no DC
inequality is violated by more than ``tol``.
"""

from __future__ import annotations

import numpy as np
import pyomo.environ as pyo
from pyomo.common.config import ConfigValue, PositiveInt
from pyomo.core.base.transformation import TransformationFactory

from ..psd import PSDConstraint
from .base import LayerRelaxationTransformation, _assign, _record

__all__ = ["SDPRelaxation"]


@TransformationFactory.register(
    "convexnn.sdp", doc="SDP relaxation (4) of the bilinear layer equalities (PSD blocks) and tangent cuts for (7)"
)
class SDPRelaxation(LayerRelaxationTransformation):
    """SDP relaxation (4) of (2b); outer approximation of the DC inequalities (7) by cuts."""

    CONFIG = LayerRelaxationTransformation.CONFIG()
    CONFIG.declare("initial_cuts", ConfigValue(default=9, domain=PositiveInt, description="tangent cuts per DC inequality at start"))
    block_name = "sdp"
    requires_conic_solver = True

    def _relax_bilinear(self, blk, rblk, config) -> None:
        samples = list(blk.model().samples)
        nodes, inputs = list(blk.nodes), list(blk.inputs)
        n_in, n = len(inputs), len(nodes)
        rblk.Wm = pyo.Var([(i, i2) for i in nodes for i2 in nodes if i <= i2], initialize=0.0, doc="W^l (upper triangle)")
        rblk.Xm = pyo.Var([(j, j2) for j in samples for j2 in samples if j <= j2], initialize=0.0, doc="X^l (upper triangle)")
        size = n_in + n + len(samples)
        M = [[0.0] * size for _ in range(size)]
        for k in inputs:
            M[k][k] = 1.0
            for i in nodes:
                M[k][n_in + i] = blk.w[i, k]
            for j in samples:
                M[k][n_in + n + j] = blk.x_in[k, j]
        for i in nodes:
            for i2 in nodes:
                if i <= i2:
                    M[n_in + i][n_in + i2] = rblk.Wm[i, i2]
            for j in samples:
                M[n_in + i][n_in + n + j] = blk.z[i, j] - blk.b[i]
        for j in samples:
            for j2 in samples:
                if j <= j2:
                    M[n_in + n + j][n_in + n + j2] = rblk.Xm[j, j2]
        rblk.lmi = PSDConstraint()
        rblk.lmi.set_matrix(M)
        for src in blk.bilinear.values():
            _record(blk, src, [rblk.lmi])

    def _lift_bilinear(self, blk, rblk, w: np.ndarray, x_in: np.ndarray) -> None:
        _assign(rblk.Wm, w @ w.T)  # Gram matrices: W = w w^T, X = x^T x
        _assign(rblk.Xm, x_in.T @ x_in)

    def _weight_squares(self, blk, rblk):
        return {i: rblk.Wm[i, i] for i in blk.nodes}

    def _input_squares(self, blk, rblk):
        return {j: rblk.Xm[j, j] for j in blk.model().samples}

    def _dc_inequalities(self, blk, rblk, config) -> None:
        """``config.initial_cuts`` tangent cuts per DC inequality, on a grid over the bounds of ``z``."""
        rblk.dc_cuts = pyo.ConstraintList(doc="tangent cuts of (7)")
        act = blk.activation_function
        for (i, j), z in blk.z.items():
            lo = z.lb if z.lb is not None else -5.0
            hi = z.ub if z.ub is not None else 5.0
            for zbar in np.linspace(lo, hi, config.initial_cuts):
                _add_cuts(rblk, blk, act, i, j, float(zbar))


def _add_cuts(rblk, blk, act, i, j, zbar: float) -> None:
    """Add the tangent cuts of (7) at ``zbar`` for node ``i``, sample ``j``; record them in the maps
    (they replace ``blk.activation[i, j]``)."""
    z, x, u = blk.z[i, j], blk.x[i, j], rblk.u[i, j]
    zb = np.array([zbar])
    p0, dp = float(act.p(zb)[0]), float(act.p_derivative(zb)[0])
    q0, dq = float(act.q(zb)[0]), float(act.q_derivative(zb)[0])
    cuts = [rblk.dc_cuts.add((u + x) / 2 >= p0 + dp * (z - zbar)), rblk.dc_cuts.add((u - x) / 2 >= q0 + dq * (z - zbar))]
    _record(blk, blk.activation[i, j], cuts)

