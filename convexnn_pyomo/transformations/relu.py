r"""``convexnn.relu_bigm``: the exact ReLU equalities (2c) as a mixed-integer big-M formulation.

For a hidden ReLU layer with bounds :math:`z^L_{ij} \le z_{ij} \le z^U_{ij}` (from
``convexnn.bound``, applied first), one binary :math:`\sigma_{ij}` per node and sample
(``1`` when the unit is active) and

.. math::
    x_{ij} \ge 0, \qquad x_{ij} \ge z_{ij}, \qquad
    x_{ij} \le z_{ij} + M^-_{ij} (1 - \sigma_{ij}), \qquad x_{ij} \le M^+_{ij}\, \sigma_{ij},

with :math:`M^- = \max(-z^L, 0)` and :math:`M^+ = \max(z^U, 0)`, replace
:math:`x_{ij} = \max(z_{ij}, 0)`: with :math:`\sigma = 1` they force :math:`x = z \ge 0`, with
:math:`\sigma = 0` they force :math:`x = 0 \ge z`.  This is the standard big-M form (e.g. OMLT's
``bigm`` ReLU formulation); its continuous relaxation is the convex hull of the graph of ReLU on
each interval, so tighter bounds give a tighter model.  With the squared loss the transformed
training problem is a mixed-integer program with bilinear constraints (2b), which Gurobi
(``gurobi_direct`` / ``gurobi_direct_minlp``) and SCIP (``scip_nl``) solve to global optimality.
Each deactivated ``activation[i, j]`` maps to its four inequalities
(:func:`~.base.get_transformed_constraints`).
"""

from __future__ import annotations

import pyomo.environ as pyo
from pyomo.common.config import ConfigDict
from pyomo.common.modeling import unique_component_name
from pyomo.core.base.transformation import Transformation, TransformationFactory

from ..activations import ReLU
from ..model import get_training_problem
from .base import LayerRelaxationTransformation, _info, _record

__all__ = ["ReLUBigM"]


@TransformationFactory.register(
    "convexnn.relu_bigm", doc="Exact mixed-integer big-M form of the ReLU activation equalities (2c), for global solvers"
)
class ReLUBigM(Transformation):
    """Big-M form of ``x = max(z, 0)`` for every hidden ReLU layer (or the ``targets``)."""

    CONFIG = ConfigDict("convexnn.relu_bigm")
    CONFIG.declare("targets", LayerRelaxationTransformation.CONFIG.get("targets")())

    def _apply_to(self, model, **kwds):
        config = self.CONFIG(kwds.pop("options", {}))
        config.set_value(kwds)
        get_training_problem(model)
        layers = LayerRelaxationTransformation._target_layers(model, config.targets)
        blocks = [b for b in layers if not b.is_output and isinstance(b.activation_function, ReLU)]
        if config.targets and len(blocks) != len(layers):
            other = [b.name for b in layers if b not in blocks]
            raise ValueError(f"convexnn.relu_bigm applies to hidden ReLU layers only; not to {', '.join(other)}")
        if not blocks:
            raise ValueError("convexnn.relu_bigm found no hidden ReLU layer in the model")
        for blk in blocks:  # check every layer before changing any
            self._check_layer(blk)
        for blk in blocks:
            self._transform_layer(blk)

    @staticmethod
    def _check_layer(blk) -> None:
        if not blk.activation.active or blk in _info(blk.parent_block()).relaxed_activations:
            raise ValueError(f"the activation equalities of {blk.name} are already relaxed or transformed")
        for v in blk.z.values():
            if v.lb is None or v.ub is None:
                raise ValueError(
                    f"convexnn.relu_bigm needs bounds on {v.name} for its big-M constants; "
                    "apply TransformationFactory('convexnn.bound') first"
                )

    @staticmethod
    def _transform_layer(blk) -> None:
        samples = blk.model().samples
        rblk = pyo.Block(doc="big-M form of x = max(z, 0)")
        blk.add_component(unique_component_name(blk, "relu_bigm"), rblk)
        rblk.active_unit = pyo.Var(blk.nodes, samples, domain=pyo.Binary, doc="1 when x = z, 0 when x = 0")
        z, x, on = blk.z, blk.x, rblk.active_unit
        rblk.nonnegative = pyo.Constraint(blk.nodes, samples, rule=lambda r, i, j: x[i, j] >= 0)
        rblk.above_z = pyo.Constraint(blk.nodes, samples, rule=lambda r, i, j: x[i, j] >= z[i, j])
        rblk.at_z_when_active = pyo.Constraint(
            blk.nodes, samples, rule=lambda r, i, j: x[i, j] <= z[i, j] + max(-z[i, j].lb, 0.0) * (1 - on[i, j])
        )
        rblk.zero_when_inactive = pyo.Constraint(
            blk.nodes, samples, rule=lambda r, i, j: x[i, j] <= max(z[i, j].ub, 0.0) * on[i, j]
        )
        for (i, j), src in blk.activation.items():
            if z[i, j].value is not None:
                on[i, j].set_value(1 if z[i, j].value > 0 else 0)
            cons = (rblk.nonnegative, rblk.above_z, rblk.at_z_when_active, rblk.zero_when_inactive)
            _record(blk, src, [c[i, j] for c in cons])
        blk.activation.deactivate()
