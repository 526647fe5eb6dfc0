"""Constrained training on cases no test covers, as a new user would try them (session 16).

    python benchmarks/constrained_tries.py [raw_yeast_parity relu3_bounds impossible big_group_loss]

Each case trains with the defaults (``cnn.train``, Schur rounds, adaptive schedule) and prints the
run's status and message, each hard constraint's violation on the training data and the history:

* ``raw_yeast_parity``: Yeast's eight features times 1,000 (unscaled), CYT against the rest, 8-6-1
  ReLU, logistic loss, ``DemographicParity(0.02)`` between the rows above and below the median of
  the first feature, 10 rounds (about 20 s);
* ``relu3_bounds``: breast cancer, 8-8-8-8-1 ReLU, ``OutputBounds(0.1, 0.9)``, 10 rounds (about 1 min);
* ``impossible``: 300 breast-cancer rows, two outputs that must sum to 1 and each stay below 0.3:
  no network meets both, the run should be certified infeasible (a few seconds);
* ``big_group_loss``: the teacher data of ``benchmarks/group_loss_retry.py`` at m = 20,000, the
  group-loss bound at half the start's, 8 rounds (about 2 minutes; ``solver_failed`` before the
  round retries of session 16).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from group_loss_retry import group_loss_case

CASES = ("raw_yeast_parity", "relu3_bounds", "impossible", "big_group_loss")


def _setup(case: str):
    """``(net, X, y, constraints, train options)`` of ``case``."""
    import convexnn_pyomo as cnn
    from convexnn_pyomo import constraints as C
    from convexnn_pyomo.data import load_breast_cancer, load_yeast

    if case == "raw_yeast_parity":
        df = load_yeast()
        X = df.select_dtypes("number").to_numpy(float) * 1000.0
        y = (df["cls"] == "CYT").to_numpy(float)
        median = float(np.median(X[:, 0]))
        net = cnn.Network([8, 6, 1], activations=["relu", "identity"]).init_he(0)
        return net, X, y, [C.DemographicParity(lambda Z: Z[:, 0] > median, 0.02)], {"loss": "logistic", "rounds": 10}
    if case == "relu3_bounds":
        ds = load_breast_cancer()
        net = cnn.Network([ds.X.shape[1], 8, 8, 8, 1], activations=["relu"] * 3 + ["identity"]).init_he(1)
        return net, ds.X, ds.y, [C.OutputBounds(0.1, 0.9)], {"rounds": 10}
    if case == "impossible":
        ds = load_breast_cancer()
        X, y = ds.X[:300], np.c_[ds.y[:300], 1 - ds.y[:300]]
        net = cnn.Network([X.shape[1], 6, 2], activations=["sigmoid", "identity"]).init_he(0)
        return net, X, y, [C.LinearOutputEquality([[1.0, 1.0]], [1.0]), C.OutputBounds(None, 0.3)], {"rounds": 10}
    net, X, y, bound = group_loss_case(20000)
    return net, X, y, [bound], {"rounds": 8}


def main() -> None:
    import convexnn_pyomo as cnn

    for case in sys.argv[1:] or CASES:
        if case not in CASES:
            raise SystemExit(f"error: unknown case {case!r}; choose from {', '.join(CASES)}")
        net, X, y, constraints, options = _setup(case)
        t0 = time.perf_counter()
        res = cnn.train(net, X, y, hard_constraints=constraints, **options)
        Y = y if y.ndim == 2 else y.reshape(-1, 1)
        print(f"== {case}: {res.status.value} in {time.perf_counter() - t0:.1f} s | {res.message}")
        for c in constraints:
            print(f"   {type(c).__name__} violation on the training data: {c.violation(res.network, X, Y):.3g}")
        print(res.history[["round", "phase", "status", "true_loss", "violation", "step", "iterations"]].to_string())


if __name__ == "__main__":
    main()
