"""Weak scaling of the structured round over MPI ranks (issue 26): measured parts and a projection.

    python benchmarks/weak_scaling.py --out DIR [--scale-csv benchmarks/results/sharded.csv]
        [--target-m 10000000] [--machines 100] [--count-m 4000] [--latency-us 20] [--bandwidth-gbs 1.25]

Measured in this run, nothing else running:

1. ``allreduce``: the time of one ``MPI_Allreduce`` (sum of doubles) between 2 ranks of this
   machine (``mpiexec -n 2``, shared memory), for the message sizes the round sends;
2. ``traffic``: the reductions one interior-point iteration does (calls and doubles per
   iteration, from :attr:`~convexnn_pyomo.distributed.SampleShards.traffic`), counted in a round
   at ``--count-m`` samples on 2 ranks (they do not depend on ``m``).

Read from ``--scale-csv`` (rows of ``benchmarks/sharded.py --backend schur``): the per-rank work,
i.e. seconds per iteration, iterations and peak memory of the round in one process with one
thread at ``m = target_m / machines`` samples (the work a rank does at that size: every sum is
local until the reduction).

Projection for ``target_m`` samples on ``machines`` machines, one rank each: an iteration costs
the per-rank work plus ``calls`` Allreduces, each modelled (recursive doubling) as
``2 ceil(log2 P) (latency + 8 n / bandwidth)`` for ``n`` doubles: ``--latency-us`` and
``--bandwidth-gbs`` are ASSUMED network figures (defaults: 20 us, 1.25 GB/s, i.e. 10 Gb Ethernet),
printed beside the measured shared-memory cost.  Writes ``DIR/weak_scaling.csv`` (one row per
quantity, with ``source`` = measured / read / assumed / projected).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import teacher_data


def allreduce_worker(sizes: list[int], reps: int) -> None:
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    out = {}
    for n in sizes:
        a, b = np.ones(n), np.empty(n)
        comm.Barrier()
        for _ in range(10):
            comm.Allreduce(a, b, op=MPI.SUM)
        comm.Barrier()
        t0 = time.perf_counter()
        for _ in range(reps):
            comm.Allreduce(a, b, op=MPI.SUM)
        out[n] = comm.allreduce((time.perf_counter() - t0) / reps, op=MPI.MAX)
    if comm.Get_rank() == 0:
        print(json.dumps({"allreduce": out}), flush=True)


def traffic_worker(m: int) -> None:
    import convexnn_pyomo as cnn
    from convexnn_pyomo.algorithms.rounds import StructuredRound
    from convexnn_pyomo.distributed import SampleShards

    X, Y, _ = teacher_data(m, [6, 6], 0.1)
    net = cnn.Network([8, 6, 6, 1], "sigmoid").init_he(0)
    shards = SampleShards.split(m, 2)
    X, Y = shards.rows(X), shards.rows(Y)
    rnd = StructuredRound(net, X, Y, "mean", [], 2.0, (1.0, 1.0, 1.0), "squared", options={"threads": 1},
                          shards=shards)
    fp = net.forward_pass(X)
    rnd.recentre(net, 2.0, fp, **rnd.exactness_weights(net, fp))
    before = dict(shards.traffic)
    solve = rnd.solve(3600.0, {})
    calls, values = (shards.traffic[k] - before[k] for k in ("calls", "values"))
    if shards.rank == 0:
        print(json.dumps({"traffic": {"iterations": solve.iterations, "calls": calls, "values": values,
                                      "shared": rnd.arrow.ns + rnd.arrow.n_link}}), flush=True)


def _mpi(*args: str) -> dict:
    cmd = [shutil.which("mpiexec") or "mpiexec", "-n", "2", sys.executable, str(Path(__file__).resolve()), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])


def _per_rank_row(path: Path, m: int) -> dict:
    with path.open() as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("backend") == "schur" and r["shards"] == "1"
                and int(r["m"]) == m and r.get("threads") == "1" and r.get("round") == "1"]
    if not rows:
        raise SystemExit(f"{path} has no one-process, one-thread schur row at m = {m}: run python "
                         f"benchmarks/sharded.py --sizes {m} --shards 1 --threads 1 --rounds 1 --out {path.parent}")
    return rows[-1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None)
    p.add_argument("--scale-csv", default="benchmarks/results/sharded.csv")
    p.add_argument("--target-m", type=int, default=10_000_000)
    p.add_argument("--machines", type=int, default=100)
    p.add_argument("--count-m", type=int, default=4000)
    p.add_argument("--latency-us", type=float, default=20.0, help="ASSUMED network latency per message")
    p.add_argument("--bandwidth-gbs", type=float, default=1.25, help="ASSUMED network bandwidth, GB/s")
    p.add_argument("--allreduce-worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--traffic-worker", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.allreduce_worker:
        return allreduce_worker([int(n) for n in args.allreduce_worker.split(",")], 2000)
    if args.traffic_worker:
        return traffic_worker(args.traffic_worker)
    if args.out is None:
        p.error("--out is required")
    traffic = _mpi("--traffic-worker", str(args.count_m))["traffic"]
    per_it = {k: traffic[k] / traffic["iterations"] for k in ("calls", "values")}
    n_shared = traffic["shared"]
    sizes = [1, 8, n_shared, n_shared * n_shared + n_shared * 8]
    cost = {int(k): v for k, v in _mpi("--allreduce-worker", ",".join(map(str, sizes)))["allreduce"].items()}
    m_rank = args.target_m // args.machines
    row = _per_rank_row(Path(args.scale_csv), m_rank)
    work, its, rss = float(row["seconds_per_iteration"]), int(row["iterations"]), float(row["peak_rss_mb_per_rank"])
    P = args.machines
    steps = 2 * math.ceil(math.log2(P))
    mean_values = per_it["values"] / per_it["calls"]
    network = per_it["calls"] * steps * (args.latency_us * 1e-6) + steps * 8 * per_it["values"] / (args.bandwidth_gbs * 1e9)
    # the same model fitted to this machine's 2 ranks (2 steps): latency from 1 double, bandwidth from the largest
    lat_local = cost[1] / 2
    bw_local = 2 * 8 * sizes[-1] / max(cost[sizes[-1]] - cost[1], 1e-12)
    local = per_it["calls"] * 2 * lat_local + 2 * 8 * per_it["values"] / bw_local
    rows = [
        ("reductions per iteration", per_it["calls"], "calls", f"measured (m = {args.count_m}, 2 ranks)"),
        ("doubles reduced per iteration", per_it["values"], "doubles", f"measured (m = {args.count_m}, 2 ranks)"),
        ("mean doubles per reduction", mean_values, "doubles", "measured"),
        *[(f"Allreduce of {n} doubles, 2 ranks", cost[n] * 1e6, "us", "measured (shared memory)") for n in sizes],
        (f"per-rank work per iteration at m = {m_rank}", work, "s", f"read ({args.scale_csv}, 1 thread)"),
        (f"iterations at m = {m_rank}", its, "", "read"),
        (f"peak memory per rank at m = {m_rank}", rss, "MB", "read"),
        ("network latency", args.latency_us, "us", "assumed"),
        ("network bandwidth", args.bandwidth_gbs, "GB/s", "assumed"),
        (f"communication per iteration, {P} ranks", network, "s", "projected (recursive doubling)"),
        ("latency, 2 ranks of this machine", lat_local * 1e6, "us", "fitted to the measured Allreduces"),
        ("bandwidth, 2 ranks of this machine", bw_local / 1e9, "GB/s", "fitted to the measured Allreduces"),
        ("communication per iteration, 2 ranks of this machine", local, "s", "the model with the fitted figures"),
        (f"iteration at m = {args.target_m} on {P} machines", work + network, "s", "projected"),
        (f"round at m = {args.target_m} on {P} machines", its * (work + network), "s", "projected"),
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "weak_scaling.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["quantity", "value", "unit", "source"])
        for q, v, u, src in rows:
            w.writerow([q, f"{v:.6g}", u, src])
            print(f"{q:55s} {v:12.6g} {u:8s} {src}", flush=True)


if __name__ == "__main__":
    main()
