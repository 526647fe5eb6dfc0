"""Rounds the default schedule needs to reach Adam's 2,000-step loss, over seeds and sample sizes.

For each (m, seed): breast_cancer subsample of m rows (seed), 8-6-6-1 sigmoid, He initialisation
(seed); target = training loss after 2,000 full-batch Adam steps (lr 0.005) from the same start.
Prints and writes ``benchmarks/results/default_seeds.csv``: rounds and seconds of
``train(schedule="default")`` to the target (300 rounds at most), and the iterations the same
search needs with the steepest-descent direction instead of the convex round (ablation).

    python benchmarks/default_seeds.py [--sizes 100,400] [--seeds 0,1,2,3,4] [--rounds 300]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

import convexnn_pyomo as cnn
from convexnn_pyomo.baselines import train_adam
from convexnn_pyomo.data import load_breast_cancer

from benchmark_core import gradient_ablation

OUT = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,400")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--time-limit", type=float, default=1200.0, help="seconds per default-schedule run")
    args = ap.parse_args()
    ds = load_breast_cancer()
    rows = []
    for m in [int(v) for v in args.sizes.split(",")]:
        for seed in [int(v) for v in args.seeds.split(",")]:
            idx = np.random.default_rng(seed).choice(ds.m, m, replace=False)
            X, y = ds.X[idx], ds.y[idx]
            net = cnn.Network([8, 6, 6, 1], ["sigmoid", "sigmoid", "identity"]).init_he(seed)
            adam = train_adam(net, X, y, steps=2000, lr=0.005)
            target = float(adam.losses[-1])
            t0 = time.perf_counter()
            res = cnn.train(net, X, y, rounds=args.rounds, target_loss=target, time_limit=args.time_limit)
            seconds = time.perf_counter() - t0
            abl = gradient_ablation(net, X, y, target, args.rounds)
            rows.append({
                "m": m, "seed": seed, "initial_loss": round(res.initial_loss, 3), "adam_2000_loss": round(target, 3),
                "adam_seconds": round(adam.seconds, 2), "default_status": res.status, "default_rounds": res.rounds,
                "default_seconds": round(seconds, 1), "default_loss": round(res.final_loss, 3),
                "steepest_descent_iterations": abl["rounds_or_steps"], "steepest_descent_reached": abl["reached_target"],
            })
            print(", ".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)
            pd.DataFrame(rows).to_csv(OUT / "default_seeds.csv", index=False)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    reached = table.default_status == "target_reached"
    print(f"\ndefault schedule reached Adam's loss in {reached.sum()}/{len(table)} runs; rounds median "
          f"{table.loc[reached, 'default_rounds'].median():.0f}, max {table.loc[reached, 'default_rounds'].max()}; "
          f"steepest-descent search median {table.steepest_descent_iterations.median():.0f} iterations")


if __name__ == "__main__":
    main()
