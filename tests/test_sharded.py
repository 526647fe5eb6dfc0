"""Data-sharded rounds (mpi-sppy PH): the sharded round is the single model's round."""

import numpy as np
import pyomo.environ as pyo
import pytest
from conftest import group_loss_case, requires_module, requires_solver

import convexnn_pyomo as cnn
from convexnn_pyomo.algorithms import PyomoRounds, SequentialRelaxation
from convexnn_pyomo.algorithms.rounds import IPOPT_DEFAULTS, PyomoRound
from convexnn_pyomo.constraints import ClasswiseMisfitBounds
from convexnn_pyomo.solvers.registry import require_solver
from convexnn_pyomo.transformations import set_lifted_values
from convexnn_pyomo.transformations.regularize import get_regularization_block

pytestmark = [requires_module("mpisppy"), requires_solver("ipopt_casadi")]



def _rounds(problem, reduction, constraints=(), shards=2, eta=2.0, tol=1e-6):
    """The single model's round and the sharded round, centred at the same reference with the same mu."""
    from convexnn_pyomo.algorithms.sharded import ShardedRound

    net, X, Y = problem
    args = (net, X, Y, reduction, "parabolic", list(constraints))
    single = PyomoRound(*args, require_solver("ipopt_casadi"), eta, (1.0, 1.0, 1.0))
    sharded = ShardedRound(*args, "ipopt_casadi", eta, (1.0, 1.0, 1.0), shards=shards, ph_options={"tol": tol})
    fp = net.forward_pass(X)
    mu = single.exactness_weights(net, fp)
    for rnd in (single, sharded):
        rnd.recentre(net, eta, fp, **mu)
    return single, sharded, mu


def _objective(rnd) -> float:
    return float(pyo.value(get_regularization_block(rnd.model).objective))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_scenario_objectives_sum_to_the_single_objective(small_problem, reduction):
    """sum_k p_k f_k equals (9a) at a point that is not the reference (every term of (8) nonzero)."""
    single, sharded, mu = _rounds(small_problem, reduction, shards=3)
    assert mu == sharded.exactness_weights(small_problem[0], small_problem[0].forward_pass(small_problem[1]))
    other = small_problem[0].copy().init_he(7)
    set_lifted_values(single.model, other)
    for rnd in sharded.rounds.values():
        set_lifted_values(rnd.model, other)
    assert sharded.relaxed_objective() == pytest.approx(_objective(single), rel=1e-10)
    assert sum(r.probability for r in sharded.rounds.values()) == pytest.approx(1.0)


def _solve_both(single, sharded):
    options = dict(IPOPT_DEFAULTS)
    assert single.solve(60, options).ok
    solve = sharded.solve(120, options)
    assert solve.ok, solve.termination
    assert solve.iterations > 1  # the shards disagree after PH's iteration 0: the coupling is tested
    return single.solution(), sharded.solution()


def test_sharded_round_equals_the_single_round(small_problem):
    """The default (adaptive) schedule's round; the summed loss's scaling is checked exactly above."""
    single, sharded, _ = _rounds(small_problem, "mean")
    a, b = _solve_both(single, sharded)
    np.testing.assert_allclose(b.get_flat(), a.get_flat(), atol=1e-4)
    assert sharded.relaxed_objective() == pytest.approx(single.relaxed_objective(), rel=1e-4)


def test_sharded_round_keeps_classwise_bounds_exact(small_problem):
    """(19) sums over the samples of all shards: with budgets per shard the round is the single round."""
    _, X, Y = small_problem
    free, _, _ = _rounds(small_problem, "mean", eta=2.0)
    assert free.solve(60, dict(IPOPT_DEFAULTS)).ok
    unconstrained = free.solution()
    bound = ClasswiseMisfitBounds(kappa_factor=0.3)
    assert max(bound.misfits(unconstrained, X, Y)[c] - k for c, k in bound.kappas(Y).items()) > 0.5
    single, sharded, _ = _rounds(small_problem, "mean", constraints=[bound], shards=2, tol=1e-5)
    a, b = _solve_both(single, sharded)
    # the bound binds: it moves the round's solution away from the unconstrained one
    assert np.abs(a.get_flat() - unconstrained.get_flat()).max() > 1e-2
    np.testing.assert_allclose(b.get_flat(), a.get_flat(), atol=1e-4)
    budgets = next(iter(sharded.rounds.values())).budgets[0]
    kappas = bound.kappas(Y)
    for c, key in enumerate(kappas):
        assert sum(pyo.value(budgets[k, c]) for k in range(2)) == pytest.approx(kappas[key], abs=1e-6)


def test_round_options_reach_the_subproblems(small_problem):
    """The Ipopt options of a round are the subproblems' (mpi-sppy reads its option layers at every
    solve): one Ipopt iteration cannot solve a shard, so the round fails instead of converging; the
    round after it solves the single model's round."""
    single, sharded, _ = _rounds(small_problem, "mean")
    assert not sharded.solve(60, {**IPOPT_DEFAULTS, "max_iter": 1}).ok
    a, b = _solve_both(single, sharded)  # after a failed round the next one starts a fresh PH
    np.testing.assert_allclose(b.get_flat(), a.get_flat(), atol=1e-4)


def test_warm_rounds_equal_fresh_rounds(small_problem):
    """Round 2 continued from round 1's PH state (W, xbar) is the single model's round 2, as a fresh PH run is."""
    X = small_problem[1]
    single, warm, _ = _rounds(small_problem, "mean")
    cold = _rounds(small_problem, "mean")[1]
    cold.ph_options["warm_rounds"] = False
    for r in range(2):
        if r:  # re-centre all three at the single round's solution
            ref = single.solution()
            fp = ref.forward_pass(X)
            mu = single.exactness_weights(ref, fp)
            for rnd in (single, warm, cold):
                rnd.recentre(ref, 2.0, fp, **mu)
        for rnd in (single, warm, cold):
            assert rnd.solve(120, dict(IPOPT_DEFAULTS)).ok
        for rnd in (warm, cold):
            np.testing.assert_allclose(rnd.solution().get_flat(), single.solution().get_flat(), atol=1e-4)
    assert warm.last_ph_iterations > 1  # the re-centred round moved: PH iterated again


def test_constraints_that_couple_shards_are_refused(small_problem):
    from convexnn_pyomo.algorithms.sharded import ShardedRound
    from convexnn_pyomo.constraints import BalancedMisfitBounds

    net, X, Y = small_problem
    with pytest.raises(ValueError, match="BalancedMisfitBounds may couple samples of several shards"):
        ShardedRound(net, X, Y, "mean", "parabolic", [BalancedMisfitBounds()], "ipopt_casadi", 2.0, (1.0, 1.0, 1.0))


def test_unknown_ph_options_are_refused(small_problem):
    from convexnn_pyomo.algorithms.sharded import ShardedRound

    net, X, Y = small_problem
    with pytest.raises(ValueError, match=r"unknown PH options \['tolerance'\]"):
        ShardedRound(net, X, Y, "mean", "parabolic", [], "ipopt_casadi", 2.0, (1.0, 1.0, 1.0), ph_options={"tolerance": 1})
    # PH options belong to the sharded round solver only, and the Schur rounds are not sharded
    with pytest.raises(ValueError, match="ph_options"):
        PyomoRounds(ph_options={"tol": 1e-5})
    with pytest.raises(ValueError, match="runs one MPI rank per shard, but this run has 1 rank"):
        cnn.train(net, X, Y, rounds=1, shards=2, round_solver="schur")  # the structured round: under mpiexec -n 2
    with pytest.raises(ValueError, match="shards=2 splits the samples of a SchurRounds round"):
        cnn.train(net, X, Y, rounds=1, shards=2, round_solver=PyomoRounds())


def test_shard_indices_cover_the_samples_once():
    from convexnn_pyomo.algorithms.sharded import shard_indices

    parts = shard_indices(10, 3)
    assert [len(p) for p in parts] == [4, 3, 3]
    assert sorted(np.concatenate(parts).tolist()) == list(range(10))
    for bad in (0, 11, 2.5):
        with pytest.raises(ValueError, match="shards must be"):
            shard_indices(10, bad)


def test_train_with_shards_matches_one_shard(small_problem):
    net, X, Y = small_problem
    runs = {k: cnn.train(net, X, Y, rounds=2, shards=k, round_solver="sharded" if k > 1 else "auto") for k in (1, 2)}
    hist = runs[2].history
    accepted = hist[hist.status == "accepted"].true_loss.to_numpy()
    assert len(accepted) >= 1 and np.all(np.diff(accepted) <= 1e-12)
    first = {k: r.history[r.history.status == "accepted"].iloc[0] for k, r in runs.items()}
    assert first[2]["round"] == first[1]["round"]
    assert first[2].true_loss == pytest.approx(first[1].true_loss, rel=1e-3)
    assert runs[2].final_loss <= runs[2].initial_loss
    assert (hist.iterations > 1).all()  # PH iterations per round


def test_cli_rejects_bad_shards(tmp_path, capsys):
    from convexnn_pyomo.cli import main

    assert main(["train", "--samples", "4", "--shards", "0", "--out", str(tmp_path / "a")]) == 2
    assert "--shards" in capsys.readouterr().err
    assert main(["train", "--samples", "4", "--shards", "5", "--out", str(tmp_path / "b")]) == 2
    assert "shards must be an integer between 1 and the number of samples (4)" in capsys.readouterr().err
    assert main(["train", "--samples", "4", "--shards", "2", "--ph-tol", "0", "--out", str(tmp_path / "c")]) == 2
    assert "--ph-tol" in capsys.readouterr().err


def test_cli_shards_with_pyomo_rounds_build_the_ph_round_solver():
    from convexnn_pyomo.algorithms import ShardedRounds
    from convexnn_pyomo.cli import _train_algorithm, build_parser

    def rounds(*flags):
        return _train_algorithm(build_parser().parse_args(["train", *flags, "--out", "x"]))[1]

    sharded = rounds("--shards", "3", "--round-solver", "pyomo", "--ph-tol", "1e-5")
    assert type(sharded) is ShardedRounds and sharded.config.shards == 3 and sharded.config.ph_options == {"tol": 1e-5}
    for flags in (["--round-solver", "pyomo"], ["--solver", "ipopt_casadi"]):
        sharded = rounds("--shards", "2", *flags)
        assert type(sharded) is ShardedRounds and sharded.solver_name == "ipopt_casadi" and sharded.config.shards == 2


# -- several processes ----------------------------------------------------------------------------
MPI_HINT = "needs mpiexec and mpi4py: pip install 'convexnn-pyomo[mpi]' (mpi4py + mpich)"


def _mpiexec():
    import shutil

    exe = shutil.which("mpiexec")
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        exe = None
    return exe


requires_mpiexec = pytest.mark.skipif(_mpiexec() is None, reason=MPI_HINT)


def _mpi_train(out, *extra, launcher=()):
    import subprocess
    import sys

    cmd = [_mpiexec(), *launcher, "-n", "2", sys.executable, "-m", "convexnn_pyomo.cli", "train", "--shards", "2", "--samples", "20",
           "--hidden", "4", "--seed", "1", "--out", str(out), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@requires_mpiexec
def test_two_rank_structured_run_equals_the_one_process_run(tmp_path):
    """mpiexec -n 2 convexnn train --shards 2: each rank holds 10 of the 20 samples, the interior point
    reduces its sums over the ranks; the iterates are one process's (same iterations, weights 1e-6)."""
    import pandas as pd

    from convexnn_pyomo.cli import main

    proc = _mpi_train(tmp_path / "mpi", "--rounds", "3")
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert stdout.count("done:") == 1 and "over 2 MPI ranks" in stdout  # rank 0 prints, rank 1 only solves
    assert main(["train", "--samples", "20", "--hidden", "4", "--seed", "1", "--rounds", "3",
                 "--out", str(tmp_path / "one")]) == 0
    two, one = (cnn.Network.load(tmp_path / d / "weights.npz") for d in ("mpi", "one"))
    assert np.abs(two.get_flat() - one.get_flat()).max() <= 1e-8  # measured 1.8e-13
    hist = {d: pd.read_csv(tmp_path / d / "history.csv") for d in ("mpi", "one")}
    assert list(hist["mpi"].iterations) == list(hist["one"].iterations)
    assert list(hist["mpi"].status) == list(hist["one"].status)
    np.testing.assert_allclose(hist["mpi"].true_loss, hist["one"].true_loss, rtol=1e-8)


_API_SCRIPT = """
import json, sys
import numpy as np
import convexnn_pyomo as cnn
from convexnn_pyomo.data import load_breast_cancer
from convexnn_pyomo.distributed import SampleShards
ds = load_breast_cancer()
X, y = ds.X[:60], ds.y[:60]
net = cnn.Network([8, 4, 1], ["sigmoid", "identity"]).init_he(0)
whole = cnn.train(net, X, y, rounds=2, shards=2, progress=True)  # every rank passes all rows, keeps its own
sh = SampleShards.split(60, 2)
own = cnn.train(net, sh.rows(X), sh.rows(y), rounds=2, shards=SampleShards.of_local(sh.m))  # only its own rows
with open(f"OUT/rank{sh.rank}.json", "w") as fh:  # a file per rank: two ranks' prints may interleave
    json.dump({"rank": sh.rank, "whole": whole.network.get_flat().tolist(), "own": own.network.get_flat().tolist(),
               "iterations": whole.history.iterations.tolist()}, fh)
"""


@requires_mpiexec
def test_train_under_mpiexec_from_python_with_all_rows_or_only_its_own(tmp_path):
    """train(..., shards=2) and train(X_own, shards=SampleShards.of_local(m)) on each rank give the
    one-process weights; progress=True prints on rank 0 only."""
    import json
    import subprocess
    import sys

    from convexnn_pyomo.data import load_breast_cancer

    script = _API_SCRIPT.replace("OUT", str(tmp_path))
    done = subprocess.run([_mpiexec(), "-n", "2", sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert sorted(r["rank"] for r in rows) == [0, 1]
    assert done.stdout.count("round    1") == 1  # the progress lines of rank 0 only
    ds = load_breast_cancer()
    net = cnn.Network([8, 4, 1], ["sigmoid", "identity"]).init_he(0)
    one = cnn.train(net, ds.X[:60], ds.y[:60], rounds=2)
    for r in rows:
        assert np.abs(np.array(r["whole"]) - one.network.get_flat()).max() <= 1e-8
        assert np.array_equal(r["whole"], r["own"]) and np.array_equal(r["whole"], rows[0]["whole"])
        assert r["iterations"] == one.history.iterations.tolist()


@requires_mpiexec
def test_ranks_on_one_machine_count_each_others_samples(tmp_path):
    """Both ranks of mpiexec -n 2 on this machine see the 30 samples of the two (17 + 13): the
    coupling choice 'auto' weighs the memory of all of them."""
    import subprocess
    import sys

    script = ("from convexnn_pyomo.distributed import SampleShards\n"
              "s = SampleShards.split(30, 2, None); s = SampleShards(17 if s.rank == 0 else 13, 30, 0, s.comm)\n"
              f"open(f'{tmp_path}/rank{{s.rank}}', 'w').write(str(s.machine_samples()))")
    done = subprocess.run([_mpiexec(), "-n", "2", sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert [(tmp_path / f"rank{r}").read_text() for r in range(2)] == ["30", "30"]


_CONSTRAINED_SCRIPT = """
import json
import numpy as np
import convexnn_pyomo as cnn
from convexnn_pyomo.constraints import (BalancedMisfitBounds, ClasswiseMisfitBounds, DecisionParity, DemographicParity,
                                        GroupLossBounds, LinearOutputEquality, MonotoneInputs, OutputBounds,
                                        WeightNormBounds)
from convexnn_pyomo.data import load_breast_cancer
ds = load_breast_cancer()
T = np.sort(ds.X[:80, 0])[39]  # groups: feature 0 above its 40th value
order = np.argsort(SORTKEY, kind="stable")  # rank 0 (the first 40 rows) lacks a class or a group
X, y = ds.X[:80][order], TARGETS
net = cnn.Network(SIZES, ["sigmoid", "identity"]).init_he(0)
res = cnn.train(net, X, y, rounds=4, shards=2, hard_constraints=CONSTRAINTS)
from mpi4py import MPI
with open(f"OUT/rank{MPI.COMM_WORLD.Get_rank()}.json", "w") as fh:
    json.dump({"w": res.network.get_flat().tolist(), "iterations": res.history.iterations.tolist(),
               "violation": res.history.violation.tolist(), "status": res.status.value}, fh)
"""


_BY_CLASS, _BY_GROUP = "ds.y[:80]", "ds.X[:80, 0]"
_GROUP = "lambda X: (X[:, 0] > T).astype(float)"
_ONE_OUTPUT = ("[8, 4, 1]", "ds.y[:80][order]")
_TWO_OUTPUTS = ("[8, 4, 2]", "np.eye(2)[ds.y[:80][order].astype(int)]")  # one-hot targets


@requires_mpiexec
@pytest.mark.parametrize("constraints, sortkey, network", [
    ("[ClasswiseMisfitBounds(kappa_factor=0.3)]", _BY_CLASS, _ONE_OUTPUT),
    ("[BalancedMisfitBounds(0.3)]", _BY_CLASS, _ONE_OUTPUT),
    ("[OutputBounds(lower=0.2, upper=0.8), WeightNormBounds(3.0)]", _BY_CLASS, _ONE_OUTPUT),
    # the equalities at the 80 points are approached, not met, in 4 rounds (violation 0.02 in one process)
    ("[MonotoneInputs(increasing=[0], decreasing=[1]), LinearOutputEquality([[1.0, 1.0]], [1.0])]", _BY_CLASS,
     _TWO_OUTPUTS),
    (f"[DemographicParity({_GROUP}, 0.02)]", _BY_GROUP, _ONE_OUTPUT),
    (f"[GroupLossBounds({_GROUP}, 0.15)]", _BY_GROUP, _ONE_OUTPUT),
    (f"[DecisionParity({_GROUP}, 0.05, temperature=0.1)]", _BY_GROUP, _ONE_OUTPUT),
], ids=["classwise", "balanced", "output-weights", "monotone-equality", "parity", "group-loss", "decision"])
def test_hard_constraints_split_over_two_ranks_exactly(constraints, sortkey, network, tmp_path):
    """(19) and the balanced bounds over two ranks whose samples are sorted by class (rank 0 has no
    sample of class 1, nor its label): the linking rows sum over the ranks, the labels and class
    sizes are the whole set's; per-sample output bounds and equalities, weight norms and signs:
    their violations are maxima over the ranks; parity and group-loss bounds on
    samples sorted by group (rank 0 has no sample of group 1): group sizes of the whole set, sums
    over the ranks; the decisions' parity: its linearisation at every reference reduced over the
    ranks too.  The run is one process's (the class-wise, parity and group-loss ones start
    infeasible: phase 1's elastic rounds run sharded too)."""
    import json
    import subprocess
    import sys

    from convexnn_pyomo.constraints import (BalancedMisfitBounds, ClasswiseMisfitBounds,  # noqa: F401
                                            DecisionParity, DemographicParity, GroupLossBounds,
                                            LinearOutputEquality, MonotoneInputs, OutputBounds, WeightNormBounds)
    from convexnn_pyomo.data import load_breast_cancer

    sizes, targets = network
    script = (_CONSTRAINED_SCRIPT.replace("CONSTRAINTS", constraints).replace("SORTKEY", sortkey)
              .replace("SIZES", sizes).replace("TARGETS", targets).replace("OUT", str(tmp_path)))
    done = subprocess.run([_mpiexec(), "-n", "2", sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    ds = load_breast_cancer()
    env = {**globals(), **locals(), "T": np.sort(ds.X[:80, 0])[39]}  # as the script's names (T: the groups' threshold)
    order = np.argsort(eval(sortkey, env), kind="stable")
    env["order"] = order
    X, y = ds.X[:80][order], eval(targets, env)
    if sortkey == _BY_CLASS:
        assert set(ds.y[:80][order][:40]) == {0.0}  # rank 0 holds no sample of class 1
    else:
        group = eval(_GROUP, env)
        assert set(group(X[:40])) == {0.0} and 1.0 in set(group(X[40:]))  # nor of group 1
    net = cnn.Network(eval(sizes), ["sigmoid", "identity"]).init_he(0)
    # the output layer's refit runs in one process only (docs/algorithm.md): the sharded run is the
    # one-process run without it
    one = SequentialRelaxation(rounds=4, hard_constraints=eval(constraints, env), refit_output_layer=False).solve(net, X, y)
    assert one.feasible or "LinearOutputEquality" in constraints
    if "MonotoneInputs" in constraints:  # rows on the weights: exact in every round, whatever the equalities do
        assert MonotoneInputs(increasing=[0], decreasing=[1]).violation(one.network, X, y) == 0.0
    assert len(rows) == 2 and rows[0] == rows[1]
    assert rows[0]["iterations"] == one.history.iterations.tolist() and rows[0]["status"] == one.status.value
    np.testing.assert_allclose(rows[0]["violation"], one.history.violation, rtol=1e-6, atol=1e-9)
    # the balanced bounds' four rounds start infeasible and their third round's feasibility phase ends in
    # Powell's search on the real violation (summed over the ranks, in another order): on this machine
    # (session 16) its step is 0.972064 on two ranks against 0.972107 in one process, while the solves
    # agree (the same iterations, relaxed objectives to 6 digits), and the weights end 4.8e-5 apart
    # (1.8e-7 on session 9's machine)
    tol = 1e-4 if "Balanced" in constraints else 1e-6
    assert np.abs(np.array(rows[0]["w"]) - one.network.get_flat()).max() <= tol


@pytest.mark.slow
@requires_mpiexec
def test_two_rank_ph_run_equals_the_one_process_ph_run(tmp_path):
    import json

    import pandas as pd

    from convexnn_pyomo.cli import main

    proc = _mpi_train(tmp_path / "mpi", "--rounds", "2", "--round-solver", "pyomo")
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert stdout.count("done:") == 1  # rank 0 prints, rank 1 only solves
    assert main(["train", "--shards", "2", "--samples", "20", "--hidden", "4", "--seed", "1", "--rounds", "2",
                 "--round-solver", "pyomo", "--out", str(tmp_path / "one")]) == 0
    two, one = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("mpi", "one"))
    assert two["final_loss"] == pytest.approx(one["final_loss"], rel=1e-6)
    hist = pd.read_csv(tmp_path / "mpi" / "history.csv")
    assert list(hist.iterations) == list(pd.read_csv(tmp_path / "one" / "history.csv").iterations)


def _rank_pid(marker: str, rank: int) -> int | None:
    """The pid of our process with ``PMI_RANK=rank`` whose command line contains ``marker``."""
    import os

    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read().decode(errors="replace")
            with open(f"/proc/{pid}/environ", "rb") as fh:
                env = fh.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if marker in cmd and "convexnn_pyomo.cli" in cmd and f"PMI_RANK={rank}" in env:
            return int(pid)
    return None


@requires_mpiexec
def test_a_killed_rank_ends_the_run_with_an_error_and_the_best_weights_saved(tmp_path):
    """mpich's mpiexec ends the other ranks itself (with -disable-auto-cleanup too: the survivor's
    MPI reports the lost peer); the watchdog below covers launchers or failures that leave it waiting."""
    import os
    import signal
    import time

    import pandas as pd

    out = tmp_path / "killed"
    proc = _mpi_train(out, "--rounds", "200", "--time-limit", "600")
    deadline = time.time() + 120
    while not (out / "weights.npz").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    pid = _rank_pid(str(out), 1)
    assert pid is not None and proc.poll() is None, "the run ended before a round was accepted"
    os.kill(pid, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=150)  # the surviving rank must not hang
    assert proc.returncode != 0
    assert "BAD TERMINATION" in stdout + stderr or "Killed" in stdout + stderr, stdout + stderr
    assert "done:" not in stdout
    hist = pd.read_csv(out / "history.csv")
    accepted = hist[hist.status == "accepted"]
    assert len(accepted) >= 1
    net = cnn.Network.load(out / "weights.npz")  # the best accepted weights, written after each accepted round
    assert net.sizes == [8, 4, 1]


class _FakeComm:
    def __init__(self):
        self.aborted = None

    def Get_size(self):
        return 2

    def Get_rank(self):
        return 1

    def Abort(self, code):
        self.aborted = code


def test_watchdog_aborts_a_round_that_outlives_its_limit(capsys):
    """A rank waiting forever for a dead one: the watchdog calls MPI Abort with a clear message."""
    import time

    from convexnn_pyomo.algorithms.sharded import _watchdog

    comm = _FakeComm()
    with _watchdog(0.2, comm):
        time.sleep(0.6)
    assert comm.aborted == 3
    assert "another rank has probably died" in capsys.readouterr().err
    quick = _FakeComm()
    with _watchdog(5.0, quick):
        pass
    time.sleep(0.1)
    assert quick.aborted is None  # a round that ends in time cancels it


_RETRY_SCRIPT = """
import json, sys
sys.path.insert(0, TESTS)
import convexnn_pyomo as cnn
from conftest import group_loss_case
net, X, y, bound = group_loss_case(4000)
res = cnn.train(net, X, y, hard_constraints=[bound], rounds=2, shards=2)
from mpi4py import MPI
with open(f"OUT/rank{MPI.COMM_WORLD.Get_rank()}.json", "w") as fh:
    json.dump({"w": res.network.get_flat().tolist(), "iterations": res.history.iterations.tolist(),
               "message": res.history.message.tolist()}, fh)
"""


@pytest.mark.slow
@requires_mpiexec
def test_a_retried_round_is_retried_on_every_rank_alike(tmp_path):
    """The failed first solve of tests/test_structured.py's retry example, on two ranks: both retry
    it (a decision every rank takes alike), and the run equals one process's (session 16: the same
    iterations 46 and 15, weights 2.9e-8 apart)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = _RETRY_SCRIPT.replace("TESTS", repr(str(Path(__file__).parent))).replace("OUT", str(tmp_path))
    done = subprocess.run([_mpiexec(), "-n", "2", sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1]
    net, X, y, bound = group_loss_case(4000)
    res = cnn.train(net, X, y, hard_constraints=[bound], rounds=2)
    two, one = ranks[0], {"w": res.network.get_flat().tolist(), "iterations": res.history.iterations.tolist()}
    assert two["iterations"] == one["iterations"] and "retried with {'centrality': 0.01}" in two["message"][0]
    assert np.abs(np.array(two["w"]) - np.array(one["w"])).max() <= 1e-6
