"""XOR with a 2-2-1 sigmoid network: the exact training problem (2a)-(2c), bounded for global solvers.

    pyomo solve models/xor_exact.py --solver=ipopt_casadi
    pyomo solve models/xor_exact.py --solver=gurobi_direct_minlp
    pyomo convert models/xor_exact.py --output=xor_exact.nl     (also .lp for linearizable models, .gms)

Sigmoid is written with exp and division (``elementary=True``) so that Gurobi's nonlinear
constraints, SCIP's NL reader and GAMS/BARON accept it.
"""

import numpy as np
import pyomo.environ as pyo

import convexnn_pyomo as cnn

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1.0]])
Y = np.array([0, 1, 1, 0.0])


def pyomo_create_model(options=None, model_options=None):
    net = cnn.Network([2, 2, 1], ["sigmoid", "identity"]).init_he(0)
    model = cnn.build_training_model(net, X, Y, elementary=True, name="xor_exact")
    pyo.TransformationFactory("convexnn.bound").apply_to(model, weight_bound=3.0, bias_bound=3.0)
    return model
