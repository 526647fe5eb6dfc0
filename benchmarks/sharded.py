"""Sharded rounds: the structured round with one MPI rank per shard (issue 26), or mpi-sppy PH (issue 13).

    python benchmarks/sharded.py --sizes 10000,100000 --shards 1,2 --out DIR [--backend schur|ph]
        [--threads 1] [--chunk-size 1000] [--hidden 6,6] [--rounds 1] [--timeout 7200]
    PH only: [--ranks N] [--ph-iterations 500] [--tol 1e-6] [--single schur|pyomo] [--cold-rounds] [--ipopt JSON]

Data: ``benchmarks/scale.py``'s teacher data (``X ~ N(0, I_8)``, a random 8-6-6-1 sigmoid teacher
plus noise 0.1).  Student: the same architecture, He seed 0, averaged loss.  Round 1 is the
adaptive schedule's first round (eta 2, mu = the exactness weights at the initial network, warm
start at its lift); each of the ``--rounds`` after it is re-centred at the last round's solution.

``--backend schur`` (default): ``K = 1`` is the structured round of ``train`` in one process;
``K > 1`` runs ``mpiexec -n K``, every rank keeps only its ``m / K`` rows, builds its own template
and eliminates its own samples with ``--threads`` threads, and the interior point reduces the
Schur complement, right-hand sides and norms over the ranks
(:mod:`convexnn_pyomo.distributed`).  ``--backend ph``: ``K > 1`` is
:class:`~convexnn_pyomo.algorithms.sharded.ShardedRound` (PH's stopping rule ``--tol``, one PH for
all rounds unless ``--cold-rounds``; ``--ipopt`` updates the subproblems' Ipopt options) in
``mpiexec -n min(K, N)`` with ``--ranks N`` (default 1: one process holds every shard); ``K = 1``
is ``--single`` (the structured round, or the Pyomo model by Ipopt; the ``single = direct`` rows
were measured with the retired hand-written CasADi round, reproducible at commit ec0d73c).

Row per (m, K, backend, round), appended to ``DIR/sharded.csv`` as soon as it is measured:
``backend``, ``threads`` (per rank), ``build_s`` (the template or shard models; round 1),
``round_s`` (the solve), ``iterations`` (interior-point iterations; schur), ``ph_iterations``,
``seconds_per_iteration``, ``seconds_per_ph_iteration``, ``peak_rss_mb_per_rank`` (largest VmHWM
over the ranks), ``relaxed_objective``, ``round_loss`` (mean true loss of the round's network)
and ``max_weight_diff_vs_single`` (= ``max_weight_diff``: largest |w_K - w_1| against the K = 1
row of the same m and round in the same invocation).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import _peak_rss_mb, append_row, teacher_data

COLUMNS = ["m", "shards", "ranks", "round", "build_s", "round_s", "ph_iterations", "seconds_per_ph_iteration",
           "peak_rss_mb_per_rank", "relaxed_objective", "round_loss", "max_weight_diff", "status", "hidden", "tol",
           "single", "ipopt", "backend", "iterations", "threads", "seconds_per_iteration", "max_weight_diff_vs_single",
           "coupling", "chunk_size"]


def _single_round(net, X, Y, single: str):
    """K = 1: the structured round (the default rounds of ``train``) or the Pyomo model's round; both
    with ``ShardedRound``'s protocol (:class:`~convexnn_pyomo.algorithms.rounds.RoundProblem`)."""
    from convexnn_pyomo.algorithms.rounds import PyomoRound, StructuredRound
    from convexnn_pyomo.solvers.registry import require_solver

    if single == "pyomo":
        return PyomoRound(net, X, Y, "mean", "parabolic", [], require_solver("ipopt_casadi"), 2.0, (1.0, 1.0, 1.0))
    return StructuredRound(net, X, Y, "mean", [], 2.0, (1.0, 1.0, 1.0), "squared")


def _recentre(rnd, ref, X) -> None:
    """Centre the round at ``ref`` with eta 2 and the exactness weights there."""
    fp = ref.forward_pass(X)
    rnd.recentre(ref, 2.0, fp, **rnd.exactness_weights(ref, fp))


def _solve(rnd, timeout: float, ipopt: dict) -> tuple[float, int, str]:
    """(seconds, PH iterations, Ipopt's or Schur's, status) of one round; ``ipopt`` over the round's
    defaults (the structured round takes no Ipopt options)."""
    from convexnn_pyomo.algorithms.rounds import StructuredRound

    solve = rnd.solve(timeout, {} if isinstance(rnd, StructuredRound) else dict(ipopt))
    return solve.seconds, solve.iterations, solve.termination


def worker(spec: dict) -> None:
    """``spec["rounds"]`` rounds at (m, K) in this process (one rank of ``mpiexec`` or alone): round 1
    at the initial network, each later one re-centred at the last round's solution (eta 2, mu = the
    exactness weights there); rank 0 prints one JSON row per round."""
    import convexnn_pyomo as cnn

    m, K, hidden = spec["m"], spec["shards"], spec["hidden"]
    X, Y, _ = teacher_data(m, hidden, 0.1)
    net = cnn.Network([8, *hidden, 1], "sigmoid").init_he(0)
    if spec.get("backend") == "schur":
        return schur_worker(spec, net, X, Y)
    t0 = time.perf_counter()
    if K == 1:
        rnd, comm = _single_round(net, X, Y, spec.get("single", "schur")), None
    else:
        from convexnn_pyomo.algorithms.sharded import ShardedRound

        rnd = ShardedRound(net, X, Y, "mean", "parabolic", [], "ipopt_casadi", 2.0, (1.0, 1.0, 1.0), shards=K,
                           ph_options={"tol": spec["tol"], "PHIterLimit": spec["ph_iterations"],
                                       "warm_rounds": spec.get("warm_rounds", True)})
        comm = rnd._comm
    build_s, ref = time.perf_counter() - t0, net
    for r in range(1, spec.get("rounds", 1) + 1):
        _recentre(rnd, ref, X)
        seconds, its, status = _solve(rnd, spec["timeout"], spec.get("ipopt", {}))
        ref = rnd.solution()
        _print_row(spec, comm, {"round": r, "build_s": build_s if r == 1 else 0.0, "round_s": seconds,
                                "ph_iterations": its if K > 1 else 0, "status": status,
                                "relaxed_objective": rnd.relaxed_objective(), "round_loss": ref.loss(X, Y) / m,
                                "weights": ref.get_flat().tolist()})


def schur_worker(spec: dict, net, X, Y) -> None:
    """The structured round over ``K`` MPI ranks (``K = 1``: one process): each rank keeps its own
    rows of the data, builds its template and eliminates its samples with ``threads`` threads; the
    interior point reduces its sums over the ranks (:mod:`convexnn_pyomo.distributed`)."""
    from convexnn_pyomo.algorithms.rounds import StructuredRound
    from convexnn_pyomo.distributed import SampleShards

    K, m = spec["shards"], spec["m"]
    shards = SampleShards.split(m, K) if K > 1 else None
    if shards is not None:  # this rank's rows only; the others are dropped before the round is built
        X, Y = shards.rows(X), shards.rows(Y)
    comm = None if shards is None else shards.comm
    t0 = time.perf_counter()
    rnd = StructuredRound(net, X, Y, "mean", [], 2.0, (1.0, 1.0, 1.0), "squared",
                          options={"threads": spec["threads"], "coupling": spec.get("coupling", "auto"),
                                   **({"chunk_size": spec["chunk_size"]} if spec.get("chunk_size") else {})},
                          shards=shards)
    build_s, ref = time.perf_counter() - t0, net
    for r in range(1, spec.get("rounds", 1) + 1):
        _recentre(rnd, ref, X)
        seconds, its, status = _solve(rnd, spec["timeout"], {})
        ref = rnd.solution()
        loss = ref.loss(X, Y) if shards is None else shards.sum(ref.loss(X, Y))
        _print_row(spec, comm, {"round": r, "build_s": build_s if r == 1 else 0.0, "round_s": seconds,
                                "ph_iterations": 0, "iterations": its, "status": status,
                                "seconds_per_iteration": seconds / its if its else "",
                                "coupling": "recompute" if rnd.ipm.recompute else "keep",
                                "chunk_size": rnd.ipm.config.chunk_size,
                                "relaxed_objective": rnd.relaxed_objective(), "round_loss": loss / m,
                                "weights": ref.get_flat().tolist()})


def _print_row(spec: dict, comm, row: dict) -> None:
    """Complete ``row`` (peak memory over the ranks, sizes) and print it as JSON on rank 0."""
    rss = _peak_rss_mb() if comm is None or comm.Get_size() == 1 else comm.allreduce(_peak_rss_mb(), op=_mpi_max())
    its = row["ph_iterations"]
    row.update(backend=spec.get("backend", "ph") if spec["shards"] > 1 else "schur", threads=spec.get("threads", ""))
    row.update(m=spec["m"], shards=spec["shards"], ranks=1 if comm is None else comm.Get_size(),
               seconds_per_ph_iteration=row["round_s"] / its if its else "", peak_rss_mb_per_rank=rss,
               hidden=",".join(map(str, spec["hidden"])), tol=spec["tol"],
               single=spec.get("single", "schur") if spec["shards"] == 1 else "",
               ipopt=json.dumps(spec.get("ipopt", {})))
    if comm is None or comm.Get_rank() == 0:
        print(json.dumps(row), flush=True)


def _mpi_max():
    from mpi4py import MPI

    return MPI.MAX


def run(spec: dict, ranks: int):
    """Run :func:`worker` for ``spec`` in ``ranks`` processes, yielding each round's row as it is
    printed; a crash or a timeout (``--timeout`` per round, plus 10 min for building) ends with a
    row whose status says so."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    if ranks > 1:
        cmd = [shutil.which("mpiexec") or "mpiexec", "-n", str(ranks), *cmd]
    deadline = time.monotonic() + spec["rounds"] * spec["timeout"] + 600
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    timer = threading.Timer(max(deadline - time.monotonic(), 1.0), proc.kill)
    timer.start()
    try:
        for line in proc.stdout:
            if line.startswith("{"):
                yield json.loads(line)
        err = proc.stderr.read()
        code = proc.wait()
    finally:
        timer.cancel()
    if code != 0:
        tail = "timeout" if time.monotonic() >= deadline else (err.strip().splitlines() or ["no output"])[-1]
        yield {"m": spec["m"], "shards": spec["shards"], "status": f"crashed (exit {code}): {tail}"[:300]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10000")
    p.add_argument("--shards", default="1,2,4,8")
    p.add_argument("--hidden", default="6,6")
    p.add_argument("--ranks", type=int, default=1, help="MPI processes (at most K per run)")
    p.add_argument("--rounds", type=int, default=2, help="round 1 and re-centred rounds after it")
    p.add_argument("--ph-iterations", type=int, default=500)
    p.add_argument("--tol", type=float, default=1e-6)
    p.add_argument("--cold-rounds", action="store_true", help="a fresh PH per round (ph_options warm_rounds=False)")
    p.add_argument("--single", choices=["schur", "pyomo"], default="schur",
                   help="the K = 1 round: the structured round (schur) or the Pyomo model by Ipopt (pyomo); the "
                        "direct CasADi round was retired (its rows: commit ec0d73c)")
    p.add_argument("--timeout", type=float, default=7200.0, help="seconds per round (PH's time limit)")
    p.add_argument("--ipopt", default="{}", help="JSON: Ipopt options over the rounds' defaults (K > 1: the "
                   "subproblems' IPOPT_SUBPROBLEM), e.g. '{\"mumps_pivot_order\": 5}' for METIS")
    p.add_argument("--backend", choices=["schur", "ph"], default="schur",
                   help="K > 1: the structured round with one MPI rank per shard (schur, mpiexec -n K) or the Pyomo "
                        "model by mpi-sppy PH (ph, --ranks processes)")
    p.add_argument("--threads", type=int, default=1, help="schur: threads per rank (chunks of samples)")
    p.add_argument("--chunk-size", type=int, default=None,
                   help="schur: samples per batched elimination (default: the solver's, 1000)")
    p.add_argument("--coupling", choices=["auto", "keep", "recompute"], default="auto",
                   help="schur: the Schur interior point's coupling option (column coupling: what it chose)")
    p.add_argument("--out", default=None, help="folder of sharded.csv (required)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(json.loads(args.worker))
    if args.out is None:
        p.error("--out is required")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    hidden = [int(h) for h in args.hidden.split(",")]
    for m in (int(s) for s in args.sizes.split(",")):
        reference = {}  # round -> K = 1 weights
        for K in (int(k) for k in args.shards.split(",")):
            spec = {"m": m, "shards": K, "hidden": hidden, "tol": args.tol, "ph_iterations": args.ph_iterations,
                    "timeout": args.timeout, "rounds": args.rounds, "single": args.single,
                    "warm_rounds": not args.cold_rounds, "ipopt": json.loads(args.ipopt), "backend": args.backend,
                    "threads": args.threads, "coupling": args.coupling, "chunk_size": args.chunk_size}
            ranks = K if args.backend == "schur" else min(K, args.ranks)  # the structured round: a rank per shard
            for row in run(spec, ranks):
                weights = np.asarray(row.pop("weights", []))
                if K == 1 and weights.size:
                    reference[row["round"]] = weights
                if row.get("round") in reference and weights.size:
                    row["max_weight_diff"] = float(np.abs(weights - reference[row["round"]]).max())
                    row["max_weight_diff_vs_single"] = row["max_weight_diff"]
                append_row(out / "sharded.csv", row, COLUMNS)
                print({k: row.get(k) for k in COLUMNS}, flush=True)


if __name__ == "__main__":
    main()
