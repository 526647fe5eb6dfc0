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
by one mapped call.  (CasADi's own derivatives of the mapped graph colour the whole problem, one
sweep over all samples per colour: at m = 1,000 no solve within 12 minutes; of the expanded SX
graph: an ``nlpsol`` setup of 14 s at m = 1,000 and 60 s at m = 3,000, against 0.1 s and 0.3 s
here -- ``benchmarks/scale.py --options-study``.)  Parameters (reference weights and inputs, DC
tangents, ``eta``, ``mu``) are CasADi parameters: :meth:`DirectParabolicRound.recentre` changes
numbers only.

Layout: ``x = [s; v_0; v_1; ...; v_{m-1}]``; ``g = [g_0; g_1(\cdot); ...]`` (``g_0``: (5c));
:meth:`~DirectParabolicRound.variable_index` and :meth:`~DirectParabolicRound.constraint_index`
name every entry by the Pyomo model's component names and indices.  With ``group_size = B`` the
samples :math:`j` of group :math:`k = \lfloor j / B \rfloor` read a copy :math:`c_k` of
:math:`s` instead, ``x`` ends with ``[c_0; ...; c_{G-1}]`` and ``g`` with the rows
:math:`c_k - s = 0`: the same problem, whose KKT matrix has no variable coupled to every sample
(``benchmarks/scale.py --profile-study --group-size B`` measures what MUMPS makes of it).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np

from ..activations import Activation
from ..losses import Loss, get_loss
from ..network import ForwardPass, Network, check_data
from ..transformations.regularize import dc_tangents, exactness_weights_from
from .casadi_translator import Translator
from .casadi_translator import casadi as ca

__all__ = ["PARALLELIZATIONS", "SOLVERS", "DirectParabolicRound"]

#: ``Function.map`` modes this module accepts ("openmp" needs a CasADi built with OpenMP)
PARALLELIZATIONS = ("serial", "thread", "openmp")
#: how a round is solved: Ipopt on the whole problem, or the sample-by-sample interior point
SOLVERS = ("ipopt", "schur")
_OK = ("Solve_Succeeded", "Solved_To_Acceptable_Level")
_TIME_LIMIT = ("Maximum_WallTime_Exceeded", "Maximum_CpuTime_Exceeded")


class _Layout:
    """Named blocks of one vector (the shared one, or one sample's), in insertion order.

    A block has a shape and is stored column-major (``ravel(order="F")``), like ``casadi.vec``;
    :meth:`symbol` also creates its SX symbol, :meth:`vector` stacks the symbols.
    """

    def __init__(self, prefix: str):
        self.prefix, self.blocks, self.size, self.symbols = prefix, {}, 0, {}

    def add(self, key: tuple, shape: tuple[int, ...]) -> None:
        self.blocks[key] = (self.size, tuple(shape))
        self.size += int(np.prod(shape, dtype=int))

    def symbol(self, key: tuple, shape: tuple[int, ...]):
        self.add(key, shape)
        rows, cols = (tuple(shape) + (1, 1))[:2]
        self.symbols[key] = ca.SX.sym(f"{self.prefix}_{'_'.join(map(str, key))}", rows, cols)
        return self.symbols[key]

    def vector(self):
        return ca.vertcat(*[ca.vec(self.symbols[k]) for k in self.blocks]) if self.blocks else ca.SX(0, 1)

    def offset(self, key: tuple, index: tuple = ()) -> int:
        """Position of ``block[index]`` inside the vector."""
        if key not in self.blocks:
            raise KeyError(f"no block {key}; blocks: {list(self.blocks)}")
        start, shape = self.blocks[key]
        if len(index) != len(shape) or any(not 0 <= i < n for i, n in zip(index, shape)):
            raise IndexError(f"index {index} out of range for {key} with shape {shape}")
        return start + (int(np.ravel_multi_index(index, shape, order="F")) if shape else 0)

    def flat(self, values: Mapping) -> np.ndarray:
        """One vector from ``{key: array of the block's shape}``."""
        parts = [np.asarray(values[k], float).reshape(shape, order="F").ravel(order="F")
                 for k, (_, shape) in self.blocks.items()]
        return np.concatenate(parts) if parts else np.zeros(0)

    def stacked(self, values: Mapping, m: int) -> np.ndarray:
        """The ``(size, m)`` matrix of ``{key: array of shape block_shape + (m,)}``, one column per sample."""
        parts = [np.asarray(values[k], float).reshape(-1, m) for k in self.blocks]
        return np.vstack(parts) if parts else np.zeros((0, m))

    def split(self, columns: np.ndarray) -> dict:
        """Inverse of :meth:`stacked`: ``{key: array of shape block_shape + (m,)}``."""
        return {k: columns[start:start + int(np.prod(shape, dtype=int))].reshape(shape + (columns.shape[1],), order="F")
                for k, (start, shape) in self.blocks.items()}


def _translated(name: str, build, n_vars: int, n_params: int = 0):
    """A CasADi Function ``(v, q) -> vertcat(build(v, q))`` from Pyomo expressions: ``build`` gets
    ``n_vars`` Pyomo Vars and ``n_params`` mutable Params and returns a list of expressions, which
    :class:`~.casadi_translator.Translator` (the ``ipopt_casadi`` translation) turns into SX."""
    import pyomo.environ as pyo

    holder = pyo.ConcreteModel()
    holder.v = pyo.Var(range(n_vars))
    holder.q = pyo.Param(range(n_params), mutable=True, initialize=0.0)
    tr = Translator()
    out = [tr.walk(e) for e in build([holder.v[i] for i in range(n_vars)], [holder.q[i] for i in range(n_params)])]
    syms = {id(c): sym for c, sym in zip(tr.vars + tr.params, tr.var_syms + tr.par_syms)}
    v = [syms.get(id(holder.v[i]), ca.SX.sym(f"v{i}")) for i in range(n_vars)]
    q = [syms.get(id(holder.q[i]), ca.SX.sym(f"q{i}")) for i in range(n_params)]
    ins = [ca.vertcat(*v)] + ([ca.vertcat(*q)] if n_params else [])
    return ca.Function(name, ins, [ca.vertcat(*[ca.SX(e) if isinstance(e, float) else e for e in out])])


def _pieces_function(act: Activation, which: str):
    """``z -> [p_k(z)]_k`` (``which="p"``), ``[q_k(z)]_k`` or ``[h(z)]`` (``"h"``), from the
    activation's Pyomo expressions."""
    build = {"p": act.p_pieces, "q": act.q_pieces, "h": lambda z: [act.pyomo_expr(z)]}[which]
    return _translated(f"{act.name}_{which}", lambda v, q: build(v[0]), 1)


def _loss_function(loss: Loss, n_out: int):
    """``(z, y) -> loss of one sample``, from the loss's Pyomo expression."""
    return _translated(loss.name, lambda v, q: [loss.pyomo_expr(v, q)], n_out, n_out)


def _dc_tangents(act: Activation, z: np.ndarray, l: int) -> dict:
    """:func:`~convexnn_pyomo.transformations.regularize.dc_tangents` keyed ``(name, l)``."""
    return {(name, l): arr for name, arr in dc_tangents(act, z).items()}


class _Formulation:
    r"""Symbols and expressions of (9) for one sample (``g``, ``f``) and for the shared variables (``gs``, ``fs``).

    Keys follow the Pyomo model: variables ``("w", l)`` ``[i, k]``, ``("b", l)``, ``("W", l)``
    (shared), ``("z", l)``, ``("x", l)`` (``layer[l].x``), ``("u", l)``, ``("X", l)`` (one
    sample's); rows ``("bilinear", 1)`` ``[i]``, ``("dc_p", l)`` ``[i, k]``, ``("dc_q", l)``,
    ``("activation", l)``, ``("parabolic_plus", l)``, ``("parabolic_minus", l)``,
    ``("input_norm", l)`` ``[]`` (one sample's) and ``("weight_norm", l)`` (shared).
    """

    def __init__(self, net: Network, scale: float, loss: Loss):
        self.sizes, self.L = list(net.sizes), net.n_layers
        self.acts = {l: net.activation(l) for l in range(1, self.L + 1)}
        self.dc_layers = [l for l in range(1, self.L) if not self.acts[l].linear]
        self.S, self.V = _Layout("s"), _Layout("v")  # shared / per-sample variables
        self.PS, self.PV = _Layout("ps"), _Layout("pv")  # shared / per-sample parameters
        self.GS, self.G = _Layout("gs"), _Layout("g")  # shared / per-sample rows
        self.saturating = loss.saturating  # the output-bias anchor of convexnn.regularize
        self.rows = {"shared": [], "sample": []}  # (expression, is_inequality) in row order
        self._symbols()
        self._rows_and_objective(scale, loss)

    def _symbols(self) -> None:
        n, L, S, V, PS, PV = self.sizes, self.L, self.S, self.V, self.PS, self.PV
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
        self.w_ref = {l: PS.symbol(("w_ref", l), (n[l], n[l - 1])) for l in range(1, L + 1)}
        self.eta = PS.symbol(("eta",), ())
        self.b_ref = PS.symbol(("b_ref", L), (n[L],)) if self.saturating else None
        self.mu = {(nm, l): PS.symbol((nm, l), ()) for l in range(1, L + 1) for nm in ("mu_z", "mu_p", "mu_q")
                   if nm == "mu_z" or l in self.dc_layers}
        self.x_data, self.y = PV.symbol(("x_data",), (n[0],)), PV.symbol(("y",), (n[L],))
        self.x_ref = {l: PV.symbol(("x_ref", l), (n[l - 1],)) for l in range(2, L + 1)}
        self.tangent = {(nm, l): PV.symbol((nm, l), (n[l],)) for l in self.dc_layers for nm in ("dp", "cp", "dq", "cq")}

    def _row(self, key: tuple, shape: tuple, expr, inequality: bool, shared: bool = False) -> None:
        """Rows ``expr <= 0`` (``inequality``) or ``expr == 0``; ``expr`` is ``vec`` of a ``shape`` block."""
        (self.GS if shared else self.G).add(key, shape)
        self.rows["shared" if shared else "sample"].append((expr, inequality))

    def _rows_and_objective(self, scale: float, loss: Loss) -> None:
        n, L = self.sizes, self.L
        self._row(("bilinear", 1), (n[1],), self.z[1] - (ca.mtimes(self.w[1], self.x_data) + self.b[1]), False)
        r_sample, r_shared = 0, self.mu["mu_z", 1] * ca.sumsqr(self.w[1] - self.w_ref[1])
        if self.saturating:
            r_shared += self.mu["mu_z", L] * ca.sumsqr(self.b[L] - self.b_ref)
        for l in range(1, L + 1):
            if l in self.dc_layers:
                r_sample += self._dc_rows(l)
            elif l < L:  # a linear activation stays the exact equality (2c)
                h = _pieces_function(self.acts[l], "h").map(n[l])(self.z[l].T).T
                self._row(("activation", l), (n[l],), self.x[l] - h, False)
            if l >= 2:
                r_sample += self._parabolic_rows(l)
                r_shared += self.mu["mu_z", l] * (
                    ca.sum1(self.W[l]) - 2 * ca.dot(self.w[l], self.w_ref[l]) + ca.sumsqr(self.w_ref[l]))
        self.g = ca.vertcat(*[e for e, _ in self.rows["sample"]])
        self.gs = ca.vertcat(*[e for e, _ in self.rows["shared"]]) if self.rows["shared"] else ca.SX(0, 1)
        self.f = scale * _loss_function(loss, n[L])(self.z[L], self.y) + self.eta * scale * r_sample
        self.fs = self.eta * r_shared

    def _dc_rows(self, l: int):
        r"""(7) :math:`p_k(z) \le (u+x)/2`, :math:`q_k(z) \le (u-x)/2`; returns the DC terms of (8)."""
        z, u, x, n_l = self.z[l], self.u[l], self.x[l], self.sizes[l]
        r = 0
        for nm, half in (("p", (u + x) / 2), ("q", (u - x) / 2)):
            pieces = _pieces_function(self.acts[l], nm).map(n_l)(z.T).T  # (n_l, k): piece k of node i
            k = pieces.size2()
            self._row((f"dc_{nm}", l), (n_l, k), ca.vec(pieces - ca.repmat(half, 1, k)), True)
            r += self.mu[f"mu_{nm}", l] * ca.sum1(half - self.tangent[f"d{nm}", l] * z - self.tangent[f"c{nm}", l])
        return r

    def _parabolic_rows(self, l: int):
        r"""(5a), (5b), (5d) of one sample and (5c) (shared); returns the sample's input term of (8)."""
        n_l, xin, W, X, w = self.sizes[l], self.x[l - 1], self.W[l], self.X[l], self.w[l]
        rows, zb = ca.repmat(xin.T, n_l, 1), 2 * (self.z[l] - self.b[l])
        self._row(("parabolic_plus", l), (n_l,), ca.sum2((w + rows) ** 2) - W - X - zb, True)
        self._row(("parabolic_minus", l), (n_l,), ca.sum2((w - rows) ** 2) - W - X + zb, True)
        self._row(("input_norm", l), (), ca.sumsqr(xin) - X, True)
        self._row(("weight_norm", l), (n_l,), ca.sum2(w**2) - W, True, shared=True)
        return self.mu["mu_z", l] * (X - 2 * ca.dot(xin, self.x_ref[l]) + ca.sumsqr(self.x_ref[l]))

    def inequality_mask(self, shared: bool) -> np.ndarray:
        rows = self.rows["shared" if shared else "sample"]
        return np.concatenate([np.full(e.numel(), ineq) for e, ineq in rows]) if rows else np.zeros(0, bool)


def _nonzeros(a):
    """The nonzeros of ``a`` as a dense column (sparsity dropped)."""
    return ca.sparsity_cast(a, ca.Sparsity.dense(a.nnz(), 1))


def _grouped(block, counts) -> "ca.Sparsity":
    """``diag_k [P, ..., P]`` (``counts[k]`` copies of the pattern ``block`` side by side in group
    ``k``'s rows): where a map's per-sample outputs go when sample ``j`` belongs to group ``k``."""
    return ca.diagcat(*[ca.horzcat(*[block] * int(c)) for c in counts])


def _padded(a, n_rows: int):
    """``a`` with zero rows below it, up to ``n_rows`` (no data moved: the same nonzeros)."""
    return ca.sparsity_cast(a, ca.vertcat(a.sparsity(), ca.Sparsity(n_rows - a.size1(), a.size2())))


class _Derivatives:
    r"""Per-sample and shared CasADi Functions: values, gradient, Jacobian and Lagrangian Hessian blocks."""

    def __init__(self, fm: _Formulation, copies: bool = False):
        s, ps, v, pv = fm.S.vector(), fm.PS.vector(), fm.V.vector(), fm.PV.vector()
        ns = s.numel()
        sig, lam, lam0 = ca.SX.sym("lam_f"), ca.SX.sym("lam_g", fm.g.numel()), ca.SX.sym("lam_g0", fm.gs.numel())
        ins = [s, ps, v, pv]
        self.fg = ca.Function("sample_fg", ins, [fm.g, fm.f])
        self.grad = ca.Function("sample_grad", ins, [fm.f, ca.gradient(fm.f, s), ca.gradient(fm.f, v)])
        # the transposed Jacobian rows of a sample: each column lists its nonzeros in the order of x
        # ([s; v_j], or [v_j; c_k] with copies), so the mapped output is J^T's columns as they are
        js_t, jv_t = ca.jacobian(fm.g, s).T, ca.jacobian(fm.g, v).T
        self.js_sparsity, self.jv_sparsity = js_t.sparsity(), jv_t.sparsity()
        self.jac = ca.Function("sample_jac", ins, [fm.g, ca.vertcat(jv_t, js_t) if copies else ca.vertcat(js_t, jv_t)])
        H = ca.hessian(sig * fm.f + ca.dot(lam, fm.g), ca.vertcat(s, v))[0]
        hss, hsv, hvv = ca.triu(H[:ns, :ns]), H[:ns, ns:], ca.triu(H[ns:, ns:])
        self.hss_sparsity, self.hsv_sparsity, self.hvv_sparsity = hss.sparsity(), hsv.sparsity(), hvv.sparsity()
        # the columns v_j of the upper triangle: [H_sv; H_vv] (with copies H_cv goes in the columns c_k)
        outs = [_nonzeros(hss), hsv, hvv] if copies else [_nonzeros(hss), ca.vertcat(hsv, hvv)]
        self.hess = ca.Function("sample_hess", ins + [sig, lam], outs)
        self.fg0 = ca.Function("shared_fg", [s, ps], [fm.gs, fm.fs])
        self.grad0 = ca.Function("shared_grad", [s, ps], [fm.fs, ca.gradient(fm.fs, s)])
        self.jac0 = ca.Function("shared_jac", [s, ps], [fm.gs, ca.jacobian(fm.gs, s)])
        self.hess0 = ca.Function("shared_hess", [s, ps, sig, lam0],
                                 [ca.triu(ca.hessian(sig * fm.fs + ca.dot(lam0, fm.gs), s)[0])])


def _ipopt_defaults() -> dict:
    from ..algorithms import IPOPT_DEFAULTS  # the algorithm's options (imported late: the algorithm imports us)

    return dict(IPOPT_DEFAULTS)


def _positive(name: str, value) -> float:
    v = float(value)
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return v


class DirectParabolicRound:
    r"""The regularized parabolic relaxation (9) of one round, built once in CasADi, re-solved by Ipopt.

    ``net`` gives the architecture and the first reference; ``X`` ``(m, n_0)``, ``Y`` ``(m, n_L)``;
    ``reduction`` and ``loss`` as in :func:`~convexnn_pyomo.build_training_model`; ``eta`` and
    ``mu = (mu_z, mu_p, mu_q)`` (the same for every layer) start the regularizer (8).
    ``ipopt_options`` update the algorithm's defaults.  ``parallelization`` is the
    ``casadi.Function.map`` mode of the per-sample functions (``"serial"``, ``"thread"``,
    ``"openmp"``), with ``n_threads`` threads.  ``mapped_derivatives=False`` lets CasADi derive the
    whole problem itself and ``nlpsol_options`` (e.g. ``{"expand": True}``) go to ``casadi.nlpsol``:
    both for measurements.  ``group_size`` (``None``: off) gives every ``group_size`` samples
    their own copy of the shared variables (module docstring).  Every round after the first
    changes numbers only (:meth:`recentre`); :meth:`solve` never raises on a failed solve.  Hard
    constraints are not supported.

    ``solver="schur"`` solves every round with :class:`~.schur_ipm.SchurInteriorPoint` instead of
    Ipopt: an interior point that eliminates the samples one by one around a dense Schur complement
    on the shared variables (linear time and memory in ``m``, no sparse ordering), configured by
    ``schur_options`` (its ``CONFIG``); not with ``group_size``.  The Ipopt problem (:attr:`nlp`,
    :attr:`derivatives`) is then built only when asked for.
    """

    def __init__(self, net: Network, X: np.ndarray, Y: np.ndarray, reduction: str = "mean", eta: float = 1.0,
                 mu=(1.0, 1.0, 1.0), ipopt_options: dict | None = None, parallelization: str = "serial",
                 n_threads: int = 2, loss: str | Loss = "squared", mapped_derivatives: bool = True,
                 nlpsol_options: dict | None = None, group_size: int | None = None, solver: str = "ipopt",
                 schur_options: dict | None = None):
        if reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
        if parallelization not in PARALLELIZATIONS:
            raise ValueError(f"parallelization must be one of {PARALLELIZATIONS}, got {parallelization!r}")
        if net.weights is None:
            raise ValueError("the network has no weights: it is the first reference (call net.init_he(seed))")
        mu = tuple(mu)
        if len(mu) != 3:
            raise ValueError(f"mu must be (mu_z, mu_p, mu_q), got {mu!r}")
        self._X, self._Y = check_data(X, Y, net.sizes[0], net.sizes[-1])
        self.loss, self.reduction, self.m = get_loss(loss), reduction, self._X.shape[0]
        self.loss.check_targets(self._Y)
        self._net, self._map = net.copy(), (parallelization, int(n_threads))
        if solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
        if solver == "schur" and group_size is not None:
            raise ValueError("solver='schur' eliminates the samples around the shared variables itself: "
                             "group_size (copies of the shared variables) is for Ipopt only")
        self._set_groups(group_size)
        t0 = time.perf_counter()
        self._fm = fm = _Formulation(self._net, 1.0 / self.m if reduction == "mean" else 1.0, self.loss)
        self._nlp, self._derivatives, self._mapped_derivatives = None, None, mapped_derivatives
        self._nlpsol_extra, self.solver, self._schur = dict(nlpsol_options or {}), solver, None
        if solver == "ipopt":
            self._ipopt_problem()
        else:
            from .schur_ipm import SchurInteriorPoint  # one sample's terms O(1): omega = m for a mean loss

            self._schur = SchurInteriorPoint(fm, self.m, self.m if reduction == "mean" else 1.0, **(schur_options or {}))
        self.timings = {"build": time.perf_counter() - t0, "nlpsol": 0.0}
        self._lbg = np.concatenate([np.where(fm.inequality_mask(True), -np.inf, 0.0),
                                    np.tile(np.where(fm.inequality_mask(False), -np.inf, 0.0), self.m),
                                    np.zeros(fm.S.size * self._n_groups)])
        self._lbx = self._lower_bounds()
        self._ipopt = {**_ipopt_defaults(), **(ipopt_options or {})}
        self._nlpsol, self._solver_key = None, None
        self._mu = {"mu_z": {l: mu[0] for l in range(1, fm.L + 1)},
                    "mu_p": {l: mu[1] for l in fm.dc_layers}, "mu_q": {l: mu[2] for l in fm.dc_layers}}
        self._static = {("x_data",): self._X.T, ("y",): self._Y.T}
        self._x_sol, self._f_sol, self._lam = None, None, None
        self.recentre(self._net, eta)

    def _ipopt_problem(self) -> tuple[dict, dict]:
        """The MX problem and the derivative Functions given to Ipopt (built on first use)."""
        if self._nlp is None:
            self._nlp, self._derivatives = self._assemble(_Derivatives(self._fm, copies=self._n_groups > 0))
            self._nlpsol_options = {**(self._derivatives if self._mapped_derivatives else {}), **self._nlpsol_extra}
        return self._nlp, self._derivatives

    def _set_groups(self, group_size: int | None) -> None:
        """Sample ``j`` reads the copy ``c_{j // group_size}`` of ``s`` (``None``: ``s`` itself)."""
        if group_size is None:
            self._n_groups, self._groups, self._assignment = 0, None, None
            return
        if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)) or group_size < 1:
            raise ValueError(f"group_size must be a positive integer or None, got {group_size!r}")
        self._groups = np.arange(self.m) // int(group_size)
        self._n_groups = int(self._groups[-1]) + 1
        self._assignment = ca.DM(ca.Sparsity.triplet(self.m, self._n_groups, list(range(self.m)),
                                                     self._groups.tolist()), 1.0)

    @property
    def n_groups(self) -> int:
        """The number of copies of the shared variables (0: none; see ``group_size``)."""
        return self._n_groups

    def _lower_bounds(self) -> np.ndarray:
        """``lbx``: ``W, X >= 0`` (the Pyomo model's NonNegativeReals), ``-inf`` elsewhere (also on the copies)."""
        fm, lbx = self._fm, np.full(self.n_variables, -np.inf)
        for blocks, start, stride, count in ((fm.S.blocks, 0, 0, 1), (fm.V.blocks, fm.S.size, fm.V.size, self.m)):
            for key, (off, shape) in blocks.items():
                if key[0] in ("W", "X"):
                    idx = start + off + np.arange(int(np.prod(shape, dtype=int)))[:, None] + stride * np.arange(count)
                    lbx[idx.ravel()] = 0.0
        return lbx

    # ------------------------------------------------------------------ the NLP and its derivatives
    def _mapped(self, fn):
        # (map's reduce_in/reduce_out were tried: they wrap the same repmat and sum in a nested
        # Function whose work vector adds to this one's, so the work vectors grow)
        mode, threads = self._map
        return fn.map(self.m, "serial") if mode == "serial" else fn.map(self.m, mode, threads)

    def _assemble(self, d: _Derivatives):
        """The MX problem and its ``grad_f``, ``jac_g``, ``hess_lag`` Functions (graph size independent of ``m``).

        Without copies the samples read ``s``; with copies sample ``j`` reads ``c_{k(j)}`` and the rows
        ``c_k - s = 0`` close ``g``: every sum over samples of a shared block becomes a sum per group."""
        fm, m, G = self._fm, self.m, self._n_groups
        ns, nv, ng, ng0, nc = fm.S.size, fm.V.size, fm.G.size, fm.GS.size, fm.S.size * self._n_groups
        x, p = ca.MX.sym("x", ns + nv * m + nc), ca.MX.sym("p", fm.PS.size + fm.PV.size * m)
        lam_f, lam_g = ca.MX.sym("lam_f"), ca.MX.sym("lam_g", ng0 + ng * m + nc)
        xs, ps = x[:ns], p[:fm.PS.size]
        xc = ca.reshape(x[ns + nv * m:], ns, G) if G else None
        s_j = xc[:, self._groups.tolist()] if G else xs  # the shared values each sample reads
        ins = [s_j, ps, ca.reshape(x[ns:ns + nv * m], nv, m), ca.reshape(p[fm.PS.size:], fm.PV.size, m)]
        tie = [ca.vec(xc) - ca.repmat(xs, G, 1)] if G else []
        g_j, f_j = self._mapped(d.fg)(*ins)
        g0, f0 = d.fg0(xs, ps)
        nlp = {"x": x, "p": p, "f": f0 + ca.sum2(f_j), "g": ca.vertcat(g0, ca.vec(g_j), *tie)}
        f_j, gs_j, gv_j = self._mapped(d.grad)(*ins)
        f0, gs0 = d.grad0(xs, ps)
        grad = [gs0, ca.vec(gv_j), ca.vec(ca.mtimes(gs_j, self._assignment))] if G else [gs0 + ca.sum2(gs_j), ca.vec(gv_j)]
        grad_f = ca.Function("nlp_grad_f", [x, p], [f0 + ca.sum2(f_j), ca.vertcat(*grad)], ["x", "p"], ["f", "grad_f_x"])
        g_j, jt = self._mapped(d.jac)(*ins)
        g0, j0 = d.jac0(xs, ps)
        jac_g = ca.Function("nlp_jac_g", [x, p], [ca.vertcat(g0, ca.vec(g_j), *tie), self._jacobian(d, j0, jt)],
                            ["x", "p"], ["g", "jac_g_x"])
        blocks = self._mapped(d.hess)(*ins, lam_f, ca.reshape(lam_g[ng0:ng0 + ng * m], ng, m))
        h0 = d.hess0(xs, ps, lam_f, lam_g[:ng0])
        hess_lag = ca.Function("nlp_hess_l", [x, p, lam_f, lam_g], [self._hessian(d, h0, *blocks)],
                               ["x", "p", "lam_f", "lam_g"], ["triu_hess_gamma_x_x"])
        return nlp, {"grad_f": grad_f, "jac_g": jac_g, "hess_lag": hess_lag}

    def _jacobian(self, d: _Derivatives, j0, jt):
        r"""``jac_g`` (rows ``[g_0; g_j; c - s]``, columns ``[s; v; c]``) as the transpose of
        :math:`J^T = [\nabla g_0^T, [\nabla g_j^T]_j, \text{ties}]`: the samples' mapped columns
        ``jt`` are :math:`J^T`'s as they are (a ``sparsity_cast``), so one transpose is the only copy."""
        fm, m, G, n = self._fm, self.m, self._n_groups, self.n_variables
        ns, ng = fm.S.size, fm.G.size
        jv = ca.diagcat(*[d.jv_sparsity] * m)
        if G:
            rows = ca.vertcat(ca.Sparsity(ns, ng * m), jv, _grouped(d.js_sparsity, np.bincount(self._groups)))
        else:
            rows = ca.vertcat(ca.horzcat(*[d.js_sparsity] * m), jv)
        cols = [_padded(j0.T, n), ca.sparsity_cast(jt, rows)]
        if G:  # the rows c_k - s = 0, transposed: -1 at s_i, +1 at (c_k)_i
            nc = ns * G
            cols.append(ca.MX(ca.vertcat(-ca.repmat(ca.DM.eye(ns), 1, G), ca.DM(n - ns - nc, nc), ca.DM.eye(nc))))
        return ca.horzcat(*cols).T

    def _hessian(self, d: _Derivatives, h0, hss, *blocks):
        r"""The upper triangle of the Lagrangian's Hessian, columns ``[s; v; c]``, column block by
        column block: ``s`` (the shared Hessian, plus the samples' shared-shared blocks without
        copies), ``v_j`` (``[H_sv; H_vv]`` of each sample as mapped, or ``H_vv`` with copies) and,
        with copies, ``c_k``: its samples' ``H_vs`` and their shared-shared blocks summed."""
        fm, m, G, n = self._fm, self.m, self._n_groups, self.n_variables
        ns, nv = fm.S.size, fm.V.size
        hvv = ca.diagcat(*[d.hvv_sparsity] * m)
        if not G:
            h00 = h0 + ca.sparsity_cast(ca.sum2(hss), d.hss_sparsity)
            hv = ca.sparsity_cast(blocks[0], ca.vertcat(ca.horzcat(*[d.hsv_sparsity] * m), hvv))
            return ca.horzcat(_padded(h00, n), hv)
        hsv, hvv_j = blocks
        nc = ns * G
        hcc = ca.sparsity_cast(ca.mtimes(hss, self._assignment), ca.diagcat(*[d.hss_sparsity] * G))
        hc_t = ca.horzcat(ca.MX(nc, ns), ca.sparsity_cast(hsv, _grouped(d.hsv_sparsity, np.bincount(self._groups))),
                          hcc.T)
        hv = ca.sparsity_cast(hvv_j, ca.vertcat(ca.Sparsity(ns, nv * m), hvv, ca.Sparsity(nc, nv * m)))
        return ca.horzcat(_padded(h0, n), hv, hc_t.T)

    def _solver(self, ipopt: dict):
        """The ``nlpsol`` for these Ipopt options; only the last one is kept (each holds Ipopt's and
        MUMPS's memory, as large as the problem), so new options cost a new (cheap) ``nlpsol``."""
        key = repr(sorted(ipopt.items()))
        if self._solver_key != key:
            self._nlpsol = None  # free the previous instance before building the next
            t0 = time.perf_counter()
            opts = {"ipopt": {"print_level": 0, "sb": "yes", **ipopt}, "print_time": False, "error_on_fail": False,
                    "calc_lam_p": False, **self._nlpsol_options}
            self._nlpsol, self._solver_key = ca.nlpsol("convexnn_direct", "ipopt", self._ipopt_problem()[0], opts), key
            self.timings["nlpsol"] += time.perf_counter() - t0
        return self._nlpsol

    # ------------------------------------------------------------------ sizes and names
    @property
    def eta(self) -> float:
        """The current regularization weight."""
        return self._eta

    @property
    def n_variables(self) -> int:
        return self._fm.S.size * (1 + self._n_groups) + self._fm.V.size * self.m

    @property
    def n_constraints(self) -> int:
        return self._fm.GS.size + self._fm.G.size * self.m + self._fm.S.size * self._n_groups

    def variable_index(self, name: str, l: int, index: tuple, sample: int | None = None) -> int:
        """Position in ``x`` of the Pyomo variable ``name`` of layer ``l`` (``w``, ``b``, ``W``: shared,
        ``index`` as in Pyomo; ``z``, ``x``, ``u``, ``X``: of ``sample``, ``index`` without the sample)."""
        return self._position(self._fm.S, self._fm.V, (name, l), tuple(index), sample)

    def constraint_index(self, name: str, l: int, index: tuple, sample: int | None = None) -> int:
        """Row of ``g`` of the Pyomo constraint ``name`` of layer ``l`` (``weight_norm``: shared; the
        others of ``sample``, ``index`` without the sample: ``dc_p[i, j, k]`` is ``index=(i, k)``)."""
        return self._position(self._fm.GS, self._fm.G, (name, l), tuple(index), sample)

    def _position(self, shared, per_sample, key, index, sample) -> int:
        if key in shared.blocks:
            return shared.offset(key, index)
        if sample is None or not 0 <= sample < self.m:
            raise IndexError(f"{key} is indexed by sample: give 0 <= sample < {self.m}, got {sample}")
        return shared.size + sample * per_sample.size + per_sample.offset(key, index)

    @property
    def nlp(self) -> dict:
        """The problem as CasADi MX expressions ``{"x", "p", "f", "g"}`` (one mapped call each)."""
        return dict(self._ipopt_problem()[0])

    @property
    def derivatives(self) -> dict:
        """The ``grad_f``, ``jac_g``, ``hess_lag`` Functions given to ``casadi.nlpsol``."""
        return dict(self._ipopt_problem()[1])

    @property
    def equality_rows(self) -> np.ndarray:
        """Mask of the rows of ``g`` that are equalities ``g == 0`` (the others are ``g <= 0``)."""
        return self._lbg == 0.0

    @property
    def lower_bounds(self) -> np.ndarray:
        """``lbx``: 0 for ``W`` and ``X``, ``-inf`` elsewhere (no upper bounds)."""
        return self._lbx.copy()

    # ------------------------------------------------------------------ rounds
    def recentre(self, reference: Network, eta: float, mu_z: dict[int, float] | None = None,
                 mu_p: dict[int, float] | None = None, mu_q: dict[int, float] | None = None,
                 fp: ForwardPass | None = None) -> None:
        """Centre (8) at ``reference`` with ``eta`` and the given ``mu``'s (``None`` keeps the
        current ones), like :func:`~convexnn_pyomo.update_reference`; the next solve starts from
        the reference's lifted point.  ``fp``: the reference's forward pass on ``X``, if known."""
        fm = self._fm
        if list(reference.sizes) != fm.sizes or reference.weights is None:
            raise ValueError(f"reference network must have sizes {fm.sizes} and weights")
        eta, mu = _positive("eta", eta), dict(self._mu)  # check everything before changing anything
        for name, value in (("mu_z", mu_z), ("mu_p", mu_p), ("mu_q", mu_q)):
            if value is not None:
                if set(value) != set(self._mu[name]):
                    raise ValueError(
                        f"{name} needs a value for exactly the layers {sorted(self._mu[name])}, got {sorted(value)}")
                mu[name] = {l: _positive(f"{name}[{l}]", v) for l, v in value.items()}
        self._eta, self._mu = eta, mu
        fp = fp if fp is not None else reference.forward_pass(self._X)
        shared = {("w_ref", l): w for l, w in enumerate(reference.weights, 1)}
        shared[("eta",)] = self._eta
        if fm.saturating:
            shared[("b_ref", fm.L)] = reference.biases[-1]
        shared.update({(name, l): v for name, d in self._mu.items() for l, v in d.items()})
        sample = dict(self._static)
        sample.update({("x_ref", l): fp.x[l - 1] for l in range(2, fm.L + 1)})
        for l in fm.dc_layers:
            sample.update(_dc_tangents(fm.acts[l], fp.z[l - 1], l))
        self._p = np.concatenate([fm.PS.flat(shared), fm.PV.stacked(sample, self.m).ravel(order="F")])
        self._x0 = self.lifted_point(reference, fp)

    def exactness_weights(self, reference: Network, fp: ForwardPass | None = None, floor: float = 1e-8) -> dict:
        """Per-layer ``mu_z, mu_p, mu_q`` of :func:`~convexnn_pyomo.exactness_weights` for this problem."""
        fm = self._fm
        return exactness_weights_from(reference, self._X, self._Y, self.reduction, self.loss, fm.dc_layers,
                                      list(fm.X), floor=floor, fp=fp)

    def lifted_point(self, net: Network, fp: ForwardPass | None = None) -> np.ndarray:
        r"""``x`` at ``net``'s exact forward pass: :math:`W_{ii} = \|w_i\|^2`, :math:`X_{jj} = \|x_j\|^2`,
        ``u = p(z) + q(z)`` (as :func:`~convexnn_pyomo.set_lifted_values`)."""
        fm = self._fm
        fp = fp if fp is not None else net.forward_pass(self._X)
        shared = {("w", l): w for l, w in enumerate(net.weights, 1)}
        shared.update({("b", l): b for l, b in enumerate(net.biases, 1)})
        shared.update({("W", l): np.sum(net.weights[l - 1] ** 2, axis=1) for l in range(2, fm.L + 1)})
        sample = {("z", l): fp.z[l - 1] for l in range(1, fm.L + 1)}
        sample.update({("x", l): fp.x[l] for l in range(1, fm.L)})
        sample.update({("u", l): fm.acts[l].p(fp.z[l - 1]) + fm.acts[l].q(fp.z[l - 1]) for l in fm.dc_layers})
        sample.update({("X", l): np.sum(fp.x[l - 1] ** 2, axis=0) for l in range(2, fm.L + 1)})
        s = fm.S.flat(shared)
        return np.concatenate([s, fm.V.stacked(sample, self.m).ravel(order="F"), np.tile(s, self._n_groups)])

    @property
    def parameters(self) -> np.ndarray:
        """The current parameter vector ``p`` (reference, tangents, ``eta``, ``mu``, data)."""
        return self._p.copy()

    @property
    def start(self) -> np.ndarray:
        """The warm start of the next solve (the lifted point of the last reference)."""
        return self._x0.copy()

    def evaluate(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """``(f(x), g(x))`` at the current parameters; ``g <= 0`` (``== 0`` on :attr:`equality_rows`)."""
        nlp = self._ipopt_problem()[0]
        f = ca.Function("nlp_fg", [nlp["x"], nlp["p"]], [nlp["f"], nlp["g"]])
        fv, gv = f(np.asarray(x, float), self._p)
        return float(fv), np.asarray(gv).ravel()

    def solve(self, time_limit: float | None = None, options: dict | None = None) -> dict:
        """Solve the current round from :attr:`start`; ``time_limit`` (seconds) is Ipopt's
        ``max_wall_time``, ``options`` update the Ipopt options for this call.  Returns ``ok``
        (``Solve_Succeeded`` or ``Solved_To_Acceptable_Level``), ``return_status``,
        ``iterations``, ``seconds`` (wall, including a new ``nlpsol`` for new options),
        ``objective``, ``infeasible`` and ``time_limit`` (bools from the status), ``cpu_seconds``
        (process CPU time of the Ipopt call alone) and ``timings`` (wall seconds in Ipopt's
        callbacks).  With the Ipopt option ``warm_start_init_point="yes"`` the last solution's
        multipliers are the starting ones (the primal start is always :attr:`start`)."""
        if self.solver == "schur":
            return self._solve_schur(time_limit, options)
        ipopt = {**self._ipopt, **(options or {})}
        if time_limit is not None:
            ipopt["max_wall_time"] = _positive("time_limit", time_limit)
        t0, stats, objective, cpu = time.perf_counter(), {}, float("nan"), float("nan")
        try:
            solver, cpu0 = self._solver(ipopt), time.process_time()
            warm = self._lam if ipopt.get("warm_start_init_point") == "yes" and self._lam is not None else {}
            sol = solver(x0=self._x0, p=self._p, lbx=self._lbx, ubx=np.inf, lbg=self._lbg, ubg=0.0, **warm)
        except RuntimeError as err:  # CasADi's evaluation errors: a failed round, not a crash
            status = f"error: {err}"
        else:
            stats, objective = solver.stats(), float(sol["f"])
            self._x_sol, self._f_sol = np.asarray(sol["x"]).ravel(), objective
            self._lam = {"lam_x0": sol["lam_x"], "lam_g0": sol["lam_g"]}
            status = str(stats.get("return_status", "unknown"))
            cpu = time.process_time() - cpu0
        return {"ok": status in _OK, "return_status": status, "iterations": int(stats.get("iter_count", 0)),
                "seconds": time.perf_counter() - t0, "objective": objective, "cpu_seconds": cpu,
                "infeasible": status == "Infeasible_Problem_Detected", "time_limit": status in _TIME_LIMIT,
                "timings": {k[len("t_wall_"):]: float(v) for k, v in stats.items() if k.startswith("t_wall_")}}

    def _solve_schur(self, time_limit: float | None, options: dict | None) -> dict:
        """:meth:`solve` by :class:`~.schur_ipm.SchurInteriorPoint`; ``options`` are its ``CONFIG`` keys."""
        unknown = sorted(set(options or {}) - set(self._schur.CONFIG))
        if unknown:
            raise ValueError(f"options {unknown} are not options of solver='schur'; "
                             f"it takes {sorted(self._schur.CONFIG)}")
        limit = _positive("time_limit", time_limit) if time_limit is not None else None
        saved = self._schur.config()
        self._schur.config.set_value(options or {})
        cpu0 = time.process_time()
        try:
            res = self._schur.solve(self._x0, self._p, max_wall_time=limit)
        finally:
            self._schur.config = saved
        self._x_sol, self._f_sol = res.x, res.objective  # the last iterate, as Ipopt's
        return {"ok": res.ok, "return_status": res.status, "iterations": res.iterations, "seconds": res.seconds,
                "objective": res.objective, "cpu_seconds": time.process_time() - cpu0, "infeasible": False,
                "time_limit": res.status in _TIME_LIMIT, "timings": dict(res.timings)}

    # ------------------------------------------------------------------ the last solution
    def _solution_blocks(self) -> tuple[dict, dict]:
        if self._x_sol is None:
            raise ValueError("no solution yet: call solve() first")
        fm = self._fm
        shared = {k: self._x_sol[o:o + int(np.prod(s, dtype=int))].reshape(s, order="F")
                  for k, (o, s) in fm.S.blocks.items()}
        v = self._x_sol[fm.S.size:fm.S.size + fm.V.size * self.m]
        return shared, fm.V.split(v.reshape(fm.V.size, self.m, order="F"))

    def solution(self) -> Network:
        """A network with the weights and biases of the last solution."""
        shared, _ = self._solution_blocks()
        L = self._fm.L
        return Network(list(self._net.sizes), list(self._net.activations),
                       [shared["w", l] for l in range(1, L + 1)], [shared["b", l] for l in range(1, L + 1)])

    def gaps(self) -> tuple[float, float]:
        """``(bilinear_gap, activation_gap)`` of the last solution, as :func:`~convexnn_pyomo.constraint_gaps`:
        largest ``|z - (w x + b)|`` (2b) and ``|x - h(z)|`` (2c)."""
        shared, sample = self._solution_blocks()
        bil, act, x_in = 0.0, 0.0, self._X.T
        for l in range(1, self._fm.L + 1):
            z = sample["z", l]
            bil = max(bil, float(np.max(np.abs(z - (shared["w", l] @ x_in + shared["b", l][:, None])))))
            if l < self._fm.L:
                x_in = sample["x", l]
                act = max(act, float(np.max(np.abs(x_in - self._fm.acts[l].value(z)))))
        return bil, act

    def smallest_kappa_factor(self) -> float | None:
        """``None``: no hard constraints here, so no kappa factor to diagnose (the algorithm's protocol)."""
        return None

    def relaxed_objective(self) -> float:
        """Objective of (9), loss + eta * r, at the last solution."""
        if self._f_sol is None:
            raise ValueError("no solution yet: call solve() first")
        return self._f_sol
