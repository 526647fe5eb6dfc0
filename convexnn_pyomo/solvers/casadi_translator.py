"""Pyomo expressions to CasADi SX: the translator behind ``ipopt_casadi``.

:class:`Translator` walks Pyomo expressions into CasADi symbolic expressions, collecting the
model's unfixed Vars as decision variables and its mutable Params and fixed Vars as CasADi
*parameters* (so that a compiled model can be re-solved with new values).  Named Expressions are
translated once per translator; any other sub-expression reached along several paths of one
expression, once per walk (the SX graph shares it as the Pyomo one does).
"""

from __future__ import annotations

from typing import Any

from pyomo.core.expr import (
    AbsExpression,
    DivisionExpression,
    EqualityExpression,
    Expr_ifExpression,
    InequalityExpression,
    MaxExpression,
    MinExpression,
    NegationExpression,
    PowExpression,
    ProductExpression,
    RangedExpression,
    SumExpression,
    UnaryFunctionExpression,
)
from pyomo.core.expr.numvalue import native_numeric_types
from pyomo.environ import value

__all__ = ["Translator", "UnsupportedExpressionError", "casadi"]

try:  # CasADi is a dependency of the package; without it the plugin says what to install
    import casadi as ca
except ImportError:  # pragma: no cover - exercised only without casadi
    ca = None
casadi = ca

_UNARY = {
    "exp": lambda a: ca.exp(a),
    "log": lambda a: ca.log(a),
    "log10": lambda a: ca.log10(a),
    "sqrt": lambda a: ca.sqrt(a),
    "sin": lambda a: ca.sin(a),
    "cos": lambda a: ca.cos(a),
    "tan": lambda a: ca.tan(a),
    "asin": lambda a: ca.asin(a),
    "acos": lambda a: ca.acos(a),
    "atan": lambda a: ca.atan(a),
    "sinh": lambda a: ca.sinh(a),
    "cosh": lambda a: ca.cosh(a),
    "tanh": lambda a: ca.tanh(a),
    "asinh": lambda a: ca.asinh(a),
    "acosh": lambda a: ca.acosh(a),
    "atanh": lambda a: ca.atanh(a),
    "abs": lambda a: ca.fabs(a),
    "ceil": lambda a: ca.ceil(a),
    "floor": lambda a: ca.floor(a),
}


class UnsupportedExpressionError(TypeError):
    """A Pyomo expression type or function that has no CasADi counterpart here."""


class Translator:
    """Walks Pyomo expressions into CasADi SX, collecting variables and parameters."""

    def __init__(self):
        self.var_index: dict[int, int] = {}
        self.vars: list = []
        self.var_syms: list = []
        self.par_index: dict[int, int] = {}
        self.params: list = []  # mutable ParamData or fixed VarData
        self.par_syms: list = []
        self._memo: dict[int, Any] = {}
        self._shared: dict[int, tuple] | None = None  # one walk's translated sub-expressions (see walk)

    def _var(self, v):
        if v.fixed:
            return self._param(v)
        k = self.var_index.get(id(v))
        if k is None:
            k = self.var_index[id(v)] = len(self.vars)
            self.vars.append(v)
            self.var_syms.append(ca.SX.sym(f"x{k}"))
        return self.var_syms[k]

    def _param(self, p):
        k = self.par_index.get(id(p))
        if k is None:
            k = self.par_index[id(p)] = len(self.params)
            self.params.append(p)
            self.par_syms.append(ca.SX.sym(f"p{k}"))
        return self.par_syms[k]

    def walk(self, node):
        """``node`` as CasADi SX (or a float).  A sub-expression reached along several paths of one
        expression (one Pyomo node object, e.g. the nested maxima of a log-sum-exp's shift, each used
        twice by the next) is translated once per call, so the SX graph shares it as the Pyomo one
        does: walked as a tree, a 10-class softmax loss gave per-sample functions of 703,073
        instructions (the shift's 2^9 copies) and rounds 10x slower than compiled ones."""
        if self._shared is not None:
            return self._walk(node)
        self._shared = {}  # holds every node it keys: no id is reused while it lives
        try:
            return self._walk(node)
        finally:
            self._shared = None

    def _walk(self, node):
        if node.__class__ in native_numeric_types:
            return float(node)
        if not hasattr(node, "is_expression_type"):
            return float(value(node))
        if node.is_expression_type():
            if not node.is_named_expression_type():
                hit = self._shared.get(id(node))
                if hit is None or hit[0] is not node:
                    hit = self._shared[id(node)] = (node, self._walk_expr(node))
                return hit[1]
            # named Expressions are persistent model objects: translate each once.  (Temporary
            # expressions must not be memoised by id: Python reuses ids of freed objects.)
            key = id(node)
            hit = self._memo.get(key)
            if hit is None or hit[0] is not node:
                hit = self._memo[key] = (node, self._walk(node.expr))
            return hit[1]
        if node.is_variable_type():
            return self._var(node)
        if node.is_parameter_type():
            mutable = getattr(node.parent_component(), "mutable", False)
            return self._param(node) if mutable else float(value(node))
        return float(value(node))

    def _walk_expr(self, node):
        args = [self._walk(a) for a in node.args]
        if isinstance(node, SumExpression):
            const = sum(a for a in args if isinstance(a, float))
            syms = [a for a in args if not isinstance(a, float)]
            if not syms:
                return const
            out = syms[0] if len(syms) == 1 else ca.sum1(ca.vertcat(*syms))  # one call for long sums
            return out + const if const else out
        if isinstance(node, ProductExpression):
            return args[0] * args[1]
        if isinstance(node, DivisionExpression):
            return args[0] / args[1]
        if isinstance(node, PowExpression):
            base, exp = args
            return base**exp
        if isinstance(node, NegationExpression):
            return -args[0]
        if isinstance(node, AbsExpression):
            return ca.fabs(args[0])
        if isinstance(node, UnaryFunctionExpression):
            fn = _UNARY.get(node.getname())
            if fn is None:
                raise UnsupportedExpressionError(f"ipopt_casadi: unsupported function {node.getname()!r}")
            return fn(args[0])
        if isinstance(node, Expr_ifExpression):
            return ca.if_else(args[0], args[1], args[2])
        if isinstance(node, MaxExpression):
            out = args[0]
            for a in args[1:]:
                out = ca.fmax(out, a)
            return out
        if isinstance(node, MinExpression):
            out = args[0]
            for a in args[1:]:
                out = ca.fmin(out, a)
            return out
        if isinstance(node, InequalityExpression):
            return args[0] < args[1] if node.strict else args[0] <= args[1]
        if isinstance(node, EqualityExpression):
            return args[0] == args[1]
        if isinstance(node, RangedExpression):
            return ca.logic_and(args[0] <= args[1], args[1] <= args[2])
        raise UnsupportedExpressionError(
            f"ipopt_casadi cannot translate a {type(node).__name__} expression"
        )
