"""Relaxation-tightness study and solver comparison.

``tightness_study`` solves, for each instance, the parabolic, SDP and McCormick relaxations with
``eta = 0`` under the same variable bounds (``convexnn.bound``), and the exact problem globally
(Gurobi when the model fits its pip license, else SCIP), plus an Ipopt multistart for the best
local optimum.  The result is a long-form DataFrame (``tightness.csv``).

Every solve goes through the new solver API (:func:`~convexnn_pyomo.solvers.require_solver`, one
``time_limit`` for all solvers); without the ``solvers`` extra the functions that need SCIP,
Gurobi or Clarabel raise :class:`~convexnn_pyomo.solvers.SolverNotAvailableError` naming it.
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
from ..psd import psd_constraints
from ..solvers import SOLVERS, SolverNotAvailableError, check_solver, require_solver, solve_sdp_relaxation
from ..solvers.base import install_hint
from ..transformations import set_lifted_values

__all__ = [
    "GUROBI_SIZE_LIMIT",
    "Instance",
    "compare_solvers",
    "comparison_solvers",
    "default_instances",
    "plot_tightness",
    "require_study_solvers",
    "tightness_study",
]

GUROBI_SIZE_LIMIT = 2000  # variables and constraints of the pip license
PSD_SOLVERS = ("convexnn_conic", "convexnn_sdp_cuts")  # the solvers that take PSDConstraint blocks
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


def _status(res) -> str:
    """``"optimal"`` for an optimal termination, else the termination condition's name."""
    return "optimal" if pyo.check_optimal_termination(res) else res.termination_condition.name


def _number(x) -> float:
    return math.nan if x is None else float(x)


def _solve(solver: str, model, time_limit: float | None = None):
    """One solve through the new API; the results, whatever the status (no solution loaded)."""
    return require_solver(solver).solve(model, time_limit=time_limit, load_solutions=False,
                                        raise_exception_on_nonoptimal_result=False)


def solve_global(inst: Instance, weight_bound: float = 3.0, time_limit: float = 60.0, solver: str | None = None) -> dict:
    """Global solve of the bounded exact problem: Gurobi inside its license, else SCIP."""
    model = _bounded_model(inst, weight_bound, elementary=True)[1]
    n_vars, n_cons = _size(model)
    if solver is None:
        fits = max(n_vars, n_cons) <= GUROBI_SIZE_LIMIT and check_solver("gurobi_direct_minlp")[0]
        solver = "gurobi_direct_minlp" if fits else "scip_nl"
    t0 = time.perf_counter()
    try:
        res = _solve(solver, model, time_limit)
    except SolverNotAvailableError:
        raise
    except Exception as exc:
        # Gurobi's nonlinear constraints add auxiliary variables, so a model under the Pyomo count
        # can still exceed the pip license: fall back to SCIP and say so in the solver name
        if not (solver.startswith("gurobi") and "size-limited" in str(exc)):
            raise
        solver = "scip_nl (gurobi: license size)"
        res = _solve("scip_nl", _bounded_model(inst, weight_bound, elementary=True)[1], time_limit)
    return {
        "solver": solver, "status": _status(res), "seconds": time.perf_counter() - t0,
        "upper": _number(res.incumbent_objective), "lower": _number(res.objective_bound), "variables": n_vars,
        "constraints": n_cons,
    }


def ipopt_multistart(inst: Instance, starts: int = 5, weight_bound: float = 3.0, solver: str = "ipopt_casadi") -> tuple[float, float]:
    """Best and spread (max - min) of local optima of the exact problem from ``starts`` He starts."""
    opt, vals = require_solver(solver), []
    for s in range(starts):
        net = Network(inst.sizes, inst.activations).init_he(100 + s)
        model = build_training_model(net, inst.X, inst.Y)
        pyo.TransformationFactory("convexnn.bound").apply_to(model, weight_bound=weight_bound, bias_bound=weight_bound)
        for v in model.component_data_objects(pyo.Var):  # clip the start into the box
            if v.value is not None and v.lb is not None and v.ub is not None:
                v.set_value(min(max(v.value, v.lb), v.ub))
        res = opt.solve(model, load_solutions=False, raise_exception_on_nonoptimal_result=False)
        if pyo.check_optimal_termination(res):
            res.solution_loader.load_vars()
            vals.append(network_from_model(model).loss(inst.X, inst.Y))
    return (min(vals), max(vals) - min(vals)) if vals else (math.nan, math.nan)


def relaxation_bound(inst: Instance, relaxation: str, weight_bound: float = 3.0, nlp_solver: str = "ipopt_casadi") -> dict:
    """Lower bound of one relaxation (``eta = 0``): the solver's proven bound (SDP: the conic dual
    bound of the cut loop), or the optimum of the convex relaxation solved by the local NLP solver."""
    net, model = _bounded_model(inst, weight_bound)
    pyo.TransformationFactory(f"convexnn.{relaxation}").apply_to(model)
    set_lifted_values(model, net)
    n_vars, n_cons = _size(model)
    t0 = time.perf_counter()
    if relaxation == "sdp":
        res = solve_sdp_relaxation(model, load_solutions=False, raise_exception_on_nonoptimal_result=False)
    else:
        res = _solve(nlp_solver, model)
    bound = res.objective_bound
    if bound is None and pyo.check_optimal_termination(res):
        bound = res.incumbent_objective  # a convex problem: the local optimum is the global one
    return {"bound": _number(bound), "status": _status(res), "seconds": time.perf_counter() - t0,
            "variables": n_vars, "constraints": n_cons}


def require_study_solvers(relaxations=("parabolic", "sdp", "mccormick")) -> None:
    """The global fallback (SCIP) and, for ``sdp``, the conic solver of :func:`tightness_study`:
    :class:`SolverNotAvailableError` naming the extra to install, before any work."""
    require_solver("scip_nl")
    if "sdp" in relaxations:
        require_solver("convexnn_sdp_cuts")


def tightness_study(instances: list[Instance] | None = None, relaxations=("parabolic", "sdp", "mccormick"),
                    weight_bound: float | None = None, time_limit: float = 60.0, sdp_max_m: int = 50, starts: int = 5,
                    progress: bool = False) -> pd.DataFrame:
    """Lower bounds of each relaxation vs the global optimum, per instance (long form).

    ``weight_bound`` overrides every instance's own box."""
    require_study_solvers(relaxations)
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


def comparison_solvers() -> tuple[list[str], list[dict]]:
    """The solvers of :data:`SOLVERS` usable here, and the others with the reason; raises
    :class:`SolverNotAvailableError` when none of the ``solvers`` extra is installed."""
    usable, missing = [], []
    for info in SOLVERS:
        ok, reason = check_solver(info.name)
        (usable.append(info) if ok else missing.append({"solver": info.name, "reason": reason}))
    if not any(info.extra for info in usable):
        raise SolverNotAvailableError(
            "comparing solvers needs the global and conic solvers of the solvers extra "
            f"(none is installed): {install_hint('pyscipopt')}"
        )
    return [info.name for info in usable], missing


def compare_solvers(model_dir: str | Path, time_limit: float = 60.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every available solver on every model file: (results, unavailable solvers with reasons).

    ``bound`` is the solver's proven bound (``nan`` for a local solver, which proves none)."""
    usable, missing = comparison_solvers()
    results = []
    for path in sorted(Path(model_dir).glob("*.py")):
        for solver in usable:
            row = _compare_one(_load_model_file(path), solver, time_limit)
            results.append({"model": path.stem, "solver": solver, **row})
    return pd.DataFrame(results, columns=["model", "solver", "status", "objective", "bound", "seconds"]), pd.DataFrame(missing)


def _compare_one(model, solver: str, time_limit: float) -> dict:
    if psd_constraints(model) and solver not in PSD_SOLVERS:
        # some Pyomo interfaces (gurobi_direct) skip unknown block types without a word:
        # they would "solve" the model without its PSD constraints
        return {"status": "skipped: PSD constraints (only convexnn_conic and convexnn_sdp_cuts take them)", "objective": math.nan,
                "bound": math.nan, "seconds": 0.0}
    t0 = time.perf_counter()
    try:
        res = _solve(solver, model, time_limit)
        row = {"status": _status(res), "objective": _number(res.incumbent_objective), "bound": _number(res.objective_bound)}
    except Exception as exc:  # noqa: BLE001 - the comparison must go on: record why this pair failed
        row = {"status": f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}", "objective": math.nan,
               "bound": math.nan}
    return {**row, "seconds": round(time.perf_counter() - t0, 3)}
