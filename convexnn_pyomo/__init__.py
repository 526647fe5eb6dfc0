"""convexnn-pyomo: train neural networks by convex relaxation, as ordinary Pyomo models.

Importing the package registers its transformations (``convexnn.*``) with Pyomo's
``TransformationFactory`` and its solver plugins with ``SolverFactory``.
"""

# Thread counts are the caller's: importing the package changes no environment variable
# (convexnn_pyomo.threads.blas_threads limits BLAS threads for a block; the CLI uses one thread).

from .activations import (
    Activation,
    AutoDCActivation,
    Identity,
    ReLU,
    Sigmoid,
    Softplus,
    Tanh,
    available_activations,
    get_activation,
    register_activation,
)
from .losses import Loss, available_losses, get_loss
from .model import (
    LayerBlock,
    TrainingProblem,
    build_training_model,
    constraint_gaps,
    get_training_problem,
    layer_blocks,
    network_from_model,
    set_values_from_network,
)
from .constraints import (
    BalancedMisfitBounds,
    ClasswiseMisfitBounds,
    DecisionParity,
    DemographicParity,
    GroupLossBounds,
    HardConstraint,
    LinearOutputEquality,
    MonotoneInputs,
    OutputBounds,
    WeightNormBounds,
)
from .network import ForwardPass, Network, check_data
from .solvers import available_solvers, default_nlp_solver, require_solver
from .transformations import (
    get_regularization_block,
    get_relaxation_block,
    get_src_constraints,
    get_transformed_constraints,
    exactness_weights,
    set_lifted_values,
    update_reference,
)
from .training import TrainResult, train

__version__ = "0.1.0"
