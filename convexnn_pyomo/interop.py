r"""Take a :class:`~convexnn_pyomo.network.Network` to PyTorch, ONNX (and so OMLT), and back.

* :func:`to_torch` / :func:`from_torch`: a ``torch.nn.Sequential`` of ``Linear`` layers and
  activation modules, in float64 by default (outputs equal the numpy forward pass to round-off);
* :func:`from_sklearn`: a fitted ``MLPRegressor`` / ``MLPClassifier`` as a starting network;
* :func:`to_onnx`: an ONNX graph of ``Gemm`` and activation nodes, in float64 (default) or float32,
  that onnxruntime runs and that OMLT's ``load_onnx_neural_network`` reads
  (``models/omlt_maximize_score.py`` embeds one in a Pyomo model and optimises over its input).

``Network.to_torch()``, ``Network.to_onnx(path)`` and ``Network.from_torch(module)`` call these.
So that the two modules do not import each other, this one does not import
:mod:`convexnn_pyomo.network`: the writers read any :class:`NetworkLike` (sizes, activations,
weights, biases), and the readers build the class they are given, by default the one
:mod:`~convexnn_pyomo.network` hands over with :func:`network_class` when it is imported (``Network``).

Every converter goes through one table, :data:`COUNTERPARTS`: our activation name -> its PyTorch
module, ONNX operator and scikit-learn name.  The optional packages are imported on first use;
``pip install "convexnn-pyomo[interop]"`` brings onnx, onnxruntime and OMLT, the ``baselines`` extra
brings PyTorch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar

import numpy as np
from pyomo.common.dependencies import attempt_import

from .activations import Activation, Softplus, available_activations, get_activation

__all__ = ["COUNTERPARTS", "Counterparts", "NetworkLike", "from_sklearn", "from_torch", "network_class", "to_onnx",
           "to_torch"]

torch, torch_available = attempt_import(
    "torch", error_message='PyTorch conversion needs torch: pip install "convexnn-pyomo[baselines]" (torch==2.13.0, CPU)'
)
onnx, onnx_available = attempt_import("onnx", error_message='ONNX export needs onnx: pip install "convexnn-pyomo[interop]"')


class NetworkLike(Protocol):
    """What the converters read of a network; :class:`convexnn_pyomo.network.Network` is one.  A class
    the readers build is called as ``network_cls(sizes, activations, weights, biases)``."""

    sizes: Sequence[int]  #: ``[n_0, ..., n_L]``
    activations: Sequence[Activation]  #: ``h^1 .. h^L``, the last one linear
    weights: list[np.ndarray] | None  #: ``w^l`` with shape ``(n_l, n_{l-1})``
    biases: list[np.ndarray] | None  #: ``b^l`` with shape ``(n_l,)``


_C = TypeVar("_C", bound=type)
_default_network_class: type | None = None


def network_class(cls: _C) -> _C:
    """Class decorator: ``cls`` is what :func:`from_torch` and :func:`from_sklearn` build when they
    are not given a ``network_cls`` (:class:`convexnn_pyomo.network.Network` declares itself)."""
    global _default_network_class
    _default_network_class = cls
    return cls


def _build(network_cls: type | None, weights: list[np.ndarray], biases: list[np.ndarray],
           hidden: list[Activation]) -> Any:
    """A network of ``network_cls`` (default :class:`~convexnn_pyomo.network.Network`) from per-layer
    ``w^l (n_l, n_{l-1})``, ``b^l`` and hidden activations; the output layer is the identity."""
    cls = network_cls if network_cls is not None else _default_network_class
    if cls is None:  # never once the package is imported: its __init__ imports network, which registers Network
        raise RuntimeError("no network class: import convexnn_pyomo (or pass network_cls=Network)")
    sizes = [int(weights[0].shape[1])] + [int(w.shape[0]) for w in weights]
    return cls(sizes, [*hidden, get_activation("identity")], weights, biases)


def _parameters(net: NetworkLike) -> tuple[list[np.ndarray], list[np.ndarray]]:
    if net.weights is None or net.biases is None:
        raise ValueError("the network has no weights yet: call net.init_he(seed) or set_parameters()")
    return net.weights, net.biases


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


# -- PyTorch -------------------------------------------------------------------------------------
def to_torch(net: NetworkLike, dtype: Any = None) -> Any:
    """An equivalent ``torch.nn.Sequential``: ``Linear`` per layer, each followed by its activation
    module (none after a linear layer); ``dtype`` defaults to ``torch.float64``.

    Softplus becomes ``nn.Softplus(beta=tau)``; PyTorch switches it to the identity where
    ``tau z > 20``, a difference of at most :math:`\\log(1 + e^{-20})/\\tau \\approx 2\\cdot 10^{-9}/\\tau`.
    """
    weights, biases = _parameters(net)
    dtype = torch.float64 if dtype is None else dtype
    modules = []
    for w, b, act in zip(weights, biases, net.activations):
        linear = torch.nn.Linear(w.shape[1], w.shape[0], dtype=dtype)
        with torch.no_grad():
            linear.weight.copy_(torch.as_tensor(w, dtype=dtype))
            linear.bias.copy_(torch.as_tensor(b, dtype=dtype))
        modules.append(linear)
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


def from_torch(module: Any, network_cls: type | None = None) -> Any:
    """A :class:`~convexnn_pyomo.network.Network` (or ``network_cls``) from a ``torch.nn.Sequential``
    of ``Linear`` layers, each followed by at most one activation module (``Sigmoid``, ``Tanh``,
    ``Softplus``, ``ReLU``; ``Identity`` is skipped).  The last module must be ``Linear``: the
    network's output is the logit ``z^L``."""
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
    return _build(network_cls, weights, biases, hidden)


# -- scikit-learn --------------------------------------------------------------------------------
def from_sklearn(mlp: Any, network_cls: type | None = None) -> Any:
    """A :class:`~convexnn_pyomo.network.Network` (or ``network_cls``) with the weights of a fitted
    ``MLPRegressor`` or ``MLPClassifier``.

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
    return _build(network_cls, weights, biases, [act] * (len(weights) - 1))


# -- ONNX ----------------------------------------------------------------------------------------
def _unit_softplus(weights: list[np.ndarray], biases: list[np.ndarray], acts: list[Activation]):
    r"""Equal layers whose softplus activations have :math:`\tau = 1` (ONNX's ``Softplus`` has no
    :math:`\tau`): :math:`\mathrm{softplus}_\tau(z) = \mathrm{softplus}(\tau z)/\tau`, so
    :math:`w^l, b^l \leftarrow \tau w^l, \tau b^l` and :math:`w^{l+1} \leftarrow w^{l+1}/\tau`.
    Returns new ``(weights, biases, activations)``; the inputs are not modified."""
    weights = [w.copy() for w in weights]
    biases = [b.copy() for b in biases]
    acts = list(acts)
    for l, act in enumerate(acts[:-1]):
        if isinstance(act, Softplus) and act.tau != 1.0:
            weights[l] *= act.tau
            biases[l] *= act.tau
            weights[l + 1] /= act.tau
            acts[l] = Softplus()
    return weights, biases, acts


#: the element types to_onnx writes: numpy type -> name of the ONNX TensorProto type
_ONNX_TYPES = {np.dtype(np.float64): "DOUBLE", np.dtype(np.float32): "FLOAT"}


def _onnx_dtype(dtype: Any) -> np.dtype:
    """``float64`` or ``float32`` from a name (``"float32"``) or a numpy type (``np.float32``)."""
    try:
        np_type = None if dtype is None else np.dtype(dtype)
    except (TypeError, ValueError):
        np_type = None
    if np_type not in _ONNX_TYPES:
        raise ValueError(f"dtype must be 'float64' or 'float32' (a name or a numpy dtype), got {dtype!r}")
    return np_type


def to_onnx(net: NetworkLike, path: str | Path | None = None, dtype: Any = "float64", opset: int = 17,
            input_name: str = "x", output_name: str = "y") -> Any:
    """The network as an ONNX model (``Gemm`` with ``transB=1`` per layer, then its activation node:
    ``Sigmoid``, ``Tanh``, ``Softplus``, ``Relu``); written to ``path`` when given.

    The input is ``[N, n_0]`` and the output ``[N, n_L]`` with a free batch size ``N``.  ``dtype``
    is the element type of the weights, input and output: ``"float64"`` (default; ONNX ``DOUBLE``,
    the numpy forward pass to round-off, what OMLT should read) or ``"float32"`` (``FLOAT``, what most
    ONNX consumers feed; outputs to about ``1e-6`` relative), given by name or as a numpy dtype
    (``np.float32``); anything else is a ``ValueError``.  onnxruntime 1.32 has no float64 ``Softplus``
    kernel: to *run* a softplus network there export it in float32.  Softplus with
    :math:`\tau \ne 1` is rescaled into the weights (:func:`_unit_softplus`).  Returns the
    ``onnx.ModelProto`` (checked by ``onnx.checker``).
    """
    np_type = _onnx_dtype(dtype)
    helper, numpy_helper = onnx.helper, onnx.numpy_helper  # the import, with its hint
    onnx_type = getattr(onnx.TensorProto, _ONNX_TYPES[np_type])
    weights, biases = _parameters(net)
    acts = list(net.activations)
    ops = [_counterpart(act, "onnx") for act in acts]
    weights, biases, acts = _unit_softplus(weights, biases, acts)
    n_layers = len(weights)
    nodes, inits, h = [], [], input_name
    for l, (w, b, op) in enumerate(zip(weights, biases, ops), 1):
        inits += [numpy_helper.from_array(w.astype(np_type), f"w{l}"), numpy_helper.from_array(b.astype(np_type), f"b{l}")]
        last = l == n_layers
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
        [helper.make_tensor_value_info(input_name, onnx_type, ["N", int(net.sizes[0])])],
        [helper.make_tensor_value_info(output_name, onnx_type, ["N", int(net.sizes[-1])])],
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
