"""Pyomo transformations of the training model, registered with ``TransformationFactory``.

* ``convexnn.parabolic``  -- parabolic relaxation (5a)-(5d) of (2b) and DC relaxation (7) of (2c)
* ``convexnn.regularize`` -- add eta times the regularizer (8): problem (9)
* ``convexnn.sdp``        -- SDP relaxation (4) of (2b) (PSD blocks) + tangent cuts for (7)
* ``convexnn.mccormick``  -- McCormick envelopes of the products in (2b) + (7)
* ``convexnn.bound``      -- boxes on weights/biases, interval bounds on every other variable
"""

from .base import (
    LayerRelaxationTransformation,
    get_relaxation_block,
    get_src_constraint,
    get_transformed_constraints,
    set_lifted_values,
)
from .bound import BoundNetwork, interval_bounds
from .mccormick import McCormickRelaxation
from .parabolic import ParabolicRelaxation
from .sdp import SDPRelaxation, dc_violation, solve_sdp_relaxation
from .regularize import Regularize, exactness_weights, get_regularization_block, update_reference

__all__ = [
    "BoundNetwork",
    "McCormickRelaxation",
    "SDPRelaxation",
    "dc_violation",
    "interval_bounds",
    "solve_sdp_relaxation",
    "LayerRelaxationTransformation",
    "ParabolicRelaxation",
    "Regularize",
    "get_relaxation_block",
    "get_regularization_block",
    "get_src_constraint",
    "get_transformed_constraints",
    "set_lifted_values",
    "update_reference",
    "exactness_weights",
]
