"""Machinery shared by the layer relaxations: finding layer blocks, relaxation blocks, maps.

A relaxation transformation (``convexnn.parabolic``, later ``convexnn.sdp``/``convexnn.mccormick``)
implements only ``_relax_bilinear``; this base class walks the targeted :class:`LayerBlock`\\ s,
creates one relaxation sub-block per layer, relaxes the activation equalities (2c) into the DC
inequalities (7) the same way for every relaxation, and records which constraints replace which.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyomo.environ as pyo
from pyomo.common.collections import ComponentMap
from pyomo.common.config import Bool, ConfigDict, ConfigValue
from pyomo.common.modeling import unique_component_name
from pyomo.core.base.transformation import Transformation

from ..model import LayerBlockData, get_training_problem, layer_blocks, set_values_from_network
from ..network import ForwardPass, Network

__all__ = [
    "LayerRelaxationTransformation",
    "get_transformed_constraints",
    "get_src_constraint",
    "get_relaxation_block",
    "set_lifted_values",
]


@dataclass
class _RelaxationInfo:
    src_to_new: ComponentMap = field(default_factory=ComponentMap)
    new_to_src: ComponentMap = field(default_factory=ComponentMap)
    layer_relaxation: ComponentMap = field(default_factory=ComponentMap)  # layer block -> relaxation block


def _info(model) -> _RelaxationInfo:
    info = model.__dict__.get("_convexnn_relaxation_info")
    if info is None:
        info = _RelaxationInfo()
        object.__setattr__(model, "_convexnn_relaxation_info", info)
    return info


def get_transformed_constraints(src) -> list:
    """Constraints that replaced the (deactivated) constraint ``src`` of the exact model."""
    info = _info(src.model())
    if src not in info.src_to_new:
        raise ValueError(f"constraint {src.name} was not transformed by a convexnn relaxation")
    return list(info.src_to_new[src])


def get_src_constraint(con):
    """The exact-model constraint that ``con`` (a relaxation constraint) replaced."""
    info = _info(con.model())
    if con not in info.new_to_src:
        raise ValueError(f"constraint {con.name} was not created by a convexnn relaxation")
    return info.new_to_src[con]


def get_relaxation_block(layer_block):
    """The relaxation sub-block created for a layer block, or ``None`` when it has none."""
    info = _info(layer_block.model())
    return info.layer_relaxation.get(layer_block)


def _map(info: _RelaxationInfo, src, new_cons) -> None:
    info.src_to_new.setdefault(src, []).extend(new_cons)
    for c in new_cons:
        info.new_to_src[c] = src


class LayerRelaxationTransformation(Transformation):
    """Base class: relax (2b) by ``_relax_bilinear`` and (2c) by the DC inequalities (7)."""

    CONFIG = ConfigDict("convexnn.relaxation")
    CONFIG.declare(
        "targets",
        ConfigValue(
            default=None,
            domain=lambda v: v if v is None else list(v) if isinstance(v, (list, tuple)) else [v],
            description="Layer blocks (or a model) to transform; default: every LayerBlock",
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

    def _apply_to(self, model, **kwds):
        config = self.CONFIG(kwds.pop("options", {}))
        config.set_value(kwds)
        get_training_problem(model)  # clear error for a model we did not build
        blocks = self._target_layers(model, config.targets)
        info = _info(model)
        for blk in blocks:
            if blk in info.layer_relaxation:
                raise ValueError(
                    f"{blk.name} is already relaxed by {info.layer_relaxation[blk].name}; "
                    "apply one relaxation per layer (use create_using on the exact model)"
                )
            rblk = pyo.Block(doc=self.__doc__.strip().splitlines()[0] if self.__doc__ else None)
            blk.add_component(unique_component_name(blk, self.block_name), rblk)
            info.layer_relaxation[blk] = rblk
            self._relax_bilinear(blk, rblk, config, info)
            if config.relax_activations and not blk.is_output and not blk.activation_function.linear:
                self._relax_activation(blk, rblk, info)

    @staticmethod
    def _target_layers(model, targets) -> list:
        if not targets:
            return layer_blocks(model)
        out = []
        for t in targets:
            if isinstance(t, LayerBlockData):
                out.append(t)
            elif hasattr(t, "is_indexed") and t.is_indexed() and all(isinstance(b, LayerBlockData) for b in t.values()):
                out.extend(t.values())
            elif t is model:
                out.extend(layer_blocks(model))
            else:
                raise ValueError(f"target {getattr(t, 'name', t)!r} is not a convexnn LayerBlock")
        return out

    def _relax_bilinear(self, blk, rblk, config, info) -> None:
        raise NotImplementedError

    def _relax_activation(self, blk, rblk, info) -> None:
        r"""(2c) -> (7): :math:`(u+x)/2 \ge p_k(z)` and :math:`(u-x)/2 \ge q_k(z)` for every piece."""
        act = blk.activation_function
        samples = blk.model().samples
        n_p = len(act.p_pieces(0.0))
        n_q = len(act.q_pieces(0.0))
        rblk.u = pyo.Var(blk.nodes, samples, initialize=0.0, doc="u^(l+1) stands for p(z) + q(z)")
        rblk.p_pieces = pyo.Set(initialize=range(n_p))
        rblk.q_pieces = pyo.Set(initialize=range(n_q))

        def _dc_p(r, i, j, k):
            return act.p_pieces(blk.z[i, j])[k] <= (r.u[i, j] + blk.x[i, j]) / 2

        def _dc_q(r, i, j, k):
            return act.q_pieces(blk.z[i, j])[k] <= (r.u[i, j] - blk.x[i, j]) / 2

        rblk.dc_p = pyo.Constraint(blk.nodes, samples, rblk.p_pieces, rule=_dc_p, doc="(7) (u+x)/2 >= p(z)")
        rblk.dc_q = pyo.Constraint(blk.nodes, samples, rblk.q_pieces, rule=_dc_q, doc="(7) (u-x)/2 >= q(z)")
        blk.activation.deactivate()
        for (i, j), src in blk.activation.items():
            _map(info, src, [rblk.dc_p[i, j, k] for k in rblk.p_pieces] + [rblk.dc_q[i, j, k] for k in rblk.q_pieces])


def set_lifted_values(model, net: Network, fp: ForwardPass | None = None) -> None:
    """Set every variable to the lifted point of ``net``'s exact forward pass.

    Base variables get the forward pass; relaxation variables their exact values:
    ``W_ii = ||w_i||^2``, ``X_jj = ||x_j||^2`` and ``u = p(z) + q(z)``.  This point satisfies
    (2b)-(2c), so it satisfies every valid relaxation.
    """
    fp = fp if fp is not None else net.forward_pass(get_training_problem(model).X)
    set_values_from_network(model, net, fp)
    for blk in layer_blocks(model):
        rblk = get_relaxation_block(blk)
        if rblk is None:
            continue
        l = blk.index_l
        w = net.weights[l - 1]
        x_in = fp.x[l - 1]
        if hasattr(rblk, "W"):
            for i in blk.nodes:
                rblk.W[i].set_value(float(w[i] @ w[i]), skip_validation=True)
        if hasattr(rblk, "X"):
            sq = np.sum(x_in * x_in, axis=0)
            for j in blk.model().samples:
                rblk.X[j].set_value(float(sq[j]), skip_validation=True)
        if hasattr(rblk, "Wm"):  # SDP: full Gram matrices
            for (i, i2), var in rblk.Wm.items():
                var.set_value(float(w[i] @ w[i2]), skip_validation=True)
            for (j, j2), var in rblk.Xm.items():
                var.set_value(float(x_in[:, j] @ x_in[:, j2]), skip_validation=True)
        if hasattr(rblk, "v"):  # McCormick products
            for (i, k, j), var in rblk.v.items():
                var.set_value(float(w[i, k] * x_in[k, j]), skip_validation=True)
        if hasattr(rblk, "u"):
            act = blk.activation_function
            z = fp.z[l - 1]
            u = act.p(z) + act.q(z)
            for (i, j), v in np.ndenumerate(u):
                rblk.u[i, j].set_value(float(v), skip_validation=True)
