r"""Arrow-structured convex programs derived from a Pyomo model: the round written once.

A training round couples its samples only through the weights.  Written over ``m`` samples it is

.. math::
    \min_{s, v}\ f_0(s) + \sum_j f(s, v_j; p_j)\quad\text{s.t.}\quad
    g(s, v_j; p_j) \le 0\ (= 0 \text{ on equality rows})\ \ \forall j,\qquad
    a_0(s) + \sum_j a(s, v_j; p_j) \le 0\ (= 0),

with shared variables :math:`s` (weights, biases, :math:`W`), the variables :math:`v_j` of sample
``j`` (pre- and post-activations, :math:`X_{jj}`, DC and constraint auxiliaries), per-sample
parameters :math:`p_j` (data, reference inputs, tangents, class membership) and *linking rows*
:math:`a` (sums over samples: class-wise bounds (19), group losses, demographic parity; rows on
the weights alone are linking rows with :math:`a = 0`).

:func:`arrow_problem` reads :math:`f, g, a` off a *template*: the Pyomo model built by the
package's ordinary code (``build_training_model(..., samples=[0, m-1])``, the relaxation, the
hard constraints, the regularizer) on two samples (:mod:`convexnn_pyomo.samples`).  Each
expression is split into a shared part and one part per sample (sums, negations and products or
quotients by sample-free factors distribute; anything else belongs to the single sample it
touches), then translated once by :class:`~.casadi_translator.Translator` with sample 0's
variables and parameters as the symbols :math:`v, p`.  The other template sample is the check:
its parts, translated with the same symbols, must be the same functions (compared at random
points), so a term that depends on the sample through a constant rather than a per-sample Param
is refused (:class:`NotSeparableError`) instead of being silently copied to every sample.
Bounds on variables become rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyomo.environ as pyo
from pyomo.core.expr import DivisionExpression, NegationExpression, ProductExpression, SumExpression
from pyomo.core.expr.numvalue import native_numeric_types
from pyomo.core.expr.visitor import identify_mutable_parameters, identify_variables

from ..samples import get_sample_array, sample_position
from .casadi_translator import Translator
from .casadi_translator import casadi as ca

__all__ = ["ArrowProblem", "NotSeparableError", "arrow_problem"]


class NotSeparableError(ValueError):
    """The model is not a sum over samples of one per-sample problem (see the module docstring)."""


@dataclass
class ArrowProblem:
    r"""One round as per-sample and shared CasADi expressions (module docstring), plus the Pyomo
    components behind every symbol.

    ``s, v, ps, pv``: SX vectors of the shared variables, one sample's variables, the shared and one
    sample's parameters; ``f``, ``g``, ``a``: one sample's objective term, rows and linking-row
    terms; ``fs``, ``a0``: the shared objective term and linking-row parts.  ``eq`` / ``eq_link``:
    masks of equality rows.  ``shared_vars`` (VarData), ``sample_vars`` (keys
    ``(component, index without the sample)``), likewise ``shared_params`` / ``sample_params``;
    ``row_names`` / ``link_names``: the Pyomo constraint (or variable bound) of every row.
    """

    model: object
    m: int
    s: object
    v: object
    ps: object
    pv: object
    f: object
    g: object
    a: object
    fs: object
    a0: object
    eq: np.ndarray
    eq_link: np.ndarray
    shared_vars: list
    sample_vars: list
    shared_params: list
    sample_params: list
    row_names: list
    link_names: list
    link_components: list = field(default_factory=list)

    @property
    def ns(self) -> int:
        return self.s.numel()

    @property
    def nv(self) -> int:
        return self.v.numel()

    @property
    def ng(self) -> int:
        return self.g.numel()

    @property
    def n_link(self) -> int:
        return self.a0.numel()

    # ------------------------------------------------------------------ values
    def parameters(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ps, pv)``: shared parameter values and the ``(npv, m)`` per-sample ones, as the model holds them."""
        ps = np.array([pyo.value(p) for p in self.shared_params], dtype=float)
        return ps, self._sample_matrix(self.sample_params, missing=None)

    def start(self) -> tuple[np.ndarray, np.ndarray]:
        """``(s, V)``: the model's shared variable values and the ``(nv, m)`` per-sample ones (0 where
        none is kept, e.g. a constraint's auxiliary variable on a template)."""
        s = np.array([0.0 if v.value is None else v.value for v in self.shared_vars], dtype=float)
        return s, self._sample_matrix(self.sample_vars, missing=0.0)

    def load(self, s: np.ndarray, V: np.ndarray) -> None:
        """Put a solution into the model: shared variables' values, and every per-sample variable for
        every sample (:func:`~convexnn_pyomo.samples.set_sample_array`)."""
        from ..samples import set_sample_array

        for var, val in zip(self.shared_vars, s):
            var.set_value(float(val), skip_validation=True)
        for comp, rows in _by_component(self.sample_vars).items():
            arr = np.zeros(_shape(comp, self.m))
            for k, idx in rows:
                arr[_position(comp, idx)] = V[k]
            set_sample_array(comp, arr)

    def _sample_matrix(self, keys: list, missing) -> np.ndarray:
        out = np.zeros((len(keys), self.m))
        for comp, rows in _by_component(keys).items():
            try:
                arr = get_sample_array(comp, _shape(comp, self.m))
            except KeyError:
                if missing is None:
                    raise NotSeparableError(
                        f"the per-sample Param {comp.name} has no values for the samples outside the template; "
                        "declare it with convexnn_pyomo.samples.sample_param") from None
                arr = np.full(_shape(comp, self.m), missing)
            for k, idx in rows:
                out[k] = np.nan_to_num(arr[_position(comp, idx)], nan=0.0 if missing is None else missing)
        return out


def _by_component(keys: list) -> dict:
    out: dict = {}
    for k, (comp, idx) in enumerate(keys):
        out.setdefault(comp, []).append((k, idx))
    return out


def _sets(comp) -> list:
    index = comp.index_set()
    return list(index.subsets()) if hasattr(index, "subsets") else [index]


def _shape(comp, m: int) -> tuple[int, ...]:
    return tuple(len(s) for s in _sets(comp)[:-1]) + (m,)


def _position(comp, idx: tuple) -> tuple:
    return tuple(s.ord(k) - 1 for s, k in zip(_sets(comp)[:-1], idx))


# ---------------------------------------------------------------------- splitting by sample
class _Splitter:
    """Which sample each variable or parameter belongs to, and expressions split by sample."""

    def __init__(self, model):
        self.model = model
        self.owner: dict[int, tuple] = {}  # id(data) -> ((component, index without sample), sample)
        for comp in model.component_objects((pyo.Var, pyo.Param), descend_into=True):
            pos = sample_position(comp, model)
            if pos is None or (comp.ctype is pyo.Param and not comp.mutable):
                continue
            for idx, data in comp.items():
                t = idx if isinstance(idx, tuple) else (idx,)
                self.owner[id(data)] = ((comp, t[:pos] + t[pos + 1:]), t[pos])

    def samples_of(self, expr) -> set:
        found = {self.owner[id(d)][1] for d in identify_variables(expr, include_fixed=True) if id(d) in self.owner}
        return found | {self.owner[id(d)][1] for d in identify_mutable_parameters(expr) if id(d) in self.owner}

    def split(self, node) -> dict:
        """``{None: shared part, j: part of sample j}`` with ``node`` = the sum of the parts."""
        if node.__class__ in native_numeric_types or not hasattr(node, "is_expression_type"):
            return {None: node}
        if not node.is_expression_type():
            owner = self.owner.get(id(node))
            return {None if owner is None else owner[1]: node}
        if node.is_named_expression_type():
            return self.split(node.expr)
        if isinstance(node, SumExpression):
            out: dict = {}
            for arg in node.args:
                for k, e in self.split(arg).items():
                    out[k] = out[k] + e if k in out else e
            return out
        if isinstance(node, NegationExpression):
            return {k: -e for k, e in self.split(node.args[0]).items()}
        if isinstance(node, (ProductExpression, DivisionExpression)):
            left, right = (self.split(a) for a in node.args)
            if set(right) == {None}:
                r = right[None]
                return {k: (e * r if isinstance(node, ProductExpression) else e / r) for k, e in left.items()}
            if set(left) == {None} and isinstance(node, ProductExpression):
                return {k: left[None] * e for k, e in right.items()}
        touched = self.samples_of(node)
        if len(touched) > 1:
            raise NotSeparableError(f"a term couples samples {sorted(touched)}: {str(node)[:200]}")
        return {next(iter(touched)) if touched else None: node}


# ---------------------------------------------------------------------- rows
@dataclass
class _Rows:
    """Rows collected from the template: per sample ``{sample: {key: (expr, eq)}}``, linking
    ``[(name, parts, eq)]``."""

    sample: dict = field(default_factory=dict)
    names: dict = field(default_factory=dict)
    link: list = field(default_factory=list)
    link_components: list = field(default_factory=list)


def _normalized(con):
    """``(side, expr, eq)`` with ``expr <= 0`` (``== 0`` when ``eq``) for each side of a constraint."""
    body = con.body
    if con.equality:
        return [("eq", body - con.upper, True)]
    out = []
    if con.upper is not None:
        out.append(("ub", body - con.upper, False))
    if con.lower is not None:
        out.append(("lb", con.lower - body, False))
    return out


def _collect_rows(model, sp: _Splitter, samples: list) -> _Rows:
    rows = _Rows({j: {} for j in samples})
    for con in model.component_data_objects(pyo.Constraint, active=True, descend_into=True):
        comp = con.parent_component()
        pos = sample_position(comp, model)
        for side, expr, eq in _normalized(con):
            parts = sp.split(expr)
            if pos is not None:
                idx = con.index() if isinstance(con.index(), tuple) else (con.index(),)
                j = idx[pos]
                if set(parts) - {None, j}:
                    raise NotSeparableError(f"{con.name} is indexed by sample {j} but involves samples "
                                            f"{sorted(set(parts) - {None})}")
                key = (comp, idx[:pos] + idx[pos + 1:], side)
                rows.sample[j][key] = (sum(parts.values()), eq)
                rows.names[key] = f"{comp.name}[{', '.join(map(str, key[1]))}] ({side})"
            else:
                rows.link.append((f"{con.name} ({side})", parts, eq))
                rows.link_components.append(comp)
    return rows


def _bound_rows(var_keys, rows: _Rows, sp: _Splitter, shared_vars: list) -> None:
    """Variable bounds as rows: per sample for per-sample variables, linking for shared ones."""
    for var in shared_vars:
        for side, bound, sign in (("lb", var.lb, -1.0), ("ub", var.ub, 1.0)):
            if bound is not None:
                rows.link.append((f"{var.name} ({side})", {None: sign * (var - bound)}, False))
                rows.link_components.append(var.parent_component())
    for j, keys in var_keys.items():
        for key, var in keys.items():
            for side, bound, sign in (("lb", var.lb, -1.0), ("ub", var.ub, 1.0)):
                if bound is not None:
                    rkey = (key[0], key[1], f"bound_{side}")
                    rows.sample[j][rkey] = (sign * (var - bound), False)
                    rows.names[rkey] = f"{var.parent_component().name}[{', '.join(map(str, key[1]))}] ({side} bound)"


# ---------------------------------------------------------------------- the derivation
def _objective(model):
    objs = list(model.component_data_objects(pyo.Objective, active=True, descend_into=True))
    if len(objs) != 1:
        raise NotSeparableError(f"expected one active objective, found {len(objs)}")
    return objs[0].expr if objs[0].sense == pyo.minimize else -objs[0].expr


def _entities(exprs, sp: _Splitter, samples: list):
    """Shared VarData / ParamData and, per template sample, ``{key: data}`` of its own, in first-use order."""
    shared_v, shared_p = {}, {}
    own_v = {j: {} for j in samples}
    own_p = {j: {} for j in samples}
    for e in exprs:
        if e.__class__ in native_numeric_types or not hasattr(e, "is_expression_type"):
            continue
        for d in identify_variables(e, include_fixed=False):
            owner = sp.owner.get(id(d))
            (shared_v.setdefault(id(d), d) if owner is None else own_v[owner[1]].setdefault(owner[0], d))
        for d in identify_mutable_parameters(e):
            owner = sp.owner.get(id(d))
            (shared_p.setdefault(id(d), d) if owner is None else own_p[owner[1]].setdefault(owner[0], d))
    return list(shared_v.values()), list(shared_p.values()), own_v, own_p


class _Symbols(Translator):
    """The translator with every variable and parameter mapped to a given SX symbol."""

    def __init__(self, symbols: dict):
        super().__init__()
        self.symbols = symbols

    def _var(self, v):
        sym = self.symbols.get(id(v))
        if sym is None:
            if v.fixed:
                return float(v.value)
            raise NotSeparableError(f"variable {v.name} is not part of the problem's layout")
        return sym

    def _param(self, p):
        sym = self.symbols.get(id(p))
        return sym if sym is not None else float(pyo.value(p))

    def sx(self, expr):
        out = self.walk(expr) if expr is not None else 0.0
        return ca.SX(out) if isinstance(out, float) else out


def arrow_problem(model) -> ArrowProblem:
    """Derive the :class:`ArrowProblem` of a training model (a template, or a full model)."""
    samples = list(model.samples)
    first, others = samples[0], samples[1:]
    sp = _Splitter(model)
    objective = sp.split(_objective(model))
    rows = _collect_rows(model, sp, samples)
    exprs = [e for d in rows.sample.values() for e, _ in d.values()] + list(objective.values())
    exprs += [e for _, parts, _ in rows.link for e in parts.values()]
    shared_v, shared_p, own_v, own_p = _entities(exprs, sp, samples)
    _check_same_keys(own_v, "variables")
    _bound_rows(own_v, rows, sp, shared_v)
    _check_same_keys({j: rows.sample[j] for j in samples}, "rows")
    s, v = ca.SX.sym("s", len(shared_v)), ca.SX.sym("v", len(own_v[first]))
    ps = ca.SX.sym("ps", len(shared_p))
    pkeys = list(own_p[first])
    pv = ca.SX.sym("pv", len(pkeys))
    base = {id(d): s[k] for k, d in enumerate(shared_v)} | {id(d): ps[k] for k, d in enumerate(shared_p)}
    vkeys, rkeys = list(own_v[first]), list(rows.sample[first])

    def translate(j):
        syms = _Symbols(base | {id(own_v[j][key]): v[k] for k, key in enumerate(vkeys)}
                        | {id(own_p[j].get(key)): pv[k] for k, key in enumerate(pkeys) if key in own_p[j]})
        g = ca.vertcat(*[syms.sx(rows.sample[j][key][0]) for key in rkeys]) if rkeys else ca.SX(0, 1)
        a = ca.vertcat(*[syms.sx(parts.get(j)) for _, parts, _ in rows.link]) if rows.link else ca.SX(0, 1)
        return g, syms.sx(objective.get(j)), a, syms

    g, f, a, syms = translate(first)
    fs = syms.sx(objective.get(None))
    a0 = ca.vertcat(*[syms.sx(parts.get(None)) for _, parts, _ in rows.link]) if rows.link else ca.SX(0, 1)
    for j in others:
        _check_same_functions((s, v, ps, pv), (g, f, a), translate(j)[:3], j, first)
    tp = model.training_problem
    return ArrowProblem(
        model, int(tp.X.shape[0]), s, v, ps, pv, f, g, a, fs, a0,
        np.array([rows.sample[first][k][1] for k in rkeys], dtype=bool),
        np.array([eq for _, _, eq in rows.link], dtype=bool),
        shared_v, vkeys, shared_p, pkeys, [rows.names[k] for k in rkeys], [n for n, _, _ in rows.link],
        rows.link_components)


def _check_same_keys(per_sample: dict, what: str) -> None:
    keys = [set(d) for d in per_sample.values()]
    if any(k != keys[0] for k in keys[1:]):
        diff = set.symmetric_difference(*keys)
        raise NotSeparableError(f"the samples do not have the same {what}: {sorted(str(k[:2]) for k in diff)[:5]}")


def _check_same_functions(inputs, ref, other, j, first, draws: int = 3) -> None:
    """Sample ``j``'s parts must be sample ``first``'s functions (compared at random points)."""
    f0, f1 = ca.Function("ref", list(inputs), list(ref)), ca.Function("other", list(inputs), list(other))
    rng = np.random.default_rng(0)
    for _ in range(draws):
        args = [rng.uniform(0.1, 1.0, x.numel()) for x in inputs]
        for k, (u, w) in enumerate(zip(f0(*args), f1(*args))):
            u, w = u.full().ravel(), w.full().ravel()
            if not np.allclose(u, w, rtol=1e-9, atol=1e-12, equal_nan=True):
                where = ["rows", "objective", "linking rows"][k]
                raise NotSeparableError(
                    f"the {where} of sample {j} are not those of sample {first} with its own data: a term depends on the "
                    "sample through a number rather than a per-sample Param (declare per-sample data with "
                    "convexnn_pyomo.samples.sample_param), or a sum covers only some samples")
