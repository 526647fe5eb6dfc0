"""Pyomo transformations of the training model, registered with ``TransformationFactory``.

* ``convexnn.parabolic``  -- parabolic relaxation (5a)-(5d) of (2b) and DC relaxation (7) of (2c)
* ``convexnn.regularize`` -- add eta times the regularizer (8): problem (9)
"""

from .base import (
    LayerRelaxationTransformation,
    get_relaxation_block,
    get_src_constraint,
    get_transformed_constraints,
    set_lifted_values,
)
from .parabolic import ParabolicRelaxation
from .regularize import Regularize, get_regularization_block, update_reference

__all__ = [
    "LayerRelaxationTransformation",
    "ParabolicRelaxation",
    "Regularize",
    "get_relaxation_block",
    "get_regularization_block",
    "get_src_constraint",
    "get_transformed_constraints",
    "set_lifted_values",
    "update_reference",
]
