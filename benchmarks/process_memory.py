"""The fixed memory of a process that runs the structured round (issue 26): what each stage adds.

    python benchmarks/process_memory.py --out DIR [--m 500] [--chunk-size 1000]
    mpiexec -n 2 python benchmarks/process_memory.py --mpi --out DIR     # with MPI's stage (rank 0 writes)

Peak memory per MPI rank is ``F + v m / K``: a fixed part ``F`` that every rank pays and a part per
sample ``v``.  Two ranks reach half the memory of one process only when ``F`` is small against
``v m``: a per-rank ratio of at most 0.55 needs ``F <= v m / 9``.  This script measures ``F``'s
parts in one fresh process, stage by stage, at a small ``m`` (where the samples' own memory is a
few MB), and appends one row per stage to ``DIR/process_memory.csv``: ``stage``, ``rss_mb``
(VmRSS after the stage), ``added_mb`` (against the stage before), ``anon_mb`` / ``file_mb``
(RssAnon, RssFile: file pages are shared libraries such as LLVM's, shared between the ranks of one
machine but counted by each), ``peak_mb`` (VmHWM).  Stages: the interpreter with NumPy,
``import convexnn_pyomo``, numba as the kernels import it (``solvers/jit.py``: numba imports
scipy, without Pyomo's hook that would add scipy.stats and three more subpackages), the round built (the two-sample
template, its CasADi functions compiled or loaded, the elimination pattern), one round solved
(numba's compiled kernels loaded from its cache, the chunk's work space); with ``--mpi``, after
NumPy, mpi4py's import and one Allreduce.  ``NUMBA_DISABLE_JIT=1`` runs the kernels as Python
(slow), so the last stage then holds the work space without numba's kernels.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _status() -> dict[str, float]:
    keys = {"VmRSS": "rss_mb", "VmHWM": "peak_mb", "RssAnon": "anon_mb", "RssFile": "file_mb"}
    with open("/proc/self/status") as fh:
        pairs = (line.split(":", 1) for line in fh)
        return {keys[k]: int(v.split()[0]) / 1024.0 for k, v in pairs if k in keys}


def measure(m: int, chunk_size: int, mpi: bool = False) -> list[dict]:
    """One row per stage, in this (fresh) process."""
    rows, last = [], 0.0

    def stage(name: str) -> None:
        nonlocal last
        st = _status()
        rows.append({"stage": name, "added_mb": round(st["rss_mb"] - last, 1), **{k: round(v, 1) for k, v in st.items()}})
        last = st["rss_mb"]
        print(f"{name:<44} {st['rss_mb']:8.1f} MB  (+{rows[-1]['added_mb']:.1f})", flush=True)

    import numpy as np  # noqa: F401

    stage("python + numpy")
    if mpi:
        from mpi4py import MPI

        MPI.COMM_WORLD.allreduce(1.0)
        stage(f"mpi4py and one Allreduce ({MPI.COMM_WORLD.Get_size()} ranks)")
    import convexnn_pyomo as cnn

    stage("import convexnn_pyomo")
    from convexnn_pyomo.solvers.jit import import_numba

    import_numba()
    stage("import numba (and a bare scipy, which numba imports)")
    from scale import teacher_data

    from convexnn_pyomo.algorithms.rounds import StructuredRound

    X, Y, _ = teacher_data(m, [6, 6], 0.1)
    net = cnn.Network([8, 6, 6, 1], "sigmoid").init_he(0)
    rnd = StructuredRound(net, X, Y, "mean", [], 2.0, (1.0, 1.0, 1.0), "squared",
                          options={"threads": 1, "compile": "always", "chunk_size": chunk_size})
    stage(f"round built (m = {m})")
    fp = net.forward_pass(X)
    rnd.recentre(net, 2.0, fp, **rnd.exactness_weights(net, fp))
    t0 = time.perf_counter()
    solve = rnd.solve(600.0, {})
    stage(f"round solved ({solve.iterations} iterations, {time.perf_counter() - t0:.1f} s)")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--m", type=int, default=500, help="samples of the round (small: F, not the samples)")
    p.add_argument("--chunk-size", type=int, default=1000)
    p.add_argument("--mpi", action="store_true", help="a stage for mpi4py (run under mpiexec; rank 0 writes)")
    p.add_argument("--out", required=True, help="folder of process_memory.csv")
    args = p.parse_args()
    rows = measure(args.m, args.chunk_size, args.mpi)
    if args.mpi:
        from mpi4py import MPI

        if MPI.COMM_WORLD.Get_rank():
            return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "process_memory.csv"
    new = not path.exists()
    with path.open("a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["m", "chunk_size", "stage", "rss_mb", "added_mb", "anon_mb", "file_mb",
                                           "peak_mb"])
        if new:
            w.writeheader()
        for row in rows:
            w.writerow({"m": args.m, "chunk_size": args.chunk_size, **row})


if __name__ == "__main__":
    main()
