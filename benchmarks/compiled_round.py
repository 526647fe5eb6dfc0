"""One structured round with the per-sample functions in CasADi's virtual machine, then compiled.

The round of ``benchmarks/constrained_scale.py`` (8-6-6-1 sigmoid teacher-student, class-wise
bounds (19) with ``kappa_factor = 0.5``, eta 1, mu 1) solved twice by the Schur interior point from
the same start, ``compile="never"`` and ``compile="always"``, ``threads`` as given (1: the ratio is
per core).  Prints the first compilation's seconds (an empty cache), seconds, iterations, per-iteration seconds, the objectives' relative difference
and the largest difference of the shared variables, and the ratio, and appends them to
``DIR/compiled_round.csv``:

    python benchmarks/compiled_round.py --m 10000 --threads 1 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from constrained_scale import teacher_student

import convexnn_pyomo as cnn
from convexnn_pyomo.algorithms.rounds import StructuredRound
from convexnn_pyomo.solvers.schur_ipm import SchurInteriorPoint
from convexnn_pyomo.threads import blas_threads


def solve(rnd: StructuredRound, mode: str, threads: int):
    """One solve of the round's arrow problem with ``compile=mode``; (result, build seconds)."""
    t0 = time.perf_counter()
    ipm = SchurInteriorPoint(rnd.arrow, omega=rnd.omega, compile=mode, threads=threads)
    build = time.perf_counter() - t0
    ps, pv = rnd.arrow.parameters()
    s0, V0 = rnd.arrow.start()
    return ipm.solve(s0, V0, ps, pv), build


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--m", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    X, Y = teacher_student(args.m)
    net = cnn.Network([8, 6, 6, 1], ["sigmoid", "sigmoid", "identity"]).init_he(0)
    rnd = StructuredRound(net, X, Y.reshape(-1, 1), "mean", [cnn.ClasswiseMisfitBounds(0.5)], 1.0, (1.0, 1.0, 1.0),
                          options={"compile": "never"})
    with blas_threads(args.threads), tempfile.TemporaryDirectory() as cache:
        os.environ["CONVEXNN_KERNEL_CACHE"] = cache  # an empty cache: the first compilation is timed
        vm, _ = solve(rnd, "never", args.threads)
        cc, build = solve(rnd, "always", args.threads)
    row = {"m": args.m, "threads": args.threads, "vm_seconds": round(vm.seconds, 2), "vm_iterations": vm.iterations,
           "compiled_seconds": round(cc.seconds, 2), "compiled_iterations": cc.iterations,
           "first_compile_seconds": round(build, 2),
           "vm_s_per_it": round(vm.seconds / max(vm.iterations, 1), 3),
           "compiled_s_per_it": round(cc.seconds / max(cc.iterations, 1), 3),
           "ratio": round(vm.seconds / cc.seconds, 3),
           "objective_rel_diff": abs(vm.objective - cc.objective) / abs(vm.objective),
           "max_shared_diff": float(np.abs(vm.s - cc.s).max())}
    print(row, flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "compiled_round.csv"
    new = not path.exists()
    with path.open("a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


if __name__ == "__main__":
    main()
