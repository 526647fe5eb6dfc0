"""Hard convex constraints for training: a small protocol and the class-wise misfit bounds (19)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Protocol, runtime_checkable

import numpy as np
import pyomo.environ as pyo
from pyomo.common.modeling import unique_component_name

from .model import get_training_problem, layer_blocks
from .network import Network, check_data

__all__ = ["HardConstraint", "ClasswiseMisfitBounds", "CallableConstraint", "as_hard_constraint"]


@runtime_checkable
class HardConstraint(Protocol):
    """A convex constraint added to the training model and checked on the real network.

    ``add_to(model)`` adds Pyomo constraints on the outputs ``z^L`` or the weights;
    ``violation(net, X, Y)`` returns how much the *real* network (numpy forward pass) violates it
    (``0`` when it holds).
    """

    def add_to(self, model) -> None: ...

    def violation(self, net: Network, X: np.ndarray, Y: np.ndarray) -> float: ...


class ClasswiseMisfitBounds:
    r"""Paper eq. (19): for every class ``j``, :math:`\sum_{i \in C_j} \|z^L_{*i} - y_i\|_1 \le \kappa_j`.

    ``kappa_j = kappa_factor * |C_j|`` unless ``kappa`` gives one value per class (a dict keyed by
    label value).  Classes are the distinct rows of ``Y`` (labels for one output).  The absolute
    values are modelled with one auxiliary variable per output and sample:
    ``t >= z - y``, ``t >= y - z``.
    """

    def __init__(self, kappa_factor: float = 0.5, kappa: dict | None = None):
        if not (np.isfinite(kappa_factor) and kappa_factor > 0):
            raise ValueError(f"kappa_factor must be positive, got {kappa_factor!r}")
        self.kappa_factor = float(kappa_factor)
        self.kappa = None if kappa is None else {float(k): float(v) for k, v in kappa.items()}

    def classes(self, Y: np.ndarray) -> dict[float, np.ndarray]:
        """Label value -> sample indices (one output column)."""
        Y = np.asarray(Y, dtype=float)
        y = Y[:, 0] if Y.ndim == 2 else Y
        if Y.ndim == 2 and Y.shape[1] != 1:
            raise ValueError("ClasswiseMisfitBounds needs a single output column (class labels)")
        labels = np.unique(y)
        return {float(c): np.flatnonzero(y == c) for c in labels}

    def kappas(self, Y: np.ndarray) -> dict[float, float]:
        classes = self.classes(Y)
        if self.kappa is not None:
            missing = set(classes) - set(self.kappa)
            if missing:
                raise ValueError(f"kappa has no value for class(es) {sorted(missing)}")
            empty = set(self.kappa) - set(classes)
            if empty:
                raise ValueError(
                    f"class(es) {sorted(empty)} of kappa have no samples in the training data; "
                    "a class-wise bound needs at least one sample of its class"
                )
            if any(v < 0 for v in self.kappa.values()):
                raise ValueError(f"kappa values must be >= 0, got {self.kappa}")
            return {c: self.kappa[c] for c in classes}
        return {c: self.kappa_factor * len(idx) for c, idx in classes.items()}

    @contextmanager
    def scaled_budget(self, model):
        r"""Within the block, (19) reads :math:`\sum_{C_j} |z - y| \le f |C_j|` with ``f`` a variable
        and the objective is ``min f``; yields ``f``.  Everything is restored on exit.  Used to tell
        a user the smallest ``kappa_factor`` the relaxation admits when (19) makes it infeasible."""
        blk = self.block
        objs = [o for o in model.component_data_objects(pyo.Objective, active=True)]
        for o in objs:
            o.deactivate()
        blk.bound.deactivate()
        classes = self.classes(get_training_problem(model).Y)
        out = layer_blocks(model)[-1]
        blk.factor = pyo.Var(domain=pyo.NonNegativeReals)
        blk.scaled_bound = pyo.Constraint(
            blk.classes, rule=lambda b, c: sum(b.t[i, j] for i in out.nodes for j in classes[c]) <= b.factor * len(classes[c])
        )
        blk.min_factor = pyo.Objective(expr=blk.factor)
        try:
            yield blk.factor
        finally:
            blk.del_component(blk.min_factor)
            blk.del_component(blk.scaled_bound)
            blk.del_component(blk.factor)
            blk.bound.activate()
            for o in objs:
                o.activate()

    def add_to(self, model) -> None:
        tp = get_training_problem(model)
        out = layer_blocks(model)[-1]
        classes = self.classes(tp.Y)
        kappas = self.kappas(tp.Y)
        blk = pyo.Block(doc="class-wise misfit bounds (19)")
        model.add_component(unique_component_name(model, "classwise_misfit"), blk)
        blk.classes = pyo.Set(initialize=sorted(classes), ordered=True)
        blk.kappa = pyo.Param(blk.classes, mutable=True, initialize=kappas)
        blk.t = pyo.Var(out.nodes, model.samples, domain=pyo.NonNegativeReals, doc="t >= |z^L - y|")
        blk.abs_pos = pyo.Constraint(out.nodes, model.samples, rule=lambda b, i, j: b.t[i, j] >= out.z[i, j] - model.y[i, j])
        blk.abs_neg = pyo.Constraint(out.nodes, model.samples, rule=lambda b, i, j: b.t[i, j] >= model.y[i, j] - out.z[i, j])
        blk.bound = pyo.Constraint(
            blk.classes,
            rule=lambda b, c: sum(b.t[i, j] for i in out.nodes for j in classes[c]) <= b.kappa[c],
            doc="(19)",
        )
        self.block = blk

    def misfits(self, net: Network, X, Y) -> dict[float, float]:
        """``sum_{i in C_j} |f_i - y_i|_1`` per class for the real network."""
        X, Y = check_data(X, Y, net.sizes[0], net.sizes[-1])
        r = np.abs(net.predict(X) - Y).sum(axis=1)
        return {c: float(r[idx].sum()) for c, idx in self.classes(Y).items()}

    def violation(self, net: Network, X, Y) -> float:
        kappas = self.kappas(Y)
        return max(0.0, *(v - kappas[c] for c, v in self.misfits(net, X, Y).items()))

    def __repr__(self):
        return f"ClasswiseMisfitBounds(kappa_factor={self.kappa_factor}, kappa={self.kappa})"


class CallableConstraint:
    """Wraps a user function ``f(model)`` that adds constraints.

    Its violation on the real network is measured on the constraints the function added, at the
    lifted point of the network's forward pass; constraints that involve variables other than the
    network's own (``w, b, z, x``) are skipped there, so give such constraints a ``violation``
    method of your own (see :class:`HardConstraint`).
    """

    def __init__(self, fn: Callable):
        self.fn = fn
        self.constraints: list = []

    def add_to(self, model) -> None:
        before = {id(c) for c in model.component_data_objects(pyo.Constraint, active=True)}
        self.fn(model)
        self.constraints = [c for c in model.component_data_objects(pyo.Constraint, active=True) if id(c) not in before]
        self.model = model

    def violation(self, net: Network, X, Y) -> float:
        from pyomo.core.expr.visitor import identify_variables

        from .model import set_values_from_network

        model = self.model
        own = set()
        for blk in layer_blocks(model):
            for comp in (blk.w, blk.b, blk.z) + ((blk.x,) if not blk.is_output else ()):
                own.update(id(v) for v in comp.values())
        saved = {id(v): (v, v.value) for v in model.component_data_objects(pyo.Var)}
        try:
            set_values_from_network(model, net)
            worst = 0.0
            for c in self.constraints:
                if any(id(v) not in own for v in identify_variables(c.body)):
                    continue
                body = pyo.value(c.body)
                if c.upper is not None:
                    worst = max(worst, body - pyo.value(c.upper))
                if c.lower is not None:
                    worst = max(worst, pyo.value(c.lower) - body)
            return worst
        finally:
            for v, val in saved.values():
                v.set_value(val, skip_validation=True)


def as_hard_constraint(c) -> HardConstraint:
    if isinstance(c, HardConstraint):
        return c
    if callable(c):
        return CallableConstraint(c)
    raise TypeError(f"a hard constraint must be a HardConstraint or a callable(model), got {type(c).__name__}")


def as_hard_constraints(cs) -> list[HardConstraint]:
    if cs is None:
        return []
    if isinstance(cs, Sequence) and not isinstance(cs, str):
        return [as_hard_constraint(c) for c in cs]
    return [as_hard_constraint(cs)]
