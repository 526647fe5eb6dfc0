"""Samples split over MPI ranks (convexnn_pyomo.distributed): placement, reductions, refusals.

The two-rank runs themselves (mpiexec -n 2, iterates equal to one process's) are in test_sharded.py."""

import numpy as np
import pytest

import convexnn_pyomo as cnn
from convexnn_pyomo.algorithms.steps import Evaluator
from convexnn_pyomo.constraints import BalancedMisfitBounds, CallableConstraint, ClasswiseMisfitBounds, OutputBounds
from convexnn_pyomo.distributed import SampleShards


class _Comm:
    """A stand-in for one rank of ``size`` (placement only: no reduction is called)."""

    def __init__(self, size, rank):
        self.size, self.rank = size, rank

    def Get_size(self):
        return self.size

    def Get_rank(self):
        return self.rank

    def allgather(self, x):
        return [x] * self.size


def test_one_process_reductions_are_the_identity():
    sh = SampleShards.serial(7)
    assert (sh.m, sh.total, sh.offset, sh.size, sh.rank, sh.sharded) == (7, 7, 0, 1, 0, False)
    a = np.arange(3.0)
    assert sh.sum(a) is a and sh.max(2.5) == 2.5 and sh.min(a) is a
    assert sh.any(True) and not sh.any(False) and sh.first("x") == "x"
    assert sh.traffic == {"calls": 0, "values": 0}


def test_split_gives_every_rank_a_contiguous_block_once():
    blocks = [SampleShards.split(10, 3, _Comm(3, r)) for r in range(3)]
    assert [(b.offset, b.m) for b in blocks] == [(0, 3), (3, 4), (7, 3)]
    assert all(b.total == 10 and b.sharded for b in blocks)
    X = np.arange(20.0).reshape(10, 2)
    assert np.array_equal(np.concatenate([b.rows(X) for b in blocks]), X)
    with pytest.raises(ValueError, match="expected 10 rows"):
        blocks[0].rows(X[:9])
    local = SampleShards.of_local(4, _Comm(2, 1))  # every rank holds 4 rows of its own
    assert (local.offset, local.m, local.total) == (4, 4, 8)


def test_split_refuses_a_rank_count_that_is_not_the_shard_count():
    with pytest.raises(ValueError, match="start it with mpiexec -n 2"):
        SampleShards.split(10, 2, _Comm(1, 0))
    with pytest.raises(ValueError, match="between 1 and the number of samples"):
        SampleShards.split(3, 4, _Comm(4, 0))


def test_hard_constraints_with_shards_are_refused_with_the_reason(small_problem):
    from convexnn_pyomo.algorithms.rounds import StructuredRound

    net, X, Y = small_problem
    sh = SampleShards.split(len(X), 2, _Comm(2, 0))
    Xr, Yr = sh.rows(X), sh.rows(Y)
    bound = CallableConstraint(lambda m: None)  # a user's Pyomo rows: what they sum over is unknown
    with pytest.raises(ValueError, match="CallableConstraint with shards > 1 on the structured round is not supported"):
        Evaluator(Xr, Yr, [bound], shards=sh)
    with pytest.raises(ValueError, match="constants .* come from each rank's own rows"):
        StructuredRound(net, Xr, Yr, "mean", [bound], 2.0, (1.0, 1.0, 1.0), shards=sh)
    assert len(Evaluator(Xr, Yr, [ClasswiseMisfitBounds(kappa_factor=1.0), OutputBounds(lower=0.0),
                                  BalancedMisfitBounds(0.5)], shards=sh).constraints) == 3
    with pytest.raises(ValueError, match="warm_start"):
        cnn.algorithms.SequentialRelaxation(shards=sh, warm_start=5).solve(net, Xr, Yr)


def test_the_averaged_loss_of_a_shard_divides_by_the_whole_data_set(small_problem):
    """A rank's template scales its samples' loss by 1/total (not 1/its own m): the ranks' objectives
    sum to the one-process objective."""
    import pyomo.environ as pyo

    from convexnn_pyomo.model import build_training_model

    net, X, Y = small_problem
    one = build_training_model(net, X, Y, reduction="mean")
    parts = []
    for r in range(2):
        sh = SampleShards.split(len(X), 2, _Comm(2, r))
        parts.append(pyo.value(build_training_model(net, sh.rows(X), sh.rows(Y), reduction="mean", shards=sh).loss))
    assert sum(parts) == pytest.approx(pyo.value(one.loss), rel=1e-12)
