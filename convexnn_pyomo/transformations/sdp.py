r"""``convexnn.sdp``: the SDP relaxation (4) of (2b), for small ``m``, and tangent cuts for (7).

For a layer with a variable input, by the Schur complement (4) is one linear matrix inequality of
size ``n_{l-1} + n_l + m`` over full symmetric ``W`` (``n_l x n_l``) and ``X`` (``m x m``):

.. math::
    \begin{bmatrix} I & (w^l)^\top & x^l \\ w^l & W^l & z^l - b^l 1^\top \\
    (x^l)^\top & (z^l - b^l 1^\top)^\top & X^l \end{bmatrix} \succeq 0 .

Its 3x3 principal minors on ``(k, i, j)`` give back (5a)-(5d), so the SDP bound is at least the
parabolic one.  The model grows quadratically in ``m`` (``m(m+1)/2`` entries of ``X`` per layer).

Clarabel takes linear, quadratic-objective and PSD parts but not the DC inequalities (7), whose
convex parts ``p``, ``q`` are not conic-representable in general.  They are outer-approximated by
tangent cuts :math:`(u \pm x)/2 \ge f(\bar z) + f'(\bar z)(z - \bar z)` (valid because ``p`` and
``q`` are convex), started on a grid over the bounds of ``z`` and refined by
:func:`solve_sdp_relaxation` until no DC inequality is violated by more than ``tol``.
"""

from __future__ import annotations

import time

import numpy as np
import pyomo.environ as pyo
from pyomo.common.config import ConfigValue, PositiveInt
from pyomo.core.base.transformation import TransformationFactory

from ..model import layer_blocks, var_matrix
from ..psd import PSDConstraint
from .base import LayerRelaxationTransformation, _map, get_relaxation_block

__all__ = ["SDPRelaxation", "solve_sdp_relaxation"]


@TransformationFactory.register(
    "convexnn.sdp", doc="SDP relaxation (4) of the bilinear layer equalities (PSD blocks) and tangent cuts for (7)"
)
class SDPRelaxation(LayerRelaxationTransformation):
    """SDP relaxation (4) of (2b); outer approximation of the DC inequalities (7) by cuts."""

    CONFIG = LayerRelaxationTransformation.CONFIG()
    CONFIG.declare("initial_cuts", ConfigValue(default=9, domain=PositiveInt, description="tangent cuts per DC inequality at start"))
    block_name = "sdp"

    def _apply_to(self, model, **kwds):
        self._initial_cuts = kwds.get("initial_cuts", self.CONFIG.initial_cuts)
        super()._apply_to(model, **kwds)

    def _relax_bilinear(self, blk, rblk, config, info) -> None:
        if blk.input_is_data:
            return
        samples = list(blk.model().samples)
        nodes, inputs = list(blk.nodes), list(blk.inputs)
        n_in, n = len(inputs), len(nodes)
        rblk.Wm = pyo.Var([(i, i2) for i in nodes for i2 in nodes if i <= i2], initialize=0.0, doc="W^l (upper triangle)")
        rblk.Xm = pyo.Var([(j, j2) for j in samples for j2 in samples if j <= j2], initialize=0.0, doc="X^l (upper triangle)")
        size = n_in + n + len(samples)
        M = [[0.0] * size for _ in range(size)]
        for k in inputs:
            M[k][k] = 1.0
            for i in nodes:
                M[k][n_in + i] = blk.w[i, k]
            for j in samples:
                M[k][n_in + n + j] = blk.x_in[k, j]
        for i in nodes:
            for i2 in nodes:
                if i <= i2:
                    M[n_in + i][n_in + i2] = rblk.Wm[i, i2]
            for j in samples:
                M[n_in + i][n_in + n + j] = blk.z[i, j] - blk.b[i]
        for j in samples:
            for j2 in samples:
                if j <= j2:
                    M[n_in + n + j][n_in + n + j2] = rblk.Xm[j, j2]
        rblk.lmi = PSDConstraint()
        rblk.lmi.set_matrix(M)
        blk.bilinear.deactivate()
        for (i, j), src in blk.bilinear.items():
            _map(info, src, [rblk.lmi])

    def _relax_activation(self, blk, rblk, info) -> None:
        samples = blk.model().samples
        rblk.u = pyo.Var(blk.nodes, samples, initialize=0.0, doc="u^(l+1) stands for p(z) + q(z)")
        rblk.dc_cuts = pyo.ConstraintList(doc="tangent cuts of (7)")
        act = blk.activation_function
        for (i, j), z in blk.z.items():
            lo = z.lb if z.lb is not None else -5.0
            hi = z.ub if z.ub is not None else 5.0
            for zbar in np.linspace(lo, hi, self._initial_cuts):
                _add_cuts(rblk, blk, act, i, j, float(zbar))
        blk.activation.deactivate()
        for (i, j), src in blk.activation.items():
            _map(info, src, [])


def _add_cuts(rblk, blk, act, i, j, zbar: float) -> None:
    z, x, u = blk.z[i, j], blk.x[i, j], rblk.u[i, j]
    zb = np.array([zbar])
    p0, dp = float(act.p(zb)[0]), float(act.p_derivative(zb)[0])
    q0, dq = float(act.q(zb)[0]), float(act.q_derivative(zb)[0])
    rblk.dc_cuts.add((u + x) / 2 >= p0 + dp * (z - zbar))
    rblk.dc_cuts.add((u - x) / 2 >= q0 + dq * (z - zbar))


def dc_violation(model) -> float:
    """Largest violation of (7) (exact ``p``, ``q``) at the model's current values."""
    worst = 0.0
    for blk in layer_blocks(model):
        rblk = get_relaxation_block(blk)
        if rblk is None or not hasattr(rblk, "u"):
            continue
        shape = (len(blk.nodes), len(blk.model().samples))
        z, x, u = var_matrix(blk.z, shape), var_matrix(blk.x, shape), var_matrix(rblk.u, shape)
        act = blk.activation_function
        worst = max(worst, float(np.max(act.p(z) - (u + x) / 2)), float(np.max(act.q(z) - (u - x) / 2)))
    return worst


def solve_sdp_relaxation(model, solver: str = "convexnn_conic", tol: float = 1e-6, max_rounds: int = 40, **solve_kwds):
    """Solve a ``convexnn.sdp`` model, adding tangent cuts until (7) holds within ``tol``.

    Returns the last ``SolverResults`` with ``cut_rounds`` and ``dc_violation`` added.
    """
    opt = pyo.SolverFactory(solver)
    t0 = time.perf_counter()
    for rnd in range(1, max_rounds + 1):
        res = opt.solve(model, **solve_kwds)
        if res.solver.termination_condition != pyo.TerminationCondition.optimal:
            break
        viol = dc_violation(model)
        if viol <= tol:
            break
        for blk in layer_blocks(model):
            rblk = get_relaxation_block(blk)
            if rblk is None or not hasattr(rblk, "dc_cuts"):
                continue
            act = blk.activation_function
            for (i, j), z in blk.z.items():
                zv = np.array([z.value])
                u, x = rblk.u[i, j].value, blk.x[i, j].value
                if act.p(zv)[0] - (u + x) / 2 > tol or act.q(zv)[0] - (u - x) / 2 > tol:
                    _add_cuts(rblk, blk, act, i, j, float(z.value))
    res.solver.cut_rounds = rnd
    res.solver.dc_violation = dc_violation(model) if res.solver.termination_condition == pyo.TerminationCondition.optimal else float("nan")
    res.solver.total_time = time.perf_counter() - t0
    return res
