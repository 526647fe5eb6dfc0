"""Bad input, infeasible constraints, solver faults, killed sweeps, reproducibility, properties."""

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pyomo.environ as pyo
import pytest
from conftest import max_violation, requires_module
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyomo.contrib.solver.common.factory import SolverFactory
from pyomo.contrib.solver.common.results import SolutionStatus, TerminationCondition

import convexnn_pyomo as cnn
from convexnn_pyomo.algorithms import SequentialRelaxation
from convexnn_pyomo.constraints import ClasswiseMisfitBounds
from convexnn_pyomo.data import DataError, load_csv
from convexnn_pyomo.experiments.imbalance import RUN_COLUMNS, ImbalanceConfig, _binary_minority_is_one, run_one
from convexnn_pyomo.model import var_matrix
from convexnn_pyomo.solvers import CasadiIpopt
from convexnn_pyomo.training import train

# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content,match",
    [
        ("a,b,label\n1,2,0\n", "no target column 'y'"),
        ("a,b,y\n1,x,0\n2,3,1\n", "not numeric"),
        ("", "is empty"),
        ("a,b,y\n", "no rows"),
        ("a,b,y\n1,,0\n2,3,1\n", "missing, NaN or inf"),
        ("y\n1\n0\n", "no feature columns"),
    ],
)
def test_csv_problems_are_named(tmp_path, content, match):
    path = tmp_path / "data.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=match):
        load_csv(path, "y")


def test_classifier_paths_need_binary_labels():
    from convexnn_pyomo.data import Dataset

    ds = Dataset("x", np.zeros((4, 2)), np.array([0, 1, 2, 1.0]), ["a", "b"])
    with pytest.raises(ValueError, match="binary labels"):
        _binary_minority_is_one(ds)


def test_kappa_for_a_class_without_samples(small_problem):
    net, X, Y = small_problem
    with pytest.raises(ValueError, match="no samples in the training data"):
        ClasswiseMisfitBounds(kappa={0.0: 1.0, 1.0: 1.0, 2.0: 1.0}).kappas(Y[:, None])
    with pytest.raises(ValueError, match=">= 0"):
        ClasswiseMisfitBounds(kappa={0.0: -1.0, 1.0: 1.0}).kappas(Y[:, None])
    with pytest.raises(ValueError, match="positive"):
        ClasswiseMisfitBounds(kappa_factor=0.0)


def test_infeasible_hard_constraints_report_the_smallest_kappa(small_problem):
    _, X, Y = small_problem
    net = cnn.Network([8, 3, 1], ["sigmoid", "identity"]).init_he(0)  # |z| <= 0.8 in a 0.2 box: y = 1 unreachable

    def box(model):  # a small weight box makes tiny misfits unreachable
        pyo.TransformationFactory("convexnn.bound").apply_to(model, weight_bound=0.2, bias_bound=0.2)

    # the diagnosis solves the Pyomo model (the structured round has none): the Pyomo rounds
    res = train(net, X, Y, rounds=3, hard_constraints=[box, ClasswiseMisfitBounds(0.01)], round_solver="pyomo")
    assert res.status == "infeasible" and "smallest kappa_factor" in res.message
    factor = res.smallest_kappa_factor
    assert f"{factor:.6g}" in res.message
    assert 0.01 < factor < 1.0
    # the returned network is the least violating one accepted (the feasibility phase may move it)
    bound = ClasswiseMisfitBounds(0.01)
    assert bound.violation(res.network, X, Y) <= bound.violation(net, X, Y)
    # and that factor is feasible for the relaxation
    ok = train(net, X, Y, rounds=1, hard_constraints=[box, ClasswiseMisfitBounds(factor * 1.01)], round_solver="pyomo")
    assert ok.status != "infeasible"


# -- faults --------------------------------------------------------------------------------------


@SolverFactory.register("flaky_ipopt_test", doc="ipopt_casadi that fails on chosen calls")
class FlakyIpopt(CasadiIpopt):
    """Call numbers in ``cap_calls`` get ``max_iter = 1``; those in ``infeasible_calls`` solve but
    report "infeasible" (Ipopt's local infeasibility detection failing on a feasible problem)."""

    calls = 0
    cap_calls: set = set()
    infeasible_calls: set = set()

    def solve(self, model, **kwds):
        FlakyIpopt.calls += 1
        if FlakyIpopt.calls in FlakyIpopt.cap_calls:
            kwds["solver_options"] = {**(kwds.get("solver_options") or {}), "max_iter": 1}
        res = super().solve(model, **kwds)
        if FlakyIpopt.calls in FlakyIpopt.infeasible_calls:
            res.termination_condition = TerminationCondition.locallyInfeasible
            res.solution_status = SolutionStatus.infeasible
        return res


def _flaky(cap=(), infeasible=()):
    FlakyIpopt.calls, FlakyIpopt.cap_calls, FlakyIpopt.infeasible_calls = 0, set(cap), set(infeasible)


def _capped_rounds():
    """Pyomo rounds on the flaky solver whose capped solves fail: a one-iteration point may meet the
    round's rows, and with stalled iterates (the default) it would be a candidate, not a failure."""
    from convexnn_pyomo.algorithms.round_solvers import PyomoRounds

    return PyomoRounds(solver="flaky_ipopt_test", stalled_iterates=False)


def _assert_monotone_and_consistent(res, X, Y):
    acc = res.history.loc[res.history.status == "accepted", "true_loss"].to_numpy()
    assert np.all(np.diff(np.r_[res.initial_loss, acc]) <= 1e-9)
    assert res.final_loss == pytest.approx(acc[-1])
    assert res.network.loss(X, Y) == pytest.approx(res.final_loss)


def test_a_failed_solve_costs_a_round_not_the_run(small_problem):
    """Round 3 hits the iteration cap: recorded, retried with eta x4 from the same weights, and
    the run goes on to its round limit."""
    net, X, Y = small_problem
    _flaky(cap={3})
    res = train(net, X, Y, rounds=6, round_solver=_capped_rounds())
    h = res.history
    assert res.status == "round_limit", h
    assert len(h) == 6 and h.status.iloc[2] == "solver_failed" and h.termination.iloc[2] == "iterationLimit"
    assert h.true_loss.iloc[2] == pytest.approx(h.true_loss.iloc[1])  # nothing moved
    assert h.eta.iloc[3] == pytest.approx(4 * h.eta.iloc[2])
    assert (h.status.iloc[3:] == "accepted").any()
    _assert_monotone_and_consistent(res, X, Y)


def test_repeated_solver_failures_end_the_run_with_the_best_weights(small_problem):
    net, X, Y = small_problem
    _flaky(cap=set(range(3, 100)))
    res = SequentialRelaxation(rounds=10, round_solver=_capped_rounds(), max_failures=3).solve(net, X, Y)
    h = res.history
    assert res.status == "solver_failed" and res.termination == "iterationLimit"
    assert len(h) == 5 and list(h.status.iloc[2:]) == ["solver_failed"] * 3
    assert list(h.termination.iloc[2:]) == ["iterationLimit"] * 3
    _assert_monotone_and_consistent(res, X, Y)


def test_spurious_infeasibility_without_hard_constraints_is_a_solver_failure(small_problem):
    """Measured on Yeast (rho 0.95, run 0): Ipopt declared a round without hard constraints
    infeasible, and the run ended claiming the hard constraints admit no point.  The lifted
    reference is always feasible there, so it is a failed solve and the run continues."""
    net, X, Y = small_problem
    _flaky(infeasible={2})
    res = train(net, X, Y, rounds=4, round_solver="flaky_ipopt_test")
    h = res.history
    assert res.status == "round_limit", h
    assert h.status.iloc[1] == "solver_failed" and h.termination.iloc[1] == "locallyInfeasible"
    assert not any(h.status == "infeasible")


def test_an_infeasible_round_under_a_linearised_constraint_proves_nothing(small_problem):
    """A round declared infeasible before the run is feasible ends the run as infeasible when the
    round relaxes the constraints (DemographicParity); under DecisionParity's linearisation
    (relaxes = False) it is a failed solve and the run goes on."""
    net, X, Y = small_problem
    cut = np.median(X[:, 4])
    groups = lambda X: (X[:, 4] > cut).astype(float)  # noqa: E731
    for cons, ends in ((cnn.DemographicParity(groups, 1e-4), True), (cnn.DecisionParity(groups, 1e-4, temperature=0.5),
                                                                      False)):
        assert cons.violation(net, X, Y) > 1e-6
        _flaky(infeasible={1})
        res = SequentialRelaxation(rounds=3, round_solver="flaky_ipopt_test", hard_constraints=[cons],
                                   feasibility=False).solve(net, X, Y)
        h = res.history
        assert (res.status == "infeasible") == ends, (cons, h)
        assert h.status.iloc[0] == ("infeasible" if ends else "solver_failed")


def _sweep_cmd(out):
    return [sys.executable, "-m", "convexnn_pyomo.cli", "experiment", "imbalance", "--dataset", "synthetic",
            "--ratios", "0.5,0.9", "--runs", "3", "--rounds", "2", "--adam-steps", "30", "--train-majority", "20",
            "--test-per-class", "10", "--out", str(out)]


@requires_module("torch", "imblearn")
def test_killed_sweep_resumes_and_never_leaves_half_lines(tmp_path):
    """Killed (SIGKILL) once 7 (rho, run, method) rows are written: only whole lines remain, and a
    rerun with 2 workers (their progress reaches the bar through a queue) adds exactly the rest."""
    out = tmp_path / "sweep"
    runs = out / "runs.csv"
    log = tmp_path / "first.stderr"
    with open(log, "w") as err:
        proc = subprocess.Popen(_sweep_cmd(out), stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    try:
        deadline = time.time() + 180
        while not (runs.exists() and runs.read_text().count("\n") >= 8):  # header + 7 whole rows
            if proc.poll() is not None:
                pytest.fail(f"the sweep ended (status {proc.returncode}) before it was killed:\n{log.read_text()[-3000:]}")
            if time.time() > deadline:
                pytest.fail(f"no 7 rows after 180 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    text = runs.read_text()
    assert text.endswith("\n")
    lines = text.splitlines()
    assert all(len(line.split(",")) == len(RUN_COLUMNS) for line in lines)
    done_before = len(lines) - 1
    assert 7 <= done_before < 42
    before = pd.read_csv(runs)
    again = subprocess.run(_sweep_cmd(out) + ["--jobs", "2"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    final = pd.read_csv(runs)
    assert len(final) == 2 * 3 * 7
    assert not final.duplicated(["rho", "run", "method"]).any()
    pd.testing.assert_frame_equal(final.iloc[:done_before], before)  # the rows kept are not rewritten
    assert (out / "summary.csv").exists() and (out / "figure2.png").exists()
    assert re.search(r"convexnn\S* rho=0\.[59] run [1-3]/3 round [0-2]/2", again.stderr) and "ETA" in again.stderr


# -- reproducibility -----------------------------------------------------------------------------


def test_same_seed_same_weights(small_problem):
    net, X, Y = small_problem
    a = train(net, X, Y, rounds=3)
    b = train(cnn.Network(net.sizes, net.activations).init_he(0), X, Y, rounds=3)
    np.testing.assert_allclose(a.network.get_flat(), b.network.get_flat(), atol=1e-7)


@requires_module("torch")
def test_same_seed_same_runs_rows():
    cfg = ImbalanceConfig(dataset="synthetic", rounds=2, adam_steps=30, train_majority=20, test_per_class=10)
    methods = ["convexnn", "adam", "random", "logreg-balanced"]
    a = pd.DataFrame(run_one(cfg, 0.9, 0, methods)).drop(columns="seconds")
    b = pd.DataFrame(run_one(cfg, 0.9, 0, methods)).drop(columns="seconds")
    pd.testing.assert_frame_equal(a, b, atol=1e-6)


# -- properties ----------------------------------------------------------------------------------

ACTS = ["sigmoid", "tanh", "softplus", "identity"]


@st.composite
def problems(draw):
    depth = draw(st.integers(1, 3))
    sizes = [draw(st.integers(1, 3)) for _ in range(depth + 1)] + [draw(st.integers(1, 2))]
    acts = [draw(st.sampled_from(ACTS)) for _ in range(depth)] + ["identity"]
    m = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    net = cnn.Network(sizes, acts).init_he(seed)
    net.set_parameters([w * rng.uniform(0.2, 3.0) for w in net.weights], [rng.normal(scale=1.0, size=b.shape) for b in net.biases])
    return net, rng.normal(size=(m, sizes[0])), rng.normal(size=(m, sizes[-1]))


def _formula(sizes, acts, m, relaxed):
    L = len(sizes) - 1
    nv = nc = 0
    for l in range(1, L + 1):
        n, n_in, hidden = sizes[l], sizes[l - 1], l < L
        act = cnn.get_activation(acts[l - 1])
        nv += n * n_in + n + n * m + (n * m if hidden else 0)
        nc += n * m + (n * m if hidden else 0)
        if relaxed and l >= 2:
            nv += n + m
            nc += n * m + n + m
        if relaxed and hidden and not act.linear:
            nv += n * m
            nc += (len(act.p_pieces(0.0)) + len(act.q_pieces(0.0)) - 1) * n * m
    return nv, nc


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_property_relaxation_contains_lifted_point_and_sizes_match_docs(problem):
    net, X, Y = problem
    model = cnn.build_training_model(net, X, Y)
    count = lambda ct: len({id(c) for c in model.component_data_objects(ct, active=True)})  # noqa: E731
    names = [a.name for a in net.activations]
    assert (count(pyo.Var), count(pyo.Constraint)) == _formula(net.sizes, names, len(X), False)
    pyo.TransformationFactory("convexnn.parabolic").apply_to(model)
    assert (count(pyo.Var), count(pyo.Constraint)) == _formula(net.sizes, names, len(X), True)
    cnn.set_lifted_values(model, net)
    assert max_violation(model) <= 1e-9 * max(1.0, float(np.abs(net.get_flat()).max()) ** 2)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_property_pyomo_exact_model_agrees_with_numpy_oracle(problem):
    """Fix the weights, let Ipopt solve the exact model's equalities: z and x equal the forward pass."""
    net, X, Y = problem
    model = cnn.build_training_model(net, X, Y)
    fp = net.forward_pass(X)
    for blk in cnn.layer_blocks(model):
        blk.w.fix()
        blk.b.fix()
        for v in blk.z.values():
            v.set_value(0.0)
    pyo.SolverFactory("ipopt_casadi").solve(model)
    for blk in cnn.layer_blocks(model):
        l = blk.index_l
        np.testing.assert_allclose(var_matrix(blk.z, fp.z[l - 1].shape), fp.z[l - 1], atol=1e-6)
        if not blk.is_output:
            np.testing.assert_allclose(var_matrix(blk.x, fp.x[l].shape), fp.x[l], atol=1e-6)
