"""``convexnn.elastic``: hard constraints made elastic, the objective their (mean) minimum violation."""

import numpy as np
import pyomo.environ as pyo
import pytest
from conftest import max_violation, requires_solver

import convexnn_pyomo as cnn
from convexnn_pyomo.algorithms.rounds import IPOPT_DEFAULTS, build_round_model
from convexnn_pyomo.constraints import as_hard_constraint
from convexnn_pyomo.model import layer_blocks
from convexnn_pyomo.samples import is_per_sample
from convexnn_pyomo.transformations import set_lifted_values
from convexnn_pyomo.transformations.elastic import (
    ElasticConstraints,
    elastic_phase,
    get_elastic_block,
    get_elastic_row,
    get_elastic_source,
    get_elastic_variables,
    restore,
    violations,
)

M = 24
MU = (1.0, 1.0, 1.0)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(M, 3))
    Y = (X[:, 0] + 0.3 * X[:, 1] > 0.6).astype(float)
    net = cnn.Network([3, 4, 1], ["sigmoid", "identity"]).init_he(0)
    return net, X, Y


def _group(X):
    return (X[:, 0] > 0.5).astype(float)


def _feasible():
    return [cnn.ClasswiseMisfitBounds(0.5), cnn.DemographicParity(_group, 0.05)]


def _contradictory_weight(model):
    """w[0, 0] >= 1 and w[0, 0] <= 0 on layer 1: together infeasible, minimum violation 1."""
    w = layer_blocks(model)[0].w
    model.w_hi = pyo.Constraint(expr=w[0, 0] >= 1)
    model.w_lo = pyo.Constraint(expr=w[0, 0] <= 0)


def _contradictory_outputs():
    """z >= 1 and z <= 0 at every training point: per-sample rows, violation 1 per sample (mean 1)."""
    return [cnn.OutputBounds(lower=1.0), cnn.OutputBounds(upper=0.0)]


def _elastic(model, targets, **kwds):
    pyo.TransformationFactory("convexnn.elastic").apply_to(model, targets=targets, **kwds)
    return get_elastic_block(model)


def _ipopt(model):
    opt = cnn.require_solver("ipopt_casadi")
    res = opt.solve(model, solver_options=dict(IPOPT_DEFAULTS), load_solutions=False,
                    raise_exception_on_nonoptimal_result=False)
    assert pyo.check_optimal_termination(res), res.termination_condition
    res.solution_loader.load_vars()


def _structure(model):
    """Names of the active constraints and objectives, and the objective value at the current point."""
    cons = sorted(c.name for c in model.component_data_objects(pyo.Constraint, active=True))
    objs = [o for o in model.component_data_objects(pyo.Objective, active=True)]
    return cons, [o.name for o in objs], pyo.value(objs[0])


# ---------------------------------------------------------------------- structure (no solve)
def test_rows_variables_and_maps(data):
    net, X, Y = data
    eq = cnn.LinearOutputEquality([[1.0]], [0.3])  # per-sample equality: one row, two elastic variables
    cs = [cnn.ClasswiseMisfitBounds(0.5), cnn.DemographicParity(_group, 0.05), eq]
    model = build_round_model(net, X, Y, "mean", "parabolic", cs, 1.0, MU)
    abs_pos = cs[0].block.abs_pos
    blk = _elastic(model, cs + [abs_pos])  # an epigraph row stays hard unless named itself
    with pytest.raises(ValueError, match="abs_neg was not made elastic"):
        get_elastic_variables(cs[0].block.abs_neg)
    # per-sample rows: per-sample elastic variables indexed like the row (samples last)
    (e,) = get_elastic_variables(abs_pos)
    assert is_per_sample(e) and sorted(e.keys()) == sorted(abs_pos.keys())
    assert get_elastic_source(e) is abs_pos and get_elastic_source(e[0, 5]) is abs_pos[0, 5]
    # a sum over samples: a shared elastic variable indexed like the row
    (e,) = get_elastic_variables(cs[0].block.bound)
    assert not is_per_sample(e) and sorted(e.keys()) == sorted(cs[0].block.bound.keys())
    # an equality: both sides, one row indexed like the source, which is deactivated
    src = eq.block.outputs[0, 3]
    up, lo = get_elastic_variables(src)
    row = get_elastic_row(src)
    assert row.equality and not src.active and {get_elastic_source(up), get_elastic_source(lo)} == {src}
    # the start: every elastic variable at its row's violation, so the elastic rows hold
    assert max_violation(model, blk.component_data_objects(pyo.Constraint, active=True)) < 1e-9
    v0 = violations(model)
    assert v0[cs[0].block.bound.name] == pytest.approx(max(0.0, max(
        pyo.value(c.body) - pyo.value(c.upper) for c in cs[0].block.bound.values())))
    assert v0[eq.block.outputs.name] == pytest.approx(np.abs(net.predict(X)[:, 0] - 0.3).max())
    # one objective: the violation, shared + per-sample / m
    objs = list(model.component_data_objects(pyo.Objective, active=True))
    assert objs == [blk.objective] and not model.regularization.objective.active


def test_targets_checked(data):
    net, X, Y = data
    c = cnn.ClasswiseMisfitBounds(0.5)
    model = build_round_model(net, X, Y, "mean", "parabolic", [c], 1.0, MU)
    before = _structure(model)
    assert type(pyo.TransformationFactory("convexnn.elastic")) is ElasticConstraints
    with pytest.raises(ValueError, match="needs targets"):
        _elastic(model, None)
    with pytest.raises(ValueError):
        _elastic(model, c.block, regularization=-1.0)
    with pytest.raises(ValueError, match="not a Block or a Constraint"):
        _elastic(model, layer_blocks(model)[0].w)
    other = build_round_model(net, X, Y, "mean", "parabolic", [c], 1.0, MU)  # c.block is now other's
    with pytest.raises(ValueError, match="last model it was added to"):
        _elastic(model, c)
    assert _structure(model) == before  # nothing half-done
    _elastic(model, model.classwise_misfit)
    with pytest.raises(ValueError, match="already elastic"):
        _elastic(model, model.classwise_misfit)
    assert get_elastic_block(other) is None


# ---------------------------------------------------------------------- phase 1 solves
@requires_solver("ipopt_casadi")
def test_feasible_constraints_have_no_violation(data):
    net, X, Y = data
    cs = _feasible()
    model = build_round_model(net, X, Y, "mean", "parabolic", cs, 1.0, MU)
    blk = _elastic(model, cs)
    assert pyo.value(blk.violation) > 1.0  # the start violates (19)
    _ipopt(model)
    assert pyo.value(blk.objective) <= 1e-6
    assert max(violations(model).values()) <= 1e-6
    restore(model)  # back to the hard rows: the phase-1 point meets them
    assert max_violation(model, [c for k in cs for c in k.block.component_data_objects(pyo.Constraint)]) <= 1e-6
    with elastic_phase(model, cs):  # phase 1 again, its elastic start at the (feasible) point
        assert max(violations(model).values()) <= 1e-6


@requires_solver("ipopt_casadi")
def test_infeasible_weight_rows(data):
    net, X, Y = data
    c = as_hard_constraint(_contradictory_weight)
    model = build_round_model(net, X, Y, "mean", "parabolic", [c], 1.0, MU)
    blk = _elastic(model, [c])
    _ipopt(model)
    # min e1 + e2 s.t. w >= 1 - e1, w <= e2: e1 + e2 = 1 (the split between the rows is not unique)
    assert pyo.value(blk.objective) == pytest.approx(1.0, abs=1e-6)
    v = violations(model)
    assert set(v) == {"w_hi", "w_lo"}
    assert v["w_hi"] + v["w_lo"] == pytest.approx(1.0, abs=1e-6) and min(v.values()) >= -1e-9
    w = layer_blocks(model)[0].w[0, 0].value
    assert v["w_hi"] == pytest.approx(1.0 - w, abs=1e-6) and v["w_lo"] == pytest.approx(w, abs=1e-6)


# ---------------------------------------------------------------------- template
@requires_solver("ipopt_casadi")
def test_template_derives_and_matches_full_model(data):
    from convexnn_pyomo.solvers.arrow import arrow_problem
    from convexnn_pyomo.solvers.schur_ipm import SchurInteriorPoint

    net, X, Y = data
    # feasible sums and per-sample rows, contradictory per-sample rows (mean violation 1) and
    # contradictory weight rows (violation 1): minimum 2 whatever m
    def constraints():
        return _feasible() + _contradictory_outputs() + [as_hard_constraint(_contradictory_weight)]

    cs = constraints()
    model = build_round_model(net, X, Y, "mean", "parabolic", cs, 1.0, MU, samples=[0, M - 1])
    blk = _elastic(model, cs)
    with pytest.raises(ValueError, match="outside the template"):
        violations(model)
    problem = arrow_problem(model)
    sample_comps = {id(comp) for comp, _ in problem.sample_vars}
    shared = {id(v) for v in problem.shared_vars}
    assert cs[0].block.abs_pos[0, 0].active  # epigraph rows (ResidualConstraint.auxiliary) stay hard
    per_sample_rows = [cs[2].block.lower, cs[3].block.upper]
    for row in per_sample_rows:
        for var in get_elastic_variables(row):
            assert id(var) in sample_comps and not any(id(v) in shared for v in var.values())
    for row in [cs[0].block.bound, cs[1].block.upper, cs[1].block.lower]:
        for var in get_elastic_variables(row):
            assert id(var) not in sample_comps and all(id(v) in shared for v in var.values())
    for row in (model.w_hi, model.w_lo):
        assert all(id(v) in shared for v in get_elastic_variables(row))

    ipm = SchurInteriorPoint(problem, omega=float(M))
    ps, pv = problem.parameters()
    s0, V0 = problem.start()
    res = ipm.solve(s0, V0, ps, pv)
    assert res.ok, res.message
    problem.load(res.s, res.V)
    assert res.objective == pytest.approx(2.0, abs=1e-5)
    v = violations(model)  # per-sample values of every sample, kept by load
    assert v[cs[2].block.lower.name] > 0.0 and v[cs[3].block.upper.name] > 0.0
    assert max(v[r.name] for r in [cs[0].block.bound, cs[1].block.upper, cs[1].block.lower]) <= 1e-5

    full_cs = constraints()
    full = build_round_model(net, X, Y, "mean", "parabolic", full_cs, 1.0, MU)
    full_blk = _elastic(full, full_cs)
    _ipopt(full)
    assert pyo.value(full_blk.objective) == pytest.approx(2.0, abs=1e-5)
    assert pyo.value(blk.regularization) == 0.0


# ---------------------------------------------------------------------- restore
@requires_solver("ipopt_casadi")
def test_restore(data):
    net, X, Y = data
    cs = _feasible() + [as_hard_constraint(_contradictory_weight)]
    model = build_round_model(net, X, Y, "mean", "parabolic", cs, 1.0, MU)
    before = _structure(model)
    components = [c.name for c in model.component_objects(descend_into=True)]
    blk = _elastic(model, cs, regularization=1e-4)
    assert pyo.value(blk.regularization) == 1e-4
    _ipopt(model)
    restore(model)
    set_lifted_values(model, net)  # back to the start point: the same objective value
    assert _structure(model) == before
    assert [c.name for c in model.component_objects(descend_into=True)] == components
    assert get_elastic_block(model) is None
    with pytest.raises(ValueError, match="not elastic"):
        get_elastic_variables(model.w_hi)
    with pytest.raises(ValueError, match="nothing to restore"):
        restore(model)
    # the context manager restores also when its body raises
    with pytest.raises(RuntimeError):
        with elastic_phase(model, cs) as blk:
            assert blk.objective.active
            raise RuntimeError
    assert _structure(model) == before


@requires_solver("ipopt_casadi")
def test_max_aggregate_minimises_the_largest_relative_violation(data):
    """``aggregate='max'``: one variable t with g - s t <= u on every side; min t is the largest
    relative violation (w >= 1, w <= 0: t = 1/2), and where the rows can be met t goes down to
    -margin: every row then holds with margin * s to spare (s = max(1, |bound|), per row)."""
    net, X, Y = data
    model = build_round_model(net, X, Y, "mean", "parabolic", [as_hard_constraint(_contradictory_weight)], 1.0, MU)
    blk = _elastic(model, [model.w_hi, model.w_lo], aggregate="max", margin=0.1)
    _ipopt(model)
    assert pyo.value(blk.worst) == pytest.approx(0.5, abs=1e-6)
    assert list(violations(model).values()) == pytest.approx([0.5, 0.5], abs=1e-6)

    cs = _feasible()
    model = build_round_model(net, X, Y, "mean", "parabolic", cs, 1.0, MU)
    blk = _elastic(model, cs, aggregate="max", margin=0.02)  # |parity gap| <= 0.05 leaves room 0.05 at most
    _ipopt(model)
    assert pyo.value(blk.worst) == pytest.approx(-0.02, abs=1e-6)
    for con in list(cs[0].block.bound.values()) + list(cs[1].block.upper.values()):
        u = pyo.value(con.upper)
        assert pyo.value(con.body) <= u - 0.02 * max(1.0, abs(u)) + 1e-6
    assert cs[0].block.abs_pos[0, 0].active and not cs[0].block.bound[0].active
