r"""``convexnn.regularize``: add :math:`\eta\, r` of (8), centred at a reference network, to the objective.

With reference weights :math:`\check w, \check b`, its exact forward pass :math:`\check z^l`, and
:math:`\check x^l = h^{l-1}(\check z^{l-1})` (the paper's :math:`h(z^l(\check w, \check b))`):

.. math::
    r = \sum_l \mu^l_z \sum_i \big(W^l_{ii} - 2 w^l_i\cdot\check w^l_i + \|\check w^l_i\|^2\big)
      + s \sum_{l \ge 2} \mu^l_z \sum_j \big(X^l_{jj} - 2 \check x^l_j\cdot x^l_j + \|\check x^l_j\|^2\big)\\
      + s \sum_{l<L} \mu^l_p \sum_{ij} \Big(\tfrac{u_{ij} + x_{ij}}{2} - p(\check z_{ij}) - p'(\check z_{ij})(z_{ij} - \check z_{ij})\Big)
      + s \sum_{l<L} \mu^l_q \sum_{ij} \Big(\tfrac{u_{ij} - x_{ij}}{2} - q(\check z_{ij}) - q'(\check z_{ij})(z_{ij} - \check z_{ij})\Big)

plus, for a saturating loss (:attr:`~convexnn_pyomo.losses.Loss.saturating`: logistic, softmax),
:math:`\mu^L_z \|b^L - \check b^L\|^2` on the output biases, a term (8) does not have: the
biases enter (8) only through ``z``, and where the loss's curvature vanishes (a rare class's
logits far below the others) a round's output biases are barely determined; without the anchor
Ipopt drifted along them for hundreds of iterations (10-class Yeast).  It is zero at the reference
and non-negative, so the properties below and Theorem 1's exactness are untouched.

The paper's ``tr{...}`` terms are sums over elements and its ``mu_y`` is ``mu_q``; the constants
make ``r = 0`` at the lifted reference point and ``r >= 0`` on the relaxed feasible set.  Each
bracket is built by the relaxation of its layer (:meth:`LayerRelaxationTransformation.weight_proximal`,
``input_proximal``, ``activation_proximal``): ``W_ii`` is the parabolic ``W[i]`` or the SDP's
``Wm[i, i]``; where a layer has no ``W`` (the first layer, a McCormick layer, or a layer left
exact) the weight term is its exact value :math:`\|w_i - \check w_i\|^2`; likewise for ``X``.  ``s = 1/m`` when the model's loss is the
mean (``reduction="mean"``), else ``1``: per-sample terms are averaged like the loss, so ``eta``
stays O(1) as ``m`` grows (see ``docs/formulation.md``).

The reference lives in mutable Params: :func:`update_reference` starts a new round by changing
values only, so a persistent solver reuses its compiled model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyomo.environ as pyo
from pyomo.common.config import ConfigDict, ConfigValue, IsInstance
from pyomo.common.modeling import unique_component_name
from pyomo.core.base.transformation import Transformation, TransformationFactory

from ..model import get_training_problem, layer_blocks, network_from_model
from ..network import ForwardPass, Network
from ..samples import set_sample_array
from .base import _info, _relaxation_or_exact, get_relaxation, get_relaxation_block

__all__ = ["Regularize", "exactness_weights", "get_regularization_block", "update_reference"]


def _positive_eta(v):
    v = float(v)
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"eta must be a positive finite number, got {v!r}")
    return v


_positive_eta.domain_name = "positive float"


def _positive_weights(v):
    vals = [float(a) for a in v] if isinstance(v, Sequence) and not isinstance(v, str) else [float(v)]
    if any((not np.isfinite(a)) or a <= 0 for a in vals):
        raise ValueError(f"mu weights must be positive finite numbers, got {v!r}")
    return vals if len(vals) > 1 else vals[0]


_positive_weights.domain_name = "positive float or one positive float per layer"


def _per_layer(v, count: int) -> list:
    vals = v if isinstance(v, list) else [v] * count
    if len(vals) != count:
        raise ValueError(f"expected one mu value per layer ({count}), got {len(vals)}")
    return vals


def _relaxes_activation(blk) -> bool:
    return _relaxation_or_exact(blk).relaxes_activation(blk)


@TransformationFactory.register(
    "convexnn.regularize",
    doc="Add eta times the regularizer (8), centred at a reference network, to the objective (problem 9)",
)
class Regularize(Transformation):
    """Regularized relaxation (9a): objective = loss + eta * r (paper eq. 8)."""

    CONFIG = ConfigDict("convexnn.regularize")
    CONFIG.declare("eta", ConfigValue(default=None, domain=_positive_eta, description="Regularization weight eta > 0"))
    CONFIG.declare(
        "reference",
        ConfigValue(
            default=None,
            domain=IsInstance(Network),
            description="Reference network (w, b); default: the model's current weights",
        ),
    )
    CONFIG.declare("mu_z", ConfigValue(default=1.0, domain=_positive_weights, description="mu_z^l > 0 (scalar or per layer)"))
    CONFIG.declare("mu_p", ConfigValue(default=1.0, domain=_positive_weights, description="mu_p^l > 0 (scalar or per layer)"))
    CONFIG.declare("mu_q", ConfigValue(default=1.0, domain=_positive_weights, description="mu_q^l > 0 (scalar or per layer)"))

    def _apply_to(self, model, **kwds):
        config = self.CONFIG(kwds.pop("options", {}))
        config.set_value(kwds)
        if config.eta is None:
            raise ValueError("convexnn.regularize needs eta > 0 (e.g. apply_to(m, eta=1.0))")
        tp = get_training_problem(model)
        if get_regularization_block(model) is not None:
            raise ValueError(
                "the model is already regularized; call convexnn_pyomo.update_reference(model, net, eta) "
                "to start a new round"
            )
        blocks = layer_blocks(model)
        for blk in blocks:
            relaxation = get_relaxation(blk)
            if relaxation is not None and not relaxation.supports_regularization:
                raise ValueError(f"convexnn.regularize is not defined over {type(relaxation).__name__} ({blk.name})")
        reference = config.reference if config.reference is not None else network_from_model(model)
        if list(reference.sizes) != list(tp.network.sizes):
            raise ValueError(f"reference network has sizes {reference.sizes}, the model {tp.network.sizes}")
        objs = list(model.component_data_objects(pyo.Objective, active=True))
        if len(objs) != 1:
            raise ValueError(f"convexnn.regularize expects one active objective, found {len(objs)}")

        reg = pyo.Block(doc="regularizer (8) and regularized objective (9a)")
        model.add_component(unique_component_name(model, "regularization"), reg)
        _info(model).regularization = reg
        self._declare_weights(reg, blocks, config)
        self._build_regularizer(reg, blocks, model.samples, tp.loss_scale, tp.loss.saturating)
        base = objs[0]
        base.deactivate()
        reg.base_objective_expr = pyo.Expression(expr=base.expr, doc=f"the objective {base.name} being regularized")
        reg.objective = pyo.Objective(expr=reg.base_objective_expr + reg.eta * reg.r, sense=base.sense, doc="(9a)")
        update_reference(model, reference)

    @staticmethod
    def _declare_weights(reg, blocks, config) -> None:
        """Sets of layers and the mutable Params ``eta``, ``mu_z``, ``mu_p``, ``mu_q``."""
        layers = [blk.index_l for blk in blocks]
        dc_layers = [blk.index_l for blk in blocks if _relaxes_activation(blk)]
        reg.layers = pyo.Set(initialize=layers, ordered=True)
        reg.dc_layers = pyo.Set(initialize=dc_layers, ordered=True)
        reg.eta = pyo.Param(mutable=True, initialize=config.eta, doc="eta")
        reg.mu_z = pyo.Param(reg.layers, mutable=True, initialize=dict(zip(layers, _per_layer(config.mu_z, len(layers)))))
        for name in ("mu_p", "mu_q"):
            values = _per_layer(config[name], len(dc_layers)) if dc_layers else []
            reg.add_component(name, pyo.Param(reg.dc_layers, mutable=True, initialize=dict(zip(dc_layers, values))))

    @staticmethod
    def _build_regularizer(reg, blocks, samples, scale: float, anchor_output_bias: bool) -> None:
        """Reference Params per layer and the brackets of (8), each built by the layer's relaxation
        (and the output-bias anchor of a saturating loss)."""
        reg.ref = pyo.Block(reg.layers)
        weight_terms, input_terms, dc_terms = [], [], []
        for blk in blocks:
            l = blk.index_l
            rb = reg.ref[l]
            relaxation, rblk = _relaxation_or_exact(blk), get_relaxation_block(blk)
            rb.w = pyo.Param(blk.nodes, blk.inputs, mutable=True, initialize=0.0, doc="reference weights")
            weight_terms.append(reg.mu_z[l] * relaxation.weight_proximal(blk, rblk, rb.w))
            if blk.is_output and anchor_output_bias:
                rb.b = pyo.Param(blk.nodes, mutable=True, initialize=0.0, doc="reference output biases")
                weight_terms.append(reg.mu_z[l] * sum((blk.b[i] - rb.b[i]) ** 2 for i in blk.nodes))
            if not blk.input_is_data:
                rb.x = pyo.Param(blk.inputs, samples, mutable=True, initialize=0.0, doc="reference inputs h(z^(l-1)(w_ref))")
                input_terms.append(reg.mu_z[l] * relaxation.input_proximal(blk, rblk, rb.x))
            if l in reg.dc_layers:
                for nm in ("dp", "cp", "dq", "cq"):
                    rb.add_component(nm, pyo.Param(blk.nodes, samples, mutable=True, initialize=0.0))
                p_part, q_part = relaxation.activation_proximal(blk, rblk, rb.dp, rb.cp, rb.dq, rb.cq)
                dc_terms.append(reg.mu_p[l] * p_part + reg.mu_q[l] * q_part)
        reg.r_weights = pyo.Expression(expr=sum(weight_terms), doc="weight part of r")
        reg.r_inputs = pyo.Expression(expr=scale * sum(input_terms) if input_terms else 0.0, doc="input (X) part of r")
        reg.r_activations = pyo.Expression(expr=scale * sum(dc_terms) if dc_terms else 0.0, doc="DC part of r")
        reg.r = pyo.Expression(expr=reg.r_weights + reg.r_inputs + reg.r_activations, doc="regularizer r (8)")


def get_regularization_block(model):
    """The block added by ``convexnn.regularize`` or ``None``."""
    return _info(model).regularization


def _store(param, arr: np.ndarray) -> None:
    set_sample_array(param, arr)


def _set_per_layer(param, layers, value, name: str) -> None:
    """Set a per-layer mu Param from a scalar, a sequence (one per layer) or a ``{layer: value}`` dict."""
    layers = list(layers)
    if isinstance(value, dict):
        vals = value
    elif isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != len(layers):
            raise ValueError(f"{name}: expected one value per layer {layers}, got {len(value)}")
        vals = dict(zip(layers, value))
    else:
        vals = {l: value for l in layers}
    for l in layers:
        if l not in vals:
            raise ValueError(f"{name}: no value for layer {l}")
        param[l].set_value(_positive_weights(vals[l]))


def update_reference(
    model, reference: Network, eta: float | None = None, mu_z=None, mu_p=None, mu_q=None, fp: ForwardPass | None = None
) -> None:
    """Centre the regularizer at ``reference`` (optionally set eta and the mu's): values change only.

    ``mu_z``, ``mu_p``, ``mu_q`` take a scalar, one value per layer, or a ``{layer: value}`` dict
    (``mu_p``/``mu_q`` for the layers with a DC-relaxed activation), e.g. from
    :func:`exactness_weights`.  ``fp``: the reference's forward pass on the model's data, if known.
    """
    reg = get_regularization_block(model)
    if reg is None:
        raise ValueError("the model has no regularizer: apply TransformationFactory('convexnn.regularize') first")
    tp = get_training_problem(model)
    if list(reference.sizes) != list(tp.network.sizes):
        raise ValueError(f"reference network has sizes {reference.sizes}, the model {tp.network.sizes}")
    if eta is not None:
        reg.eta.set_value(_positive_eta(eta))
    for name, value, layers in (("mu_z", mu_z, reg.layers), ("mu_p", mu_p, reg.dc_layers), ("mu_q", mu_q, reg.dc_layers)):
        if value is not None:
            _set_per_layer(getattr(reg, name), layers, value, name)
    fp = fp if fp is not None else reference.forward_pass(tp.X)
    for blk in layer_blocks(model):
        l = blk.index_l
        rb = reg.ref[l]
        _store(rb.w, reference.weights[l - 1])
        if blk.is_output and tp.loss.saturating:
            _store(rb.b, reference.biases[l - 1])
        if not blk.input_is_data:
            _store(rb.x, fp.x[l - 1])
        if l in reg.dc_layers:
            for name, arr in dc_tangents(blk.activation_function, fp.z[l - 1]).items():
                _store(getattr(rb, name), arr)


def dc_tangents(act, z: np.ndarray) -> dict[str, np.ndarray]:
    r"""Tangents of the DC parts at ``z``: slopes ``dp``, ``dq`` and intercepts ``cp``, ``cq`` with
    :math:`p(z') \approx c_p + d_p z'` (the linearisation in the DC terms of (8))."""
    dp, dq = act.p_derivative(z), act.q_derivative(z)
    return {"dp": dp, "cp": act.p(z) - dp * z, "dq": dq, "cq": act.q(z) - dq * z}


def exactness_weights(
    model, reference: Network, floor: float = 1e-8, fp: ForwardPass | None = None
) -> dict[str, dict[int, float]]:
    r"""Per-layer ``mu_z, mu_p, mu_q`` at which eta = 1 makes the relaxation exact to first order.

    Each slack of the relaxation lowers the loss at most at the rate of the loss's sensitivity
    :math:`G^l = \partial\,\mathrm{loss}/\partial z^l` at the reference (numpy backpropagation of
    the model's loss, :attr:`TrainingProblem.loss`: :math:`G^L = s\,\nabla_z \ell`, i.e.
    :math:`2 s (z^L - y)` squared, :math:`s(\sigma(z^L) - y)` logistic,
    :math:`s(\mathrm{softmax}(z^L) - y)` softmax), and costs ``eta * mu`` per unit in (8).  With ``s`` the per-sample scale (``1/m`` for the averaged loss):

    - ``W_ii`` slack of layer ``l`` loosens (2b) for node ``i`` and every sample by half a unit:
      :math:`\mu_z^l \ge \tfrac12 \max_i \sum_j |G^l_{ij}|`;
    - ``X_jj`` slack (cost ``s``) loosens (2b) for sample ``j`` and every node:
      :math:`\mu_z^l \ge \tfrac12 \max_j \sum_i |G^l_{ij}| / s`;
    - moving ``x^{l+1}`` by ``δ`` off ``h^l(z^l)`` in (7) needs ``u = p + q + |δ|`` (cost ``s μ |δ|``)
      and gains :math:`|A_{ij}|` per unit with :math:`A = (w^{l+1})^T G^{l+1}`:
      :math:`\mu_p^l = \mu_q^l \ge \max_{ij} |A_{ij}| / s`.

    The ``X_jj`` formula applies where the layer's relaxation has a lifted ``X_jj``
    (:meth:`~.base.LayerRelaxationTransformation.has_input_slack`: parabolic, SDP).  Layers without
    ``W`` (layer 1) have no slack; their ``mu_z`` takes the first formula, a proximal weight of the
    same size as the layers above.  Thresholds hold at the reference only (first
    order), so callers pick ``eta >= 1`` and raise it when a round turns out inexact.  Returns
    ``{"mu_z": {l: ...}, "mu_p": {l: ...}, "mu_q": {l: ...}}`` for :func:`update_reference`.
    """
    reg = get_regularization_block(model)
    tp = get_training_problem(model)
    blocks = {blk.index_l: blk for blk in layer_blocks(model)}
    slack = [l for l, blk in blocks.items() if _relaxation_or_exact(blk).has_input_slack(blk, get_relaxation_block(blk))]
    dc_layers = list(reg.dc_layers) if reg is not None else [l for l, b in blocks.items() if _relaxes_activation(b)]
    return exactness_weights_from(reference, tp.X, tp.Y, tp.reduction, tp.loss, dc_layers, slack, floor=floor, fp=fp,
                                  shards=tp.sample_shards)


def exactness_weights_from(reference: Network, X, Y, reduction: str, loss, dc_layers, input_slack_layers,
                           floor: float = 1e-8, fp: ForwardPass | None = None,
                           shards=None) -> dict[str, dict[int, float]]:
    """The formulas of :func:`exactness_weights` without a Pyomo model: ``dc_layers`` are the layers
    with the DC relaxation (7), ``input_slack_layers`` those with a lifted ``X_jj`` (used by the
    structured round, :mod:`convexnn_pyomo.solvers.arrow`); ``shards``
    (:class:`~convexnn_pyomo.distributed.SampleShards`): ``X`` is one rank's shard, the sums and
    maxima over samples are reduced over the ranks."""
    from ..distributed import SampleShards

    shards = shards if shards is not None else SampleShards.serial(X.shape[0])
    s = 1.0 / shards.total if reduction == "mean" else 1.0
    fp = fp if fp is not None else reference.forward_pass(X)
    G = reference.sensitivities(X, Y, "sum" if shards.sharded else reduction, fp=fp, loss=loss)
    if shards.sharded:  # the averaged loss divides by the whole data set's size
        G = [s * g for g in G]
    mu_z, mu_dc = {}, {}
    for l in range(1, reference.n_layers + 1):
        a = np.abs(G[l - 1])
        tau = 0.5 * shards.sum(a.sum(axis=1)).max()
        if l in input_slack_layers:
            tau = max(tau, 0.5 * shards.max(a.sum(axis=0).max(initial=0.0)) / s)
        mu_z[l] = max(float(tau), floor)
    for l in dc_layers:
        A = np.abs(reference.weights[l].T @ G[l])  # d loss / d x^{l+1}
        mu_dc[l] = max(shards.max(float(A.max(initial=0.0))) / s, floor)
    return {"mu_z": mu_z, "mu_p": dict(mu_dc), "mu_q": dict(mu_dc)}
