r"""``convexnn.parabolic``: the parabolic relaxation (5a)-(5d) of (2b) and the DC relaxation (7) of (2c).

For a layer ``l`` whose input ``x^l`` is a variable (``l >= 2``), with one auxiliary variable per
node (``W[i]`` for :math:`W^l_{ii}`) and one per data point (``X[j]`` for :math:`X^l_{jj}`):

.. math::
    \|w_i + x_j\|^2 &\le W_{ii} + X_{jj} + 2 (z_{ij} - b_i)  &\quad (5a)\\
    \|w_i - x_j\|^2 &\le W_{ii} + X_{jj} - 2 (z_{ij} - b_i)  &\quad (5b)\\
    \|w_i\|^2 &\le W_{ii}                                     &\quad (5c)\\
    \|x^l_j\|^2 &\le X_{jj}                                   &\quad (5d)

where :math:`w_i` is row ``i`` of :math:`w^l` and :math:`x_j` column ``j`` of the layer's own input
:math:`x^l` (the paper's index ``l-1`` in (5d) is a typo).  For ``l = 1`` the input is data, (2b)
is affine and stays exact.  The model grows by ``n_l + m`` variables and ``2 n_l m + n_l + m``
constraints per relaxed layer: linearly in ``m``.
"""

from __future__ import annotations

import numpy as np
import pyomo.environ as pyo
from pyomo.core.base.transformation import TransformationFactory

from .base import LayerRelaxationTransformation, _assign, _record


@TransformationFactory.register(
    "convexnn.parabolic",
    doc="Parabolic relaxation (5a)-(5d) of the bilinear layer equalities and DC relaxation (7) of the activations",
)
class ParabolicRelaxation(LayerRelaxationTransformation):
    """Parabolic relaxation of (2b) and DC relaxation of (2c) (paper eqs. 5a-5d and 7)."""

    CONFIG = LayerRelaxationTransformation.CONFIG()
    block_name = "parabolic"

    def _relax_bilinear(self, blk, rblk, config) -> None:
        samples = blk.model().samples
        # W, X >= 0 follow from (5c), (5d): no bounds of their own (each would be one more row of the
        # structured round, and the bounds were what Ipopt's bound_relax_factor loosened)
        rblk.W = pyo.Var(blk.nodes, initialize=0.0, doc="W^l_ii, stands for ||w_i||^2 (>= 0 by (5c))")
        rblk.X = pyo.Var(samples, initialize=0.0, doc="X^l_jj, stands for ||x_j||^2 (>= 0 by (5d))")

        def _plus(r, i, j):
            return sum((blk.w[i, k] + blk.x_in[k, j]) ** 2 for k in blk.inputs) <= r.W[i] + r.X[j] + 2 * (blk.z[i, j] - blk.b[i])

        def _minus(r, i, j):
            return sum((blk.w[i, k] - blk.x_in[k, j]) ** 2 for k in blk.inputs) <= r.W[i] + r.X[j] - 2 * (blk.z[i, j] - blk.b[i])

        rblk.parabolic_plus = pyo.Constraint(blk.nodes, samples, rule=_plus, doc="(5a)")
        rblk.parabolic_minus = pyo.Constraint(blk.nodes, samples, rule=_minus, doc="(5b)")
        rblk.weight_norm = pyo.Constraint(
            blk.nodes, rule=lambda r, i: sum(blk.w[i, k] ** 2 for k in blk.inputs) <= r.W[i], doc="(5c)"
        )
        rblk.input_norm = pyo.Constraint(
            samples, rule=lambda r, j: sum(blk.x_in[k, j] ** 2 for k in blk.inputs) <= r.X[j], doc="(5d)"
        )
        for (i, j), src in blk.bilinear.items():
            _record(blk, src, [rblk.parabolic_plus[i, j], rblk.parabolic_minus[i, j], rblk.weight_norm[i], rblk.input_norm[j]])

    def _lift_bilinear(self, blk, rblk, w: np.ndarray, x_in: np.ndarray) -> None:
        _assign(rblk.W, np.sum(w * w, axis=1))
        _assign(rblk.X, np.sum(x_in * x_in, axis=0))

    def _weight_squares(self, blk, rblk):
        return rblk.W

    def _input_squares(self, blk, rblk):
        return rblk.X
