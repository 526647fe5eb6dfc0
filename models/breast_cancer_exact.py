"""breast_cancer, 3-2-1 sigmoid network, m = 24: the bounded exact training problem (nonconvex).

    pyomo solve models/breast_cancer_exact.py --solver=scip_nl
    pyomo convert models/breast_cancer_exact.py --output=bc_exact.gms
"""

import numpy as np
import pyomo.environ as pyo

import convexnn_pyomo as cnn
from convexnn_pyomo.data import load_breast_cancer


def pyomo_create_model(options=None, model_options=None):
    ds = load_breast_cancer()
    idx = np.random.default_rng(0).permutation(ds.m)[:24]
    net = cnn.Network([3, 2, 1], ["sigmoid", "identity"]).init_he(0)
    model = cnn.build_training_model(net, ds.X[idx, :3], ds.y[idx], elementary=True, name="breast_cancer_exact")
    pyo.TransformationFactory("convexnn.bound").apply_to(model, weight_bound=3.0, bias_bound=3.0)
    return model
