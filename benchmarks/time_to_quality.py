"""Time to quality (issue 27): Algorithm 1 against 2,000 full-batch Adam steps on the same net and data.

The data and networks of ``benchmarks/scale.py`` (8 Gaussian features, an 8-6-6-1 sigmoid teacher
plus noise of standard deviation 0.1; the student of the same architecture from He weights of
seed 0; mean squared loss).  Adam (``baselines.train_adam``, lr 0.005, full batch, PyTorch CPU)
runs ``--adam-steps`` steps and its final loss is the target; then ``train(net, X, Y,
target_loss=..., rounds=--rounds)`` with every other option at its default runs until its true
loss reaches that target (or the round limit).  One row per m in ``DIR/time_to_quality.csv``:
m, Adam's steps, seconds and mean loss, Algorithm 1's rounds, seconds (its first compilation of
the per-sample functions included when the cache is empty), mean loss and status, and the ratio
of the two times::

    python benchmarks/time_to_quality.py --sizes 10000,100000 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

from scale import teacher_data

import convexnn_pyomo as cnn
from convexnn_pyomo import baselines

COLUMNS = ["m", "adam_steps", "adam_seconds", "adam_loss", "convexnn_rounds", "convexnn_seconds", "convexnn_loss",
           "convexnn_status", "time_ratio", "reached"]


def measure(m: int, steps: int, rounds: int) -> dict:
    X, Y, _ = teacher_data(m, [6, 6], 0.1)
    net = cnn.Network([8, 6, 6, 1], "sigmoid").init_he(0)
    adam = baselines.train_adam(net, X, Y, steps=steps)
    target = adam.network.loss(X, Y)  # summed, as train's true loss
    t0 = time.perf_counter()
    res = cnn.train(net, X, Y, rounds=rounds, target_loss=target, progress=True)
    seconds = time.perf_counter() - t0
    loss = res.network.loss(X, Y)
    return {"m": m, "adam_steps": steps, "adam_seconds": round(adam.seconds, 2), "adam_loss": target / m,
            "convexnn_rounds": res.rounds, "convexnn_seconds": round(seconds, 2), "convexnn_loss": loss / m,
            "convexnn_status": str(res.status.value), "time_ratio": round(seconds / adam.seconds, 2),
            "reached": bool(loss <= target)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--adam-steps", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=15, help="Algorithm 1's round limit")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "time_to_quality.csv"
    for m in (int(v) for v in args.sizes.split(",")):
        row = measure(m, args.adam_steps, args.rounds)
        print(row, flush=True)
        new = not path.exists()
        with path.open("a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=COLUMNS)
            if new:
                w.writeheader()
            w.writerow(row)


if __name__ == "__main__":
    main()
