r"""``convexnn.bound``: boxes on weights and biases, interval bounds propagated to ``z`` and ``x``.

Global solvers and the McCormick relaxation need bounded variables.  With
:math:`|w_{ik}| \le B_w`, :math:`|b_i| \le B_b` and the input interval of each layer, interval
arithmetic gives

.. math::
    z_{ij} \in \Big[\sum_k \min(w^L_{ik} x^L_{kj}) - B_b,\ \sum_k \max(\cdot) + B_b\Big],\qquad
    x^{l+1}_{ij} \in h([z^L_{ij}, z^U_{ij}])

for monotone activations (all shipped ones).  When a layer is already relaxed, its relaxation
bounds its own lifted variables (:meth:`LayerRelaxationTransformation.bound_lifted`):
:math:`W_{ii} \le n_{l-1} B_w^2`, :math:`X_{jj} \le \|x_j\|^2_{\max}` (parabolic ``W``, ``X``;
the diagonals of the SDP's ``W``, ``X``) and :math:`u \le \max(p + q)`.  Apply it to the exact
model *before* a relaxation, and the same bounds hold in every relaxation of a comparison (the
relaxations only read Var bounds).  The options it was applied with: :func:`get_bounds`.
"""

from __future__ import annotations

import numpy as np
from pyomo.common.config import ConfigDict, ConfigValue, PositiveFloat
from pyomo.core.base.transformation import Transformation, TransformationFactory

from ..model import get_training_problem, layer_blocks
from .base import _info, get_relaxation, get_relaxation_block

__all__ = ["BoundNetwork", "get_bounds", "interval_bounds"]


def interval_bounds(net_sizes, activations, X, weight_bound: float, bias_bound: float):
    """Per layer ``(zlo, zhi, xlo, xhi)`` arrays (``n_l x m``) by interval arithmetic."""
    lo, hi = X.T.copy(), X.T.copy()
    out = []
    for l in range(1, len(net_sizes)):
        # w in [-B, B]: each product's range is [-B max|x|, B max|x|]
        amax = np.maximum(np.abs(lo), np.abs(hi))
        r = weight_bound * amax.sum(axis=0)  # (m,)
        zlo = np.tile(-r - bias_bound, (net_sizes[l], 1))
        zhi = np.tile(r + bias_bound, (net_sizes[l], 1))
        act = activations[l - 1]
        xlo, xhi = act.value(zlo), act.value(zhi)  # monotone non-decreasing activations
        out.append((zlo, zhi, xlo, xhi))
        lo, hi = xlo, xhi
    return out


@TransformationFactory.register(
    "convexnn.bound", doc="Box weights and biases and propagate interval bounds to z, x (and lifted variables)"
)
class BoundNetwork(Transformation):
    """Bounds on every variable of the training model, by interval arithmetic."""

    CONFIG = ConfigDict("convexnn.bound")
    CONFIG.declare("weight_bound", ConfigValue(default=5.0, domain=PositiveFloat, description="|w_ik| <= weight_bound"))
    CONFIG.declare("bias_bound", ConfigValue(default=5.0, domain=PositiveFloat, description="|b_i| <= bias_bound"))

    def _apply_to(self, model, **kwds):
        config = self.CONFIG(kwds.pop("options", {}))
        config.set_value(kwds)
        tp = get_training_problem(model)
        net = tp.network
        bounds = interval_bounds(net.sizes, net.activations, tp.X, config.weight_bound, config.bias_bound)
        _info(model).bounds = {"weight_bound": config.weight_bound, "bias_bound": config.bias_bound}
        for blk in layer_blocks(model):
            l = blk.index_l
            zlo, zhi, xlo, xhi = bounds[l - 1]
            for v in blk.w.values():
                v.setlb(-config.weight_bound)
                v.setub(config.weight_bound)
            for v in blk.b.values():
                v.setlb(-config.bias_bound)
                v.setub(config.bias_bound)
            for (i, j), v in blk.z.items():
                v.setlb(float(zlo[i, j]))
                v.setub(float(zhi[i, j]))
            if not blk.is_output:
                for (i, j), v in blk.x.items():
                    v.setlb(float(xlo[i, j]))
                    v.setub(float(xhi[i, j]))
            relaxation = get_relaxation(blk)
            if relaxation is not None:
                relaxation.bound_lifted(blk, get_relaxation_block(blk), bounds, config.weight_bound)


def get_bounds(model) -> dict | None:
    """``{"weight_bound": ..., "bias_bound": ...}`` of the last ``convexnn.bound`` applied to ``model``, or ``None``."""
    return _info(model).bounds
