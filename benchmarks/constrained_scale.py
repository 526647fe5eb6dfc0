"""Constrained training at scale with every option at its default (issue 24's acceptance run).

A binary teacher-student problem: an 8-6-6-1 sigmoid teacher labels ``m`` uniform inputs, the
threshold at its 80th percentile making classes of 80 % / 20 %; the student (same architecture,
another seed) is trained by ``train(net, X, Y, hard_constraints=ClasswiseMisfitBounds(0.5),
rounds=2)`` with nothing else set (``--no-feasibility``: the constrained rounds from the start,
without the feasibility phase).  Prints and appends to ``DIR/constrained_scale.csv`` one row per
run: m, seconds, peak RSS, the class-wise bound's violation before and after, losses, every
round's status and interior-point iterations.

    python benchmarks/constrained_scale.py --sizes 50000 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import time
from pathlib import Path

import numpy as np

import convexnn_pyomo as cnn
from convexnn_pyomo.algorithms import SequentialRelaxation


def teacher_student(m: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``m`` inputs in [0, 1]^8 and 0/1 labels of an 8-6-6-1 sigmoid teacher, 20 % ones."""
    rng = np.random.default_rng(seed)
    teacher = cnn.Network([8, 6, 6, 1], ["sigmoid", "sigmoid", "identity"]).init_he(seed + 100)
    X = rng.uniform(size=(m, 8))
    score = teacher.predict(X).ravel()
    Y = (score >= np.quantile(score, 0.8)).astype(float)
    return X, Y


def run(m: int, rounds: int, kappa: float, feasibility: bool = True) -> dict:
    X, Y = teacher_student(m)
    net = cnn.Network([8, 6, 6, 1], ["sigmoid", "sigmoid", "identity"]).init_he(0)
    bound = cnn.ClasswiseMisfitBounds(kappa)
    before = bound.violation(net, X, Y)
    t0 = time.perf_counter()
    if feasibility:  # train(...) with every option at its default
        result = cnn.train(net, X, Y, hard_constraints=bound, rounds=rounds, progress=True)
    else:  # the constrained rounds from the start (no feasibility phase)
        result = SequentialRelaxation(hard_constraints=bound, rounds=rounds, progress=True,
                                      feasibility=False).solve(net, X, Y)
    seconds = time.perf_counter() - t0
    h = result.history
    return {"m": m, "rounds": rounds, "kappa_factor": kappa, "feasibility_phase": feasibility,
            "phases": json.dumps(h.phase.tolist()), "seconds": round(seconds, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "violation_before": before, "violation_after": result.violation,
            "initial_loss": result.initial_loss, "final_loss": result.final_loss, "status": result.status.value,
            "round_status": json.dumps(h.status.tolist()), "iterations": json.dumps(h.iterations.tolist()),
            "round_seconds": json.dumps([round(v, 1) for v in h.solve_seconds.tolist()]), "solver": result.solver,
            "failures": json.dumps([m for m in h.message.tolist() if m])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="50000", help="comma-separated m (one process each: peak RSS per run)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--kappa-factor", type=float, default=0.5)
    ap.add_argument("--no-feasibility", action="store_true",
                    help="constrained rounds from the start (SequentialRelaxation(feasibility=False))")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "constrained_scale.csv"
    for m in (int(v) for v in args.sizes.split(",")):
        row = run(m, args.rounds, args.kappa_factor, feasibility=not args.no_feasibility)
        print(json.dumps(row), flush=True)
        rows = list(csv.DictReader(path.open())) if path.exists() else []  # earlier runs, maybe fewer columns
        columns = list(dict.fromkeys([k for r in rows for k in r] + list(row)))
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=columns, restval="")
            w.writeheader()
            w.writerows(rows + [row])
        tmp.replace(path)


if __name__ == "__main__":
    main()
