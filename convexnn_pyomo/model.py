r"""The exact training problem (2a)-(2c) as a Pyomo model with one Block per layer.

``build_training_model(net, X, Y)`` returns a ``ConcreteModel`` with

* ``samples`` (``0..m-1``), ``features``, ``outputs`` Sets, the data Params ``x_data[k, j]`` and
  ``y[i, j]`` (column ``j`` is sample ``j``, as in the paper);
* ``layer[l]`` for ``l = 1..L``, each a :class:`LayerBlock` holding

  - ``w[i, k]``, ``b[i]``: weights and biases of the layer,
  - ``z[i, j]``: pre-activations,
  - ``x_in[k, j]``: a Reference to the layer's input (the data Param for ``l = 1``, the previous
    block's ``x`` otherwise),
  - ``x[i, j]``: post-activations ``x^{l+1}`` (hidden layers only),
  - ``bilinear[i, j]``: (2b) :math:`z_{ij} = \sum_k w_{ik} x_{kj} + b_i`,
  - ``activation[i, j]``: (2c) :math:`x^{l+1}_{ij} = h^l(z_{ij})` (hidden layers only);

* ``loss`` (Expression) :math:`\sum_j \ell(z^L_{*j}, y_{*j})` (divided by ``m`` when
  ``reduction="mean"``), by default the squared loss :math:`\sum_{ij} (z^L_{ij} - y_{ij})^2`
  (:mod:`convexnn_pyomo.losses`), and ``objective`` minimising it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyomo.environ as pyo
from pyomo.core.base.block import BlockData, declare_custom_block

from .activations import Activation
from .distributed import SampleShards
from .losses import Loss, SquaredLoss, get_loss
from .network import Network, check_data
from .samples import get_sample_array, set_sample_array

__all__ = [
    "LayerBlock",
    "TrainingProblem",
    "build_training_model",
    "build_output_layer_model",
    "set_output_layer_values",
    "get_training_problem",
    "set_values_from_network",
    "network_from_model",
    "layer_blocks",
    "constraint_gaps",
    "var_matrix",
]


@dataclass
class TrainingProblem:
    """What the model was built from: network architecture, data, loss reduction and loss;
    ``shards`` (:class:`~convexnn_pyomo.distributed.SampleShards`) when ``X`` is one MPI rank's
    shard of a larger data set (the averaged loss then divides by the whole set's size)."""

    network: Network
    X: np.ndarray  # (m, n_0)
    Y: np.ndarray  # (m, n_L)
    reduction: str
    loss: Loss = field(default_factory=SquaredLoss)
    shards: SampleShards | None = None

    @property
    def m(self) -> int:
        return self.X.shape[0]

    @property
    def sample_shards(self) -> SampleShards:
        """Where these samples sit (one process: all of them)."""
        return self.shards if self.shards is not None else SampleShards.serial(self.m)

    @property
    def loss_scale(self) -> float:
        return 1.0 / self.sample_shards.total if self.reduction == "mean" else 1.0


@declare_custom_block(name="LayerBlock")
class LayerBlockData(BlockData):
    """One layer ``l`` of the training model: variables and constraints (2b), (2c)."""

    def build(self, l: int, n_in: int, n_out: int, activation: Activation, x_in, samples, is_output: bool,
              elementary: bool = False):
        self.index_l = l
        self.activation_function = activation
        self.is_output = is_output
        self.nodes = pyo.Set(initialize=range(n_out), ordered=True, doc="nodes i of this layer")
        self.inputs = pyo.Set(initialize=range(n_in), ordered=True, doc="inputs k of this layer")
        self.x_in = pyo.Reference(x_in)
        self.input_is_data = l == 1
        self.w = pyo.Var(self.nodes, self.inputs, initialize=0.0, doc="weights w^l (n_l x n_(l-1))")
        self.b = pyo.Var(self.nodes, initialize=0.0, doc="biases b^l")
        self.z = pyo.Var(self.nodes, samples, initialize=0.0, doc="pre-activations z^l (n_l x m)")

        def _bilinear(blk, i, j):
            return blk.z[i, j] == sum(blk.w[i, k] * blk.x_in[k, j] for k in blk.inputs) + blk.b[i]

        self.bilinear = pyo.Constraint(self.nodes, samples, rule=_bilinear, doc="(2b) z = w x + b 1^T")
        if not is_output:
            self.x = pyo.Var(self.nodes, samples, initialize=0.0, doc="post-activations x^(l+1) = h(z)")

            expr = activation.elementary_expr if elementary else activation.pyomo_expr

            def _activation(blk, i, j):
                return blk.x[i, j] == expr(blk.z[i, j])

            self.activation = pyo.Constraint(self.nodes, samples, rule=_activation, doc="(2c) x^(l+1) = h^l(z^l)")


def layer_blocks(model) -> list:
    """The model's :class:`LayerBlock` data objects in layer order ``1..L``.

    Layer blocks keep Pyomo's ``Block`` ctype (so every writer and solver descends into them);
    they are recognised by their data class.
    """
    found = [b for b in model.component_data_objects(pyo.Block, descend_into=True) if isinstance(b, LayerBlockData)]
    return sorted(found, key=lambda b: b.index_l)


def get_training_problem(model) -> TrainingProblem:
    """The :class:`TrainingProblem` stored on a model built by :func:`build_training_model`."""
    tp = getattr(model, "training_problem", None)
    if not isinstance(tp, TrainingProblem):
        raise ValueError(
            "this model was not built by convexnn_pyomo.build_training_model (no training_problem)"
        )
    return tp


def build_training_model(net: Network, X, Y, reduction: str = "sum", name: str = "convexnn_training",
                         elementary: bool = False, loss: str | Loss = "squared",
                         samples=None, shards: SampleShards | None = None) -> pyo.ConcreteModel:
    """Build the exact training problem (2a)-(2c).

    ``X`` has shape ``(m, n_0)``, ``Y`` shape ``(m, n_L)`` or ``(m,)``; sizes come from the data
    and must match ``net.sizes``.  ``loss``: ``"squared"`` (the paper's loss (1)), ``"logistic"``,
    ``"softmax"`` or a :class:`~convexnn_pyomo.losses.Loss` (recorded on the
    :class:`TrainingProblem`).  ``reduction="sum"`` sums it over samples; ``"mean"`` divides it by
    ``m``.  When ``net`` has weights, every variable starts at the network's forward pass (a
    feasible point).  ``elementary=True`` writes (2c) and the loss with ``exp``/``log``/division
    only, the form global solvers accept (see :meth:`Activation.elementary_expr`).  ``samples``
    (default: all) builds a *template* holding only those samples (:mod:`convexnn_pyomo.samples`):
    everything that depends on the data as a whole (loss scale, class sizes, bounds) still uses
    every sample, and the data of the others are kept for the structured round.  ``shards``: ``X``
    is one MPI rank's shard (:class:`~convexnn_pyomo.distributed.SampleShards`); the averaged loss
    divides by the size of the whole data set.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    X, Y = check_data(X, Y, net.sizes[0], net.sizes[-1])
    loss_fn = get_loss(loss)
    loss_fn.check_targets(Y)
    m_samples = X.shape[0]
    L = net.n_layers

    model = pyo.ConcreteModel(name=name)
    if shards is not None and shards.m != m_samples:
        raise ValueError(f"shards holds {shards.m} samples on this rank but X has {m_samples} rows")
    model.training_problem = TrainingProblem(net.copy(), X.copy(), Y.copy(), reduction, loss_fn, shards)
    held = range(m_samples) if samples is None else sorted({int(j) for j in samples})
    if not held or held[0] < 0 or held[-1] >= m_samples:
        raise ValueError(f"samples must be indices in [0, {m_samples}), got {samples!r}")
    model.samples = pyo.Set(initialize=held, ordered=True, doc="data points j")
    model.features = pyo.Set(initialize=range(net.sizes[0]), ordered=True)
    model.outputs = pyo.Set(initialize=range(net.sizes[-1]), ordered=True)
    # mutable: ParamData objects (layer 1's Reference is an ordinary component) that translate to
    # parameters, so one sample's functions serve every sample
    model.x_data = pyo.Param(model.features, model.samples, mutable=True, initialize=0.0, doc="input data x^1 (n_0 x m)")
    model.y = pyo.Param(model.outputs, model.samples, mutable=True, initialize=0.0, doc="labels y (n_L x m)")
    set_sample_array(model.x_data, X.T)
    set_sample_array(model.y, Y.T)
    model.layer = LayerBlock(range(1, L + 1))
    for l in range(1, L + 1):
        x_in = model.x_data if l == 1 else model.layer[l - 1].x
        model.layer[l].build(
            l, net.sizes[l - 1], net.sizes[l], net.activation(l), x_in, model.samples, l == L, elementary
        )
    _add_loss(model, model.layer[L], elementary)
    if net.weights is not None:
        set_values_from_network(model, net)
    return model


def _add_loss(model, out, elementary: bool = False) -> None:
    """(2a): ``model.loss`` on the output block ``out``'s ``z`` and ``model.y``, and the objective."""
    tp = model.training_problem
    sample_loss = tp.loss.elementary_expr if elementary else tp.loss.pyomo_expr
    model.loss = pyo.Expression(
        expr=tp.loss_scale * sum(
            sample_loss([out.z[i, j] for i in out.nodes], [model.y[i, j] for i in out.nodes]) for j in model.samples
        ),
        doc=f"(2a) {tp.loss.name} loss",
    )
    model.objective = pyo.Objective(expr=model.loss, sense=pyo.minimize)


def build_output_layer_model(net: Network, X, Y, reduction: str = "sum", loss: str | Loss = "squared",
                             fp=None) -> pyo.ConcreteModel:
    r"""The training problem (2a)-(2c) with layers :math:`1, \dots, L-1` fixed at ``net``: only layer
    :math:`L`'s block, whose input :math:`x^L` (the hidden layers' forward pass) is data.

    .. math:: \min_{w^L, b^L, z^L} \sum_j \ell(z^L_{*j}, y_j) \quad \text{s.t.} \quad
              z^L = w^L x^L + b^L \mathbf{1}^\top

    is exact (no bilinear term is lifted) and convex for a convex loss; the hard constraints on the
    outputs (``on_output_layer``) add to it as to the full model, reading the same ``X``.  Every
    variable starts at ``net``'s values (``fp``: its forward pass, computed here unless given).
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    X, Y = check_data(X, Y, net.sizes[0], net.sizes[-1])
    loss_fn = get_loss(loss)
    loss_fn.check_targets(Y)
    fp = fp if fp is not None else net.forward_pass(X)
    L = net.n_layers
    model = pyo.ConcreteModel(name="convexnn_output_layer")
    model.training_problem = TrainingProblem(net.copy(), X.copy(), Y.copy(), reduction, loss_fn)
    model.samples = pyo.Set(initialize=range(X.shape[0]), ordered=True, doc="data points j")
    model.hidden = pyo.Set(initialize=range(net.sizes[L - 1]), ordered=True)
    model.outputs = pyo.Set(initialize=range(net.sizes[-1]), ordered=True)
    model.x_last = pyo.Param(model.hidden, model.samples, mutable=True, initialize=0.0,
                             doc="x^L: the fixed hidden layers' forward pass (n_(L-1) x m)")
    model.y = pyo.Param(model.outputs, model.samples, mutable=True, initialize=0.0, doc="labels y (n_L x m)")
    set_sample_array(model.y, Y.T)
    model.layer = LayerBlock([L])
    out = model.layer[L]
    out.build(L, net.sizes[L - 1], net.sizes[L], net.activation(L), model.x_last, model.samples, True)
    _add_loss(model, out)
    set_output_layer_values(model, net, fp)
    return model


def set_output_layer_values(model, net: Network, fp) -> None:
    """An output-layer model (:func:`build_output_layer_model`) at ``net``: its fixed input ``x^L``
    and the start ``w^L, b^L, z^L`` from ``net`` and its forward pass ``fp``."""
    L, out = net.n_layers, model.layer[net.n_layers]
    set_sample_array(model.x_last, fp.x[L - 1])
    set_sample_array(out.w, net.weights[L - 1])
    set_sample_array(out.b, net.biases[L - 1])
    set_sample_array(out.z, fp.z[L - 1])


def set_values_from_network(model, net: Network, fp=None) -> None:
    """Set ``w, b, z, x`` of every layer to ``net``'s parameters and exact forward pass
    (``fp``, computed here unless given)."""
    if fp is None:
        fp = net.forward_pass(get_training_problem(model).X)
    for blk in layer_blocks(model):
        l = blk.index_l
        set_sample_array(blk.w, net.weights[l - 1])
        set_sample_array(blk.b, net.biases[l - 1])
        set_sample_array(blk.z, fp.z[l - 1])
        if not blk.is_output:
            set_sample_array(blk.x, fp.x[l])


def var_matrix(var, shape: tuple[int, int]) -> np.ndarray:
    """Values of a 2-index Var as an array (``None`` values become NaN)."""
    out = np.full(shape, np.nan)
    for (i, j), v in var.items():
        if v.value is not None:
            out[i, j] = v.value
    return out


def network_from_model(model) -> Network:
    """A :class:`Network` with the weights and biases currently held by the model's variables."""
    tp = get_training_problem(model)
    net = tp.network
    weights, biases = [], []
    for blk in layer_blocks(model):
        l = blk.index_l
        weights.append(var_matrix(blk.w, (net.sizes[l], net.sizes[l - 1])))
        biases.append(np.array([blk.b[i].value if blk.b[i].value is not None else np.nan for i in blk.nodes]))
    if any(np.isnan(w).any() for w in weights) or any(np.isnan(b).any() for b in biases):
        raise ValueError("some weights or biases have no value; solve the model first")
    return Network(list(net.sizes), list(net.activations), weights, biases)


def constraint_gaps(model) -> tuple[float, float]:
    """``(bilinear_gap, activation_gap)`` of the point held by the model's variables.

    ``bilinear_gap = max |z - (w x + b 1^T)|`` over layers whose input is a variable and
    ``activation_gap = max |x^(l+1) - h^l(z^l)|`` over hidden layers: how far the (possibly
    relaxed) solution is from satisfying the exact constraints (2b) and (2c).
    """
    tp = get_training_problem(model)
    sizes, m = tp.network.sizes, tp.m
    bil, act = 0.0, 0.0
    prev_x = tp.X.T
    for blk in layer_blocks(model):
        l = blk.index_l
        w = var_matrix(blk.w, (sizes[l], sizes[l - 1]))
        b = np.array([blk.b[i].value for i in blk.nodes], dtype=float)
        z = get_sample_array(blk.z, (sizes[l], m))
        bil = max(bil, float(np.nanmax(np.abs(z - (w @ prev_x + b[:, None])))))
        if not blk.is_output:
            x = get_sample_array(blk.x, (sizes[l], m))
            act = max(act, float(np.nanmax(np.abs(x - blk.activation_function.value(z)))))
            prev_x = x
    shards = tp.sample_shards  # a rank's shard: the largest gap over every rank
    return shards.max(bil), shards.max(act)
