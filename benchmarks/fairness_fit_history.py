"""One Convex-NN fit of the Adult fairness study, round by round (to see where a fit goes wrong).

    python benchmarks/fairness_fit_history.py --sensitive race --bound 0.015 --seed 3 [--rounds 10]
        [--warm-start 2000] [--constraint decision] [--feasibility-rho 1e-3] [--no-output-layer-refit]
        [--search default|line|boundary] [--feasibility-rounds N]

The fit is the study's own (``convexnn experiment fairness``: the same data and split of the seed,
the same initial network, warm start, rounds and feasibility rounds); after every round it prints
the phase (1: feasibility, 2: constrained), the round's status, the true loss, the real network's
violation, eta, the step and the training accuracy of the best network so far, then the history
table of :class:`~convexnn_pyomo.algorithms.sequential.SequentialRelaxation`.  Data: the Adult
folder as the study finds it (``$CONVEXNN_DATA`` or ``../shared/data``; see ``convexnn_pyomo.data``).
"""

from __future__ import annotations

import argparse

import numpy as np

from convexnn_pyomo.algorithms import AdaptiveSchedule, FeasibleSubspaceSearch, LineSearch
from convexnn_pyomo.experiments import fairness as fx


def _schedule(search: str) -> AdaptiveSchedule:
    """The default schedule with the constrained rounds' step ``search``."""
    if search == "default":
        return AdaptiveSchedule()
    step = LineSearch() if search == "line" else FeasibleSubspaceSearch(boundary=True)

    class Searched(AdaptiveSchedule):
        def step_proposal(self, has_constraints):
            return step if has_constraints else super().step_proposal(has_constraints)

    return Searched()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sensitive", default="sex", choices=["sex", "race"])
    p.add_argument("--constraint", default="decision", choices=["score", "probability", "decision", "group_loss"])
    p.add_argument("--bound", type=float, default=0.02)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--warm-start", type=int, default=2000)
    p.add_argument("--feasibility-rho", type=float, default=1e-3, help="phase 1's first rho (docs/algorithm.md)")
    p.add_argument("--feasibility-rounds", type=int, default=None,
                   help="phase 1's own round budget (default: the study's, 20)")
    p.add_argument("--no-output-layer-refit", dest="refit", action="store_false",
                   help="without the exact output-layer refit (docs/algorithm.md)")
    p.add_argument("--search", default="default", choices=["default", "line", "boundary"],
                   help="the constrained rounds' step: the default FeasibleSubspaceSearch, the line search "
                        "(before session 15), or FeasibleSubspaceSearch(boundary=True) (docs/algorithm.md)")
    args = p.parse_args()
    cfg = fx.FairnessConfig(sensitive=args.sensitive, methods=("convexnn",), constraints=(args.constraint,),
                            bounds=(args.bound,), rounds=args.rounds, warm_start=args.warm_start,
                            feasibility_rho=args.feasibility_rho, refit_output_layer=args.refit,
                            **({} if args.feasibility_rounds is None else {"feasibility_rounds": args.feasibility_rounds}))
    data = fx.dataset(cfg, args.seed)
    X, y = data.X_train, data.y_train.astype(float)

    def on_round(row: dict, best) -> None:
        accuracy = float(np.mean((best.predict(X)[:, 0] >= 0.5) == y))
        print(f"round {row['round']:>2}  phase {row.get('phase')}  {row.get('status'):<14} loss {row['true_loss']:10.5g}  "
              f"violation {row['violation']:9.3g}  eta {row['eta']:8.4g}  step {row['step']:8.4g}  "
              f"best accuracy {accuracy:.4f}", flush=True)

    res = fx.convexnn_fit(cfg, args.constraint, args.bound, data, args.seed, on_round, schedule=_schedule(args.search))
    print(res.status.value, "-", res.message)
    print(res.history[["round", "phase", "true_loss", "violation", "eta", "step", "status", "iterations"]].to_string())
    for _, row in res.history[res.history.message.fillna("").astype(bool)].iterrows():
        print(f"round {row['round']}: {row['message']}")


if __name__ == "__main__":
    main()
