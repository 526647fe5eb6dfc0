"""Size of the structured round's per-sample functions and the time of its rounds (session 14's
translator fix).

The first ``--m`` rows of Yeast (all ten classes, one-hot), an ``8 - --hidden - classes`` sigmoid
network from He weights (seed 0), the softmax loss: prints the CasADi instruction count of each
per-iteration function per sample (``kkt``, ``resid``, ``jtv``, ``jvp``, ``apply``; what CasADi's
virtual machine interprets and :mod:`convexnn_pyomo.solvers.compiled` compiles), then trains
``--rounds`` rounds (``compile`` as given; "auto" leaves m < 10^4 in the virtual machine) and prints
each round's loss, iterations and solve seconds::

    python benchmarks/round_functions.py --m 300 --rounds 2      # about 10 s

Measured one after the other, nothing else running: 24,412 instructions per sample, rounds of
1.24 s and 0.85 s; before the fix (a worktree of commit 9f447f8 with this file copied in, on its
``PYTHONPATH``) 703,073 instructions and rounds of 31.9 s and 19.6 s, with the same losses
(515.442050, 503.868309).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from multiclass import dataset

import convexnn_pyomo as cnn
from convexnn_pyomo.algorithms import SchurRounds
from convexnn_pyomo.algorithms.rounds import StructuredRound


def yeast(m: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``m`` rows of Yeast (``multiclass.dataset``), labels one-hot in sorted class order."""
    X, labels = dataset("yeast")
    _, index = np.unique(labels, return_inverse=True)
    return X[:m], np.eye(index.max() + 1)[index][:m]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--m", type=int, default=300)
    ap.add_argument("--hidden", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--compile", default="auto", choices=["auto", "always", "never"])
    args = ap.parse_args()
    X, Y = yeast(args.m)
    net = cnn.Network([X.shape[1], args.hidden, Y.shape[1]], "sigmoid").init_he(0)
    rnd = StructuredRound(net, X, Y, "mean", [], 2.0, (1.0, 1.0, 1.0), "softmax", options={"compile": "never"})
    counts = {name: getattr(rnd.ipm.fn, name).n_instructions() for name in rnd.ipm.fn.PER_ITERATION}
    print(f"instructions per sample: {sum(counts.values()):,} ({', '.join(f'{k} {v:,}' for k, v in counts.items())})")
    t0 = time.perf_counter()
    res = cnn.train(net, X, Y, loss="softmax", rounds=args.rounds,
                    round_solver=SchurRounds(options={"compile": args.compile}))
    for r in res.history.itertuples():
        print(f"round {r.round}: loss {r.true_loss:.6f}, {r.iterations} iterations, {r.solve_seconds:.2f} s")
    print(f"{args.rounds} rounds in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
