"""XOR 2-2-1 (tanh hidden layer): the SDP relaxation (4) with eta = 0 under weight bounds 3.

Contains a PSDConstraint block, so only the conic plugins solve it: ``convexnn_conic`` in one pass
with the initial DC cuts, ``convexnn_sdp_cuts`` refining the cuts until (7) holds:

    pyomo solve models/xor_sdp.py --solver=convexnn_conic
    pyomo solve models/xor_sdp.py --solver=convexnn_sdp_cuts
"""

import numpy as np
import pyomo.environ as pyo

import convexnn_pyomo as cnn

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1.0]])
Y = np.array([0, 1, 1, 0.0])


def pyomo_create_model(options=None, model_options=None):
    net = cnn.Network([2, 2, 1], ["tanh", "identity"]).init_he(0)
    model = cnn.build_training_model(net, X, Y, name="xor_sdp")
    pyo.TransformationFactory("convexnn.bound").apply_to(model, weight_bound=3.0, bias_bound=3.0)
    pyo.TransformationFactory("convexnn.sdp").apply_to(model)
    return model
