r"""``convexnn.mccormick``: McCormick envelopes of the products in (2b), the classical baseline.

For a layer with a variable input and bounded ``w`` and ``x`` (apply ``convexnn.bound`` first),
every product :math:`v_{ikj} = w_{ik} x_{kj}` gets its own variable and the four envelopes

.. math::
    v \ge w^L x + w x^L - w^L x^L,\quad v \ge w^U x + w x^U - w^U x^U,\\
    v \le w^U x + w x^L - w^U x^L,\quad v \le w^L x + w x^U - w^L x^U,

and (2b) becomes the linear :math:`z_{ij} = \sum_k v_{ikj} + b_i`.  The model grows by
``n_l n_{l-1} m`` variables and ``4 n_l n_{l-1} m`` constraints per layer.  Activations are
relaxed by the same DC inequalities (7) as in the parabolic relaxation.

The relaxation has no variable standing for :math:`\|w_i\|^2` or :math:`\|x_j\|^2`, so the
regularizer (8) over it takes the exact proximal terms :math:`\|w_i - \check w_i\|^2` and
:math:`\|x_j - \check x_j\|^2`.  Its slack lives in ``v``, which (8) does not price: a large eta
pins ``w`` and ``x`` to the reference, but ``v`` keeps the whole envelope of an interior point, so
the regularized round is *not* exact for large eta (``exact_for_large_eta = False``).
"""

from __future__ import annotations

import numpy as np
import pyomo.environ as pyo
from pyomo.core.base.transformation import TransformationFactory

from .base import LayerRelaxationTransformation, _assign, _record


@TransformationFactory.register(
    "convexnn.mccormick", doc="McCormick relaxation of the bilinear layer equalities and DC relaxation (7) of the activations"
)
class McCormickRelaxation(LayerRelaxationTransformation):
    """McCormick relaxation of (2b) and DC relaxation of (2c)."""

    CONFIG = LayerRelaxationTransformation.CONFIG()
    block_name = "mccormick"
    requires_bounds = True
    exact_for_large_eta = False

    def _check_layer(self, blk) -> None:
        if blk.input_is_data:
            return
        for v in list(blk.w.values()) + list(blk.x_in.values()):
            if v.lb is None or v.ub is None:
                raise ValueError(
                    f"convexnn.mccormick needs bounds on {v.name}; apply TransformationFactory('convexnn.bound') first"
                )

    def _relax_bilinear(self, blk, rblk, config) -> None:
        samples = blk.model().samples
        rblk.v = pyo.Var(blk.nodes, blk.inputs, samples, initialize=0.0, doc="v_ikj stands for w_ik x_kj")
        w, x = blk.w, blk.x_in

        def _env(r, i, k, j, side):
            wl, wu, xl, xu = w[i, k].lb, w[i, k].ub, x[k, j].lb, x[k, j].ub
            W, Xv, v = w[i, k], x[k, j], r.v[i, k, j]
            if side == 0:
                return v >= wl * Xv + W * xl - wl * xl
            if side == 1:
                return v >= wu * Xv + W * xu - wu * xu
            if side == 2:
                return v <= wu * Xv + W * xl - wu * xl
            return v <= wl * Xv + W * xu - wl * xu

        rblk.sides = pyo.Set(initialize=range(4))
        rblk.envelope = pyo.Constraint(blk.nodes, blk.inputs, samples, rblk.sides, rule=_env)
        rblk.linear = pyo.Constraint(
            blk.nodes, samples, rule=lambda r, i, j: blk.z[i, j] == sum(r.v[i, k, j] for k in blk.inputs) + blk.b[i]
        )
        for (i, j), src in blk.bilinear.items():
            _record(blk, src, [rblk.linear[i, j]] + [rblk.envelope[i, k, j, s] for k in blk.inputs for s in rblk.sides])

    def _lift_bilinear(self, blk, rblk, w: np.ndarray, x_in: np.ndarray) -> None:
        _assign(rblk.v, w[:, :, None] * x_in[None, :, :])  # v_ikj = w_ik x_kj
