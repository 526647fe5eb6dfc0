r"""Hard convex constraints for training: the :class:`HardConstraint` protocol and a library.

Each constraint has ``add_to(model)`` (convex Pyomo constraints on the outputs
:math:`z^L` = ``model.layer[L].z`` or on the weights ``model.layer[l].w``) and
``violation(net, X, Y)`` (numpy, the *real* network; ``0`` when it holds).  The library's classes
also state their maths once more as a residual vector, ``residuals(outputs, weights, X, Y)``
(:class:`ResidualConstraint`): :math:`g \le 0` (or :math:`h = 0` for an equality), written with
array operations that numpy arrays and PyTorch tensors share, so that the gradient baselines
(:mod:`convexnn_pyomo.baselines`: penalty, projection, Cooper's Lagrangian) optimise exactly what
``violation`` measures.

On the outputs: :class:`ClasswiseMisfitBounds` (paper eq. 19), :class:`BalancedMisfitBounds`,
:class:`GroupLossBounds`, :class:`DemographicParity`, :class:`OutputBounds`,
:class:`LinearOutputEquality`.  On the weights (exact for the real network, for every input):
:class:`MonotoneInputs`, :class:`WeightNormBounds` (and ``LinearOutputEquality(every_input=True)``).
A constraint on :math:`z^L` holds for the real network when the round that produced it is exact;
Algorithm 1 measures ``violation`` on the real network and accepts a round only if it does not grow.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Protocol, runtime_checkable

import numpy as np
import pyomo.environ as pyo
from pyomo.common.modeling import unique_component_name

from .model import get_training_problem, layer_blocks
from .network import Network, check_data
from .samples import sample_param

__all__ = [
    "BalancedMisfitBounds",
    "CallableConstraint",
    "ClasswiseMisfitBounds",
    "DecisionParity",
    "DemographicParity",
    "GroupLossBounds",
    "HardConstraint",
    "LinearOutputEquality",
    "MonotoneInputs",
    "OutputBounds",
    "ResidualConstraint",
    "WeightNormBounds",
    "as_hard_constraint",
    "lipschitz_bound",
]


@runtime_checkable
class HardConstraint(Protocol):
    """A convex constraint added to the training model and checked on the real network.

    ``add_to(model)`` adds Pyomo constraints on the outputs ``z^L`` or the weights;
    ``violation(net, X, Y)`` returns how much the *real* network (numpy forward pass) violates it
    (``0`` when it holds).
    """

    def add_to(self, model) -> None: ...

    def violation(self, net: Network, X: np.ndarray, Y: np.ndarray) -> float: ...


class ResidualConstraint:
    r"""A hard constraint whose maths is one residual vector of the outputs and weights.

    ``residuals(outputs, weights, X, Y)`` returns :math:`g` with :math:`g \le 0` when the
    constraint holds (``equality = False``) or :math:`h` with :math:`h = 0` (``equality = True``);
    ``outputs`` is :math:`f(X)` with shape ``(m, n_L)`` and ``weights`` lists :math:`w^1, \dots, w^L`.
    The same code runs on numpy arrays (``violation``) and on PyTorch tensors (the gradient
    baselines).  ``violation`` is :math:`\max(0, \max_k g_k)` (or :math:`\max_k |h_k|`) on the real
    network, in the units of the residuals.
    """

    equality: bool = False
    #: Constraint components of the block that define auxiliary variables (epigraph rows such as
    #: ``t >= |z - y|``), not bounds: ``convexnn.elastic`` keeps them hard (an elastic epigraph row
    #: would let the auxiliary variable, and so the bound, be met for free)
    auxiliary: tuple[str, ...] = ()
    #: rows on the weights alone: every round's solution meets them exactly (no relaxation gap
    #: lies between a round's weights and the network's), so they need no feasibility phase
    weights_only: bool = False
    #: the structured round can split it over MPI ranks (``shards > 1``): its rows are per-sample or
    #: sums over samples with constants of the whole data set, and ``violation(..., shards)``
    #: reduces over the ranks
    splits_over_ranks: bool = False
    #: the round's rows relax the constraint (every network that meets it lifts to a point that meets
    #: them): only then can an infeasible round prove the training problem infeasible
    relaxes: bool = True
    #: its rows are convex in layer L's variables alone (the outputs, or w^L and b^L): with the hidden
    #: layers fixed, the output layer's problem under it is exact and convex
    #: (:mod:`convexnn_pyomo.algorithms.refit`: a round's step refitted to meet it)
    on_output_layer: bool = False
    #: the inputs its own data (group labels, per-point bounds and right-hand sides) are computed
    #: from, as a function of the training rows ``X``; None: ``X`` itself (:meth:`on_inputs`)
    input_map: Callable | None = None

    def on_inputs(self, input_map: Callable) -> ResidualConstraint:
        """A shallow copy whose group labels, per-point bounds and right-hand sides are computed from
        ``input_map(X)``: the estimators train on min-max scaled rows and map them back to the raw
        features, so a constraint written on the user's features (``groups=lambda X: X[:, 0] > 40``)
        keeps its meaning.  The rows on the outputs and weights are unchanged."""
        out = copy.copy(self)
        inner = self.input_map
        out.input_map = input_map if inner is None else (lambda X: inner(input_map(X)))
        return out

    def on_outputs(self, shift: np.ndarray, scale: np.ndarray) -> ResidualConstraint | None:
        r"""The constraint on outputs standardised as :math:`(f - t)/\rho` (``shift`` :math:`t`,
        ``scale`` :math:`\rho > 0`, one per output) that means what this one means on the raw
        outputs :math:`f`, as a copy; None when it has no such form here (the regressor then trains on
        raw targets)."""
        return None

    def inputs(self, X):
        """The rows its own data are computed from: ``input_map(X)``, or ``X`` without a map.  A
        subclass computes its group labels, per-point bounds and right-hand sides from ``inputs(X)``,
        so that the estimators' scaling keeps their meaning."""
        return X if self.input_map is None else self.input_map(X)

    def residuals(self, outputs, weights, X: np.ndarray, Y: np.ndarray):
        raise NotImplementedError

    def violation(self, net: Network, X, Y, shards=None) -> float:
        """The real network's violation; with ``shards`` (``X`` one rank's rows, a constraint whose
        rows are per sample) the largest over every rank."""
        X, Y = check_data(X, Y, net.sizes[0], net.sizes[-1])
        self._check_network(net.activations)
        g = np.asarray(self.residuals(net.predict(X), net.weights, X, Y), dtype=float).ravel()
        v = 0.0 if g.size == 0 else max(0.0, float(np.max(np.abs(g)) if self.equality else np.max(g)))
        return v if shards is None else shards.max(v)

    def _check_network(self, activations) -> None:
        """Raise ``ValueError`` when the constraint means nothing for this network (default: never)."""

    def _block(self, model, name: str, doc: str) -> pyo.Block:
        """A new Block on ``model`` holding this constraint (also kept as ``self.block``)."""
        blk = pyo.Block(doc=doc)
        model.add_component(unique_component_name(model, name), blk)
        self.block = blk
        return blk


class ClasswiseMisfitBounds(ResidualConstraint):
    r"""Paper eq. (19): for every class ``j``, :math:`\sum_{i \in C_j} \|z^L_{*i} - y_i\|_1 \le \kappa_j`.

    ``kappa_j = kappa_factor * |C_j|`` unless ``kappa`` gives one value per class (a dict keyed by
    class).  Classes are the distinct rows of ``Y``, keyed by the label value for one output, by
    the class index (``argmax``, as a float) for one-hot rows, and by the row as a tuple of floats
    otherwise.  The absolute values are modelled with one auxiliary variable per output and sample:
    ``t >= z - y``, ``t >= y - z``.
    """

    on_output_layer = True

    auxiliary = ("abs_pos", "abs_neg")
    #: the rows split over MPI ranks exactly: a sum over samples per class, bounded by a constant of
    #: the whole data set (``shards``: classes and class sizes over every rank)
    splits_over_ranks = True

    def __init__(self, kappa_factor: float = 0.5, kappa: dict | None = None):
        if not (np.isfinite(kappa_factor) and kappa_factor > 0):
            raise ValueError(f"kappa_factor must be positive, got {kappa_factor!r}")
        self.kappa_factor = float(kappa_factor)
        self.kappa = None if kappa is None else {_class_key(k): float(v) for k, v in kappa.items()}

    def classes(self, Y: np.ndarray, shards=None) -> dict:
        """Class key -> sample indices (keys: label values, one-hot class indices, or row tuples);
        with ``shards`` (``Y`` one MPI rank's rows) the classes of every rank, in the same order on
        all of them (a class without a sample here has no indices)."""
        Y = np.asarray(Y, dtype=float)
        Y = Y[:, None] if Y.ndim == 1 else Y
        one_hot = Y.shape[1] > 1 and np.all((Y == 0) | (Y == 1)) and np.all(Y.sum(axis=1) == 1)
        if shards is not None and shards.sharded:
            one_hot = all(shards.comm.allgather(bool(one_hot)))
        rows = Y.argmax(axis=1).astype(float)[:, None] if one_hot else Y
        labels, inverse = np.unique(rows, axis=0, return_inverse=True)
        inverse = inverse.ravel()
        local = {_class_key(label): np.flatnonzero(inverse == k) for k, label in enumerate(labels)}
        return _union_over_ranks(local, shards)

    def class_sizes(self, Y: np.ndarray, shards=None) -> dict:
        """Class key -> number of samples (over every rank with ``shards``)."""
        classes = self.classes(Y, shards)
        return dict(zip(classes, _sizes(classes, shards)))

    def kappas(self, Y: np.ndarray, shards=None) -> dict:
        classes = self.class_sizes(Y, shards)
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
        return {c: self.kappa_factor * n for c, n in classes.items()}

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
        tp = get_training_problem(model)
        sizes = list(self.class_sizes(tp.Y, tp.shards).values())
        out = layer_blocks(model)[-1]
        blk.factor = pyo.Var(domain=pyo.NonNegativeReals)
        blk.scaled_bound = pyo.Constraint(
            blk.classes, rule=lambda b, c: _member_sum(b, c, out, model) <= b.factor * sizes[c]
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
        classes = self.classes(tp.Y, tp.shards)
        kappas = self.kappas(tp.Y, tp.shards)
        keys, members = list(classes), list(classes.values())
        blk = self._block(model, "classwise_misfit", "class-wise misfit bounds (19)")
        blk.classes = pyo.Set(initialize=range(len(keys)), ordered=True, doc="position of each class in self.classes(Y)")
        blk.kappa = pyo.Param(blk.classes, mutable=True, initialize={c: kappas[k] for c, k in enumerate(keys)})
        sample_param(blk, "member", [blk.classes], _membership(members, tp.m), doc="1 when sample j is in class c")
        blk.t = pyo.Var(out.nodes, model.samples, doc="t >= |z^L - y| (so t >= 0)",
                        initialize=lambda b, i, j: abs(pyo.value(out.z[i, j]) - pyo.value(model.y[i, j])))
        blk.abs_pos = pyo.Constraint(out.nodes, model.samples, rule=lambda b, i, j: b.t[i, j] >= out.z[i, j] - model.y[i, j])
        blk.abs_neg = pyo.Constraint(out.nodes, model.samples, rule=lambda b, i, j: b.t[i, j] >= model.y[i, j] - out.z[i, j])
        blk.bound = pyo.Constraint(blk.classes, rule=lambda b, c: _member_sum(b, c, out, model) <= b.kappa[c], doc="(19)")

    def misfits(self, net: Network, X, Y, shards=None) -> dict[float, float]:
        """``sum_{i in C_j} |f_i - y_i|_1`` per class for the real network (over every rank with
        ``shards``)."""
        X, Y = check_data(X, Y, net.sizes[0], net.sizes[-1])
        r = np.abs(net.predict(X) - Y).sum(axis=1)
        classes = self.classes(Y, shards)
        return dict(zip(classes, _member_sums(r, classes, shards)))

    def violation(self, net: Network, X, Y, shards=None) -> float:
        kappas = self.kappas(Y, shards)
        return max(0.0, *(v - kappas[c] for c, v in self.misfits(net, X, Y, shards).items()))

    def residuals(self, outputs, weights, X, Y):
        r""":math:`\sum_{i \in C_j} \|f(x_i) - y_i\|_1 - \kappa_j`, one per class."""
        kappas = self.kappas(Y)
        target = _like(np.asarray(Y, dtype=float).reshape(len(Y), -1), outputs)
        r = abs(outputs - target).sum(1)
        return _cat([r[idx].sum().reshape(1) - kappas[c] for c, idx in self.classes(Y).items()], r)

    def __repr__(self):
        return f"ClasswiseMisfitBounds(kappa_factor={self.kappa_factor}, kappa={self.kappa})"


def check_splits_over_ranks(constraints: list, shards) -> None:
    """Raise ``ValueError`` naming the constraints that cannot be split over the MPI ranks of
    ``shards`` (those without ``splits_over_ranks``); nothing in one process."""
    refused = sorted({type(c).__name__ for c in constraints if not getattr(c, "splits_over_ranks", False)})
    if shards is not None and shards.sharded and refused:
        raise ValueError(f"{', '.join(refused)} with shards > 1 on the structured round is not supported: its "
                         "constants (class sizes, bounds) would come from each rank's own rows and the real network's "
                         "violation needs every sample (every built-in constraint of convexnn_pyomo.constraints splits "
                         "over ranks; a CallableConstraint's Pyomo rows cannot be told apart); train in one process "
                         "(shards=1): Progressive Hedging (round_solver='sharded') refuses it too")


def relax_all(constraints: list) -> bool:
    """Whether every constraint's rows relax it (``relaxes``; callables and protocol constraints
    without the flag are taken to): only then is a round's infeasibility evidence."""
    return all(getattr(c, "relaxes", True) for c in constraints)


def _membership(members: list, m: int) -> np.ndarray:
    """``(len(members), m)`` 0/1 array: row ``c`` marks the samples of ``members[c]``."""
    out = np.zeros((len(members), m))
    for c, idx in enumerate(members):
        out[c, idx] = 1.0
    return out


def _member_sum(blk, c: int, out, model):
    r""":math:`\sum_j \text{member}_{cj} \sum_i t_{ij}`: a sum over the samples of one class, written over
    every sample the model holds (so that a template derives it per sample)."""
    return sum(blk.member[c, j] * blk.t[i, j] for i in out.nodes for j in model.samples)


def _class_key(label):
    """A class's dict key: a float for a label value, a tuple of floats for a row of several outputs."""
    values = np.atleast_1d(np.asarray(label, dtype=float)).ravel()
    return float(values[0]) if values.size == 1 else tuple(float(v) for v in values)


# -- array helpers shared by numpy and PyTorch --------------------------------------------------


def _is_torch(a) -> bool:
    return type(a).__module__.split(".")[0] == "torch"


def _like(values, ref):
    """``values`` (numpy) as an array of ``ref``'s kind: a tensor of its dtype when ``ref`` is one."""
    if _is_torch(ref):
        import torch

        return torch.as_tensor(np.asarray(values), dtype=ref.dtype)
    return np.asarray(values, dtype=float)


def _cat(parts: list, ref):
    """The parts, flattened and concatenated, in ``ref``'s kind (an empty vector when none)."""
    parts = [p.reshape(-1) for p in parts]
    if _is_torch(ref):
        import torch

        return torch.cat(parts) if parts else torch.zeros(0, dtype=ref.dtype)
    return np.concatenate(parts) if parts else np.zeros(0)


def _members(labels: np.ndarray, shards=None) -> dict:
    """Label value -> sample indices, in sorted label order; with ``shards`` (one MPI rank's rows)
    the labels of every rank, in the same order on all of them (no indices here for a label this
    rank has no sample of)."""
    labels = np.asarray(labels, dtype=float).ravel()
    return _union_over_ranks({float(v): np.flatnonzero(labels == v) for v in np.unique(labels)}, shards)


def _union_over_ranks(local: dict, shards=None) -> dict:
    """``local`` (key -> this rank's sample indices) with the keys of every rank, sorted, the same on
    all of them (no indices for a key this rank has no sample of); ``local`` itself in one process."""
    if shards is None or not shards.sharded:
        return local
    keys = sorted({k for part in shards.comm.allgather(list(local)) for k in part})
    return {k: local.get(k, np.zeros(0, dtype=int)) for k in keys}


def _member_sums(values: np.ndarray, members: dict, shards=None) -> list[float]:
    """``sum(values[idx])`` for every entry of ``members`` (summed over every rank with ``shards``)."""
    sums = np.array([values[idx].sum() for idx in members.values()], dtype=float)
    return [float(v) for v in (shards.sum(sums) if shards is not None else sums)]


def _sizes(members: dict, shards=None) -> list[int]:
    """The number of samples of every entry of ``members`` (over every rank with ``shards``)."""
    counts = np.array([len(idx) for idx in members.values()], dtype=float)
    return [int(n) for n in (shards.sum(counts) if shards is not None else counts)]


def _group_labels(groups, X: np.ndarray) -> np.ndarray:
    """Group label of every row of ``X``: ``groups`` is a feature column index or a callable ``X -> labels``."""
    if callable(groups):
        labels = np.asarray(groups(X), dtype=float).ravel()
    elif isinstance(groups, (int, np.integer)) and not isinstance(groups, bool):
        if not 0 <= groups < X.shape[1]:
            raise ValueError(f"groups must be a feature column index in [0, {X.shape[1]}) or a callable(X) -> labels, "
                             f"got column {int(groups)}")
        labels = X[:, int(groups)]
    elif isinstance(groups, (np.ndarray, list, tuple)) or hasattr(groups, "__array__"):
        raise ValueError(f"groups must be a feature column index in [0, {X.shape[1]}) or a callable(X) -> labels, "
                         f"got an array of shape {np.shape(groups)}: the constraint is evaluated on any rows (a "
                         "shard, a test set), so give the attribute as a column of X or a callable "
                         "(e.g. lambda X: X[:, j] > 0)")
    else:
        raise ValueError(f"groups must be a feature column index in [0, {X.shape[1]}) or a callable(X) -> labels, got {groups!r}")
    if labels.shape != (X.shape[0],):
        raise ValueError(f"groups(X) must give one label per sample ({X.shape[0]}), got shape {labels.shape}")
    return labels


def _standardised(spec, shift: np.ndarray, scale: np.ndarray):
    """A bound given per output (a number, one per output, or a callable ``X -> array``) in the
    units of ``(f - shift) / scale``; None stays None."""
    if spec is None:
        return None
    if callable(spec):
        return lambda X: (_per_output(spec(X)) - shift) / scale
    return (np.asarray(spec, dtype=float) - shift) / scale


def _per_output(values) -> np.ndarray:
    """A callable's per-point values as ``(m, columns)``: ``(m,)`` is one value per point for every
    column (:func:`_per_point`'s rule, also before a standardised bound subtracts its shift)."""
    v = np.asarray(values, dtype=float)
    return v[:, None] if v.ndim == 1 else v


def _output_of(values, output: int) -> float:
    values = np.atleast_1d(np.asarray(values, dtype=float))
    if not 0 <= output < values.size:
        raise ValueError(f"output {output} does not exist: the network has {values.size} outputs")
    return float(values[output])


def _positive(value, what: str) -> float:
    value = float(value)
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"{what} must be a finite number >= 0, got {value!r}")
    return value


#: per activation name: Lipschitz constant sup |h'| (every one listed is non-decreasing)
ACTIVATION_LIPSCHITZ = {"identity": 1.0, "linear": 1.0, "sigmoid": 0.25, "tanh": 1.0, "softplus": 1.0, "relu": 1.0}


def _lipschitz_of(act) -> float:
    """sup |h'| of a known monotone activation; ``ValueError`` for others."""
    if act.name not in ACTIVATION_LIPSCHITZ:
        raise ValueError(
            f"activation {act.name!r} has no known Lipschitz constant / monotonicity here; "
            f"known: {', '.join(sorted(ACTIVATION_LIPSCHITZ))}"
        )
    return ACTIVATION_LIPSCHITZ[act.name]


def lipschitz_bound(net: Network) -> float:
    r"""Upper bound on the network's Lipschitz constant in the 2-norms:
    :math:`\prod_l L_{h^l} \|w^l\|_2` (spectral norms, :math:`L_h = \sup |h'|`)."""
    net._require_parameters()
    return float(np.prod([_lipschitz_of(net.activation(l)) * np.linalg.norm(w, 2) for l, w in enumerate(net.weights, 1)]))


# -- constraints on the outputs z^L -----------------------------------------------------------


class BalancedMisfitBounds(ResidualConstraint):
    r"""Balanced class-wise bounds: the *mean* hinge misfit of every class is at most a common ``t``.

    Binary labels :math:`a < b` (one output), threshold :math:`\theta = (a + b)/2`, half gap
    :math:`\delta = (b - a)/2`, sign :math:`s_j = +1` for label :math:`b`, :math:`-1` for :math:`a`:

    .. math::
        \frac{1}{|C|} \sum_{j \in C} \max\Big(0,\ 1 - s_j \frac{z^L_j - \theta}{\delta}\Big) \le t
        \qquad \text{for each class } C.

    The hinge is at least 1 on a misclassified sample (:math:`s_j (z_j - \theta) \le 0`), so the
    constraint guarantees a training error of at most ``t`` in *every* class (a balanced training
    error :math:`\le t`), which (19) with :math:`\kappa_j = f |C_j|` does not: there outputs at the
    threshold meet :math:`f = 0.5`.  Outputs beyond their label are not penalised (one-sided).
    Modelled with one variable :math:`h_j \ge 0`, :math:`h_j \ge 1 - s_j (z_j - \theta)/\delta` per sample.
    """

    on_output_layer = True

    auxiliary = ("hinge",)
    #: a mean over the samples of each class bounded by a constant: the labels and the class sizes
    #: are those of every rank (``shards``), the hinge rows are per sample
    splits_over_ranks = True

    def __init__(self, bound: float = 0.5, labels: tuple[float, float] | None = None):
        self.bound = _positive(bound, "bound")
        self.labels = None if labels is None else tuple(sorted(float(v) for v in labels))
        if self.labels is not None and (len(self.labels) != 2 or self.labels[0] == self.labels[1]):
            raise ValueError(f"labels must be two different values, got {labels!r}")

    def _labels(self, Y, shards=None) -> tuple[float, float]:
        Y = np.asarray(Y, dtype=float)
        if Y.ndim == 2 and Y.shape[1] != 1:
            raise ValueError("BalancedMisfitBounds needs one output column (binary labels)")
        values = tuple(float(v) for v in np.unique(Y))
        if shards is not None and shards.sharded:  # a rank may hold one label only
            values = tuple(sorted({v for part in shards.comm.allgather(values) for v in part}))
        labels = self.labels or values
        if len(labels) != 2 or not set(values) <= set(labels):
            raise ValueError(f"BalancedMisfitBounds needs binary labels, got {values[:10]}")
        return labels

    def signs(self, Y, shards=None) -> tuple[np.ndarray, float, float]:
        """``(s, theta, delta)``: +1/-1 per sample, the threshold and the half gap (the labels of
        every rank with ``shards``)."""
        a, b = self._labels(Y, shards)
        y = np.asarray(Y, dtype=float).ravel()
        return np.where(y == b, 1.0, -1.0), (a + b) / 2.0, (b - a) / 2.0

    def residuals(self, outputs, weights, X, Y):
        s, theta, delta = self.signs(Y)
        hinge = self._hinge(outputs, s, theta, delta)
        return _cat([hinge[idx].mean().reshape(1) - self.bound for idx in _members(s).values()], outputs)

    @staticmethod
    def _hinge(outputs, s, theta: float, delta: float):
        r""":math:`\max(0, 1 - s_j (z_j - \theta)/\delta)` per sample (numpy or PyTorch outputs)."""
        return (1.0 - _like(s, outputs) * (outputs[:, 0] - theta) / delta).clip(min=0.0)

    def violation(self, net: Network, X, Y, shards=None) -> float:
        """The largest class's mean hinge above the bound (classes and sums over every rank with ``shards``)."""
        if shards is None:
            return super().violation(net, X, Y)
        X, Y = check_data(X, Y, net.sizes[0], net.sizes[-1])
        s, theta, delta = self.signs(Y, shards)
        hinge = self._hinge(net.predict(X), s, theta, delta)
        classes = _members(s, shards)
        means = [v / n for v, n in zip(_member_sums(hinge, classes, shards), _sizes(classes, shards))]
        return max(0.0, *(v - self.bound for v in means))

    def add_to(self, model) -> None:
        tp, out = get_training_problem(model), layer_blocks(model)[-1]
        s, theta, delta = self.signs(tp.Y, tp.shards)
        classes = _members(s, tp.shards)
        members, sizes = list(classes.values()), _sizes(classes, tp.shards)
        blk = self._block(model, "balanced_misfit", "balanced class-wise hinge bounds")
        blk.classes = pyo.Set(initialize=range(len(members)), ordered=True)
        blk.t = pyo.Param(mutable=True, initialize=self.bound, doc="common bound t")
        sample_param(blk, "sign", [], s, doc="+1 for the upper label, -1 for the lower")
        sample_param(blk, "member", [blk.classes], _membership(members, tp.m), doc="1 when sample j is in class c")

        def margin(j):
            return 1.0 - blk.sign[j] * (out.z[0, j] - theta) / delta

        blk.h = pyo.Var(model.samples, domain=pyo.NonNegativeReals, doc="hinge h >= 1 - s (z - theta) / delta",
                        initialize=lambda b, j: max(0.0, pyo.value(margin(j))))
        blk.hinge = pyo.Constraint(model.samples, rule=lambda b, j: b.h[j] >= margin(j))
        blk.bound = pyo.Constraint(blk.classes, rule=lambda b, c: sum(
            b.member[c, j] * b.h[j] for j in model.samples) <= b.t * sizes[c])

    def __repr__(self):
        return f"BalancedMisfitBounds(bound={self.bound}, labels={self.labels})"


class GroupLossBounds(ResidualConstraint):
    r"""Fairness across groups of samples: the mean squared loss of every group is bounded,

    .. math:: \frac{1}{|G_g|} \sum_{j \in G_g} \|z^L_{*j} - y_j\|_2^2 \le \kappa_g \quad \text{for every group } g,

    a convex quadratic constraint in :math:`z^L`.  ``groups`` is a feature column (its values are
    the groups, e.g. a 0/1 attribute) or a callable ``X -> labels``; ``kappa`` one bound for every
    group or a dict ``group -> bound``.  Groups with no sample in the data are skipped.
    """

    on_output_layer = True

    #: a sum over samples per group bounded by a constant of the whole data set: the groups and
    #: their sizes are those of every rank
    splits_over_ranks = True

    def __init__(self, groups, kappa: float | dict):
        self.groups = groups
        if isinstance(kappa, dict):
            self.kappa = {float(k): _positive(v, "kappa") for k, v in kappa.items()}
        else:
            self.kappa = _positive(kappa, "kappa")

    def kappa_of(self, g: float) -> float:
        if isinstance(self.kappa, dict):
            if g not in self.kappa:
                raise ValueError(f"kappa has no value for group {g:g}; groups in the data need one each")
            return self.kappa[g]
        return self.kappa

    def residuals(self, outputs, weights, X, Y):
        r = ((outputs - _like(Y, outputs)) ** 2).sum(1)
        groups = _members(_group_labels(self.groups, self.inputs(X)))
        return _cat([r[idx].mean().reshape(1) - self.kappa_of(g) for g, idx in groups.items()], outputs)

    def group_losses(self, net: Network, X, Y, shards=None) -> dict[float, float]:
        """Every group's mean squared loss for the real network (over every rank with ``shards``)."""
        X, Y = check_data(X, Y, net.sizes[0], net.sizes[-1])
        r = ((net.predict(X) - Y) ** 2).sum(axis=1)
        groups = _members(_group_labels(self.groups, self.inputs(X)), shards)
        return {g: v / n for g, v, n in zip(groups, _member_sums(r, groups, shards), _sizes(groups, shards))}

    def violation(self, net: Network, X, Y, shards=None) -> float:
        return max(0.0, *(v - self.kappa_of(g) for g, v in self.group_losses(net, X, Y, shards).items()))

    def add_to(self, model) -> None:
        tp, out = get_training_problem(model), layer_blocks(model)[-1]
        groups = _members(_group_labels(self.groups, self.inputs(tp.X)), tp.shards)
        keys, members, sizes = list(groups), list(groups.values()), _sizes(groups, tp.shards)
        blk = self._block(model, "group_loss", "group loss bounds")
        blk.groups = pyo.Set(initialize=range(len(keys)), ordered=True, doc="position of each group")
        blk.kappa = pyo.Param(blk.groups, mutable=True, initialize={c: self.kappa_of(g) for c, g in enumerate(keys)})
        sample_param(blk, "member", [blk.groups], _membership(members, tp.m), doc="1 when sample j is in group g")
        blk.bound = pyo.Constraint(blk.groups, rule=lambda b, c: sum(b.member[c, j] * sum(
            (out.z[i, j] - model.y[i, j]) ** 2 for i in out.nodes) for j in model.samples) <= b.kappa[c] * sizes[c])

    def on_outputs(self, shift, scale):
        r"""The groups' squared losses scale by :math:`\rho^2` when every output has the same
        :math:`\rho` (one output); otherwise the loss is a weighted one: None."""
        scale = np.atleast_1d(np.asarray(scale, dtype=float))
        if not np.allclose(scale, scale[0], rtol=1e-12, atol=0.0):
            return None
        out = copy.copy(self)
        rho2 = float(scale[0]) ** 2
        out.kappa = {g: v / rho2 for g, v in self.kappa.items()} if isinstance(self.kappa, dict) else self.kappa / rho2
        return out

    def __repr__(self):
        return f"GroupLossBounds(groups={self.groups!r}, kappa={self.kappa})"


class DemographicParity(ResidualConstraint):
    r"""Demographic parity of one output across groups, linear in :math:`z^L`:

    .. math:: \Big| \frac{1}{|G_g|} \sum_{j \in G_g} z^L_{oj} - \frac{1}{|G_{g'}|} \sum_{j \in G_{g'}} z^L_{oj} \Big|
              \le \varepsilon \quad \text{for every pair of groups } g < g',

    written as two linear inequalities per pair.  ``groups`` as in :class:`GroupLossBounds`.
    """

    on_output_layer = True

    #: sums over samples with the whole data set's group sizes (``shards``: groups and sizes over
    #: every rank)
    splits_over_ranks = True

    def __init__(self, groups, epsilon: float, output: int = 0):
        self.groups = groups
        self.epsilon = _positive(epsilon, "epsilon")
        self.output = int(output)

    def _pairs(self, X, shards=None) -> list[tuple[np.ndarray, np.ndarray, int, int]]:
        """``(indices of g, indices of g', |G_g|, |G_g'|)`` for every pair of groups (sizes over every
        rank with ``shards``)."""
        groups = _members(_group_labels(self.groups, self.inputs(X)), shards)
        members, sizes = list(groups.values()), _sizes(groups, shards)
        return [(members[a], members[b], sizes[a], sizes[b])
                for a in range(len(members)) for b in range(a + 1, len(members))]

    def values(self, f):
        """What is averaged per group: the output itself (numpy or PyTorch)."""
        return f

    def gaps(self, net: Network, X, shards=None) -> np.ndarray:
        """The real network's difference of group means of :meth:`values`, one per pair (over every
        rank with ``shards``)."""
        return self._gaps(net.predict(X)[:, self.output], X, shards)

    def _gaps(self, f: np.ndarray, X, shards=None) -> np.ndarray:
        v = self.values(f)
        d = np.array([v[ga].sum() / na - v[gb].sum() / nb for ga, gb, na, nb in self._pairs(X, shards)])
        return shards.sum(d) if shards is not None and d.size else d

    def violation(self, net: Network, X, Y, shards=None) -> float:
        X, Y = check_data(X, Y, net.sizes[0], net.sizes[-1])
        d = self.gaps(net, X, shards)
        return max(0.0, float(np.max(np.abs(d))) - self.epsilon) if d.size else 0.0

    def residuals(self, outputs, weights, X, Y):
        f = self.values(outputs[:, self.output])
        parts = []
        for ga, gb, _, _ in self._pairs(X):
            d = (f[ga].mean() - f[gb].mean()).reshape(1)
            parts += [d - self.epsilon, -d - self.epsilon]
        return _cat(parts, outputs)

    def add_to(self, model) -> None:
        tp, out = get_training_problem(model), layer_blocks(model)[-1]
        if not 0 <= self.output < len(out.nodes):
            raise ValueError(f"output {self.output} does not exist: the network has {len(out.nodes)} output(s)")
        pairs, o = self._pairs(tp.X, tp.shards), self.output
        blk = self._block(model, "demographic_parity", "demographic parity")
        blk.pairs = pyo.Set(initialize=range(len(pairs)), ordered=True)
        blk.epsilon = pyo.Param(mutable=True, initialize=self.epsilon)
        weights = np.zeros((len(pairs), tp.m))
        for p, (ga, gb, na, nb) in enumerate(pairs):
            weights[p, ga] += 1.0 / na
            weights[p, gb] -= 1.0 / nb
        sample_param(blk, "weight", [blk.pairs], weights, doc="1/|G_a| in group a, -1/|G_b| in group b")
        constant = self._constant(blk)

        def gap(p):
            return sum(blk.weight[p, j] * out.z[o, j] for j in model.samples) + constant[p]

        blk.upper = pyo.Constraint(blk.pairs, rule=lambda b, p: gap(p) <= b.epsilon)
        blk.lower = pyo.Constraint(blk.pairs, rule=lambda b, p: gap(p) >= -b.epsilon)

    def _constant(self, blk) -> dict:
        """The constant term of every pair's gap (none here)."""
        return {p: 0.0 for p in blk.pairs}

    def on_outputs(self, shift, scale):
        r"""Differences of group means scale by the output's :math:`\rho`."""
        out = copy.copy(self)
        out.epsilon = self.epsilon / _output_of(scale, self.output)
        return out

    def __repr__(self):
        return f"DemographicParity(groups={self.groups!r}, epsilon={self.epsilon}, output={self.output})"


def _sigmoid(a):
    """The logistic function on numpy arrays or PyTorch tensors."""
    if _is_torch(a):
        return a.sigmoid()
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(a, dtype=float)))


class DecisionParity(DemographicParity):
    r"""Parity of the groups' positive-decision rates: the rate of outputs above ``threshold``,
    smoothed with a logistic of width ``temperature``,

    .. math:: r_g(f) = \frac{1}{|G_g|} \sum_{j \in G_g} \sigma\Big(\frac{f_j - \theta}{\tau}\Big),
              \qquad |r_g(f) - r_{g'}(f)| \le \varepsilon \quad \text{for every pair } g < g',

    which tends to the parity of the decisions :math:`f_j \ge \theta` as :math:`\tau \to 0` (every
    output farther than a few :math:`\tau` from the threshold counts as its decision).  The rates
    are not convex in :math:`z^L`: every round imposes their linearisation at its reference
    network :math:`f^k` (:meth:`recentre`),

    .. math:: r_g(f^k) + \frac{1}{|G_g|} \sum_{j \in G_g} \frac{\sigma'((f^k_j - \theta)/\tau)}{\tau}
              \,(z^L_j - f^k_j),

    linear in :math:`z^L` (per-sample weights and one constant per pair), and the run accepts a
    step only by the real network's smoothed rates (``violation``).  The linearisation is not a
    relaxation, so a round that cannot meet it proves nothing: ``relaxes = False`` and no run is
    certified infeasible by it.
    """

    #: the rows are a linearisation at each round's reference, not a relaxation: no certificate
    relaxes = False
    on_output_layer = False  # the smoothed rates are not convex in the outputs

    def __init__(self, groups, epsilon: float, threshold: float = 0.5, temperature: float = 0.05, output: int = 0):
        super().__init__(groups, epsilon, output)
        self.threshold = float(threshold)
        self.temperature = _positive(temperature, "temperature")

    def on_outputs(self, shift, scale):
        r"""The smoothed rates are unitless (``epsilon`` unchanged); the threshold and the width move
        with the output: :math:`(\theta - t)/\rho` and :math:`\tau/\rho`."""
        out = copy.copy(self)
        t, rho = _output_of(shift, self.output), _output_of(scale, self.output)
        out.threshold, out.temperature = (self.threshold - t) / rho, self.temperature / rho
        return out

    def values(self, f):
        r"""Every sample's smoothed decision :math:`\sigma((f - \theta)/\tau)` (numpy or PyTorch)."""
        return _sigmoid((f - self.threshold) / self.temperature)

    def _constant(self, blk) -> pyo.Param:
        """The constant of the linearisation per pair (``offset``), first at outputs on the
        threshold; :meth:`recentre` sets it and the weights at every reference."""
        blk.offset = pyo.Param(blk.pairs, mutable=True, initialize=0.0, doc="r_a - r_b - sum_j weight_j f_j at f")
        blk._decision_parity = self
        tp = get_training_problem(blk.model())
        self._linearise(blk, np.full(tp.m, self.threshold), tp.X, tp.shards)
        return blk.offset

    def recentre(self, model, outputs: np.ndarray) -> None:
        """Linearise at the reference network whose outputs on the model's samples are ``outputs``
        (``(m, n_L)``): called by the rounds at every reference."""
        tp = get_training_problem(model)
        blocks = [b for b in model.component_data_objects(pyo.Block) if getattr(b, "_decision_parity", None) is self]
        if not blocks:
            raise ValueError(f"{self!r} was not added to this model (add_to): nothing to linearise")
        for blk in blocks:
            self._linearise(blk, np.asarray(outputs)[:, self.output], tp.X, tp.shards)

    def _linearise(self, blk, f: np.ndarray, X, shards) -> None:
        from .samples import set_sample_array

        r = self.values(f)
        slope = r * (1.0 - r) / self.temperature
        pairs = self._pairs(X, shards)
        weights = np.zeros((len(pairs), len(f)))
        for p, (ga, gb, na, nb) in enumerate(pairs):
            weights[p, ga] += slope[ga] / na
            weights[p, gb] -= slope[gb] / nb
        local = weights @ f
        offset = self._gaps(f, X, shards) - (shards.sum(local) if shards is not None and local.size else local)
        set_sample_array(blk.weight, weights)
        for p in blk.pairs:
            blk.offset[p] = float(offset[p])

    def __repr__(self):
        return (f"DecisionParity(groups={self.groups!r}, epsilon={self.epsilon}, threshold={self.threshold}, "
                f"temperature={self.temperature}, output={self.output})")


def _per_point(spec, X: np.ndarray, n_cols: int, what: str, inputs: Callable | None = None) -> np.ndarray | None:
    """``spec`` as an ``(m, n_cols)`` array: a number, one value per column (``(n_cols,)``), or a
    callable ``X -> (m, n_cols)`` or ``(m,)`` array (one value per point), called on ``inputs(X)``
    (the constraint's :meth:`~ResidualConstraint.inputs`) when given."""
    if spec is None:
        return None
    values = _per_output(spec(X if inputs is None else inputs(X))) if callable(spec) else np.asarray(spec, dtype=float)
    try:
        return np.broadcast_to(values, (X.shape[0], n_cols)).copy()
    except ValueError:
        raise ValueError(f"{what} must broadcast to {(X.shape[0], n_cols)} (points, columns), got shape {values.shape}") from None


class OutputBounds(ResidualConstraint):
    r"""Output bounds on given points: :math:`lo_{ij} \le z^L_{ij} \le hi_{ij}` (physical ranges,
    non-negativity, probabilities in [0, 1]).

    ``lower`` / ``upper``: a number, one value per output, or a callable ``X -> array`` giving a
    bound per point (so that the bound of any point, e.g. of a test set, is known); ``None`` or
    ``±inf`` entries leave that side free.  The Pyomo constraints hold at the training points;
    ``violation`` measures the points it is given.
    """

    on_output_layer = True

    splits_over_ranks = True  # per-sample rows, bounds given per point

    def __init__(self, lower=None, upper=None):
        if lower is None and upper is None:
            raise ValueError("OutputBounds needs a lower or an upper bound")
        self.lower, self.upper = lower, upper

    def on_outputs(self, shift, scale):
        out = copy.copy(self)
        out.lower, out.upper = _standardised(self.lower, shift, scale), _standardised(self.upper, shift, scale)
        return out

    def limits(self, X, n_out: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        lo, hi = (_per_point(b, X, n_out, "an output bound", self.inputs) for b in (self.lower, self.upper))
        if lo is not None and hi is not None and np.any(lo > hi):
            raise ValueError("OutputBounds: a lower bound exceeds its upper bound")
        return lo, hi

    def residuals(self, outputs, weights, X, Y):
        lo, hi = self.limits(X, outputs.shape[1])
        parts = []
        for bound, sign in ((lo, -1.0), (hi, 1.0)):
            if bound is not None:
                finite = np.isfinite(bound)
                parts.append(sign * (outputs[finite] - _like(bound[finite], outputs)))
        return _cat(parts, outputs)

    def add_to(self, model) -> None:
        tp, out = get_training_problem(model), layer_blocks(model)[-1]
        lo, hi = self.limits(tp.X, len(out.nodes))
        blk = self._block(model, "output_bounds", "output bounds lo <= z^L <= hi at the training points")
        for name, bound, sense in (("lower", lo, 1.0), ("upper", hi, -1.0)):
            if bound is None:
                continue
            finite = np.isfinite(bound.T)
            value = sample_param(blk, f"{name}_value", [out.nodes], np.where(finite, bound.T, 0.0))
            # an infinite bound leaves its point free: a 0/1 Param switches the row off (every
            # sample has the same rows, so that a template derives them per sample)
            # (decided over every rank: all ranks' templates must have the same parameters)
            free = tp.sample_shards.any(not finite.all())
            on = sample_param(blk, f"{name}_on", [out.nodes], finite) if free else None
            blk.add_component(name, pyo.Constraint(out.nodes, model.samples, rule=lambda b, i, j, v=value, on=on, sense=sense:
                              (1.0 if on is None else on[i, j]) * sense * (out.z[i, j] - v[i, j]) >= 0))

    def __repr__(self):
        return f"OutputBounds(lower={self.lower!r}, upper={self.upper!r})"


class LinearOutputEquality(ResidualConstraint):
    r"""Linear equalities across outputs, :math:`A z^L_{*j} = c_j` (e.g. outputs that sum to a total).

    ``A`` has shape ``(r, n_L)``; ``rhs`` is one value per row (``(r,)``) or a callable
    ``X -> (m, r)`` (a total known for each point).  By default the equalities are imposed on the
    outputs at the training points.  With ``every_input=True`` (constant ``rhs`` only) they are
    imposed on the last layer's weights instead, :math:`A w^L = 0`, :math:`A b^L = c`, so that
    :math:`A f(x) = A w^L x^L + A b^L = c` holds exactly for *every* input; then (and only then)
    ``project`` is the cheap Euclidean projection onto them (without ``every_input`` there is no
    ``project`` attribute: ``hasattr(c, "project")`` is false).
    """

    on_output_layer = True

    @property
    def weights_only(self) -> bool:
        return self.every_input

    equality = True
    #: per-sample rows (or rows on the weights alone): each rank's own, violations maxima over the ranks
    splits_over_ranks = True

    def __init__(self, A, rhs, every_input: bool = False):
        self.A = np.atleast_2d(np.asarray(A, dtype=float))
        self.rhs = rhs
        self.every_input = bool(every_input)
        if every_input and callable(rhs):
            raise ValueError("every_input=True needs a constant right-hand side (one value per row of A)")

    def on_outputs(self, shift, scale):
        r""":math:`A(\rho \circ f_s + t) = c` is :math:`(A\,\mathrm{diag}\,\rho) f_s = c - A t`."""
        shift, scale = np.asarray(shift, dtype=float), np.asarray(scale, dtype=float)
        if self.A.shape[1] != scale.size:
            raise ValueError(f"A has {self.A.shape[1]} columns but the network has {scale.size} outputs")
        out = copy.copy(self)
        out.A = self.A * scale[None, :]
        offset = self.A @ shift
        rhs = self.rhs
        out.rhs = (lambda X: _per_output(rhs(X)) - offset) if callable(rhs) else np.asarray(rhs, dtype=float) - offset
        return out

    def targets(self, X, n_out: int) -> np.ndarray:
        """:math:`c_j` for every point, shape ``(m, r)``."""
        if self.A.shape[1] != n_out:
            raise ValueError(f"A has {self.A.shape[1]} columns but the network has {n_out} outputs")
        return _per_point(self.rhs, X, self.A.shape[0], "rhs", self.inputs)

    def residuals(self, outputs, weights, X, Y):
        c = self.targets(X, outputs.shape[1])
        return outputs @ _like(self.A.T, outputs) - _like(c, outputs)

    @property
    def project(self) -> Callable[[list, list], tuple[list, list]]:
        """:meth:`project_last_layer` when ``every_input=True``; otherwise ``AttributeError``: equalities
        at given points bind the real outputs, a nonconvex set of weights with no cheap projection."""
        if not self.every_input:
            raise AttributeError("LinearOutputEquality(every_input=False) has no cheap projection: its equalities "
                                 "bind the outputs at given points (use every_input=True, the penalty or Cooper)")
        return self.project_last_layer

    def project_last_layer(self, weights: list, biases: list) -> tuple[list, list]:
        r"""The nearest weights and biases (Euclidean norm over all of them) with :math:`A w^L = 0`,
        :math:`A b^L = c`:

        .. math:: w^L \leftarrow w^L - A^+ A\, w^L, \qquad b^L \leftarrow b^L - A^+ (A b^L - c),

        :math:`A^+ = A^\top (A A^\top)^{-1}` (the pseudo-inverse): every column of :math:`w^L` projected
        orthogonally onto :math:`\{v : A v = 0\}`, :math:`b^L` onto :math:`\{v : A v = c\}`; the other
        layers unchanged.  Numpy arrays or tensors; new objects."""
        w, b = weights[-1], biases[-1]
        c = self.targets(np.zeros((1, 0)), w.shape[0])[0]
        pinv = np.linalg.pinv(self.A)
        w = w - _like(pinv @ self.A, w) @ w
        b = b - _like(pinv, b) @ (_like(self.A, b) @ b - _like(c, b))
        return [v * 1.0 for v in weights[:-1]] + [w], [v * 1.0 for v in biases[:-1]] + [b]

    def add_to(self, model) -> None:
        tp, out = get_training_problem(model), layer_blocks(model)[-1]
        c, A = self.targets(tp.X, len(out.nodes)), self.A
        blk = self._block(model, "output_equality", "A z^L = c")
        blk.rows = pyo.Set(initialize=range(A.shape[0]), ordered=True)
        if self.every_input:
            blk.weights = pyo.Constraint(blk.rows, out.inputs, rule=lambda b, r, k: sum(
                A[r, i] * out.w[i, k] for i in out.nodes) == 0.0)
            blk.biases = pyo.Constraint(blk.rows, rule=lambda b, r: sum(A[r, i] * out.b[i] for i in out.nodes) == c[0, r])
        else:
            sample_param(blk, "rhs", [blk.rows], c.T, doc="c_j")
            blk.outputs = pyo.Constraint(blk.rows, model.samples, rule=lambda b, r, j: sum(
                A[r, i] * out.z[i, j] for i in out.nodes) == b.rhs[r, j])

    def __repr__(self):
        return f"LinearOutputEquality(A={self.A.tolist()}, rhs={self.rhs!r}, every_input={self.every_input})"


# -- constraints on the weights (exact for the real network) ----------------------------------


class MonotoneInputs(ResidualConstraint):
    r"""A network monotone in chosen inputs, for *every* input, by weight signs:

    .. math:: w^1_{ik} \ge 0 \ (k \in \text{increasing}),\quad w^1_{ik} \le 0 \ (k \in \text{decreasing}),
              \quad w^l \ge 0 \ (l \ge 2).

    With non-decreasing activations every hidden unit is then non-decreasing in :math:`x_k` for
    ``k`` increasing (non-increasing for ``k`` decreasing), and so is every output: a sum with
    non-negative weights of non-decreasing functions, composed with non-decreasing activations.
    The other inputs are unconstrained.  Linear constraints on the weights, so they hold exactly
    for the real network.  :meth:`project` is the (cheap) Euclidean projection: clamp.
    """

    weights_only = True
    splits_over_ranks = True  # rows on the weights alone: the same on every rank

    def __init__(self, increasing=(), decreasing=()):
        self.increasing = sorted(int(k) for k in increasing)
        self.decreasing = sorted(int(k) for k in decreasing)
        if not self.increasing and not self.decreasing:
            raise ValueError("MonotoneInputs needs at least one increasing or decreasing input")
        if set(self.increasing) & set(self.decreasing):
            raise ValueError(f"inputs {sorted(set(self.increasing) & set(self.decreasing))} cannot be both increasing and decreasing")

    def on_outputs(self, shift, scale):
        r"""Signs of the weights: the same under a positive output scale (the last layer becomes
        :math:`\rho w^L`)."""
        return copy.copy(self)

    def _check_network(self, activations) -> None:
        for act in activations:
            _lipschitz_of(act)  # raises for an activation not known to be non-decreasing

    def _check_inputs(self, n_in: int) -> None:
        bad = [k for k in self.increasing + self.decreasing if not 0 <= k < n_in]
        if bad:
            raise ValueError(f"inputs {bad} do not exist: the network has {n_in} inputs")

    def residuals(self, outputs, weights, X, Y):
        self._check_inputs(weights[0].shape[1])
        parts = [-weights[0][:, self.increasing]] if self.increasing else []
        parts += [weights[0][:, self.decreasing]] if self.decreasing else []
        return _cat(parts + [-w for w in weights[1:]], weights[0])

    def project(self, weights: list, biases: list) -> tuple[list, list]:
        """The nearest weights that satisfy the signs, biases unchanged (numpy arrays or tensors; new objects)."""
        first = weights[0] * 1.0
        first[:, self.increasing] = first[:, self.increasing].clip(min=0.0)
        first[:, self.decreasing] = first[:, self.decreasing].clip(max=0.0)
        return [first] + [w.clip(min=0.0) for w in weights[1:]], [b * 1.0 for b in biases]

    def add_to(self, model) -> None:
        blocks = layer_blocks(model)
        self._check_network([b.activation_function for b in blocks])
        first = blocks[0]
        self._check_inputs(len(first.inputs))
        signs = {**{k: 1.0 for k in self.increasing}, **{k: -1.0 for k in self.decreasing}}
        blk = self._block(model, "monotone_inputs", "weight signs: monotone in chosen inputs")
        blk.first = pyo.Constraint(list(first.nodes), sorted(signs), rule=lambda b, i, k: signs[k] * first.w[i, k] >= 0)
        later = [(l, i, k) for l, lb in enumerate(blocks[1:], 1) for i in lb.nodes for k in lb.inputs]
        blk.later = pyo.Constraint(later, rule=lambda b, l, i, k: blocks[l].w[i, k] >= 0)

    def __repr__(self):
        return f"MonotoneInputs(increasing={self.increasing}, decreasing={self.decreasing})"


class WeightNormBounds(ResidualConstraint):
    r"""Weight-norm bounds, :math:`\|w^l\|_F \le c_l` (or every row :math:`\|w^l_{i*}\|_2 \le c_l`
    with ``rows=True``), convex quadratic constraints :math:`\sum_{ik} (w^l_{ik})^2 \le c_l^2`.

    They bound the network's Lipschitz constant in the 2-norms for every input:

    .. math:: \|f(x) - f(x')\|_2 \le \prod_l L_{h^l} \|w^l\|_2 \, \|x - x'\|_2
              \le \prod_l L_{h^l} c_l \sqrt{n_l}^{\,[\text{rows}]} \, \|x - x'\|_2,

    with :math:`L_h = \sup |h'|` (1/4 for the sigmoid) and :math:`\|w\|_2 \le \|w\|_F \le \sqrt{n_l}
    \max_i \|w_{i*}\|_2`.  ``bounds``: one :math:`c` for every layer or one per layer (``None``:
    that layer is free).  Exact for the real network; :meth:`project` rescales (cheap).
    """

    weights_only = True
    splits_over_ranks = True  # rows on the weights alone: the same on every rank

    def __init__(self, bounds, rows: bool = False):
        self.bounds = bounds
        self.rows = bool(rows)
        for c in self._as_list(1 if not isinstance(bounds, (list, tuple)) else len(bounds)):
            if c is not None:
                _positive(c, "a norm bound")

    def _as_list(self, n_layers: int) -> list[float | None]:
        if isinstance(self.bounds, (list, tuple)):
            if len(self.bounds) != n_layers:
                raise ValueError(f"{len(self.bounds)} norm bounds given for a network of {n_layers} layers")
            return [None if c is None else float(c) for c in self.bounds]
        return [float(self.bounds)] * n_layers

    def _norms(self, w):
        return ((w ** 2).sum(1) if self.rows else (w ** 2).sum().reshape(1)) ** 0.5

    def residuals(self, outputs, weights, X, Y):
        return _cat([self._norms(w) - c for w, c in zip(weights, self._as_list(len(weights))) if c is not None], weights[0])

    def project(self, weights: list, biases: list) -> tuple[list, list]:
        """Each bounded layer (or row) rescaled onto its ball, biases unchanged (numpy arrays or tensors;
        new objects)."""
        out = []
        for w, c in zip(weights, self._as_list(len(weights))):
            if c is None:
                out.append(w * 1.0)
                continue
            n = self._norms(w)
            scale = (c / n.clip(min=c)).reshape(-1, 1) if self.rows else c / n.clip(min=c)
            out.append(w * scale)
        return out, [b * 1.0 for b in biases]

    def lipschitz_constant(self, net: Network) -> float:
        r"""The bound :math:`\prod_l L_{h^l} c_l` (times :math:`\sqrt{n_l}` for row bounds) that holds for
        every network meeting the constraint; ``ValueError`` if a layer is unbounded."""
        bounds = self._as_list(net.n_layers)
        if any(c is None for c in bounds):
            raise ValueError("a Lipschitz bound needs a norm bound on every layer")
        return float(np.prod([_lipschitz_of(net.activation(l)) * c * (np.sqrt(net.sizes[l]) if self.rows else 1.0)
                              for l, c in enumerate(bounds, 1)]))

    def add_to(self, model) -> None:
        blocks = layer_blocks(model)
        bounds = self._as_list(len(blocks))
        blk = self._block(model, "weight_norms", "weight-norm bounds")
        if self.rows:
            index = [(l, i) for l, b in enumerate(blocks) if bounds[l] is not None for i in b.nodes]
            rule = lambda b, l, i: sum(blocks[l].w[i, k] ** 2 for k in blocks[l].inputs) <= bounds[l] ** 2
        else:
            index = [l for l in range(len(blocks)) if bounds[l] is not None]
            rule = lambda b, l: sum(v ** 2 for v in blocks[l].w.values()) <= bounds[l] ** 2
        blk.bound = pyo.Constraint(index, rule=rule)

    def __repr__(self):
        return f"WeightNormBounds(bounds={self.bounds!r}, rows={self.rows})"


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
