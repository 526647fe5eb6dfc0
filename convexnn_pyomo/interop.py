r"""Take a :class:`~convexnn_pyomo.network.Network` to PyTorch, ONNX (and so OMLT), and back.

* :func:`to_torch` / :func:`from_torch`: a ``torch.nn.Sequential`` of ``Linear`` layers and
  activation modules, in float64 by default (outputs equal the numpy forward pass to round-off);
* :func:`from_sklearn`: a fitted ``MLPRegressor`` / ``MLPClassifier`` as a starting network;
* :func:`to_onnx`: an ONNX graph of ``Gemm`` and activation nodes that onnxruntime runs and that
  OMLT's ``load_onnx_neural_network`` reads (``models/omlt_maximize_score.py`` embeds one in a Pyomo
  model and optimises over its input).

Every converter goes through one table, :data:`COUNTERPARTS`: our activation name -> its PyTorch
module, ONNX operator and scikit-learn name.  The optional packages are imported on first use;
``pip install "convexnn-pyomo[interop]"`` brings onnx, onnxruntime and OMLT, the ``baselines`` extra
brings PyTorch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from pyomo.common.dependencies import attempt_import

from .activations import Activation, Softplus, available_activations, get_activation
from .network import Network

__all__ = ["COUNTERPARTS", "Counterparts", "from_sklearn", "from_torch", "to_onnx", "to_torch"]

torch, torch_available = attempt_import(
    "torch", error_message='PyTorch conversion needs torch: pip install "convexnn-pyomo[baselines]" (torch==2.13.0, CPU)'
)
onnx, onnx_available = attempt_import("onnx", error_message='ONNX export needs onnx: pip install "convexnn-pyomo[interop]"')


class Counterparts(NamedTuple):
    """One activation in the other libraries (``None``: it has no counterpart there)."""

    torch: str  #: ``torch.nn`` module class
    onnx: str | None  #: ONNX operator (the identity needs no node)
    sklearn: str | None  #: ``MLPRegressor(activation=...)``


#: our activation name -> its counterparts; the only place the converters learn activation names
COUNTERPARTS: dict[str, Counterparts] = {
    "identity": Counterparts("Identity", None, "identity"),
    "sigmoid": Counterparts("Sigmoid", "Sigmoid", "logistic"),
    "tanh": Counterparts("Tanh", "Tanh", "tanh"),
    "softplus": Counterparts("Softplus", "Softplus", None),
    "relu": Counterparts("ReLU", "Relu", "relu"),
}


def _supported(library: str) -> str:
    return ", ".join(getattr(c, library) for c in COUNTERPARTS.values() if getattr(c, library) is not None)


def _counterpart(act: Activation, library: str) -> str | None:
    """``act``'s name in ``library`` ('torch', 'onnx'); a ``ValueError`` naming the fix if it has none."""
    row = COUNTERPARTS.get(act.name)
    if row is None:
        raise ValueError(
            f"activation {act!r} has no {library} counterpart; the converters know {', '.join(COUNTERPARTS)}: "
            "retrain the network with one of them"
        )
    return getattr(row, library)


def _ours(name: str, source: str) -> Activation:
    """Our activation ``name``, or a ``ValueError`` saying this installation lacks it."""
    if name not in available_activations():
        raise ValueError(
            f"{source} maps to the activation {name!r}, which this version of convexnn_pyomo does not provide "
            f"(available: {', '.join(available_activations())})"
        )
    return get_activation(name)


def _layers(weights: list[np.ndarray], biases: list[np.ndarray], hidden: list[Activation]) -> Network:
    """A :class:`Network` from per-layer ``w^l (n_l, n_{l-1})``, ``b^l`` and hidden activations."""
    sizes = [int(weights[0].shape[1])] + [int(w.shape[0]) for w in weights]
    return Network(sizes, [*hidden, get_activation("identity")], weights, biases)


# -- PyTorch -------------------------------------------------------------------------------------
def to_torch(net: Network, dtype: Any = None) -> Any:
    """An equivalent ``torch.nn.Sequential``: ``Linear`` per layer, each followed by its activation
    module (none after a linear layer); ``dtype`` defaults to ``torch.float64``.

    Softplus becomes ``nn.Softplus(beta=tau)``; PyTorch switches it to the identity where
    ``tau z > 20``, a difference of at most :math:`\\log(1 + e^{-20})/\\tau \\approx 2\\cdot 10^{-9}/\\tau`.
    """
    net._require_parameters()
    dtype = torch.float64 if dtype is None else dtype
    modules = []
    for l, (w, b) in enumerate(zip(net.weights, net.biases), 1):
        linear = torch.nn.Linear(w.shape[1], w.shape[0], dtype=dtype)
        with torch.no_grad():
            linear.weight.copy_(torch.as_tensor(w, dtype=dtype))
            linear.bias.copy_(torch.as_tensor(b, dtype=dtype))
        modules.append(linear)
        act = net.activation(l)
        if not act.linear:
            module = getattr(torch.nn, _counterpart(act, "torch"))
            modules.append(module(beta=act.tau) if isinstance(act, Softplus) else module())
    return torch.nn.Sequential(*modules)


def _from_torch_activation(module: Any) -> Activation:
    by_class = {getattr(torch.nn, c.torch): name for name, c in COUNTERPARTS.items()}
    name = by_class.get(type(module))
    if name is None:
        raise ValueError(
            f"from_torch reads torch.nn.Sequential of Linear and {_supported('torch')} modules; "
            f"got {type(module).__name__}"
        )
    return Softplus(tau=float(module.beta)) if name == "softplus" else _ours(name, f"torch.nn.{type(module).__name__}")


def from_torch(module: Any) -> Network:
    """A :class:`Network` from a ``torch.nn.Sequential`` of ``Linear`` layers, each followed by at
    most one activation module (``Sigmoid``, ``Tanh``, ``Softplus``, ``ReLU``; ``Identity`` is
    skipped).  The last module must be ``Linear``: the network's output is the logit ``z^L``."""
    if not isinstance(module, torch.nn.Sequential):
        raise TypeError(f"from_torch reads a torch.nn.Sequential of Linear layers and activations, got {type(module).__name__}")
    weights, biases, hidden = [], [], []
    for i, mod in enumerate(module):
        if isinstance(mod, torch.nn.Identity):
            continue
        if isinstance(mod, torch.nn.Linear):
            if weights and len(hidden) < len(weights):
                hidden.append(get_activation("identity"))  # two Linear in a row: a linear hidden layer
            weights.append(mod.weight.detach().to(torch.float64).cpu().numpy().copy())
            b = mod.bias
            biases.append(np.zeros(mod.out_features) if b is None else b.detach().to(torch.float64).cpu().numpy().copy())
            continue
        act = _from_torch_activation(mod)
        if len(hidden) != len(weights) - 1:
            raise ValueError(f"module {i} ({type(mod).__name__}) must follow a Linear layer")
        hidden.append(act)
    if not weights:
        raise ValueError("the Sequential has no Linear layer")
    if len(hidden) == len(weights):
        raise ValueError(
            f"the last module is {type(module[-1]).__name__}, but a Network's output layer is linear (the logit z^L): "
            "drop the final activation and apply it to the outputs (for a classifier train with loss='logistic' or 'softmax')"
        )
    return _layers(weights, biases, hidden)


# -- scikit-learn --------------------------------------------------------------------------------
def from_sklearn(mlp: Any) -> Network:
    """A :class:`Network` with the weights of a fitted ``MLPRegressor`` or ``MLPClassifier``.

    ``coefs_[l]`` (``n_{l-1} x n_l``) becomes ``w^{l+1}`` transposed; the hidden activation maps
    ``logistic -> sigmoid``, ``tanh``, ``relu``, ``identity``.  The output layer is linear: for a
    regressor it equals the MLP's prediction; for a classifier it is the *logit* (the MLP applies
    ``out_activation_``, logistic or softmax, on top), to be trained on with ``loss='logistic'``
    (one output) or ``loss='softmax'`` (one output per class).
    """
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.utils.validation import check_is_fitted

    if not isinstance(mlp, (MLPClassifier, MLPRegressor)):
        raise TypeError(f"from_sklearn reads a fitted MLPRegressor or MLPClassifier, got {type(mlp).__name__}")
    check_is_fitted(mlp, "coefs_")
    by_sklearn = {c.sklearn: name for name, c in COUNTERPARTS.items() if c.sklearn is not None}
    if mlp.activation not in by_sklearn:
        raise ValueError(f"MLP activation {mlp.activation!r} has no counterpart; supported: {', '.join(by_sklearn)}")
    act = _ours(by_sklearn[mlp.activation], f"MLP activation {mlp.activation!r}")
    weights = [np.asarray(c, dtype=float).T.copy() for c in mlp.coefs_]
    biases = [np.asarray(b, dtype=float).copy() for b in mlp.intercepts_]
    return _layers(weights, biases, [act] * (len(weights) - 1))


# -- ONNX ----------------------------------------------------------------------------------------
def _unit_softplus(net: Network) -> Network:
    r"""An equal network whose softplus layers have :math:`\tau = 1` (ONNX's ``Softplus`` has no
    :math:`\tau`): :math:`\mathrm{softplus}_\tau(z) = \mathrm{softplus}(\tau z)/\tau`, so
    :math:`w^l, b^l \leftarrow \tau w^l, \tau b^l` and :math:`w^{l+1} \leftarrow w^{l+1}/\tau`."""
    weights = [w.copy() for w in net.weights]
    biases = [b.copy() for b in net.biases]
    acts = list(net.activations)
    for l, act in enumerate(acts[:-1]):
        if isinstance(act, Softplus) and act.tau != 1.0:
            weights[l] *= act.tau
            biases[l] *= act.tau
            weights[l + 1] /= act.tau
            acts[l] = Softplus()
    return Network(list(net.sizes), acts, weights, biases)


def to_onnx(net: Network, path: str | Path | None = None, dtype: str = "float64", opset: int = 17,
            input_name: str = "x", output_name: str = "y") -> Any:
    """The network as an ONNX model (``Gemm`` with ``transB=1`` per layer, then its activation node:
    ``Sigmoid``, ``Tanh``, ``Softplus``, ``Relu``); written to ``path`` when given.

    The input is ``[N, n_0]`` and the output ``[N, n_L]`` with a free batch size ``N``.  ``dtype``
    is ``"float64"`` (default, the numpy forward pass to round-off) or ``"float32"``.  onnxruntime
    1.32 has no float64 ``Softplus`` kernel: to *run* a softplus network there export it with
    ``dtype="float32"`` (OMLT reads either).  Softplus with :math:`\\tau \\ne 1` is rescaled into the
    weights (:func:`_unit_softplus`).  Returns the ``onnx.ModelProto`` (checked by ``onnx.checker``).
    """
    helper, numpy_helper, TensorProto = onnx.helper, onnx.numpy_helper, onnx.TensorProto  # the import, with its hint
    types = {"float64": (np.float64, TensorProto.DOUBLE), "float32": (np.float32, TensorProto.FLOAT)}
    if dtype not in types:
        raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    np_type, onnx_type = types[dtype]
    net._require_parameters()
    ops = [_counterpart(net.activation(l), "onnx") for l in range(1, net.n_layers + 1)]
    net = _unit_softplus(net)
    nodes, inits, h = [], [], input_name
    for l, (w, b, op) in enumerate(zip(net.weights, net.biases, ops), 1):
        inits += [numpy_helper.from_array(w.astype(np_type), f"w{l}"), numpy_helper.from_array(b.astype(np_type), f"b{l}")]
        last = l == net.n_layers
        z = output_name if last and op is None else f"z{l}"
        # every attribute explicit: OMLT's parser reads alpha and beta without defaults
        nodes.append(helper.make_node("Gemm", [h, f"w{l}", f"b{l}"], [z], name=f"layer{l}_gemm",
                                      alpha=1.0, beta=1.0, transA=0, transB=1))
        h = z
        if op is not None:
            h = output_name if last else f"x{l + 1}"
            nodes.append(helper.make_node(op, [z], [h], name=f"layer{l}_{op.lower()}"))
    graph = helper.make_graph(
        nodes, "convexnn_network",
        [helper.make_tensor_value_info(input_name, onnx_type, ["N", net.sizes[0]])],
        [helper.make_tensor_value_info(output_name, onnx_type, ["N", net.sizes[-1]])],
        initializer=inits,
    )
    opsets = [helper.make_opsetid("", opset)]
    # the oldest IR version the opset allows: runtimes refuse IR versions newer than they know
    model = helper.make_model(graph, opset_imports=opsets, producer_name="convexnn_pyomo",
                              ir_version=helper.find_min_ir_version_for(opsets))
    onnx.checker.check_model(model)
    if path is not None:
        onnx.save_model(model, str(path))
    return model
