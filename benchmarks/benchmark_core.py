"""Core benchmark (issue: parabolic relaxation size/time in m; schedules vs Adam).

Prints, for m in 100, 400, 1600, 6400 (breast_cancer up to its 569 samples, synthetic beyond):
variables, constraints, build seconds, solve seconds and Ipopt iterations of the default
schedule's first round (averaged loss, exactness weights, eta 2); then, on breast_cancer with m = 400, the rounds and
seconds each schedule needs to reach the training loss of 2,000 full-batch Adam steps
(lr 0.005, the paper's setting) from the same He initialisation.  Ratios are measured in the run;
nothing is asserted.  Results are also written to ``--out``/core_*.csv (default benchmarks/results).  The schedules'
rounds are ``train``'s default (the structured round by the Schur interior point) unless
``--solver`` names a Pyomo solver (the Pyomo model then); the ``core_*`` files measured before the
structured round replaced the direct CasADi round used that round with Ipopt (commit ec0d73c).

    python benchmarks/benchmark_core.py [--sizes 100,400,1600,6400] [--rounds 300] [--skip-schedules] [--out DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyomo.environ as pyo

import convexnn_pyomo as cnn
from convexnn_pyomo.baselines import train_adam, train_lbfgs
from convexnn_pyomo.data import load_breast_cancer
from convexnn_pyomo.algorithms import IPOPT_DEFAULTS, get_schedule

OUT = Path(__file__).resolve().parent / "results"


def data_for(m: int, seed: int = 0):
    ds = load_breast_cancer()
    rng = np.random.default_rng(seed)
    if m <= ds.m:
        idx = rng.choice(ds.m, m, replace=False)
        return ds.X[idx], ds.y[idx], "breast_cancer"
    teacher = cnn.Network([8, 6, 6, 1], "sigmoid").init_he(seed + 100)
    X = rng.uniform(size=(m, 8))
    y = (teacher.predict(X)[:, 0] > np.median(teacher.predict(X))).astype(float)
    return X, y, "synthetic (teacher network)"


def size_row(m: int, solver: str) -> dict:
    X, y, source = data_for(m)
    net = cnn.Network([8, 6, 6, 1], ["sigmoid", "sigmoid", "identity"]).init_he(0)
    t0 = time.perf_counter()
    model = cnn.build_training_model(net, X, y, reduction="mean")
    pyo.TransformationFactory("convexnn.parabolic").apply_to(model)
    pyo.TransformationFactory("convexnn.regularize").apply_to(model, eta=2.0, reference=net)
    cnn.update_reference(model, net, **cnn.exactness_weights(model, net))
    build = time.perf_counter() - t0
    n_vars = len({id(v) for v in model.component_data_objects(pyo.Var)})
    n_cons = sum(1 for _ in model.component_data_objects(pyo.Constraint, active=True))
    t0 = time.perf_counter()
    res = pyo.SolverFactory(solver).solve(model, options=dict(IPOPT_DEFAULTS) if solver.startswith("ipopt") else None)
    solve = time.perf_counter() - t0
    return {
        "m": m, "data": source, "variables": n_vars, "constraints": n_cons, "build_seconds": round(build, 2),
        "solve_seconds": round(solve, 2), "translate_seconds": round(getattr(res.solver, "build_time", float("nan")), 2),
        "ipopt_iterations": getattr(res.solver, "iterations", None), "status": str(res.solver.termination_condition),
    }


def schedule_rows(m: int, rounds: int, round_solver: str, time_limit: float, out: Path = OUT) -> list[dict]:
    X, y, _ = data_for(m)
    net = cnn.Network([8, 6, 6, 1], ["sigmoid", "sigmoid", "identity"]).init_he(0)
    adam = train_adam(net, X, y, steps=2000, lr=0.005)
    target = float(adam.losses[-1])
    lbfgs = train_lbfgs(net, X, y)
    rows = [
        {"method": "adam (2000 steps, lr 0.005)", "initial_loss": net.loss(X, y), "final_loss": target,
         "rounds_or_steps": 2000, "seconds": round(adam.seconds, 2), "reached_target": True},
        {"method": "l-bfgs (scipy)", "initial_loss": net.loss(X, y), "final_loss": float(lbfgs.network.loss(X, y)),
         "rounds_or_steps": lbfgs.steps, "seconds": round(lbfgs.seconds, 2), "reached_target": bool(lbfgs.network.loss(X, y) <= target)},
    ]
    print(f"  target: Adam's 2000-step loss {target:.4f} (from {net.loss(X, y):.4f}); L-BFGS reaches {rows[1]['final_loss']:.4f}", flush=True)
    rows.append(gradient_ablation(net, X, y, target, rounds))
    print(f"  {rows[-1]['method']} reaches {rows[-1]['final_loss']:.4f} after {rows[-1]['rounds_or_steps']} iterations", flush=True)
    # (label, schedule, mu): the default schedule, the same with mu = 1 and one global eta (ablation
    # of the exactness weights), and the paper's literal schedule
    runs = [("adaptive", "adaptive", None), ("adaptive-mu1", "adaptive", (1.0, 1.0, 1.0)), ("paper", "paper", None)]
    for label, schedule, mu in runs:
        t0 = time.perf_counter()
        res = cnn.train(net, X, y, schedule=get_schedule(schedule, mu=mu), rounds=rounds, target_loss=target,
                        round_solver=round_solver, time_limit=time_limit,
                        progress=lambda row, _n: print(f"  [{label}] round {row['round']} {row['status']} loss {row['true_loss']:.4f}", flush=True) if row["round"] % 10 == 0 else None)
        res.history.to_csv(out / f"core_history_{label}_m{m}.csv", index=False)
        name = f"convexnn schedule={schedule}" + (" mu=1 (ablation)" if mu else "")
        rows.append({"method": name, "initial_loss": res.initial_loss, "final_loss": res.final_loss,
                     "rounds_or_steps": res.rounds, "seconds": round(time.perf_counter() - t0, 1),
                     "reached_target": res.final_loss <= target})
        print(f"  {label}: {res.status}, loss {res.final_loss:.4f} after {res.rounds} rounds, {rows[-1]['seconds']} s", flush=True)
    return rows


def gradient_ablation(net, X, y, target: float, rounds: int) -> dict:
    """The default schedule's search with the steepest-descent direction in place of the convex round.

    Same subspace search (one coefficient per layer plus the last 4 accepted steps), same
    acceptance; only the direction differs.  Shows how much of the default schedule's progress is
    owed to the convex round rather than to the search.
    """
    from convexnn_pyomo.algorithms import Evaluator, SubspaceSearch

    t0 = time.perf_counter()
    search, ev = SubspaceSearch(), Evaluator(X, y)
    best, previous, it = net.copy(), [], 0
    for it in range(1, rounds + 1):
        _, g = best.loss_and_gradient(X, y)
        new = search.propose(best, best.with_flat(best.get_flat() - 1e-3 * g), ev, previous).network
        if new is None:
            break
        previous = [new.get_flat() - best.get_flat()] + previous[:3]
        best = new
        if best.loss(X, y) <= target:
            break
    loss = best.loss(X, y)
    return {"method": "ablation: steepest descent in the same search", "initial_loss": net.loss(X, y), "final_loss": loss,
            "rounds_or_steps": it, "seconds": round(time.perf_counter() - t0, 2), "reached_target": bool(loss <= target)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,400,1600,6400")
    ap.add_argument("--schedule-m", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--solver", default=None, help="NLP solver of the size table (default: ipopt on PATH, else "
                    "ipopt_casadi); given, the schedules' rounds are the Pyomo model solved by it (default: the "
                    "structured round by the Schur interior point)")
    ap.add_argument("--skip-schedules", action="store_true")
    ap.add_argument("--time-limit", type=float, default=1800.0, help="seconds per schedule run")
    ap.add_argument("--out", default=str(OUT), help="folder of the core_*.csv files (default: benchmarks/results)")
    args = ap.parse_args()
    solver = args.solver or cnn.default_nlp_solver()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"solver: {solver} (size table); rounds of the schedules: {args.solver or 'schur'}")
    rows = []
    for m in [int(s) for s in args.sizes.split(",") if s]:
        rows.append(size_row(m, solver))
        print("  " + ", ".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)
        pd.DataFrame(rows).to_csv(out / "core_sizes.csv", index=False)
    sizes = pd.DataFrame(rows)
    if rows:
        print("\nParabolic relaxation, one regularized round (8-6-6-1 sigmoid):")
        print(sizes.to_string(index=False))
    if len(sizes) > 1:
        num = ["m", "variables", "constraints", "build_seconds", "solve_seconds"]
        r = sizes[num].iloc[-1].astype(float) / sizes[num].iloc[0].astype(float)
        print(f"growth from m={sizes.m.iloc[0]} to m={sizes.m.iloc[-1]} (x{r.m:.0f}): variables x{r.variables:.1f}, "
              f"constraints x{r.constraints:.1f}, build x{r.build_seconds:.1f}, solve x{r.solve_seconds:.1f}")
    if not args.skip_schedules:
        print(f"\nSchedules on breast_cancer, m = {args.schedule_m}, to Adam's 2000-step training loss:")
        sched = pd.DataFrame(schedule_rows(args.schedule_m, args.rounds, args.solver or "auto", args.time_limit, out))
        sched.to_csv(out / f"core_schedules_m{args.schedule_m}.csv", index=False)
        print(sched.to_string(index=False))


if __name__ == "__main__":
    main()
