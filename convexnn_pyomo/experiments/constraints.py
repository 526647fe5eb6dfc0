"""Hard constraints users want, against the tools they would use instead (``docs/constraints.md``).

Each *task* is one constraint on one data set (:data:`TASKS`); each *method* trains the same
network from the same He weights on the same split: Convex-NN with the hard constraint (Algorithm
1), Adam with an exact penalty (its weight chosen on a validation split), Cooper's Lagrangian (its
dual step chosen the same way), projected Adam (where the projection is cheap) and plain Adam (the
constraint ignored, for reference).  Every method's violation is measured by the constraint's own
``violation`` (numpy forward pass of the real network) on the training and the test set.

The unit of work is one method on one (task, seed); each finished unit appends its row to
``results.csv`` at once, so an interrupted study resumes (:func:`constraints_study` describes the
study to the driver :func:`.sweep.run`).
"""

from __future__ import annotations

import importlib.util
import math
import textwrap
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from ..constraints import (
    BalancedMisfitBounds,
    DemographicParity,
    GroupLossBounds,
    LinearOutputEquality,
    MonotoneInputs,
    OutputBounds,
    WeightNormBounds,
)
from ..data import load_dataset, load_diabetes, load_wine
from ..network import Network
from . import sweep
from .imbalance import _round_solver_spec
from .sweep import MIN_RUNS_FOR_INTERVAL, Study, interval_stats

__all__ = [
    "FEASIBILITY_TOL",
    "METHOD_DESCRIPTIONS",
    "RESULT_COLUMNS",
    "TASKS",
    "ConstraintsConfig",
    "Task",
    "constraints_study",
    "format_summary",
    "plot_constraints",
    "run_study",
    "run_unit",
    "summarize",
    "task_setup",
]

RESULT_COLUMNS = ["task", "dataset", "constraint", "method", "seed", "train_violation", "test_violation", "feasible",
                  "train_loss", "test_metric", "seconds", "detail", "status"]
#: a run meets its constraint when the real network's violation is at most this (train's default)
FEASIBILITY_TOL = 1e-6

METHOD_DESCRIPTIONS = {
    "convexnn": "Convex-NN (Algorithm 1) with the hard constraint, --rounds convex rounds",
    "penalty": "Adam + exact penalty rho * (sum max(0, g) + sum |h|), rho chosen on a validation split",
    "cooper": "Cooper's Lagrangian (simultaneous descent-ascent), dual step chosen on a validation split",
    "projected": "projected Adam (clamp signs / rescale norms / project the last layer onto A w = 0, A b = c after "
                 "every step); weight constraints only",
    "adam": "Adam without the constraint (reference)",
}
METHODS = list(METHOD_DESCRIPTIONS)


DIABETES_SEX, DIABETES_BMI, DIABETES_BP = 1, 2, 3


@dataclass(frozen=True)
class Task:
    """One constraint on one data set, and why a user would want it."""

    name: str
    dataset: str  # breast_cancer, diabetes, yeast, wine
    constraint: str  # short name of the constraint
    make: Callable[[], object]  # a fresh HardConstraint
    metric: str  # test_error (one output: threshold 0.5; one-hot: argmax), balanced_error, test_mse
    why: str
    hidden: tuple[int, ...] = (6, 6)
    train_size: int = 100  # random split: training samples (the rest is the test set)
    rho: float | None = None  # yeast: the imbalanced split of the imbalance experiment at this rho
    one_hot: bool = False  # targets: one-hot rows of the class labels, one output per class (else one output)


TASKS: dict[str, Task] = {t.name: t for t in (
    Task("yeast-balanced", "yeast", "balanced hinge bounds t=0.5", lambda: BalancedMisfitBounds(0.5), "balanced_error",
         "imbalanced classes (rho = 0.9): guarantee a training error <= t in every class, so the minority is not given up",
         rho=0.9),
    Task("breast_cancer-output", "breast_cancer", "output bounds [0, 1]", lambda: OutputBounds(0.0, 1.0), "test_error",
         "a squared-loss classifier whose outputs must be probabilities (a downstream model reads them as such)"),
    Task("breast_cancer-lipschitz", "breast_cancer", "weight norms ||w^l||_F <= 4", lambda: WeightNormBounds(4.0),
         "test_error", "a certified Lipschitz bound (here <= 4): no input perturbation of norm r moves the output by more "
         "than 4 r, so a prediction with margin > 4 r is robust"),
    Task("diabetes-group", "diabetes", "group loss bounds (sex) kappa=0.45",
         lambda: GroupLossBounds(DIABETES_SEX, 0.45), "test_mse",
         "fairness of accuracy: the mean squared error of each sex is at most 0.45 (R^2 >= 0.55 for both)", hidden=(5,),
         train_size=200),
    Task("diabetes-parity", "diabetes", "demographic parity (sex) eps=0.05",
         lambda: DemographicParity(DIABETES_SEX, 0.05), "test_mse",
         "fairness of outcome: the mean predicted progression of the two sexes differs by at most 0.05 std", hidden=(5,),
         train_size=200),
    Task("diabetes-monotone", "diabetes", "monotone in bmi and bp (weight signs)",
         lambda: MonotoneInputs(increasing=[DIABETES_BMI, DIABETES_BP]), "test_mse",
         "domain knowledge: predicted progression never decreases with body-mass index or blood pressure, for every "
         "patient (not only the training ones)", hidden=(5,), train_size=200),
    Task("wine-composition", "wine", "outputs sum to 1 (A w^L = 0, A b^L = 1)",
         lambda: LinearOutputEquality(np.ones((1, 3)), [1.0], every_input=True), "test_error",
         "class-membership scores (or shares of a total) that add up to 1 for every input, not only on the training "
         "points", hidden=(6,), one_hot=True),
)}


def _applies(task: Task, method: str) -> bool:
    """Projected Adam only where the projection is cheap (the constraint has ``project``)."""
    return method != "projected" or hasattr(task.make(), "project")


@dataclass
class ConstraintsConfig:
    """Every knob of the study; written to ``config.json`` next to ``results.csv``."""

    tasks: Sequence[str] = tuple(TASKS)
    methods: Sequence[str] = tuple(METHODS)
    seeds: int = 10
    rounds: int = 20
    #: rounds Convex-NN's feasibility phase may use on top of ``rounds`` (from an infeasible start)
    feasibility_rounds: int = 100
    feasibility_rho: float = 1e-3  # Convex-NN: phase 1's first rho (SequentialRelaxation's feasibility_rho)
    #: Convex-NN: refit the output layer exactly under constraints on it (SequentialRelaxation's refit_output_layer)
    refit_output_layer: bool = True
    adam_steps: int = 2000
    adam_lr: float = 0.005
    penalty_weights: Sequence[float] = (0.1, 1.0, 10.0, 100.0)
    dual_lrs: Sequence[float] = (0.01, 0.1, 1.0)
    validation_fraction: float = 0.2
    train_size: int | None = None  # None: each task's own
    base_seed: int = 0
    #: Convex-NN's rounds: ``"auto"`` (the structured round by the Schur interior point), ``"schur"`` or
    #: ``"pyomo"`` (the Pyomo model by ``solver`` or the default NLP solver); a ``solver`` name implies ``"pyomo"``
    round_solver: str = "auto"
    solver: str | None = None
    data_path: str | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def quick(cls, **kw) -> ConstraintsConfig:
        """A small run (one seed, 40 training samples, 3 (+10 feasibility) rounds, 200 Adam steps): checks the pipeline."""
        return cls(**{"seeds": 1, "rounds": 3, "feasibility_rounds": 10, "adam_steps": 200, "train_size": 40, "penalty_weights": (1.0, 100.0),
                      "dual_lrs": (0.1,), **kw})

    def validate(self) -> None:
        unknown_t = set(self.tasks) - set(TASKS)
        if unknown_t:
            raise ValueError(f"unknown task(s) {sorted(unknown_t)}; choose from {', '.join(TASKS)}")
        unknown_m = set(self.methods) - set(METHODS)
        if unknown_m:
            raise ValueError(f"unknown method(s) {sorted(unknown_m)}; choose from {', '.join(METHODS)}")
        if self.seeds < 1 or self.rounds < 1 or self.adam_steps < 1:
            raise ValueError("seeds, rounds and adam_steps must be positive")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction}")
        if not self.penalty_weights or not self.dual_lrs:
            raise ValueError("the penalty-weight and dual-step grids need at least one value each")
        self.round_solver_spec()

    def round_solver_spec(self) -> str:
        """``round_solver`` for :func:`~convexnn_pyomo.training.train`: the ``solver`` name when given."""
        return _round_solver_spec(self.round_solver, self.solver)


def preflight(cfg: ConstraintsConfig) -> None:
    """Configuration, data sets, solver and optional packages, checked before anything is written."""
    cfg.validate()
    for name in cfg.tasks:
        task_setup(cfg, TASKS[name], 0)
    if "convexnn" in cfg.methods:
        from ..algorithms import get_round_solver

        get_round_solver(cfg.round_solver_spec())  # a Pyomo solver must be available
    needs = {"torch": [m for m in cfg.methods if m != "convexnn"], "cooper": [m for m in cfg.methods if m == "cooper"]}
    for module, users in needs.items():
        if users and importlib.util.find_spec(module) is None:
            package = "cooper-optim" if module == "cooper" else "torch==2.13.0"
            raise ImportError(f"method(s) {', '.join(users)} need the {module!r} package: pip install {package} "
                              "(or leave them out with --methods)")


# -- one (task, seed): data, split, initial network ---------------------------------------------


def _dataset(cfg: ConstraintsConfig, task: Task) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)``; ``y`` is ``(m,)``, or ``(m, classes)`` one-hot rows when ``task.one_hot``."""
    if task.dataset in ("diabetes", "wine"):
        ds = load_diabetes() if task.dataset == "diabetes" else load_wine()
        return ds.X, (np.eye(int(ds.y.max()) + 1)[ds.y.astype(int)] if task.one_hot else ds.y)
    from .imbalance import _binary_minority_is_one

    ds = load_dataset(task.dataset, cfg.data_path if task.dataset == "yeast" else None)
    return _binary_minority_is_one(ds) if task.dataset == "yeast" else (ds.X, ds.y)


def task_setup(cfg: ConstraintsConfig, task: Task, seed: int) -> tuple[int, tuple, Network]:
    """``(seed value, (Xtr, ytr, Xte, yte), initial network)`` of one (task, seed), shared by its
    methods: ``base_seed * 1000003 + 1000 * (crc32(task) mod 1000) + seed`` draws the split, then
    the He weights.  Yeast uses the imbalance experiment's split (balanced test set of 50 + 50,
    100 majority samples, minority subsampled to ``rho``); the others a random split.  The network
    has one output, or one per class for one-hot targets."""
    from .imbalance import imbalanced_split

    X, y = _dataset(cfg, task)
    value = int(cfg.base_seed * 1_000_003 + (zlib.crc32(task.name.encode()) % 1000) * 1000 + seed)
    rng = np.random.default_rng(value)
    if task.rho is not None:
        split = imbalanced_split(X, y, task.rho, cfg.train_size or 100, 50, rng)
    else:
        n = cfg.train_size or task.train_size
        if n >= len(y) - 10:
            raise ValueError(f"task {task.name}: {n} training samples leave too few of {len(y)} for testing")
        idx = rng.permutation(len(y))
        split = (X[idx[:n]], y[idx[:n]], X[idx[n:]], y[idx[n:]])
    sizes = [X.shape[1], *task.hidden, y.shape[1] if y.ndim > 1 else 1]
    return value, split, Network(sizes, ["sigmoid"] * len(task.hidden) + ["identity"]).init_he(rng)


def _labels(y: np.ndarray) -> np.ndarray:
    """Class labels: ``y`` itself, or the class index of one-hot rows."""
    return y.argmax(axis=1) if y.ndim > 1 else y


def _metric(task: Task, net: Network, X: np.ndarray, y: np.ndarray) -> float:
    """Test MSE; or the (balanced) error of the classes read off the outputs: one output against the
    threshold 0.5, several by their largest."""
    f = net.predict(X)
    if task.metric == "test_mse":
        return float(np.mean((f[:, 0] - y) ** 2))
    wrong = f.argmax(axis=1) != _labels(y) if f.shape[1] > 1 else (f[:, 0] >= 0.5) != (y == 1)
    y = _labels(y)
    if task.metric == "balanced_error":
        return float(np.mean([wrong[y == c].mean() for c in np.unique(y)]))
    return float(np.mean(wrong))


# -- the methods ---------------------------------------------------------------------------------


def _validation_split(task: Task, cfg: ConstraintsConfig, X, y, seed: int):
    from sklearn.model_selection import train_test_split

    stratify = _labels(y) if task.metric != "test_mse" else None
    return train_test_split(X, y, test_size=cfg.validation_fraction, random_state=seed % (2 ** 32), stratify=stratify)


def _tuned(task: Task, cfg: ConstraintsConfig, fit: Callable, grid: Sequence[float], net0: Network, Xtr, ytr,
           seed: int) -> tuple[Network, str]:
    """Fit with every value of ``grid`` on the fit part of the training set, keep the value with the
    best validation metric among those whose validation violation is <= FEASIBILITY_TOL (else the
    smallest validation violation), and refit on the whole training set with it."""
    Xf, Xv, yf, yv = _validation_split(task, cfg, Xtr, ytr, seed)
    scores = []
    for value in grid:
        net = fit(net0, Xf, yf, value)
        viol = task.make().violation(net, Xv, yv)
        scores.append((viol > FEASIBILITY_TOL, viol if viol > FEASIBILITY_TOL else 0.0, _metric(task, net, Xv, yv), value))
    best = min(scores)[3]
    return fit(net0, Xtr, ytr, best), f"chosen {best:g} from {', '.join(f'{v:g}' for v in grid)}"


def _fit(cfg: ConstraintsConfig, task: Task, method: str, net0: Network, Xtr, ytr, seed: int,
         report: Callable[[int], None] | None) -> tuple[Network, str]:
    """Train one method; returns the network and a detail (Convex-NN's status, the chosen value)."""
    from .. import baselines

    adam = {"steps": cfg.adam_steps, "lr": cfg.adam_lr, "seed": seed % (2 ** 31)}
    if method == "convexnn":
        from ..algorithms import SequentialRelaxation

        on_round = (lambda row, best: report(row["round"])) if report else None
        res = SequentialRelaxation(rounds=cfg.rounds, feasibility_rounds=cfg.feasibility_rounds,
                                   feasibility_rho=cfg.feasibility_rho, refit_output_layer=cfg.refit_output_layer,
                                   hard_constraints=task.make(), round_solver=cfg.round_solver_spec(),
                                   progress=on_round).solve(net0, Xtr, ytr)
        phase_one = int((res.history.phase == 1).sum())
        return res.network, (f"{res.summary()['status']}: {res.message}; {len(res.history)} rounds "
                             f"({phase_one} in the feasibility phase) by {res.solver}")
    if method == "adam":
        return baselines.train_adam(net0, Xtr, ytr, **adam).network, ""
    if method == "projected":
        return baselines.train_adam_projected(net0, Xtr, ytr, task.make(), **adam).network, ""
    if method == "penalty":
        fit = lambda n, X, y, w: baselines.train_adam_penalty(n, X, y, task.make(), weight=w, **adam).network
        net, detail = _tuned(task, cfg, fit, cfg.penalty_weights, net0, Xtr, ytr, seed)
        return net, f"weight {detail}"
    fit = lambda n, X, y, d: baselines.train_cooper(n, X, y, task.make(), dual_lr=d, **adam).network
    net, detail = _tuned(task, cfg, fit, cfg.dual_lrs, net0, Xtr, ytr, seed)
    return net, f"dual lr {detail}"


def run_unit(cfg: ConstraintsConfig, task_name: str, seed: int, method: str,
             progress: Callable[[dict], None] | None = None) -> dict:
    """One method on one (task, seed): the row of ``results.csv``.  ``progress`` receives
    ``{"task", "seed", "method", "round"}`` as the method starts and after each Convex-NN round."""
    task = TASKS[task_name]
    value, (Xtr, ytr, Xte, yte), net0 = task_setup(cfg, task, seed)
    report = (lambda r: progress({"task": task_name, "seed": seed, "method": method, "round": int(r)})) if progress else None
    if report:
        report(0)
    t0 = time.perf_counter()
    net, detail = _fit(cfg, task, method, net0, Xtr, ytr, value, report)
    seconds = time.perf_counter() - t0
    check = task.make()
    train_violation = check.violation(net, Xtr, ytr)
    return {"task": task.name, "dataset": task.dataset, "constraint": task.constraint, "method": method, "seed": seed,
            "train_violation": train_violation, "test_violation": check.violation(net, Xte, yte),
            "feasible": bool(train_violation <= FEASIBILITY_TOL), "train_loss": net.loss(Xtr, ytr, reduction="mean"),
            "test_metric": _metric(task, net, Xte, yte), "seconds": round(seconds, 3), "detail": detail,
            "status": _status(method, detail, train_violation)}


def _status(method: str, detail: str, train_violation: float) -> str:
    """``feasible`` (the constraint holds on the training data), ``infeasible`` (Convex-NN certified
    that no network meets it), or the way a Convex-NN run ended without either (a named failure:
    ``round_limit``, ``stalled``, ``solver_failed``, ``time_limit``); ``missed`` for another method."""
    if train_violation <= FEASIBILITY_TOL:
        return "feasible"
    if method != "convexnn":
        return "missed"
    return detail.split(":", 1)[0]


# -- the study -----------------------------------------------------------------------------------

Unit = tuple[str, int, str]  # (task, seed, method)


def _units(cfg: ConstraintsConfig) -> list[Unit]:
    """Seed-major: an interrupted study has every task equally covered."""
    return [(t, s, m) for s in range(cfg.seeds) for t in cfg.tasks for m in cfg.methods if _applies(TASKS[t], m)]


def constraints_study(cfg: ConstraintsConfig) -> Study:
    """The study as a :class:`.sweep.Study`: (task, seed, method) units (:func:`_units`), rows in
    ``results.csv``, the figure ``figure.png``; a unit's time is predicted by the finished units of
    the same task and method, else method.  Raises ``ValueError`` for an invalid ``cfg``."""
    cfg.validate()
    return Study(name="constraints", config=cfg, units=_units(cfg), run_unit=partial(_unit_rows, cfg),
                 columns=RESULT_COLUMNS, key=("task", "seed", "method"), summarize=summarize, figure=_figure,
                 table=format_summary, rows_file="results.csv", figure_file="figure.png",
                 preflight=partial(preflight, cfg), warm_up=_warm_up, label=partial(_label, cfg),
                 eta_keys=lambda unit: [(unit[0], unit[2]), (unit[2],)])


def run_study(cfg: ConstraintsConfig, out: str | Path, jobs: int = 1, progress: bool = True) -> pd.DataFrame:
    """Run (or resume) the study into ``out``: ``results.csv`` (one row per finished unit, appended
    at once), then ``summary.csv`` and ``figure.png``; returns the summary.  Nothing is written
    before :func:`preflight` passes (:func:`.sweep.run` of :func:`constraints_study`)."""
    return sweep.run(constraints_study(cfg), out, jobs, progress)


def _unit_rows(cfg: ConstraintsConfig, unit: Unit, progress) -> list[dict]:
    return [run_unit(cfg, *unit, progress=progress)]


def _warm_up() -> None:
    """Import Pyomo's model code and PyTorch once per process (not inside a unit's time)."""
    from .. import training  # noqa: F401

    if importlib.util.find_spec("torch") is not None:
        import torch  # noqa: F401


def _label(cfg: ConstraintsConfig, unit: Unit, round_: int) -> str:
    """A running unit on the bar: its task, method, seed and Convex-NN round."""
    task, seed, method = unit
    text = f"{task} {method} seed {seed + 1}/{cfg.seeds}"
    most = cfg.rounds + cfg.feasibility_rounds  # the feasibility phase has a budget of its own
    return text + (f" round {round_}/{most} at most" if method == "convexnn" else "")


def _figure(results: pd.DataFrame, summary: pd.DataFrame, path: Path) -> None:
    plot_constraints(results, path)


# -- summary, table, figure ----------------------------------------------------------------------

SUMMARY_METRICS = {"feasible": 1.0, "train_violation": math.inf, "test_violation": math.inf, "train_loss": math.inf,
                   "test_metric": math.inf, "seconds": math.inf}


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Per (task, method): ``runs``, and per metric ``_mean``, ``_std``, ``_min``, ``_max`` and the
    clipped 95% t-interval (:func:`.sweep.interval_stats`); ``feasible_mean`` is the fraction of
    runs that met the constraint on the training data; ``train_violation_median`` too."""
    rows = []
    for (task, method), g in results.groupby(["task", "method"], sort=False):
        row = {"task": task, "dataset": g["dataset"].iloc[0], "constraint": g["constraint"].iloc[0], "method": method,
               "metric": TASKS[task].metric if task in TASKS else "", "runs": len(g),
               "train_violation_median": float(g["train_violation"].median()),
               "other_endings": _endings(g)}
        for name, hi in SUMMARY_METRICS.items():
            values = g[name].astype(str).str.lower().map({"true": 1.0, "false": 0.0}) if name == "feasible" else g[name]
            row.update({f"{name}_{k}": v for k, v in interval_stats(values.astype(float).to_numpy(), 0.0, hi).items()})
        rows.append(row)
    order = {**{t: i for i, t in enumerate(TASKS)}, **{m: i for i, m in enumerate(METHODS)}}
    return pd.DataFrame(rows).sort_values(["task", "method"], key=lambda c: c.map(order)).reset_index(drop=True)


def _endings(g: pd.DataFrame) -> str:
    """How the runs that did not meet the constraint ended (``status`` counts: ``infeasible`` is a
    certificate, the others named failures); '' when all met it (or for rows without ``status``)."""
    if "status" not in g:
        return ""
    ended = g["status"].fillna("").astype(str)
    counts = ended[~ended.isin(["feasible", ""])].value_counts()
    return ", ".join(f"{n} {k}" for k, n in counts.items())


def format_summary(summary: pd.DataFrame) -> str:
    """The printed table: per (task, method) how many runs met the constraint on the training data,
    the median and largest training violation, the median test violation, the test metric (mean and
    clipped 95% interval, or the range with fewer than 3 runs) and the mean seconds."""
    table = []
    for r in summary.itertuples():
        if r.runs >= MIN_RUNS_FOR_INTERVAL:
            spread = f"[{r.test_metric_ci_low:.3f}, {r.test_metric_ci_high:.3f}]"
        else:
            spread = f"{r.test_metric_min:.3f}..{r.test_metric_max:.3f}"
        table.append({"task": r.task, "method": r.method, "met (train)": f"{round(r.feasible_mean * r.runs)}/{r.runs}",
                      "viol. median": f"{r.train_violation_median:.2g}", "viol. max": f"{r.train_violation_max:.2g}",
                      "test viol. mean": f"{r.test_violation_mean:.2g}", "test metric": f"{r.test_metric_mean:.3f}",
                      "95% CI / range": spread, "seconds": f"{r.seconds_mean:.1f}",
                      "not met: how": getattr(r, "other_endings", "") or "-"})
    metrics = "; ".join(f"{t.name}: {t.metric}" for t in TASKS.values() if t.name in set(summary["task"]))
    note = (f"met (train): runs whose real network violates the constraint by at most {FEASIBILITY_TOL:g} on the training "
            f"data; violations in the constraint's units; test metric ({metrics}): mean, 95% t-interval with >= "
            f"{MIN_RUNS_FOR_INTERVAL} runs, else the range; seconds include the validation grid of penalty and cooper; "
            f"not met: how those runs ended (infeasible: certified by Convex-NN; round_limit, stalled, "
            f"solver_failed: named failures; missed: another method)")
    return pd.DataFrame(table).to_string(index=False) + "\n" + textwrap.fill(note, 100)


_MARKERS = {"convexnn": "o", "penalty": "s", "cooper": "^", "projected": "D", "adam": "P"}
_FLOOR = 1e-9


def plot_constraints(results: pd.DataFrame, path: str | Path | None = None):
    """One panel per task: the training violation of the real network (log axis; violations below
    1e-9 are drawn between 1e-9 and 1e-8, one column per method) against the test metric, one marker per run
    and a large one for each method's median; the dashed line is the feasibility tolerance.  The
    legend names every method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(results["task"]))
    cols = min(3, len(tasks))
    rows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.8 * rows), squeeze=False)
    colors = {m: f"C{i}" for i, m in enumerate(METHODS)}
    for ax, task in zip(axes.flat, tasks):
        g = results[results["task"] == task]
        for i, method in enumerate(m for m in METHODS if m in set(g["method"])):
            r = g[g["method"] == method]
            x = r["train_violation"].to_numpy(float)
            x = np.where(x < _FLOOR, _FLOOR * 10 ** (0.25 * i), x)  # met: side by side below 1e-8
            y = r["test_metric"].to_numpy(float)
            ax.scatter(x, y, s=14, alpha=0.45, marker=_MARKERS[method], color=colors[method])
            ax.scatter([np.median(x)], [np.median(y)], s=90, marker=_MARKERS[method], color=colors[method],
                       edgecolors="black", linewidths=0.8, label=method, zorder=3)
        ax.axvline(FEASIBILITY_TOL, ls="--", color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlim(_FLOOR / 3, max(10.0, float(np.max(np.maximum(g["train_violation"], _FLOOR))) * 3))
        ax.set_xlabel(f"training violation (< {_FLOOR:g}: drawn at 1e-9..1e-8, one column per method)", fontsize=8)
        metric = TASKS[task].metric if task in TASKS else "test metric"
        ax.set_ylabel(metric.replace("_", " "), fontsize=8)
        ax.set_title(f"{task}\n{g['constraint'].iloc[0]}", fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(tasks):]:
        ax.set_visible(False)
    handles = [plt.Line2D([], [], ls="", marker=_MARKERS[m], color=colors[m], markeredgecolor="black",
                          label=f"{m}: {METHOD_DESCRIPTIONS[m]}") for m in METHODS if m in set(results["method"])]
    fig.legend(handles=handles, loc="lower center", ncol=1, fontsize=8, frameon=False, bbox_to_anchor=(0.5, -0.02))
    fig.suptitle("Hard constraints: training violation of the real network vs test metric (small: runs; large: "
                 f"medians; dashed: tolerance {FEASIBILITY_TOL:g})", fontsize=10)
    fig.tight_layout(rect=(0, 0.04 + 0.035 * len(handles) / rows, 1, 0.97))
    if path is not None:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return fig
