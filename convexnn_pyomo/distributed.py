r"""Samples split over MPI ranks: where a shard sits in the data set, and the reductions over ranks.

A structured round couples its samples only through sums (:mod:`.solvers.schur_ipm`), and
Algorithm 1 needs of the data only sums and maxima over samples (the loss, its gradient, the
exactness weights).  With the samples split over ``K`` ranks (rank ``r`` holds the contiguous rows
``offset : offset + m``) every such quantity is the rank's own value reduced over the ranks:

.. math::
    \sum_{j=1}^{M} f_j = \sum_{r=1}^{K} \sum_{j \in \text{shard } r} f_j ,\qquad
    \max_j f_j = \max_r \max_{j \in \text{shard } r} f_j ,

so every rank sees the same numbers and takes the same decisions (step lengths, stop tests,
accepted rounds) as one process holding all ``M`` samples.  :meth:`SampleShards.serial` is the
one-process case: every reduction is the identity.  ``mpi4py`` (the ``[mpi]`` extra) is imported only by
:meth:`SampleShards.split` / :meth:`SampleShards.of_local`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["SampleShards", "mpi_rank"]


def mpi_rank() -> int:
    """This process's rank in ``MPI.COMM_WORLD`` (0 without mpi4py)."""
    try:
        from mpi4py import MPI
    except ImportError:
        return 0
    return int(MPI.COMM_WORLD.Get_rank())


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise ImportError("shards > 1 with the structured round runs one MPI rank per shard: pip install "
                          "'convexnn-pyomo[mpi]' (mpi4py and an MPI, e.g. the mpich wheel) and start the run "
                          "with mpiexec -n K") from err
    return MPI


@dataclass(frozen=True)
class SampleShards:
    """This rank's rows ``offset : offset + m`` of ``total`` samples, and reductions over the ranks
    of ``comm`` (``None``: one process, every reduction the identity)."""

    m: int
    total: int
    offset: int = 0
    comm: object = None
    #: reductions done over the ranks: ``calls`` and ``values`` (doubles) sent, for cost models
    traffic: dict = field(default_factory=lambda: {"calls": 0, "values": 0}, compare=False, repr=False)

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def serial(cls, m: int) -> "SampleShards":
        return cls(int(m), int(m))

    @classmethod
    def split(cls, total: int, shards: int, comm=None) -> "SampleShards":
        """Rank ``r`` of ``comm`` (default ``COMM_WORLD``) takes the ``r``-th of ``shards`` equal
        contiguous blocks of ``total`` rows; ``shards`` must be the number of ranks."""
        if not 1 <= shards <= total:
            raise ValueError(f"shards must be an integer between 1 and the number of samples ({total}), got {shards!r}")
        comm = comm if comm is not None else _mpi().COMM_WORLD
        if comm.Get_size() != shards:
            raise ValueError(f"shards={shards} with the structured round runs one MPI rank per shard, but this run "
                             f"has {comm.Get_size()} rank(s): start it with mpiexec -n {shards}")
        edges = np.linspace(0, total, shards + 1).round().astype(int)
        r = comm.Get_rank()
        return cls(int(edges[r + 1] - edges[r]), int(total), int(edges[r]), comm)

    @classmethod
    def of_local(cls, m: int, comm=None) -> "SampleShards":
        """This rank holds ``m`` rows of its own (its shard only: no rank reads the whole data set);
        the offsets follow rank order."""
        comm = comm if comm is not None else _mpi().COMM_WORLD
        sizes = comm.allgather(int(m))
        return cls(int(m), int(sum(sizes)), int(sum(sizes[: comm.Get_rank()])), comm)

    # -- where --------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return 1 if self.comm is None else self.comm.Get_size()

    @property
    def rank(self) -> int:
        return 0 if self.comm is None else self.comm.Get_rank()

    @property
    def sharded(self) -> bool:
        return self.size > 1

    def rows(self, A: np.ndarray) -> np.ndarray:
        """This rank's rows of an array over all ``total`` samples (a copy)."""
        if len(A) != self.total:
            raise ValueError(f"expected {self.total} rows, got {len(A)}")
        return np.array(A[self.offset:self.offset + self.m])

    def machine_samples(self) -> int:
        """Samples held by all the ranks on this machine (one shared-memory node), this rank's
        included: what their rounds' memory adds up to.  Collective: every rank calls it."""
        if not self.sharded:
            return self.m
        node = self.comm.Split_type(_mpi().COMM_TYPE_SHARED)
        try:
            return int(node.allreduce(int(self.m)))
        finally:
            node.Free()

    # -- reductions (identity in one process) ----------------------------------------------------
    def _reduce(self, x, op: str):
        if not self.sharded:
            return x
        MPI = _mpi()
        arr = np.array(x, dtype=float).reshape(-1)
        out = np.empty_like(arr)
        self.traffic["calls"] += 1
        self.traffic["values"] += arr.size
        self.comm.Allreduce(arr, out, op={"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}[op])
        return float(out[0]) if np.ndim(x) == 0 else out.reshape(np.shape(x))

    def sum(self, x):
        """Sum over the ranks (of a float or an array; the same type back)."""
        return self._reduce(x, "sum")

    def sum_each(self, *parts: np.ndarray) -> list[np.ndarray]:
        """Each array summed over the ranks, all in one reduction (one process: as they are)."""
        if not self.sharded:
            return list(parts)
        flat = self.sum(np.concatenate([np.ravel(p) for p in parts]))
        edges = np.cumsum([0] + [np.size(p) for p in parts])
        return [flat[a:b].reshape(np.shape(p)) for a, b, p in zip(edges[:-1], edges[1:], parts)]

    def max(self, x):
        return self._reduce(x, "max")

    def min(self, x):
        return self._reduce(x, "min")

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` holds on some rank: a decision every rank takes alike."""
        return bool(self._reduce(float(bool(flag)), "max")) if self.sharded else bool(flag)

    def first(self, text: str) -> str:
        """The first non-empty ``text`` in rank order ('' if none): one rank's evidence for all."""
        if not self.sharded:
            return text
        return next((t for t in self.comm.allgather(text) if t), "")
