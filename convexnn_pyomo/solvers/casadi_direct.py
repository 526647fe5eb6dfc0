r"""One round's convex problem (9) built directly in CasADi: build and re-solve cost next to nothing.

:class:`DirectParabolicRound` writes the regularized parabolic relaxation (9) of the training
problem -- (2b) exact for layer 1, (5a)-(5d) for layers :math:`l \ge 2`, the DC inequalities (7)
for hidden layers with a nonlinear activation, objective loss :math:`+ \eta r` of (8) -- from the
network's structure, without a Pyomo model.  The formulation stays the Pyomo model's
(``build_training_model`` + ``convexnn.parabolic`` + ``convexnn.regularize``): the activation
pieces are the Pyomo expressions ``p_pieces``/``q_pieces`` translated once, and
``tests/test_casadi_direct.py`` proves that both problems have the same objective and constraint
values at random points and the same optimum.

Every term of (9) is a sum over samples of a term of one sample plus a term of the weights, so the
problem is written for one sample (SX, a few hundred nodes) and *mapped* over the ``m`` samples
(``casadi.Function.map``): the expression graph does not grow with ``m``.  The derivatives Ipopt
needs are mapped too.  With shared variables :math:`s` (weights, biases, :math:`W`) and the
variables :math:`v_j` of sample ``j`` (``z``, ``x``, ``u``, :math:`X_{jj}`), the Lagrangian is
:math:`\sigma f_0(s) + \lambda_0^T g_0(s) + \sum_j \ell_j(s, v_j)`, so

.. math::
    \nabla^2 \mathcal{L} = \begin{pmatrix} H_0 + \sum_j \nabla^2_{ss}\ell_j & [\nabla^2_{s v_j}\ell_j]_j\\
    \cdot & \operatorname{diag}_j \nabla^2_{v_j v_j}\ell_j \end{pmatrix},\qquad
    \nabla g = \begin{pmatrix} \nabla_s g_0 & 0\\ [\nabla_s g_j]_j & \operatorname{diag}_j \nabla_{v_j} g_j\end{pmatrix}

with every per-sample block the output of one small symbolic derivative, evaluated for all samples
by one mapped call (CasADi's own colouring of the whole problem would cost one sweep over all
samples per colour, and ~150 colours).  Parameters (reference weights and inputs, DC tangents,
``eta``, ``mu``) are CasADi parameters: :meth:`DirectParabolicRound.recentre` changes numbers
only.

Layout: ``x = [s; v_0; v_1; ...; v_{m-1}]``; ``g = [g_0; g_1(\cdot); ...]`` (``g_0``: (5c));
:meth:`~DirectParabolicRound.variable_index` and :meth:`~DirectParabolicRound.constraint_index`
name every entry by the Pyomo model's component names and indices.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np

from ..activations import Activation
from ..network import ForwardPass, Network, check_data
from .casadi_translator import Translator, casadi as ca

__all__ = ["DirectParabolicRound", "PARALLELIZATIONS"]

#: ``Function.map`` modes this module accepts ("openmp" needs a CasADi built with OpenMP)
PARALLELIZATIONS = ("serial", "thread", "openmp")
_OK = ("Solve_Succeeded", "Solved_To_Acceptable_Level")


class _Layout:
    """Named blocks of a vector (all of one kind: shared, or one sample's), in insertion order.

    Each block has a shape; its entries are stored column-major (``ravel(order="F")``), like
    ``casadi.vec``.  ``symbol(key, shape)`` adds a block and returns its SX symbol.
    """

    def __init__(self, prefix: str):
        self.prefix, self.blocks, self.size = prefix, {}, 0

    def symbol(self, key: tuple, shape: tuple[int, ...]):
        n = int(np.prod(shape))
        self.blocks[key] = (self.size, tuple(shape))
        self.size += n
        rows, cols = (shape + (1,))[:2] if len(shape) < 2 else shape
        return ca.SX.sym(f"{self.prefix}_{'_'.join(map(str, key))}", rows, cols)

    def offset(self, key: tuple, index: tuple = ()) -> int:
        """Position of ``block[index]`` (``index`` in the block's shape) inside the vector."""
        start, shape = self.blocks[key]
        if len(index) != len(shape) or any(not 0 <= i < n for i, n in zip(index, shape)):
            raise IndexError(f"index {index} out of range for {key} with shape {shape}")
        return start + (int(np.ravel_multi_index(index, shape, order="F")) if shape else 0)

    def flat(self, values: Mapping) -> np.ndarray:
        """One vector from ``{key: array of the block's shape}`` (every block must be given)."""
        return np.concatenate([np.asarray(values[k], float).reshape(s, order="F").ravel(order="F")
                               for k, (_, s) in self.blocks.items()]) if self.blocks else np.zeros(0)

    def stacked(self, values: Mapping, m: int) -> np.ndarray:
        """The ``(size, m)`` matrix of ``{key: array of shape block_shape + (m,)}``, one column per sample."""
        return np.vstack([np.asarray(values[k], float).reshape(-1, m) for k in self.blocks]) if self.blocks \
            else np.zeros((0, m))

    def split(self, vector: np.ndarray, m: int | None = None) -> dict:
        """Inverse of :meth:`flat` (``m`` None) or :meth:`stacked` (``vector`` of shape ``(size, m)``)."""
        out = {}
        for k, (start, shape) in self.blocks.items():
            n = int(np.prod(shape))
            part = vector[start:start + n]
            out[k] = part.reshape(shape, order="F") if m is None else part.reshape(shape + (m,))
        return out


def _pieces_function(act: Activation, which: str):
    """``z -> [pieces of p]`` (``which="p"``), ``[pieces of q]`` or ``[h(z)]`` (``"h"``) as a CasADi
    Function, translated from the activation's own Pyomo expressions."""
    import pyomo.environ as pyo  # the formulation's source: the Pyomo expressions themselves

    blk = pyo.ConcreteModel()
    blk.z = pyo.Var()
    exprs = {"p": act.p_pieces, "q": act.q_pieces, "h": lambda z: [act.pyomo_expr(z)]}[which](blk.z)
    tr = Translator()
    out = [tr.walk(e) for e in exprs]
    z = tr.var_syms[0] if tr.var_syms else ca.SX.sym("z")
    return ca.Function(f"{act.name}_{which}", [z], [ca.vertcat(*[ca.SX(e) if isinstance(e, float) else e for e in out])])


def _dc_tangents(act: Activation, z: np.ndarray) -> dict:
    """Tangents of ``p`` and ``q`` at ``z``: slopes ``dp``, ``dq`` and intercepts ``cp``, ``cq``."""
    dp, dq = act.p_derivative(z), act.q_derivative(z)
    return {"dp": dp, "cp": act.p(z) - dp * z, "dq": dq, "cq": act.q(z) - dq * z}


class _Formulation:
    r"""Symbols and expressions of (9) for one sample and for the shared variables."""

    def __init__(self, net: Network, m: int, scale: float):
        self.sizes, self.L = list(net.sizes), net.n_layers
        self.acts = [net.activation(l) for l in range(1, self.L + 1)]
        self.S, self.V = _Layout("s"), _Layout("v")  # shared / per-sample variables
        self.PS, self.PV = _Layout("ps"), _Layout("pv")  # shared / per-sample parameters
        self.GS, self.G = _Layout("gs"), _Layout("g")  # shared / per-sample constraints
        self.inequality_s, self.inequality = [], []  # per row: True for <= 0, False for == 0
        self.dc_layers = [l for l in range(1, self.L) if not self.acts[l - 1].linear]
        self._symbols()
        self._expressions(scale)

    def _symbols(self) -> None:
        n, L, S, V = self.sizes, self.L, self.S, self.V
        self.w = {l: S.symbol(("w", l), (n[l], n[l - 1])) for l in range(1, L + 1)}
        self.b = {l: S.symbol(("b", l), (n[l],)) for l in range(1, L + 1)}
        self.W = {l: S.symbol(("W", l), (n[l],)) for l in range(2, L + 1)}
        self.z, self.x, self.u = {}, {}, {}
        for l in range(1, L + 1):
            self.z[l] = V.symbol(("z", l), (n[l],))
            if l < L:
                self.x[l] = V.symbol(("x", l), (n[l],))
                if l in self.dc_layers:
                    self.u[l] = V.symbol(("u", l), (n[l],))
        self.X = {l: V.symbol(("X", l), ()) for l in range(2, L + 1)}
        PS, PV = self.PS, self.PV
        self.w_ref = {l: PS.symbol(("w_ref", l), (n[l], n[l - 1])) for l in range(1, L + 1)}
        self.eta = PS.symbol(("eta",), ())
        self.mu = {(name, l): PS.symbol((name, l), ()) for l in range(1, L + 1) for name in ("mu_z", "mu_p", "mu_q")
                   if name == "mu_z" or l in self.dc_layers}
        self.x_data, self.y = PV.symbol(("x_data",), (n[0],)), PV.symbol(("y",), (n[L],))
        self.x_ref = {l: PV.symbol(("x_ref", l), (n[l - 1],)) for l in range(2, L + 1)}
        self.tangent = {(nm, l): PV.symbol((nm, l), (n[l],)) for l in self.dc_layers for nm in ("dp", "cp", "dq", "cq")}

    def _row(self, key, expr, inequality: bool, shared: bool = False) -> None:
        layout, kinds = (self.GS, self.inequality_s) if shared else (self.G, self.inequality)
        layout.symbol(key, (expr.numel(),) if expr.numel() > 1 or key[0] != "input_norm" else ())
        kinds.extend([inequality] * expr.numel())
        (self._gs if shared else self._g).append(expr)

    def _expressions(self, scale: float) -> None:
        r"""Per-sample rows ``g_j``, objective ``f_j``; shared rows (5c) and weight terms of (8)."""
        self._g, self._gs = [], []
        L, n = self.L, self.sizes
        self._row(("bilinear", 1), self.z[1] - (ca.mtimes(self.w[1], self.x_data) + self.b[1]), False)
        r_sample, r_shared = 0, self.mu["mu_z", 1] * ca.sumsqr(self.w[1] - self.w_ref[1])
        for l in range(1, L + 1):
            z = self.z[l]
            if l < L:
                act, x = self.acts[l - 1], self.x[l]
                if l in self.dc_layers:
                    u, t = self.u[l], {k: v for (k, ll), v in self.tangent.items() if ll == l}
                    for nm, half in (("p", (u + x) / 2), ("q", (u - x) / 2)):
                        pieces = _pieces_function(act, nm).map(n[l])(z.T)  # (k, n_l): piece k of node i
                        self._row((f"dc_{nm}", l), ca.vec((pieces - ca.repmat(half.T, pieces.size1(), 1)).T), True)
                        r_sample += self.mu[f"mu_{nm}", l] * ca.sum1(half - t[f"d{nm}"] * z - t[f"c{nm}"])
                else:  # a linear activation stays exact (2c)
                    self._row(("activation", l), x - _pieces_function(act, "h").map(n[l])(z.T).T, False)
            if l >= 2:
                xin, W, X = self.x[l - 1], self.W[l], self.X[l]
                rows = ca.repmat(xin.T, n[l], 1)
                self._row(("parabolic_plus", l), ca.sum2((self.w[l] + rows) ** 2) - W - X - 2 * (z - self.b[l]), True)
                self._row(("parabolic_minus", l), ca.sum2((self.w[l] - rows) ** 2) - W - X + 2 * (z - self.b[l]), True)
                self._row(("input_norm", l), ca.sumsqr(xin) - X, True)
                self._row(("weight_norm", l), ca.sum2(self.w[l] ** 2) - W, True, shared=True)
                mu = self.mu["mu_z", l]
                r_sample += mu * (X - 2 * ca.dot(xin, self.x_ref[l]) + ca.sumsqr(self.x_ref[l]))
                r_shared += mu * (ca.sum1(W) - 2 * ca.dot(self.w[l], self.w_ref[l]) + ca.sumsqr(self.w_ref[l]))
        self.g, self.gs = ca.vertcat(*self._g), ca.vertcat(*self._gs) if self._gs else ca.SX(0, 1)
        self.f = scale * ca.sumsqr(self.z[L] - self.y) + self.eta * scale * r_sample
        self.fs = self.eta * r_shared

    # ------------------------------------------------------------------ symbols as vectors
    def vectors(self):
        """``(s, ps, v, pv)``: the four SX input vectors, in their layouts' order."""
        def cat(layout, groups):
            syms = {}
            for g in groups:
                syms.update({k: v for k, v in g.items()})
            return ca.vertcat(*[ca.vec(syms[k]) for k in layout.blocks])
        s = cat(self.S, [{("w", l): v for l, v in self.w.items()}, {("b", l): v for l, v in self.b.items()},
                         {("W", l): v for l, v in self.W.items()}])
        v = cat(self.V, [{("z", l): a for l, a in self.z.items()}, {("x", l): a for l, a in self.x.items()},
                         {("u", l): a for l, a in self.u.items()}, {("X", l): a for l, a in self.X.items()}])
        ps = cat(self.PS, [{("w_ref", l): a for l, a in self.w_ref.items()}, {("eta",): self.eta}, self.mu])
        pv = cat(self.PV, [{("x_data",): self.x_data, ("y",): self.y}, {("x_ref", l): a for l, a in self.x_ref.items()},
                           self.tangent])
        return s, ps, v, pv
