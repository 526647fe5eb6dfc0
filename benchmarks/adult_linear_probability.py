"""What the fairness study's ``probability`` setting allows a linear model: its convex optimum.

    python benchmarks/adult_linear_probability.py [--bound 0.02] [--sensitive sex] [--train-size 2000] [--seed 0]
    python benchmarks/adult_linear_probability.py --refit-timing     # the output layer's refit: build, solves
    python benchmarks/adult_linear_probability.py --refit-timing --constraint group_loss --bound 0.12

The linear probability model ``f(x) = w.x + c`` under the setting's constraints (``f`` in [0, 1] on
every training row, group means of ``f`` within ``bound``), least squares: a quadratic program
solved by Clarabel (the ``solvers`` extra) on the study's own data of the seed (``convexnn
experiment fairness``: encoding, subsample, test set).  It prints train and test accuracy of the
decisions ``f >= 0.5``, the Brier score and the parity of the scores and of the decisions: a
reference for what the surrogate itself permits, beside what a trained network reaches
(docs/fairness.md, "The probability setting").  ``--refit-timing`` instead times Algorithm 1's
output-layer problem under the same constraints (:class:`~convexnn_pyomo.algorithms.refit.
OutputLayerProblem`): its build, then two refits at the study's initial networks of seeds 0 and 1;
``--constraint group_loss`` times it under the group-loss bound instead (second-order cones in
Clarabel) and prints each refit's largest group loss.
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bound", type=float, default=0.02)
    p.add_argument("--sensitive", default="sex", choices=["sex", "race"])
    p.add_argument("--train-size", type=int, default=None, help="stratified subsample (default: all 30,162 rows)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--refit-timing", action="store_true", help="time the output layer's refit instead")
    p.add_argument("--constraint", default="probability", choices=["probability", "group_loss"],
                   help="the refit's setting (--refit-timing only)")
    args = p.parse_args()
    if args.refit_timing:
        refit_timing(args)
        return
    try:
        import clarabel
        import scipy.sparse as sp
    except ImportError as err:
        raise SystemExit(f"error: {err.name} is missing: pip install 'convexnn-pyomo[solvers]'") from None
    from convexnn_pyomo.experiments import fairness as fx
    from convexnn_pyomo.fairness import parity_difference

    cfg = fx.FairnessConfig(sensitive=args.sensitive, train_size=args.train_size)
    data = fx.dataset(cfg, args.seed)
    X = np.c_[data.X_train, np.ones(len(data.X_train))]
    y, g = data.y_train.astype(float), data.group_train
    m = len(X)
    rows = [sp.csc_matrix(X), sp.csc_matrix(-X)]  # f <= 1, -f <= 0
    rhs = [np.ones(m), np.zeros(m)]
    labels = np.unique(g)
    for i in range(len(labels)):
        for k in range(i + 1, len(labels)):
            a = X[g == labels[i]].mean(0) - X[g == labels[k]].mean(0)
            rows += [sp.csc_matrix(a[None]), sp.csc_matrix(-a[None])]
            rhs += [np.array([args.bound]), np.array([args.bound])]
    A = sp.vstack(rows).tocsc()
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    P = sp.csc_matrix(2.0 * X.T @ X)
    solver = clarabel.DefaultSolver(P, -2.0 * X.T @ y, A, np.concatenate(rhs), [clarabel.NonnegativeConeT(A.shape[0])],
                                    settings)
    sol = solver.solve()
    w = np.array(sol.x)
    print(f"linear probability model, probability@{args.bound:g}, {args.sensitive}, {m} training rows: {sol.status}")
    for part, Xp, yp, gp in (("train", X, y, g),
                             ("test", np.c_[data.X_test, np.ones(len(data.X_test))], data.y_test, data.group_test)):
        score = Xp @ w
        pred = (score >= 0.5).astype(float)
        print(f"  {part}: accuracy {np.mean(pred == yp):.4f}  Brier {np.mean((score - yp) ** 2):.4f}  "
              f"parity of scores {parity_difference(score, gp):.4f}  parity of decisions {parity_difference(pred, gp):.4f}  "
              f"scores in [{score.min():.3f}, {score.max():.3f}]")


def refit_timing(args) -> None:
    """Seconds of the output-layer problem's build and of two refits (Clarabel when installed)."""
    import time

    from convexnn_pyomo.algorithms.refit import OutputLayerProblem
    from convexnn_pyomo.experiments import fairness as fx

    cfg = fx.FairnessConfig(sensitive=args.sensitive, train_size=args.train_size)
    data = fx.dataset(cfg, args.seed)
    X, y = data.X_train, data.y_train.astype(float)
    nets = [fx.initial_network(cfg, s, X.shape[1]) for s in (0, 1)]
    cons = fx.make_constraints(args.constraint, args.bound, data.sensitive_index)
    t0 = time.perf_counter()
    problem = OutputLayerProblem(nets[0], X, y, cons)
    times, found = [time.perf_counter() - t0], []
    for net in nets:
        t0 = time.perf_counter()
        new = problem.refit(net)
        times.append(time.perf_counter() - t0)
        found.append("none" if new is None else f"largest group loss {fx.group_loss(new.predict(X)[:, 0], y, data.group_train):.4f}")
    print(f"output-layer problem, {args.constraint}@{args.bound:g}, {len(X)} rows, {type(problem.opt).__name__}: build "
          f"{times[0]:.1f} s, refits {times[1]:.1f} s ({found[0]}) and {times[2]:.1f} s ({found[1]})")


if __name__ == "__main__":
    main()
