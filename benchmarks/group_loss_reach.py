"""How low one group's Brier score goes on Adult when nothing else is asked of the model.

    python benchmarks/group_loss_reach.py [--hidden 4,16] [--seeds 0,1] [--steps 6000]   # about 3 minutes

The fairness study's group-loss setting bounds every group's mean squared loss of the scores
(``convexnn experiment fairness --constraints group_loss``).  A bound below what a model can reach
on the worst group even when it is fitted to that group alone cannot be met by that model.  This
script prints, on the study's training rows (all 30,162, sex):

* each group's least-squares loss of a linear model fitted to that group's rows alone (the exact
  minimum over linear scores);
* the worse group's (the larger linear loss) loss of a 102-h-1 network (sigmoid hidden layer, identity output, the study's
  architecture for ``h`` = 4) fitted to the group's rows alone by full-batch Adam (lr 0.01,
  ``--steps`` steps) from He weights of each seed: a local optimum, an estimate of what the
  architecture reaches, not a bound; and the other group's loss at that network.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", default="4,16", help="hidden widths, comma separated")
    p.add_argument("--seeds", default="0,1", help="He initialisation seeds, comma separated")
    p.add_argument("--steps", type=int, default=6000, help="full-batch Adam steps")
    p.add_argument("--sensitive", default="sex", choices=["sex", "race"])
    args = p.parse_args()

    from convexnn_pyomo import baselines
    from convexnn_pyomo.experiments import fairness as fx
    from convexnn_pyomo.network import Network

    data = fx.dataset(fx.FairnessConfig(sensitive=args.sensitive), 0)
    X, y, g = data.X_train, data.y_train.astype(float), data.group_train
    A = np.c_[X, np.ones(len(X))]
    linear = {}
    for v in np.unique(g):
        own = g == v
        w = np.linalg.lstsq(A[own], y[own], rcond=None)[0]
        linear[v] = np.mean((A[own] @ w - y[own]) ** 2)
        print(f"group {v:g} ({own.sum()} rows): linear least squares on its own rows {linear[v]:.4f}")
    v = max(linear, key=linear.get)  # the group whose bound binds
    own = g == v
    for h in (int(s) for s in args.hidden.split(",")):
        for seed in (int(s) for s in args.seeds.split(",")):
            net = Network([X.shape[1], h, 1], ["sigmoid", "identity"]).init_he(np.random.default_rng(seed))
            t0 = time.perf_counter()
            fit = baselines.train_adam(net, X[own], y[own], steps=args.steps, lr=0.01, seed=seed).network
            s = fit.predict(X)[:, 0]
            print(f"group {v:g}, {X.shape[1]}-{h}-1, seed {seed}: its loss {np.mean((s[own] - y[own]) ** 2):.4f}, "
                  f"the other rows' {np.mean((s[~own] - y[~own]) ** 2):.4f} ({time.perf_counter() - t0:.0f} s)",
                  flush=True)

if __name__ == "__main__":
    main()
