"""One round of Algorithm 1 as a convex program: breast_cancer, 8-6-6-1 sigmoid, m = 100.

The parabolic relaxation (5a)-(5d), the DC relaxation (7) and the regularizer (8) centred at the
He initialisation (eta = 1, averaged loss): problem (9), a convex QCP with smooth convex parts.

    pyomo solve models/breast_cancer_regularized.py --solver=ipopt_casadi
    pyomo convert models/breast_cancer_regularized.py --output=bc_round.nl
"""

import pyomo.environ as pyo

import convexnn_pyomo as cnn
from convexnn_pyomo.data import load_breast_cancer


def pyomo_create_model(options=None, model_options=None):
    ds = load_breast_cancer()
    X, Y = ds.X[:100], ds.y[:100]
    net = cnn.Network([8, 6, 6, 1], ["sigmoid", "sigmoid", "identity"]).init_he(0)
    model = cnn.build_training_model(net, X, Y, reduction="mean", name="breast_cancer_regularized")
    pyo.TransformationFactory("convexnn.parabolic").apply_to(model)
    cnn.set_lifted_values(model, net)
    pyo.TransformationFactory("convexnn.regularize").apply_to(model, eta=1.0, reference=net)
    return model
