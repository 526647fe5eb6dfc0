r"""Machinery shared by the layer relaxations: target layers, relaxation blocks, maps, lifted variables.

A relaxation transformation (``convexnn.parabolic``, ``convexnn.sdp``, ``convexnn.mccormick``)
implements only the relaxation of the bilinear layer equalities (2b) (``_relax_bilinear``) and
the values of its own lifted variables (``_lift_bilinear``; ``_weight_squares``/``_input_squares``
when it has variables standing for :math:`\|w_i\|^2`, :math:`\|x_j\|^2`).  This base class walks the targeted :class:`LayerBlock`\ s,
creates one relaxation sub-block per layer, owns the DC relaxation (7) of the activation
equalities (2c) (the variable ``u`` and its inequalities), and records in the model's private
data (``BlockData.private_data``, as ``pyomo.gdp`` does) which constraints replace which and
which relaxation relaxed each layer, so that lifting (:func:`set_lifted_values`), bounding
(``convexnn.bound``) and the regularizer (``convexnn.regularize``) dispatch to that relaxation.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyomo.environ as pyo
from pyomo.common.autoslots import AutoSlots
from pyomo.common.collections import ComponentMap, ComponentSet, DefaultComponentMap
from pyomo.common.config import Bool, ConfigDict, ConfigValue
from pyomo.common.modeling import unique_component_name
from pyomo.core.base.block import Block
from pyomo.core.base.transformation import Transformation

from ..model import LayerBlockData, get_training_problem, layer_blocks, set_values_from_network
from ..network import ForwardPass, Network
from ..samples import set_sample_array

__all__ = [
    "LayerRelaxationTransformation",
    "get_relaxation",
    "get_relaxation_block",
    "get_src_constraints",
    "get_transformed_constraints",
    "set_lifted_values",
]

_SCOPE = "convexnn_pyomo.transformations"


class _TransformationData(AutoSlots.Mixin):
    """What the ``convexnn.*`` transformations record on the training model (its private data)."""

    __slots__ = (
        "bounds",
        "regularization",
        "relaxation",
        "relaxation_block",
        "relaxed_activations",
        "src_constraints",
        "transformed_constraints",
    )

    def __init__(self):
        self.src_constraints = DefaultComponentMap(list)  # relaxed constraint -> source constraints
        self.transformed_constraints = DefaultComponentMap(list)  # source constraint -> its replacements
        self.relaxation_block = ComponentMap()  # layer block -> relaxation sub-block
        self.relaxation = ComponentMap()  # layer block -> the LayerRelaxationTransformation that relaxed it
        self.relaxed_activations = ComponentSet()  # layer blocks whose (2c) was relaxed into (7)
        self.regularization = None  # the block added by convexnn.regularize
        self.bounds = None  # the options convexnn.bound was applied with


Block.register_private_data_initializer(_TransformationData, scope=_SCOPE)


def _info(training_block) -> _TransformationData:
    """The private data of the block built by ``build_training_model``."""
    return training_block.private_data(_SCOPE)


def _layer_of(component):
    """The :class:`LayerBlock` containing ``component`` (or ``component`` itself), else ``None``."""
    b = component
    while b is not None and not isinstance(b, LayerBlockData):
        b = b.parent_block()
    return b


def _layer_info(component) -> _TransformationData | None:
    layer = _layer_of(component)
    return None if layer is None else _info(layer.parent_block())


def _record(layer_block, src, new_cons) -> None:
    """Record that the constraints ``new_cons`` replace ``src`` (a constraint of ``layer_block``)."""
    info = _info(layer_block.parent_block())
    info.transformed_constraints[src].extend(new_cons)
    for c in new_cons:
        info.src_constraints[c].append(src)


def get_transformed_constraints(src) -> list:
    """Every constraint that replaced the (deactivated) constraint ``src`` of the exact model."""
    info = _layer_info(src)
    if info is None or src not in info.transformed_constraints:
        raise ValueError(f"constraint {src.name} was not transformed by a convexnn relaxation")
    return list(info.transformed_constraints[src])


def get_src_constraints(con) -> list:
    """Every exact-model constraint that ``con`` (a relaxation constraint or PSD block) replaces.

    E.g. (5c) ``weight_norm[i]`` of layer ``l`` replaces ``layer[l].bilinear[i, j]`` for every
    sample ``j``, (5d) ``input_norm[j]`` the bilinear constraints of every node for sample ``j``.
    """
    info = _layer_info(con)
    if info is None or con not in info.src_constraints:
        raise ValueError(f"constraint {con.name} was not created by a convexnn relaxation")
    return list(info.src_constraints[con])


def get_relaxation_block(layer_block):
    """The relaxation sub-block created for a layer block, or ``None`` when it has none."""
    return _info(layer_block.parent_block()).relaxation_block.get(layer_block)


def get_relaxation(layer_block) -> LayerRelaxationTransformation | None:
    """The relaxation transformation that relaxed a layer block, or ``None`` (layer left exact)."""
    return _info(layer_block.parent_block()).relaxation.get(layer_block)


def _assign(var, values: np.ndarray) -> None:
    """Set every element ``var[idx]`` to ``values[idx]`` (sample axis last for a per-sample variable,
    kept for every sample on a template: :func:`~convexnn_pyomo.samples.set_sample_array`)."""
    set_sample_array(var, values)


def _proximal(var, ref, groups, members, squares: Mapping | None):
    r"""``\sum_g [S_g - 2 v_g \cdot \check v_g + \|\check v_g\|^2]`` with ``S_g`` the lifted square of
    ``\|v_g\|^2`` (``squares[g]``), or the exact ``\sum_g \|v_g - \check v_g\|^2`` when ``squares`` is None."""
    if squares is None:
        return sum((var[e] - ref[e]) ** 2 for g in groups for e in members(g))
    return sum(
        squares[g] - 2 * sum(var[e] * ref[e] for e in members(g)) + sum(ref[e] ** 2 for e in members(g)) for g in groups
    )


def _within(component, block) -> bool:
    """Whether ``component`` is ``block`` or lies inside it."""
    b = component
    while b is not None:
        if b is block:
            return True
        b = b.parent_block() if hasattr(b, "parent_block") else None
    return False


class LayerRelaxationTransformation(Transformation):
    """Base class: relax (2b) by ``_relax_bilinear`` and (2c) by the DC inequalities (7).

    The class attributes say what the relaxation supports; :data:`RELAXATIONS` lists them by name.
    """

    CONFIG = ConfigDict("convexnn.relaxation")
    CONFIG.declare(
        "targets",
        ConfigValue(
            default=None,
            domain=lambda v: v if v is None else list(v) if isinstance(v, (list, tuple)) else [v],
            description="Layer blocks (or the model) to transform; default: every LayerBlock",
            doc="Every target must be the transformed model or lie inside it.",
        ),
    )
    CONFIG.declare(
        "relax_activations",
        ConfigValue(
            default=True,
            domain=Bool,
            description="Relax (2c) into the DC inequalities (7)",
            doc="When False the activation equalities (2c) stay exact (a nonconvex model).",
        ),
    )

    #: name of the per-layer relaxation sub-block
    block_name = "relaxation"
    #: ``convexnn.regularize`` builds the regularizer (8) over this relaxation
    supports_regularization = True
    #: the regularized round (9) is exact once eta is large (the slacks of (2b) are lifted
    #: variables that (8) prices, Theorem 1)
    exact_for_large_eta = True
    #: the relaxation reads Var bounds: apply ``convexnn.bound`` first
    requires_bounds = False
    #: the relaxed model has PSD blocks: solve it with ``convexnn_conic`` (not Ipopt)
    requires_conic_solver = False

    def _apply_to(self, model, **kwds):
        config = self.CONFIG(kwds.pop("options", {}))
        config.set_value(kwds)
        get_training_problem(model)  # clear error for a model we did not build
        blocks = self._target_layers(model, config.targets)
        info = _info(model)
        for blk in blocks:  # check every layer before changing any
            if blk in info.relaxation_block:
                raise ValueError(
                    f"{blk.name} is already relaxed by {info.relaxation_block[blk].name}; "
                    "apply one relaxation per layer (use create_using on the exact model)"
                )
            self._check_layer(blk)
        for blk in blocks:
            rblk = pyo.Block(doc=self.__doc__.strip().splitlines()[0] if self.__doc__ else None)
            blk.add_component(unique_component_name(blk, self.block_name), rblk)
            info.relaxation_block[blk] = rblk
            info.relaxation[blk] = self
            if not blk.input_is_data:  # layer 1: x is data, (2b) is affine and stays exact
                self._relax_bilinear(blk, rblk, config)
                blk.bilinear.deactivate()
            if config.relax_activations and not blk.is_output and not blk.activation_function.linear:
                self._relax_activation(blk, rblk, config)

    @staticmethod
    def _target_layers(model, targets) -> list:
        if not targets:
            return layer_blocks(model)
        out = []
        for t in targets:
            if not _within(t, model):
                raise ValueError(
                    f"target {getattr(t, 'name', t)!r} does not belong to the model being transformed ({model.name!r})"
                )
            if isinstance(t, LayerBlockData):
                out.append(t)
            elif hasattr(t, "is_indexed") and t.is_indexed() and all(isinstance(b, LayerBlockData) for b in t.values()):
                out.extend(t.values())
            elif t is model:
                out.extend(layer_blocks(model))
            else:
                raise ValueError(f"target {getattr(t, 'name', t)!r} is not a convexnn LayerBlock")
        return list(ComponentSet(out))  # each layer once, in the order given

    # ------------------------------------------------------------------ per-relaxation part
    def _check_layer(self, blk) -> None:
        """Raise a ValueError when the layer cannot be relaxed (called before any change)."""

    def _relax_bilinear(self, blk, rblk, config) -> None:
        """Add the relaxation of (2b) for a layer whose input is a variable; record it with ``_record``."""
        raise NotImplementedError

    def _lift_bilinear(self, blk, rblk, w: np.ndarray, x_in: np.ndarray) -> None:
        """Set the lifted variables of (2b) to their exact values for weights ``w`` and input ``x_in``."""
        raise NotImplementedError

    def _weight_squares(self, blk, rblk) -> Mapping | None:
        """The relaxation's lifted ``W_ii`` by node (layers with a variable input), if it has them."""
        return None

    def _input_squares(self, blk, rblk) -> Mapping | None:
        """The relaxation's lifted ``X_jj`` by sample (layers with a variable input), if it has them."""
        return None

    def lifted_weight_squares(self, blk, rblk) -> Mapping | None:
        r"""Node ``i`` -> the lifted variable standing for :math:`\|w_i\|^2` (``W_ii``), or ``None``."""
        return None if blk.input_is_data or rblk is None else self._weight_squares(blk, rblk)

    def lifted_input_squares(self, blk, rblk) -> Mapping | None:
        r"""Sample ``j`` -> the lifted variable standing for :math:`\|x_j\|^2` (``X_jj``), or ``None``."""
        return None if blk.input_is_data or rblk is None else self._input_squares(blk, rblk)

    # ------------------------------------------------------------------ DC relaxation (7), shared
    def _relax_activation(self, blk, rblk, config) -> None:
        """(2c) -> ``u`` (standing for ``p(z) + q(z)``) and the inequalities of :meth:`_dc_inequalities`."""
        rblk.u = pyo.Var(blk.nodes, blk.model().samples, initialize=0.0, doc="u^(l+1) stands for p(z) + q(z)")
        self._dc_inequalities(blk, rblk, config)
        blk.activation.deactivate()
        _info(blk.parent_block()).relaxed_activations.add(blk)

    def _dc_inequalities(self, blk, rblk, config) -> None:
        r"""(7): :math:`(u+x)/2 \ge p_k(z)` and :math:`(u-x)/2 \ge q_k(z)` for every piece ``k``."""
        act = blk.activation_function
        samples = blk.model().samples
        rblk.p_pieces = pyo.Set(initialize=range(len(act.p_pieces(0.0))))
        rblk.q_pieces = pyo.Set(initialize=range(len(act.q_pieces(0.0))))

        def _dc_p(r, i, j, k):
            return act.p_pieces(blk.z[i, j])[k] <= (r.u[i, j] + blk.x[i, j]) / 2

        def _dc_q(r, i, j, k):
            return act.q_pieces(blk.z[i, j])[k] <= (r.u[i, j] - blk.x[i, j]) / 2

        rblk.dc_p = pyo.Constraint(blk.nodes, samples, rblk.p_pieces, rule=_dc_p, doc="(7) (u+x)/2 >= p(z)")
        rblk.dc_q = pyo.Constraint(blk.nodes, samples, rblk.q_pieces, rule=_dc_q, doc="(7) (u-x)/2 >= q(z)")
        for (i, j), src in blk.activation.items():
            _record(blk, src, [rblk.dc_p[i, j, k] for k in rblk.p_pieces] + [rblk.dc_q[i, j, k] for k in rblk.q_pieces])

    def relaxes_activation(self, blk) -> bool:
        """Whether the layer's activation equalities (2c) were relaxed (``u`` and (7) exist)."""
        return blk in _info(blk.parent_block()).relaxed_activations

    # ------------------------------------------------------------------ lifted variables
    def lift(self, blk, rblk, net: Network, fp: ForwardPass) -> None:
        """Set the layer's lifted variables to their exact values at ``net`` (forward pass ``fp``)."""
        l = blk.index_l
        if not blk.input_is_data:
            self._lift_bilinear(blk, rblk, net.weights[l - 1], fp.x[l - 1])
        if self.relaxes_activation(blk):
            act = blk.activation_function
            z = fp.z[l - 1]
            _assign(rblk.u, act.p(z) + act.q(z))

    def bound_lifted(self, blk, rblk, bounds, weight_bound: float) -> None:
        r"""Bounds implied by the box of ``convexnn.bound`` (``bounds``: :func:`interval_bounds`):
        :math:`W_{ii} \le n_{l-1} B_w^2`, :math:`X_{jj} \le \max \|x_j\|^2` and ``u <= max(p + q)``."""
        l = blk.index_l
        squares = self.lifted_weight_squares(blk, rblk)
        for v in squares.values() if squares is not None else ():
            v.setub(len(blk.inputs) * weight_bound**2)
        squares = self.lifted_input_squares(blk, rblk)
        if squares is not None:
            _, _, xlo, xhi = bounds[l - 2]
            sq_hi = np.maximum(xlo**2, xhi**2).sum(axis=0)
            for j, v in squares.items():
                v.setub(float(sq_hi[j]))
        if self.relaxes_activation(blk):
            act = blk.activation_function
            zlo, zhi, _, _ = bounds[l - 1]
            u_hi = np.maximum(act.p(zlo) + act.q(zlo), act.p(zhi) + act.q(zhi))
            for (i, j), v in rblk.u.items():
                v.setub(float(u_hi[i, j]))

    def has_weight_slack(self, blk, rblk) -> bool:
        r"""Whether the layer has a lifted :math:`W_{ii}` (a slack of (2b) shared by every sample)."""
        return self.lifted_weight_squares(blk, rblk) is not None

    def has_input_slack(self, blk, rblk) -> bool:
        r"""Whether the layer has a lifted :math:`X_{jj}` (a slack of (2b) shared by every node)."""
        return self.lifted_input_squares(blk, rblk) is not None

    # ------------------------------------------------------------------ proximal terms of (8)
    def weight_proximal(self, blk, rblk, ref):
        r"""Weight bracket of (8): :math:`\sum_i [W_{ii} - 2 w_i\cdot\check w_i + \|\check w_i\|^2]`,
        or the exact :math:`\sum_i \|w_i - \check w_i\|^2` without a lifted ``W`` (``ref``: Param ``[i, k]``)."""
        return _proximal(blk.w, ref, blk.nodes, lambda i: [(i, k) for k in blk.inputs], self.lifted_weight_squares(blk, rblk))

    def input_proximal(self, blk, rblk, ref):
        r"""Input bracket of (8): :math:`\sum_j [X_{jj} - 2 x_j\cdot\check x_j + \|\check x_j\|^2]`,
        or the exact :math:`\sum_j \|x_j - \check x_j\|^2` without a lifted ``X`` (``ref``: Param ``[k, j]``)."""
        samples = blk.model().samples
        return _proximal(blk.x_in, ref, samples, lambda j: [(k, j) for k in blk.inputs], self.lifted_input_squares(blk, rblk))

    def activation_proximal(self, blk, rblk, dp, cp, dq, cq) -> tuple:
        r"""DC brackets of (8), ``(p_part, q_part)``: :math:`\sum_{ij} (u+x)/2 - d^p z - c^p` and
        :math:`\sum_{ij} (u-x)/2 - d^q z - c^q` (``d``, ``c``: the tangents of ``p``, ``q`` at the reference)."""
        idx = [(i, j) for i in blk.nodes for j in blk.model().samples]
        u, x, z = rblk.u, blk.x, blk.z
        return (
            sum((u[e] + x[e]) / 2 - dp[e] * z[e] - cp[e] for e in idx),
            sum((u[e] - x[e]) / 2 - dq[e] * z[e] - cq[e] for e in idx),
        )


#: the proximal terms of a layer no relaxation touched: every bracket exact
_EXACT = LayerRelaxationTransformation()


def _relaxation_or_exact(blk) -> LayerRelaxationTransformation:
    """The relaxation of a layer block, or the exact terms of the base class when it has none."""
    return get_relaxation(blk) or _EXACT


def set_lifted_values(model, net: Network, fp: ForwardPass | None = None) -> None:
    """Set every variable to the lifted point of ``net``'s exact forward pass.

    Base variables get the forward pass; each relaxation sets its own lifted variables to their
    exact values (e.g. ``W_ii = ||w_i||^2``, ``X_jj = ||x_j||^2``, ``u = p(z) + q(z)``).  This
    point satisfies (2b)-(2c), so it satisfies every valid relaxation.
    """
    fp = fp if fp is not None else net.forward_pass(get_training_problem(model).X)
    set_values_from_network(model, net, fp)
    for blk in layer_blocks(model):
        relaxation = get_relaxation(blk)
        if relaxation is not None:
            relaxation.lift(blk, get_relaxation_block(blk), net, fp)
