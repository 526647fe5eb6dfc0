r"""``convexnn.elastic``: the hard constraints made elastic, the objective their minimum violation.

Phase 1 of a constrained round.  Every targeted row :math:`g(x) \le u` (or :math:`l \le g(x)`;
an equality or a ranged row has both sides) gets a non-negative *elastic* variable per side and
is replaced by

.. math:: g(x) - e^{+} \le u, \qquad l \le g(x) + e^{-}

(one elastic row, indexed like its source row: ``l <= g - e+ + e- <= u``, or ``g - e+ + e- == u``
for an equality), and the active objective by the minimum violation

.. math:: \min\ \sum_{\text{shared}} e / s \;+\; \frac1m \sum_{j} \sum_{\text{per-sample}} e_{\cdot j} / s
          \;+\; \rho\, f_{\text{old}}(x),

each elastic variable divided by its Constraint component's bound scale
:math:`s = \max(1, \max |\text{bound}|)` (a bound :math:`\kappa n_c` on a sum over a group's
:math:`n_c` samples then counts relatively, as the loss does per sample).

An elastic row is feasible for every ``x`` and adds linear terms only, so the model stays convex
(a convex row stays convex, an affine equality stays affine).  The minimum is 0 exactly when the
targeted rows can all be met by the (relaxed) model; otherwise it measures how far they are out of
reach, and :func:`violations` names the rows that cannot be met.

Samples (:mod:`convexnn_pyomo.samples`): the elastic variable of a *per-sample* row (a Constraint
whose index has the model's ``samples``) is per sample, indexed like the row with the sample last
(``e[i, j]`` for a row ``abs_pos[i, j]``), and their sum over samples is divided by ``m``, the
*full* sample count (:attr:`TrainingProblem.m`, also on a template), so the objective is a mean
over samples and does not grow with ``m``.  A row not indexed by samples (a sum over samples, a
row on the weights) gets a shared elastic variable indexed like the row.  The transformation
therefore works on the full model and on a template, from which
:func:`~convexnn_pyomo.solvers.arrow.arrow_problem` derives the per-sample functions as usual.

``regularization`` (:math:`\rho \ge 0`, default 0, a mutable Param ``elastic.regularization``)
adds that multiple of the old objective (the regularized round (9a): loss + eta * r).  With
:math:`\rho = 0` only the violation is priced: its minimum value is unique but the minimizer is
not (every variable the targeted rows do not touch is free, and an infeasible pair of rows can
share its violation in any proportion: ``w >= 1``, ``w <= 0`` give ``e1 + e2 = 1`` for every
``w`` in [0, 1]); an interior-point solver then returns some point of that face, which depends
on the solver and its start.  A small :math:`\rho > 0` (say 1e-4) picks one: among the points
of (nearly) minimum violation, the one the round's own objective prefers, unique where the
regularizer (8) is strictly convex and close to the reference, so a good start for phase 2, at
the price of a violation larger than the minimum by :math:`O(\rho)`.

The source <-> elastic maps live in the model's private data (``BlockData.private_data``, as
``pyomo.gdp`` and ``core.add_slack_variables`` keep theirs): :func:`get_elastic_variables`,
:func:`get_elastic_source`, :func:`get_elastic_row`, :func:`get_elastic_block`.
:func:`restore` (or the context manager :func:`elastic_phase`) deletes the elastic block and
reactivates the source rows and the old objective, so the same model goes back to phase 2.

::

    model = build_round_model(net, X, Y, "mean", "parabolic", constraints, eta, mu)
    with elastic_phase(model, targets=constraints):
        opt.solve(model, load_solutions=True)
        print(violations(model))   # {'classwise_misfit.bound': 0.0, ...}
    opt.solve(model)               # phase 2: the round itself, from the phase-1 point
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from contextlib import contextmanager

import numpy as np
import pyomo.environ as pyo
from pyomo.common.autoslots import AutoSlots
from pyomo.common.collections import ComponentMap, ComponentSet
from pyomo.common.config import ConfigDict, ConfigValue, In, NonNegativeFloat
from pyomo.common.modeling import unique_component_name
from pyomo.core.base.block import Block
from pyomo.core.base.transformation import Transformation, TransformationFactory

from ..model import get_training_problem
from ..samples import get_sample_array, is_template, sample_arrays, sample_position

__all__ = [
    "ElasticConstraints",
    "elastic_phase",
    "get_elastic_block",
    "get_elastic_row",
    "get_elastic_source",
    "get_elastic_variables",
    "restore",
    "set_elastic_values",
    "violations",
]

_SIDES = ("upper", "lower")


class _ElasticData(AutoSlots.Mixin):
    """What ``convexnn.elastic`` records on the model it transformed (its private data)."""

    __slots__ = (
        "block",
        "elastic_rows",
        "elastic_vars",
        "objectives",
        "room",
        "source",
        "source_component",
        "sources",
        "var_components",
    )

    def __init__(self):
        self.block = None  # the elastic block (None: the model is not elastic)
        self.elastic_vars = ComponentMap()  # source ConstraintData -> its elastic VarData (upper side, lower side)
        self.elastic_rows = ComponentMap()  # source ConstraintData -> the elastic ConstraintData replacing it
        self.source = ComponentMap()  # elastic VarData -> source ConstraintData
        self.var_components = ComponentMap()  # source Constraint component -> its elastic Var components
        self.source_component = ComponentMap()  # elastic Var component -> source Constraint component
        self.sources = []  # source ConstraintData deactivated by the transformation, in order
        self.objectives = []  # objectives deactivated by the transformation
        self.room = ComponentMap()  # source ConstraintData -> its bound scale (margin * scale: its room)


Block.register_private_data_initializer(_ElasticData)


def _info(model) -> _ElasticData:
    return model.private_data()


def _target_list(v):
    if v is None:
        return None
    if isinstance(v, (list, tuple, ComponentSet)) or (isinstance(v, Iterable) and not hasattr(v, "ctype")):
        return list(v)
    return [v]


_target_list.domain_name = "a hard constraint, Block, Constraint or ConstraintData, or a list of them"


def _within(component, block) -> bool:
    b = component
    while b is not None:
        if b is block:
            return True
        b = b.parent_block()
    return False


@TransformationFactory.register(
    "convexnn.elastic",
    doc="Make hard constraints elastic and minimise their violation (phase 1 of a constrained round)",
)
class ElasticConstraints(Transformation):
    """Elastic rows ``g - e+ <= u``, ``l <= g + e-`` and the objective ``min`` (mean) violation."""

    CONFIG = ConfigDict("convexnn.elastic")
    CONFIG.declare(
        "targets",
        ConfigValue(
            default=None,
            domain=_target_list,
            description="The hard constraints to make elastic",
            doc="Hard constraints of convexnn_pyomo.constraints (their recorded `block`; a callable's "
            "recorded `constraints`), Blocks (every active constraint inside), Constraint components or "
            "ConstraintData, or a list of them; all within the transformed model.  Required (no "
            "default: the relaxation's rows and (2b)-(2c) are not hard constraints to relax).",
        ),
    )
    CONFIG.declare(
        "regularization",
        ConfigValue(
            default=0.0,
            domain=NonNegativeFloat,
            description="Weight rho >= 0 of the old objective in the elastic objective",
            doc="0 (default): minimise the violation only (a unique minimum value, not a unique "
            "minimizer).  A small positive value (e.g. 1e-4) adds rho times the old objective "
            "(loss + eta * r), which picks one solution, near the reference (a unique one where the "
            "regularizer is strictly convex), at the price of a violation larger than the minimum by "
            "O(rho).  Kept in the mutable Param `regularization` of the elastic block.",
        ),
    )

    CONFIG.declare(
        "margin",
        ConfigValue(
            default=0.0,
            domain=NonNegativeFloat,
            description="Inequality sides tightened by margin * s (s: the row component's bound scale)",
            doc="0 (default): the rows as written.  A positive margin asks phase 1 for a point that "
            "meets every inequality with room margin * s (``g - e+ <= u - margin s``, "
            "``l + margin s <= g + e-``; equalities unchanged; s = max(1, largest |bound| of the "
            "Constraint component's rows), so a bound kappa * n_c on a sum is tightened relatively), so that the real network, whose outputs "
            "differ from the relaxed ones by the relaxation's gap, still meets the rows.  Kept in the "
            "mutable Param `margin` of the elastic block.",
        ),
    )

    CONFIG.declare(
        "aggregate",
        ConfigValue(
            default="sum",
            domain=In(["sum", "max"]),
            description="'sum': an elastic variable per row and side, their (mean) sum minimised; "
            "'max': one variable t, the largest relative violation, minimised",
            doc="'max': every targeted side reads g - s t <= u (l <= g + s t), s its component's bound "
            "scale, and t >= -margin is minimised: the largest relative violation, the measure the "
            "training run accepts by; a negative t is room (phase 1 of Algorithm 1).  'sum' prices "
            "every row and names each row's violation (:func:`violations`).",
        ),
    )

    def _apply_to(self, model, **kwds):
        config = self.CONFIG(kwds.pop("options", {}))
        config.set_value(kwds)
        tp = get_training_problem(model)  # clear error for a model we did not build
        info = _info(model)
        if info.block is not None:
            raise ValueError(f"the model is already elastic ({info.block.name}); restore(model) first")
        if not config.targets:
            raise ValueError("convexnn.elastic needs targets: the hard constraints to make elastic")
        rows = _target_rows(model, config.targets)
        if not rows:
            raise ValueError("the targets hold no active constraint")
        for con in rows:
            if con.has_lb() and con.has_ub() and pyo.value(con.lower) > pyo.value(con.upper):
                raise ValueError(f"{con.name}: lower bound exceeds upper bound (no elastic value helps)")
        objs = list(model.component_data_objects(pyo.Objective, active=True))
        if len(objs) != 1:
            raise ValueError(f"convexnn.elastic expects one active objective, found {len(objs)}")

        blk = pyo.Block(doc="elastic hard constraints and their minimum violation (phase 1)")
        model.add_component(unique_component_name(model, "elastic"), blk)
        info.block = blk
        blk.margin = pyo.Param(mutable=True, initialize=config.margin, within=pyo.NonNegativeReals,
                               doc="room asked of every inequality side")
        worst = None
        if config.aggregate == "max":
            blk.worst = worst = pyo.Var(doc="the largest relative violation (negative: the smallest relative room)")
            blk.worst_floor = pyo.Constraint(expr=blk.worst >= -blk.margin, doc="at most margin of room is asked")
        shared, per_sample = [], []
        by_component: dict = {}
        for con in rows:
            by_component.setdefault(con.parent_component(), []).append(con)
        for comp, datas in by_component.items():
            if worst is not None:
                self._make_worst(model, blk, comp, datas, info)
                continue
            terms = self._make_elastic(model, blk, comp, datas, info)
            (per_sample if sample_position(comp, model) is not None else shared).extend(terms)
        if worst is not None:
            shared = [worst]

        base = objs[0]
        blk.shared_violation = pyo.Expression(expr=sum(shared), doc="sum of the shared elastic variables")
        blk.sample_violation = pyo.Expression(
            expr=sum(per_sample) / tp.sample_shards.total,
            doc="sum over samples of the per-sample elastic variables / m (all m samples, over every rank)"
        )
        blk.violation = pyo.Expression(expr=blk.shared_violation + blk.sample_violation, doc="the violation minimised")
        blk.regularization = pyo.Param(
            mutable=True, initialize=config.regularization, within=pyo.NonNegativeReals,
            doc="weight of the old objective",
        )
        blk.base_objective_expr = pyo.Expression(
            expr=base.expr if base.sense == pyo.minimize else -base.expr, doc=f"the objective {base.name} (minimised)"
        )
        base.deactivate()
        info.objectives.append(base)
        blk.objective = pyo.Objective(
            expr=blk.violation + blk.regularization * blk.base_objective_expr, sense=pyo.minimize,
            doc="minimum violation (+ regularization * old objective)",
        )
        set_elastic_values(model)

    @staticmethod
    def _make_worst(model, blk, comp, datas, info) -> None:
        """``aggregate='max'``: the rows of one source component with room ``s * worst`` per side."""
        scales = dict(zip(datas, _bound_scales(model, comp, datas)))
        stem = re.sub(r"\W+", "_", comp.getname(fully_qualified=True, relative_to=model)).strip("_") or "row"
        info.var_components[comp] = []
        made = {}
        for side in _SIDES:
            if not any((d.upper if side == "upper" else d.lower) is not None for d in datas):
                continue
            row = pyo.Constraint(comp.index_set(), doc=f"{comp.name}, {side} side, within s * worst") \
                if comp.is_indexed() else None
            name = unique_component_name(blk, f"{stem}_{side}")
            if row is not None:
                blk.add_component(name, row)
            for con in datas:
                bound = con.upper if side == "upper" else con.lower
                if bound is None:
                    continue
                room = scales[con] * blk.worst
                expr = (con.body - room <= bound) if side == "upper" else (bound <= con.body + room)
                if row is None:
                    blk.add_component(name, pyo.Constraint(expr=expr))
                    made.setdefault(con, blk.component(name))
                else:
                    row[con.index()] = expr
                    made.setdefault(con, row[con.index()])
        for con in datas:
            con.deactivate()
            info.sources.append(con)
            info.elastic_rows[con] = made[con]
            info.elastic_vars[con] = [blk.worst]
            info.room[con] = scales[con]

    @staticmethod
    def _make_elastic(model, blk, comp, datas, info) -> list:
        """Elastic Vars and the elastic Constraint of one source component; returns the elastic VarData."""
        pos = sample_position(comp, model)
        stem = re.sub(r"\W+", "_", comp.getname(fully_qualified=True, relative_to=model)).strip("_") or "row"
        evars = {}
        for side in _SIDES:
            if any((d.upper if side == "upper" else d.lower) is not None for d in datas):
                sets = _var_sets(comp, pos)
                var = pyo.Var(*sets, **({"dense": False} if sets else {}), domain=pyo.NonNegativeReals,
                              doc=f"elastic variable of the {side} side of {comp.name}")
                blk.add_component(unique_component_name(blk, f"{stem}_{side}"), var)
                evars[side] = var
                info.source_component[var] = comp
        info.var_components[comp] = list(evars.values())
        doc = f"{comp.name} made elastic"
        row = pyo.Constraint(comp.index_set(), doc=doc) if comp.is_indexed() else None
        name = unique_component_name(blk, stem)
        if row is not None:  # indexed like the source; rows added as made (sparse)
            blk.add_component(name, row)
        terms = []
        for con, scale in zip(datas, _bound_scales(model, comp, datas)):
            idx = con.index()
            vidx = _var_index(idx, pos)
            body, mine = con.body, []
            room = 0.0 if con.equality else blk.margin * scale
            info.room[con] = scale
            if con.upper is not None:
                e = evars["upper"][vidx] if comp.is_indexed() else evars["upper"]
                body, mine = body - e, mine + [e]
            if con.lower is not None:
                e = evars["lower"][vidx] if comp.is_indexed() else evars["lower"]
                body, mine = body + e, mine + [e]
            if con.equality:
                expr = body == con.upper
            elif con.lower is None:
                expr = body <= con.upper - room
            elif con.upper is None:
                expr = con.lower + room <= body
            else:
                expr = pyo.inequality(con.lower + room, body, con.upper - room)
            if row is None:  # a scalar source row: a scalar elastic row
                blk.add_component(name, pyo.Constraint(expr=expr, doc=doc))
                elastic_row = blk.component(name)
            else:
                row[idx] = expr
                elastic_row = row[idx]
            con.deactivate()
            info.sources.append(con)
            info.elastic_rows[con] = elastic_row
            info.elastic_vars[con] = mine
            for e in mine:
                info.source[e] = con
            terms += mine if scale == 1.0 else [e / scale for e in mine]  # relative to the bound
        return terms


def _bound_scales(model, comp, datas) -> list[float]:
    """Each row's bound scale ``max(1, |bound|)``: its own for a row that is not per sample (a sum
    over a class of ``n_c`` samples bounded by ``kappa n_c`` counts relatively), the largest of the
    component for per-sample rows (one float on every sample keeps the row separable)."""
    own = [max([1.0] + [abs(float(pyo.value(b))) for b in (d.upper, d.lower) if b is not None]) for d in datas]
    return own if sample_position(comp, model) is None else [max(own)] * len(own)


def _var_sets(comp, pos) -> list:
    """Index sets of an elastic Var of ``comp``: the row's sets, the samples moved last."""
    if not comp.is_indexed():
        return []
    index = comp.index_set()
    sets = list(index.subsets()) if hasattr(index, "subsets") else [index]
    if pos is None or pos == len(sets) - 1:
        return [index]
    return sets[:pos] + sets[pos + 1:] + [sets[pos]]


def _var_index(idx, pos):
    """The elastic Var's index of the row ``idx`` (the sample moved last)."""
    if pos is None or not isinstance(idx, tuple) or pos == len(idx) - 1:
        return idx
    return idx[:pos] + idx[pos + 1:] + (idx[pos],)


def _target_rows(model, targets) -> list:
    """The active ConstraintData of ``targets``, each once, in the order given."""
    out = ComponentSet()

    def add(t, what):
        if hasattr(t, "ctype"):
            if not _within(t, model):
                raise ValueError(
                    f"target {t.name!r} does not belong to the model being transformed ({model.name!r}){what}"
                )
            if t.ctype is pyo.Constraint:
                datas = t.values() if t.is_indexed() else [t]
            elif t.ctype is pyo.Block:
                datas = [c for b in (t.values() if t.is_indexed() else [t])
                         for c in b.component_data_objects(pyo.Constraint, active=True, descend_into=True)]
            else:
                raise ValueError(f"target {t.name!r} is a {t.ctype.__name__}, not a Block or a Constraint")
            out.update(c for c in datas if c.active)
        elif getattr(t, "block", None) is not None:  # a ResidualConstraint: the block it added, its bounds
            add(t.block, "; a hard constraint records only the last model it was added to: pass its rows instead")
            for name in getattr(t, "auxiliary", ()):  # epigraph rows define variables: they stay hard
                comp = t.block.component(name)
                if comp is not None:
                    for c in comp.values() if comp.is_indexed() else [comp]:
                        out.discard(c)
        elif getattr(t, "constraints", None) is not None:  # a CallableConstraint: the rows the function added
            for c in t.constraints:
                add(c, "; a hard constraint records only the last model it was added to: pass its rows instead")
        else:
            raise ValueError(f"cannot make {t!r} elastic: not a Pyomo Block or Constraint, nor a hard constraint "
                             "added to the model")

    for t in targets:
        add(t, "")
    return list(out)


# ---------------------------------------------------------------------- maps
def get_elastic_block(model):
    """The block added by ``convexnn.elastic``, or ``None`` when the model is not elastic."""
    return _info(model).block


def _elastic_info(component) -> _ElasticData:
    info = _info(component.model())
    if info.block is None:
        raise ValueError(f"the model of {component.name} is not elastic (apply convexnn.elastic first)")
    return info


def get_elastic_variables(con) -> list:
    """The elastic variables of a source row: for a ConstraintData its elastic VarData (upper side
    first, then lower; one for a one-sided row, two for an equality or ranged row); for an indexed
    Constraint component its elastic Var components."""
    info = _elastic_info(con)
    if con.is_indexed():
        if con not in info.var_components:
            raise ValueError(f"{con.name} was not made elastic")
        return list(info.var_components[con])
    if con not in info.elastic_vars:
        raise ValueError(f"{con.name} was not made elastic")
    return list(info.elastic_vars[con])


def get_elastic_source(var):
    """The source row of an elastic variable: a ConstraintData for a VarData, the Constraint
    component for an indexed elastic Var."""
    info = _elastic_info(var)
    if var.is_indexed():
        if var not in info.source_component:
            raise ValueError(f"{var.name} is not an elastic variable")
        return info.source_component[var]
    if var not in info.source:
        raise ValueError(f"{var.name} is not an elastic variable")
    return info.source[var]


def get_elastic_row(con):
    """The elastic ConstraintData that replaces the (deactivated) source row ``con``."""
    info = _elastic_info(con)
    if con not in info.elastic_rows:
        raise ValueError(f"{con.name} was not made elastic")
    return info.elastic_rows[con]


# ---------------------------------------------------------------------- values
def _sets(var) -> list:
    index = var.index_set()
    return list(index.subsets()) if hasattr(index, "subsets") else [index]


def set_elastic_values(model) -> None:
    """Start every elastic variable at its row's violation at the model's current point (0 where
    the row holds), e.g. after :func:`~.base.set_lifted_values`.  On a template only the held
    samples' Pyomo variables get values (the structured round starts per-sample ones at 0)."""
    info = _info(model)
    margin = float(pyo.value(info.block.margin)) if info.block is not None else 0.0
    if info.block is not None and info.block.component("worst") is not None:
        _set_worst(info, margin, get_training_problem(model).sample_shards)
        return
    for con, evars in info.elastic_vars.items():
        body = pyo.value(con.body, exception=False)
        room = 0.0 if con.equality else margin * info.room.get(con, 1.0)
        k = 0
        for side in _SIDES:
            bound = con.upper if side == "upper" else con.lower
            if bound is None:
                continue
            gap = 0.0 if body is None else (body - pyo.value(bound) if side == "upper" else pyo.value(bound) - body)
            gap += room
            evars[k].set_value(max(0.0, float(gap)), skip_validation=True)
            k += 1


def _set_worst(info, margin: float, shards) -> None:
    """``aggregate='max'``: ``worst`` at the largest relative violation of the rows (at least -margin);
    a shared variable, so the largest over the MPI ranks' templates (every rank starts alike)."""
    worst = -margin
    for con in info.elastic_vars:
        body = pyo.value(con.body, exception=False)
        if body is None:
            continue
        for bound, sign in ((con.upper, 1.0), (con.lower, -1.0)):
            if bound is not None:
                worst = max(worst, sign * (body - pyo.value(bound)) / info.room[con])
    info.block.worst.set_value(shards.max(worst), skip_validation=True)


def violations(model) -> dict[str, float]:
    """Targeted Constraint component name -> its largest elastic value (over rows, sides and, for a
    per-sample row, every sample).  On a template the per-sample values of every sample are read
    with :func:`~convexnn_pyomo.samples.get_sample_array` (kept by ``ArrowProblem.load``)."""
    info = _info(model)
    if info.block is None:
        raise ValueError(f"the model {model.name} is not elastic (apply convexnn.elastic first)")
    m = get_training_problem(model).m
    template = is_template(model)
    if info.block.component("worst") is not None:  # one value: the largest relative violation
        t = info.block.worst.value
        return {comp.name: max(0.0, float(t)) if t is not None else float("nan") for comp in info.var_components}
    out = {}
    for comp, evars in info.var_components.items():
        worst = -np.inf
        for var in evars:
            pos = sample_position(var, model)
            if template and pos is not None:
                sets = _sets(var)
                try:
                    arr = get_sample_array(var, tuple(len(s) for s in sets[:-1]) + (m,))
                except KeyError:
                    raise ValueError(
                        f"{var.name} has no values for the samples outside the template: solve the template "
                        "(ArrowProblem.load) first") from None
                for idx in {(k if isinstance(k, tuple) else (k,))[:-1] for k in var}:
                    at = tuple(s.ord(i) - 1 for s, i in zip(sets[:-1], idx))
                    worst = max(worst, float(np.nanmax(arr[at])))
            else:
                vals = [v.value for v in var.values() if v.value is not None]
                worst = max([worst, *map(float, vals)])
        worst = get_training_problem(model).sample_shards.max(worst)  # per-sample rows: over every rank
        out[comp.name] = max(0.0, worst) if np.isfinite(worst) else float("nan")
    return out


# ---------------------------------------------------------------------- back to phase 2
def restore(model) -> None:
    """Undo ``convexnn.elastic``: delete the elastic block, reactivate the source rows and the old
    objective.  The variables keep their (phase-1) values."""
    info = _info(model)
    if info.block is None:
        raise ValueError(f"the model {model.name} is not elastic: nothing to restore")
    kept = sample_arrays(model)
    for var in info.source_component:
        kept.pop(var, None)
    blk = info.block
    blk.parent_block().del_component(blk)
    for con in info.sources:
        con.activate()
    for obj in info.objectives:
        obj.activate()
    _ElasticData.__init__(info)


@contextmanager
def elastic_phase(model, targets, regularization: float = 0.0, margin: float = 0.0, aggregate: str = "sum"):
    """Apply ``convexnn.elastic`` to ``model`` for the ``with`` body (yields the elastic block),
    then :func:`restore` it, also when the body raises."""
    TransformationFactory("convexnn.elastic").apply_to(model, targets=targets, regularization=regularization,
                                                       margin=margin, aggregate=aggregate)
    try:
        yield get_elastic_block(model)
    finally:
        restore(model)
