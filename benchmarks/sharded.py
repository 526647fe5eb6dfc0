"""Sharded rounds (issue 13): one round of the default schedule split over K data shards (mpi-sppy PH).

    python benchmarks/sharded.py --sizes 10000,30000 --shards 1,2,4,8 --out DIR [--hidden 6,6] [--ranks N]
        [--ph-iterations 500] [--tol 1e-6] [--timeout 7200]

Data: ``benchmarks/scale.py``'s teacher data (``X ~ N(0, I_8)``, a random 8-6-6-1 sigmoid teacher
plus noise 0.1).  Student: the same architecture, He seed 0, averaged loss.  The round is the
adaptive schedule's first round (eta 2, mu = the exactness weights at the initial network, warm
start at its lift).  ``K = 1`` is the single model (:class:`~convexnn_pyomo.algorithms.rounds.PyomoRound`,
one Ipopt solve); ``K > 1`` is :class:`~convexnn_pyomo.algorithms.sharded.ShardedRound` with PH's
stopping rule ``--tol``.  Each (m, K) runs in its own process group: ``mpiexec -n min(K, N)`` with
``--ranks N`` (default 1: one process holds every shard, mpi-sppy without MPI).

Row per (m, K), appended to ``DIR/sharded.csv`` as soon as it is measured: ``build_s`` (the shard
models, relaxation, regularizer), ``round_s`` (the solve: Ipopt or all PH iterations),
``ph_iterations``, ``seconds_per_ph_iteration``, ``peak_rss_mb_per_rank`` (largest VmHWM over the
ranks), ``relaxed_objective``, ``round1_loss`` (true loss of the round's network) and
``max_weight_diff`` (largest |w_K - w_1| against the K = 1 row of the same m, when there is one).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import _peak_rss_mb, teacher_data

COLUMNS = ["m", "shards", "ranks", "build_s", "round_s", "ph_iterations", "seconds_per_ph_iteration",
           "peak_rss_mb_per_rank", "relaxed_objective", "round1_loss", "max_weight_diff", "status", "hidden", "tol"]


def worker(spec: dict) -> None:
    """One round at (m, K) in this process (one rank of ``mpiexec`` or alone); rank 0 prints the row."""
    import convexnn_pyomo as cnn
    from convexnn_pyomo.algorithms.rounds import IPOPT_DEFAULTS, PyomoRound
    from convexnn_pyomo.solvers.registry import require_solver

    m, K, hidden = spec["m"], spec["shards"], spec["hidden"]
    X, Y, _ = teacher_data(m, hidden, 0.1)
    net = cnn.Network([8, *hidden, 1], "sigmoid").init_he(0)
    t0 = time.perf_counter()
    args = (net, X, Y, "mean", "parabolic", [])
    if K == 1:
        rnd, rank, comm = PyomoRound(*args, require_solver("ipopt_casadi"), 2.0, (1.0, 1.0, 1.0)), 0, None
    else:
        from convexnn_pyomo.algorithms.sharded import ShardedRound

        rnd = ShardedRound(*args, "ipopt_casadi", 2.0, (1.0, 1.0, 1.0), shards=K,
                           ph_options={"tol": spec["tol"], "PHIterLimit": spec["ph_iterations"]})
        comm = rnd._comm
        rank = comm.Get_rank()
    fp = net.forward_pass(X)
    rnd.recentre(net, 2.0, fp, **rnd.exactness_weights(net, fp))
    build_s = time.perf_counter() - t0
    solve = rnd.solve(spec["timeout"], dict(IPOPT_DEFAULTS))
    sol = rnd.solution()
    rss = _peak_rss_mb() if comm is None or comm.Get_size() == 1 else comm.allreduce(_peak_rss_mb(), op=_mpi_max())
    its = solve.iterations if K > 1 else 0
    row = {"m": m, "shards": K, "ranks": 1 if comm is None else comm.Get_size(), "build_s": build_s,
           "round_s": solve.seconds, "ph_iterations": its, "seconds_per_ph_iteration": solve.seconds / its if its else "",
           "peak_rss_mb_per_rank": rss, "relaxed_objective": rnd.relaxed_objective(),
           "round1_loss": sol.loss(X, Y) / m, "status": solve.termination, "hidden": ",".join(map(str, hidden)),
           "tol": spec["tol"], "weights": sol.get_flat().tolist()}
    if rank == 0:
        print(json.dumps(row), flush=True)


def _mpi_max():
    from mpisppy import MPI

    return MPI.MAX


def run(spec: dict, ranks: int) -> dict:
    """Run :func:`worker` for ``spec`` in ``ranks`` processes; a crash or timeout becomes the status."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    if ranks > 1:
        cmd = [shutil.which("mpiexec") or "mpiexec", "-n", str(ranks), *cmd]
    try:
        out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=spec["timeout"] + 600)
    except subprocess.TimeoutExpired:
        return {"m": spec["m"], "shards": spec["shards"], "status": "timeout"}
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return {"m": spec["m"], "shards": spec["shards"], "status": f"crashed (exit {out.returncode}): {tail}"[:300]}
    return json.loads(lines[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10000")
    p.add_argument("--shards", default="1,2,4,8")
    p.add_argument("--hidden", default="6,6")
    p.add_argument("--ranks", type=int, default=1, help="MPI processes (at most K per run)")
    p.add_argument("--ph-iterations", type=int, default=500)
    p.add_argument("--tol", type=float, default=1e-6)
    p.add_argument("--timeout", type=float, default=7200.0, help="seconds per round (PH's time limit)")
    p.add_argument("--out", default=None, help="folder of sharded.csv (required)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(json.loads(args.worker))
    if args.out is None:
        p.error("--out is required")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "sharded.csv"
    hidden = [int(h) for h in args.hidden.split(",")]
    for m in (int(s) for s in args.sizes.split(",")):
        reference = None
        for K in (int(k) for k in args.shards.split(",")):
            spec = {"m": m, "shards": K, "hidden": hidden, "tol": args.tol, "ph_iterations": args.ph_iterations,
                    "timeout": args.timeout}
            row = run(spec, min(K, args.ranks))
            weights = np.asarray(row.pop("weights", []))
            if K == 1 and weights.size:
                reference = weights
            if reference is not None and weights.size:
                row["max_weight_diff"] = float(np.abs(weights - reference).max())
            new = not path.exists()
            with open(path, "a", newline="") as fh:
                w = csv.DictWriter(fh, COLUMNS, extrasaction="ignore")
                if new:
                    w.writeheader()
                w.writerow(row)
            print({k: row.get(k) for k in COLUMNS}, flush=True)


if __name__ == "__main__":
    main()
