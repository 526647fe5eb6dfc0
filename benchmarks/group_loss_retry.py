"""A group-loss bound on teacher data as m grows: the structured round's retry of a failed solve.

    python benchmarks/group_loss_retry.py [--sizes 4000,20000] [--rounds 4] [--no-retry] [--out DIR]

Teacher data (8 features uniform on [0, 1], an 8-6-6-1 sigmoid teacher from He weights of seed 7,
Gaussian noise 0.1), the student 8-6-6-1 from He weights of seed 0, and a bound on each group's
mean squared loss (``x_0 > 0.7`` against the rest) at ``--fraction`` (0.5) of the start's smaller
group loss, so the feasibility phase runs first.  Per m it prints and writes (``DIR/group_loss_retry.csv``)
the run's status, each round's status and interior-point iterations, the training loss and the
violation at the end, and the seconds.  ``--no-retry`` sets ``StructuredRound.ROUND_RETRIES = ()``,
the behaviour before session 16 (``docs/solvers.md``: at m = 20,000 the first elastic round then
stopped at ``minStepLength``, three times in a row).  About 1 minute at 20,000 rows.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd


def group_loss_case(m: int, fraction: float = 0.5):
    """``(net, X, y, bound)`` of the module docstring at ``m`` samples."""
    import convexnn_pyomo as cnn

    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, (m, 8))
    teacher = cnn.Network([8, 6, 6, 1], activations=["sigmoid", "sigmoid", "identity"]).init_he(7)
    y = teacher.predict(X).ravel() + 0.1 * rng.standard_normal(m)
    net = cnn.Network([8, 6, 6, 1], activations=["sigmoid", "sigmoid", "identity"]).init_he(0)
    in_group = X[:, 0] > 0.7
    start = [float(np.mean((net.predict(X).ravel() - y)[in_group == g] ** 2)) for g in (False, True)]
    return net, X, y, cnn.constraints.GroupLossBounds(lambda Z: Z[:, 0] > 0.7, fraction * min(start))


def run(m: int, rounds: int, fraction: float) -> dict:
    """One training run at ``m`` samples; its row of the table."""
    import convexnn_pyomo as cnn

    net, X, y, bound = group_loss_case(m, fraction)
    t0 = time.perf_counter()
    res = cnn.train(net, X, y, hard_constraints=[bound], rounds=rounds)
    h = res.history
    return {"m": m, "bound": bound.kappa, "status": res.status.value, "rounds": "/".join(h.status),
            "iterations": "/".join(str(int(i)) for i in h.iterations),
            "retried": int(h.message.str.contains("retried with", regex=False).sum()),
            "start_loss": net.loss(X, y), "final_loss": res.network.loss(X, y),
            "violation": bound.violation(res.network, X, y.reshape(-1, 1)),
            "seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="4000,20000", help="sample counts, comma separated")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--fraction", type=float, default=0.5, help="the bound over the start's smaller group loss")
    p.add_argument("--no-retry", action="store_true", help="StructuredRound.ROUND_RETRIES = () (before session 16)")
    p.add_argument("--out", default=None, help="folder for group_loss_retry.csv (appended)")
    args = p.parse_args()
    if args.no_retry:
        from convexnn_pyomo.algorithms.rounds import StructuredRound

        StructuredRound.ROUND_RETRIES = ()
    rows = []
    for m in (int(s) for s in args.sizes.split(",")):
        rows.append({**run(m, args.rounds, args.fraction), "retry": not args.no_retry})
        print(pd.DataFrame(rows[-1:]).to_string(index=False), flush=True)
    if args.out:
        path = Path(args.out) / "group_loss_retry.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(path, mode="a", header=not path.exists(), index=False)


if __name__ == "__main__":
    main()
