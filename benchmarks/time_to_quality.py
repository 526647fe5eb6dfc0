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

``--eta`` and ``--eta-floor`` set the adaptive schedule's start and floor of ``eta`` (defaults 2
and 1: with the exactness weights ``mu``, ``eta`` is a safety factor and the floor 1 is where
the weights are met to first order); a smaller floor lets inexact rounds take longer steps (the
schedule doubles ``eta`` after an inexact round).  ``--rounds-csv FILE`` appends each round's
mean loss, ``eta``, step and iterations (the trajectory behind a row).

``--search-maxiter N`` and ``--search-gradient`` change the step search after each round (the
schedule's :class:`~convexnn_pyomo.algorithms.steps.SubspaceSearch`: 50 L-BFGS-B iterations over
the round's step and the last four steps): more iterations, and the true loss's steepest-descent
direction as one more column of the subspace.  They test whether the search, not the rounds,
limits the progress (docs/results.md, "Time to quality").

``--warm-start N`` starts Algorithm 1 from N steps of the same Adam (the baseline's learning rate),
timed as part of Algorithm 1's seconds: a hybrid, reported in its own column ``warm_start``, not
Algorithm 1 from the He start.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from scale import append_row, teacher_data

import convexnn_pyomo as cnn
from convexnn_pyomo import baselines
from convexnn_pyomo.algorithms.schedules import AdaptiveSchedule
from convexnn_pyomo.algorithms.steps import SubspaceSearch

COLUMNS = ["m", "adam_steps", "adam_seconds", "adam_loss", "convexnn_rounds", "convexnn_seconds", "convexnn_loss",
           "convexnn_status", "time_ratio", "reached", "eta", "eta_floor", "search", "warm_start"]


class GradientSubspace(SubspaceSearch):
    """The default search with the true loss's steepest-descent direction as one more column (scaled
    to the round's step; its trust region as the previous steps')."""

    name = "subspace+gradient"

    def propose(self, current, candidate, ev, previous_steps):
        self._ev = ev
        return super().propose(current, candidate, ev, previous_steps)

    def _basis(self, current, d, previous_steps):
        basis, n_parts, limits = super()._basis(current, d, previous_steps)
        g = self._ev.loss_and_gradient(current)[1]
        g = -g * (np.linalg.norm(d) / max(float(np.linalg.norm(g)), 1e-300))
        limit = max(float(np.linalg.norm(current.get_flat())) / max(float(np.linalg.norm(g)), 1e-300), 1.0)
        return np.c_[basis, g], n_parts, [*limits, limit]


class SearchedSchedule(AdaptiveSchedule):
    """The adaptive schedule with another step search (no hard constraints here)."""

    def __init__(self, search: SubspaceSearch, **kw):
        super().__init__(**kw)
        self.search = search

    def step_proposal(self, has_constraints):
        return self.search
ROUND_COLUMNS = ["m", "eta", "eta_floor", "round", "mean_loss", "round_eta", "step", "status", "iterations",
                 "solve_seconds", "search"]


def measure(m: int, steps: int, rounds: int, eta: float = 2.0, eta_floor: float = 1.0,
            rounds_csv: Path | None = None, search_maxiter: int | None = None, search_gradient: bool = False,
            warm_start: int = 0) -> dict:
    """Adam's ``steps`` steps, then Algorithm 1 until its loss reaches Adam's (or ``rounds``)."""
    X, Y, _ = teacher_data(m, [6, 6], 0.1)
    net = cnn.Network([8, 6, 6, 1], "sigmoid").init_he(0)
    adam = baselines.train_adam(net, X, Y, steps=steps)
    target = adam.network.loss(X, Y)  # summed, as train's true loss
    search = "default"
    if search_maxiter is not None or search_gradient:
        kind = GradientSubspace if search_gradient else SubspaceSearch
        it = search_maxiter if search_maxiter is not None else SubspaceSearch().maxiter
        schedule = SearchedSchedule(kind(maxiter=it), eta=eta, eta_floor=eta_floor)
        search = f"{kind.name}, maxiter {it}"
    else:
        schedule = AdaptiveSchedule(eta=eta, eta_floor=eta_floor)
    t0 = time.perf_counter()
    start = baselines.train_adam(net, X, Y, steps=warm_start).network if warm_start else net
    res = cnn.train(start, X, Y, rounds=rounds, target_loss=target, schedule=schedule, progress=True)
    seconds = time.perf_counter() - t0
    loss = res.network.loss(X, Y)
    if rounds_csv is not None:
        for r in res.history.itertuples():
            append_row(rounds_csv, {"m": m, "eta": eta, "eta_floor": eta_floor, "round": r.round,
                                    "mean_loss": r.true_loss / m, "round_eta": r.eta, "step": r.step,
                                    "status": r.status, "iterations": r.iterations,
                                    "solve_seconds": r.solve_seconds, "search": search}, ROUND_COLUMNS)
    return {"m": m, "adam_steps": steps, "adam_seconds": round(adam.seconds, 2), "adam_loss": target / m,
            "convexnn_rounds": res.rounds, "convexnn_seconds": round(seconds, 2), "convexnn_loss": loss / m,
            "convexnn_status": str(res.status.value), "time_ratio": round(seconds / adam.seconds, 2),
            "reached": bool(loss <= target), "eta": eta, "eta_floor": eta_floor, "search": search,
            "warm_start": warm_start}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--adam-steps", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=15, help="Algorithm 1's round limit")
    ap.add_argument("--eta", type=float, default=2.0, help="the adaptive schedule's first eta")
    ap.add_argument("--eta-floor", type=float, default=1.0, help="the adaptive schedule's smallest eta")
    ap.add_argument("--rounds-csv", default=None, help="append each round's loss, eta and step to this CSV")
    ap.add_argument("--search-maxiter", type=int, default=None, help="L-BFGS-B iterations of the step search (default 50)")
    ap.add_argument("--search-gradient", action="store_true", help="the true loss's gradient as one more search direction")
    ap.add_argument("--warm-start", type=int, default=0, help="Adam steps (the baseline's) before round 1, timed "
                    "with Algorithm 1 (a hybrid; default 0: from the He start)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "time_to_quality.csv"
    for m in (int(v) for v in args.sizes.split(",")):
        row = measure(m, args.adam_steps, args.rounds, args.eta, args.eta_floor,
                      Path(args.rounds_csv) if args.rounds_csv else None, args.search_maxiter, args.search_gradient,
                      args.warm_start)
        print(row, flush=True)
        append_row(path, row, COLUMNS)

if __name__ == "__main__":
    main()
