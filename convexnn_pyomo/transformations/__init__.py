"""Pyomo transformations of the training model, registered with ``TransformationFactory``.

* ``convexnn.parabolic``  -- parabolic relaxation (5a)-(5d) of (2b) and DC relaxation (7) of (2c)
* ``convexnn.regularize`` -- add eta times the regularizer (8): problem (9)
* ``convexnn.sdp``        -- SDP relaxation (4) of (2b) (PSD blocks) + tangent cuts for (7)
* ``convexnn.mccormick``  -- McCormick envelopes of the products in (2b) + (7)
* ``convexnn.bound``      -- boxes on weights/biases, interval bounds on every other variable
* ``convexnn.relu_bigm``  -- exact mixed-integer (big-M) form of ReLU layers' (2c), for global solvers
* ``convexnn.elastic``    -- hard constraints made elastic, objective their minimum violation (phase 1)

:data:`RELAXATIONS` maps a relaxation's short name to its transformation class; the class
attributes ``supports_regularization``, ``exact_for_large_eta``, ``requires_bounds`` and
``requires_conic_solver`` say how a round of Algorithm 1 can use it (``docs/formulation.md``).
"""

from .base import (
    LayerRelaxationTransformation,
    get_relaxation,
    get_relaxation_block,
    get_src_constraints,
    get_transformed_constraints,
    set_lifted_values,
)
from .bound import BoundNetwork, get_bounds, interval_bounds
from .elastic import (
    ElasticConstraints,
    elastic_phase,
    get_elastic_block,
    get_elastic_row,
    get_elastic_source,
    get_elastic_variables,
    set_elastic_values,
)
from .mccormick import McCormickRelaxation
from .parabolic import ParabolicRelaxation
from .regularize import Regularize, exactness_weights, get_regularization_block, update_reference
from .relu import ReLUBigM
from .sdp import SDPRelaxation

#: short name -> relaxation transformation class (``TransformationFactory(f"convexnn.{name}")``)
RELAXATIONS: dict[str, type[LayerRelaxationTransformation]] = {
    "parabolic": ParabolicRelaxation,
    "mccormick": McCormickRelaxation,
    "sdp": SDPRelaxation,
}

__all__ = [
    "RELAXATIONS",
    "BoundNetwork",
    "ElasticConstraints",
    "LayerRelaxationTransformation",
    "McCormickRelaxation",
    "ParabolicRelaxation",
    "ReLUBigM",
    "Regularize",
    "SDPRelaxation",
    "elastic_phase",
    "exactness_weights",
    "get_bounds",
    "get_elastic_block",
    "get_elastic_row",
    "get_elastic_source",
    "get_elastic_variables",
    "get_regularization_block",
    "get_relaxation",
    "get_relaxation_block",
    "get_src_constraints",
    "get_transformed_constraints",
    "interval_bounds",
    "set_elastic_values",
    "set_lifted_values",
    "update_reference",
]
