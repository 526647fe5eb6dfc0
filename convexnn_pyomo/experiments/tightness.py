"""Relaxation-tightness study and solver comparison.

``tightness_study`` solves, for each instance, the parabolic, SDP and McCormick relaxations with
``eta = 0`` under the same variable bounds (``convexnn.bound``), and the exact problem globally
(Gurobi when the model fits its pip license, else SCIP), plus an Ipopt multistart for the best
local optimum.  The result is a long-form DataFrame (``tightness.csv``).
"""

from __future__ import annotations

import importlib.util
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyomo.environ as pyo

from ..data import DataError, load_breast_cancer, load_yeast, yeast_binary
from ..model import build_training_model, network_from_model
from ..network import Network
from ..solvers.registry import SOLVERS, _check
from ..transformations import set_lifted_values, solve_sdp_relaxation

__all__ = ["Instance", "default_instances", "tightness_study", "compare_solvers", "plot_tightness", "GUROBI_SIZE_LIMIT"]

GUROBI_SIZE_LIMIT = 2000  # variables and constraints of the pip license
TIGHTNESS_COLUMNS = ["instance", "m", "relaxation", "bound", "global_optimum", "gap", "seconds", "status",
                     "weight_bound", "global_solver", "global_lower_bound", "local_best", "local_spread", "variables", "constraints"]


@dataclass
class Instance:
    name: str
    sizes: list[int]
    activations: list[str]
    X: np.ndarray
    Y: np.ndarray
    weight_bound: float = 0.5  # |w|, |b| <= weight_bound in every model of the instance

    @property
    def m(self) -> int:
        return len(self.Y)


def default_instances(max_m: int = 48, weight_bounds=(1.0, 0.25)) -> list[Instance]:
    """XOR 2-2-1; breast_cancer and Yeast slices, 3 architectures, m from 4 to ``max_m``, each
    under every box ``|w|, |b| <= B`` of ``weight_bounds`` (with eta = 0 the relaxations are
    only as tight as the box lets the interval bounds on ``z`` be)."""
    xor = (np.array([[0, 0], [0, 1], [1, 0], [1, 1.0]]), np.array([0, 1, 1, 0.0]))
    bc = load_breast_cancer()
    idx = np.random.default_rng(0).permutation(bc.m)
    base = [("xor-2-2-1", [2, 2, 1], ["sigmoid", "identity"], *xor)]
    for m in (12, 24, max_m):
        base.append((f"breast_cancer-3-2-1-m{m}", [3, 2, 1], ["sigmoid", "identity"], bc.X[idx[:m], :3], bc.y[idx[:m]]))
    base.append(("breast_cancer-3-2-2-1-m12", [3, 2, 2, 1], ["sigmoid", "sigmoid", "identity"], bc.X[idx[:12], :3], bc.y[idx[:12]]))
    try:
        ye = yeast_binary(load_yeast(download=False))
        yidx = np.random.default_rng(1).permutation(len(ye.y))
        for m in (12, 24):
            base.append((f"yeast-8-1-1-m{m}", [8, 1, 1], ["tanh", "identity"], ye.X[yidx[:m]], ye.y[yidx[:m]]))
    except DataError:
        pass
    return [Instance(f"{name}-B{B:g}", sizes, acts, X, Y, B) for B in weight_bounds for name, sizes, acts, X, Y in base]


def _bounded_model(inst: Instance, weight_bound: float, elementary: bool = False):
    net = Network(inst.sizes, inst.activations).init_he(0)
    model = build_training_model(net, inst.X, inst.Y, elementary=elementary)
    pyo.TransformationFactory("convexnn.bound").apply_to(model, weight_bound=weight_bound, bias_bound=weight_bound)
    return net, model


def _size(model) -> tuple[int, int]:
    return (len({id(v) for v in model.component_data_objects(pyo.Var)}),
            sum(1 for _ in model.component_data_objects(pyo.Constraint, active=True)))


def solve_global(inst: Instance, weight_bound: float = 3.0, time_limit: float = 60.0, solver: str | None = None) -> dict:
    """Global solve of the bounded exact problem: Gurobi inside its license, else SCIP."""
    net, model = _bounded_model(inst, weight_bound, elementary=True)
    n_vars, n_cons = _size(model)
    if solver is None:
        solver = "gurobi_direct_minlp" if max(n_vars, n_cons) <= GUROBI_SIZE_LIMIT and _check("gurobi_direct_minlp")[0] else "scip_nl"
    t0 = time.perf_counter()
    try:
        res = pyo.SolverFactory(solver).solve(model, options={"TimeLimit": time_limit} if solver.startswith("gurobi") else {"limits/time": time_limit})
    except Exception as exc:
        # Gurobi's nonlinear constraints add auxiliary variables, so a model under the Pyomo count
        # can still exceed the pip license: fall back to SCIP and say so in the solver name
        if not (solver.startswith("gurobi") and "size-limited" in str(exc)):
            raise
        solver = "scip_nl (gurobi: license size)"
        model = _bounded_model(inst, weight_bound, elementary=True)[1]
        res = pyo.SolverFactory("scip_nl").solve(model, options={"limits/time": time_limit})
    return {
        "solver": solver, "status": str(res.solver.termination_condition), "seconds": time.perf_counter() - t0,
        "upper": float(res.problem.upper_bound), "lower": float(res.problem.lower_bound), "variables": n_vars,
        "constraints": n_cons,
    }


def ipopt_multistart(inst: Instance, starts: int = 5, weight_bound: float = 3.0, solver: str = "ipopt_casadi") -> tuple[float, float]:
    """Best and spread (max - min) of local optima of the exact problem from ``starts`` He starts."""
    vals = []
    for s in range(starts):
        net = Network(inst.sizes, inst.activations).init_he(100 + s)
        model = build_training_model(net, inst.X, inst.Y)
        pyo.TransformationFactory("convexnn.bound").apply_to(model, weight_bound=weight_bound, bias_bound=weight_bound)
        for v in model.component_data_objects(pyo.Var):  # clip the start into the box
            if v.value is not None and v.lb is not None and v.ub is not None:
                v.set_value(min(max(v.value, v.lb), v.ub))
        res = pyo.SolverFactory(solver).solve(model)
        if res.solver.termination_condition in (pyo.TerminationCondition.optimal, pyo.TerminationCondition.locallyOptimal):
            vals.append(network_from_model(model).loss(inst.X, inst.Y))
    return (min(vals), max(vals) - min(vals)) if vals else (math.nan, math.nan)


def relaxation_bound(inst: Instance, relaxation: str, weight_bound: float = 3.0, nlp_solver: str = "ipopt_casadi") -> dict:
    net, model = _bounded_model(inst, weight_bound)
    pyo.TransformationFactory(f"convexnn.{relaxation}").apply_to(model)
    set_lifted_values(model, net)
    n_vars, n_cons = _size(model)
    t0 = time.perf_counter()
    if relaxation == "sdp":
        res = solve_sdp_relaxation(model)
    else:
        res = pyo.SolverFactory(nlp_solver).solve(model)
    return {"bound": float(pyo.value(model.objective)), "status": str(res.solver.termination_condition),
            "seconds": time.perf_counter() - t0, "variables": n_vars, "constraints": n_cons}


def tightness_study(instances: list[Instance] | None = None, relaxations=("parabolic", "sdp", "mccormick"),
                    weight_bound: float | None = None, time_limit: float = 60.0, sdp_max_m: int = 50, starts: int = 5,
                    progress: bool = False) -> pd.DataFrame:
    """Lower bounds of each relaxation vs the global optimum, per instance (long form).

    ``weight_bound`` overrides every instance's own box."""
    rows = []
    for inst in instances or default_instances():
        box = inst.weight_bound if weight_bound is None else weight_bound
        glob = solve_global(inst, box, time_limit)
        local_best, spread = ipopt_multistart(inst, starts, box)
        opt = glob["upper"]  # the proven optimum, or the best incumbent at the time limit
        for rel in relaxations:
            if rel == "sdp" and inst.m > sdp_max_m:
                continue
            r = relaxation_bound(inst, rel, box)
            gap = (opt - r["bound"]) / max(abs(opt), 1e-9) if np.isfinite(opt) else math.nan
            rows.append({
                "instance": inst.name, "m": inst.m, "relaxation": rel, "bound": r["bound"], "global_optimum": opt,
                "gap": gap, "seconds": r["seconds"], "status": r["status"], "weight_bound": box, "global_solver": glob["solver"],
                "global_lower_bound": glob["lower"], "local_best": local_best, "local_spread": spread,
                "variables": r["variables"], "constraints": r["constraints"],
            })
            if progress:
                print(f"{inst.name:32s} m={inst.m:3d} {rel:10s} bound {r['bound']:.6g}  global {opt:.6g} "
                      f"({glob['solver']}, {glob['status']}, {glob['seconds']:.1f}s)  gap {gap:.3g}  {r['seconds']:.2f}s", flush=True)
    return pd.DataFrame(rows, columns=TIGHTNESS_COLUMNS)


def plot_tightness(df: pd.DataFrame, path: str | Path) -> None:
    """Relative gap vs m, one panel per weight box, one marker per relaxation (offset so that
    coinciding bounds stay visible)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    boxes = sorted(df["weight_bound"].unique(), reverse=True) if "weight_bound" in df else [None]
    fig, axes = plt.subplots(1, len(boxes), figsize=(5.5 * len(boxes), 4.2), squeeze=False, sharey=True)
    markers = {"parabolic": ("o", -0.6), "sdp": ("s", 0.0), "mccormick": ("^", 0.6)}
    for ax, box in zip(axes[0], boxes):
        sub = df if box is None else df[df["weight_bound"] == box]
        for rel, g in sub.groupby("relaxation"):
            marker, dx = markers.get(rel, ("x", 0.0))
            ax.plot(g["m"] + dx, g["gap"], marker, label=rel, alpha=0.8, linestyle="none")
        ax.set_xlabel("m (data points)")
        ax.set_title(f"|w|, |b| <= {box:g}" if box is not None else "")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("relative gap (global - bound) / global")
    axes[0][-1].legend()
    fig.suptitle("Relaxation tightness at eta = 0 (same bounds in every relaxation)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _load_model_file(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if hasattr(mod, "pyomo_create_model"):
        return mod.pyomo_create_model()
    return mod.model


def compare_solvers(model_dir: str | Path, time_limit: float = 60.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every available solver on every model file: (results, unavailable solvers with reasons)."""
    results, missing = [], []
    candidates = [s.name for s in SOLVERS]
    usable = []
    for name in candidates:
        ok, reason = _check(name)
        (usable.append(name) if ok else missing.append({"solver": name, "reason": reason}))
    from ..psd import psd_constraints

    for path in sorted(Path(model_dir).glob("*.py")):
        for solver in usable:
            model = _load_model_file(path)
            if psd_constraints(model) and solver != "convexnn_conic":
                # some Pyomo interfaces (gurobi_direct) skip unknown block types without a word:
                # they would "solve" the model without its PSD constraints
                results.append({"model": path.stem, "solver": solver, "objective": math.nan, "bound": math.nan,
                                "status": "skipped: PSD constraints (only convexnn_conic handles them)", "seconds": 0.0})
                continue
            t0 = time.perf_counter()
            try:
                opts = {"TimeLimit": time_limit} if solver.startswith("gurobi") else (
                    {"limits/time": time_limit} if solver == "scip_nl" else ({"max_cpu_time": time_limit} if "ipopt" in solver else {}))
                res = pyo.SolverFactory(solver).solve(model, options=opts)
                status = str(res.solver.termination_condition)
                obj = float(pyo.value(next(model.component_data_objects(pyo.Objective, active=True)))) if status in ("optimal", "locallyOptimal", "maxTimeLimit") else math.nan
                bound = float(res.problem.lower_bound) if res.problem.lower_bound is not None else math.nan
                if solver in ("ipopt", "ipopt_casadi", "appsi_highs"):
                    bound = math.nan if solver != "appsi_highs" else bound  # local solvers prove no bound
            except Exception as exc:  # the comparison must go on: record why this pair failed
                status, obj, bound = f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}", math.nan, math.nan
            results.append({"model": path.stem, "solver": solver, "status": status, "objective": obj, "bound": bound,
                            "seconds": round(time.perf_counter() - t0, 3)})
    return pd.DataFrame(results, columns=["model", "solver", "status", "objective", "bound", "seconds"]), pd.DataFrame(missing)
