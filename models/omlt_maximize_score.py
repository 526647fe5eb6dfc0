"""A trained network handed to OMLT: the input in a box that maximises the network's predicted score.

The network (breast_cancer, 8-6-1 sigmoid, Algorithm 1 for a few rounds; the output is the
predicted "benign" score) is exported with ``Network.to_onnx``, read back by OMLT's
``load_onnx_neural_network`` with the input box [0, 1]^8 (the data's min-max scaled range) and
embedded in a Pyomo model by ``FullSpaceSmoothNNFormulation``: for every node a pre-activation
variable :math:`\\hat z = w^\\top x + b` and a post-activation variable :math:`z = \\sigma(\\hat z)` tied
by an equality.  The objective maximises the output over the box, a smooth nonconvex NLP: Ipopt
finds a local maximum, started from the best of the box's corners and the training samples.

    pyomo solve models/omlt_maximize_score.py --solver=ipopt_casadi

Needs the ``interop`` extra: ``pip install "convexnn-pyomo[interop]"`` (onnx, omlt).
"""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import numpy as np
import pyomo.environ as pyo
from pyomo.common.dependencies import attempt_import

import convexnn_pyomo as cnn
from convexnn_pyomo.data import load_breast_cancer

_HINT = 'this model needs {}: pip install "convexnn-pyomo[interop]"'
onnx, _ = attempt_import("onnx", error_message=_HINT.format("onnx"))
omlt, _ = attempt_import("omlt", error_message=_HINT.format("OMLT"))
omlt_onnx, _ = attempt_import("omlt.io.onnx", error_message=_HINT.format("OMLT"))
omlt_nn, _ = attempt_import("omlt.neuralnet", error_message=_HINT.format("OMLT"))


def candidate_inputs(lower, upper, samples=None) -> np.ndarray:
    """The box's corners (all of them up to 12 inputs) and the given samples, one per row."""
    lower, upper = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    if lower.size > 12:
        raise ValueError(f"{lower.size} inputs have 2^{lower.size} corners; pass samples only")
    corners = np.array([np.where(bits, upper, lower) for bits in itertools.product((0, 1), repeat=lower.size)])
    return corners if samples is None else np.vstack([corners, np.asarray(samples, dtype=float)])


def build_model(onnx_path, lower, upper, start=None) -> pyo.ConcreteModel:
    """Maximise output 0 of the ONNX network at ``onnx_path`` over the box ``[lower, upper]``.

    ``start`` (one input vector) initialises the inputs.  ``model.nn`` is the OMLT block:
    ``model.nn.inputs[i]`` and ``model.nn.outputs[k]``.
    """
    lower, upper = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    bounds = {i: (float(lo), float(hi)) for i, (lo, hi) in enumerate(zip(lower, upper))}
    definition = omlt_onnx.load_onnx_neural_network(onnx.load(str(onnx_path)), input_bounds=bounds)
    model = pyo.ConcreteModel(name="omlt_maximize_score")
    model.nn = omlt.OmltBlock()
    model.nn.build_formulation(omlt_nn.FullSpaceSmoothNNFormulation(definition))
    first_output = next(iter(model.nn.outputs_set))
    model.score = pyo.Objective(expr=model.nn.outputs[first_output], sense=pyo.maximize)
    if start is not None:
        for i, value in zip(model.nn.inputs_set, np.asarray(start, dtype=float)):
            model.nn.inputs[i].set_value(float(value))
    return model


def best_start(net: cnn.Network, candidates: np.ndarray) -> np.ndarray:
    """The candidate (row) with the highest predicted score (numpy forward pass)."""
    return candidates[int(np.argmax(net.predict(candidates)[:, 0]))]


def trained_network(rounds: int = 3) -> tuple[cnn.Network, np.ndarray]:
    """An 8-6-1 sigmoid network trained on 100 breast_cancer samples, and those samples."""
    ds = load_breast_cancer()
    X, Y = ds.X[:100], ds.y[:100]
    net = cnn.Network([8, 6, 1], ["sigmoid", "identity"]).init_he(0)
    return cnn.train(net, X, Y, rounds=rounds).network, X


def pyomo_create_model(options=None, model_options=None):
    net, X = trained_network()
    lower, upper = np.zeros(net.sizes[0]), np.ones(net.sizes[0])
    with tempfile.TemporaryDirectory(prefix="convexnn_omlt_") as tmp:  # OMLT keeps what it read, not the file
        path = Path(tmp) / "network.onnx"
        net.to_onnx(path)
        return build_model(path, lower, upper, start=best_start(net, candidate_inputs(lower, upper, X)))
