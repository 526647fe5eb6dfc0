"""Section V: imbalanced binary classification with hard constraints (the paper's Figure 2).

Protocol (``docs/experiments.md``): for each majority proportion ``rho`` and run, a balanced test
set is drawn (``test_per_class`` of each class), the training majority is ``train_majority``
samples of the rest and the training minority is subsampled to ``rho``.  All methods share the
network (8-6-6-1 sigmoid) and the He initial weights of the run.  The sweep's unit of work is one
method on one (rho, run); each finished unit appends its row to ``runs.csv`` at once (a whole
line, flushed and fsynced) so an interrupted sweep resumes (:func:`imbalance_study` describes the
sweep to the driver :func:`.sweep.run`).
"""

from __future__ import annotations

import importlib.util
import math
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from ..constraints import BalancedMisfitBounds, ClasswiseMisfitBounds
from ..data import Dataset, load_dataset
from ..network import Network
from . import sweep
from .sweep import MIN_RUNS_FOR_INTERVAL, Study, interval_stats, read_rows

__all__ = [
    "ALL_METHODS",
    "METHODS",
    "METHOD_DESCRIPTIONS",
    "MIN_RUNS_FOR_INTERVAL",
    "RUN_COLUMNS",
    "ImbalanceConfig",
    "describe_method",
    "format_summary",
    "imbalance_study",
    "imbalanced_split",
    "plot_figure2",
    "preflight",
    "read_runs",
    "run_one",
    "run_setup",
    "run_sweep",
    "summarize",
]

#: One line per method, shown by ``convexnn experiment imbalance --help`` and in the figure's legend.
METHOD_DESCRIPTIONS = {
    "convexnn-constrained": "Convex-NN (Algorithm 1) with the hard class-wise bounds (19), kappa_j = f |C_j|, f = --kappa-factor (0.5)",
    "convexnn": "Convex-NN (Algorithm 1) without constraints",
    "proportion": "Adam on the loss weighted by inverse class frequency",
    "random": "Adam with random per-sample weights max(g, 0), g ~ N(0, 1), redrawn every step",
    "adam": "Adam, unweighted",
    "logreg-balanced": "logistic regression with class_weight='balanced' (scikit-learn)",
    "smote-adam": "SMOTE oversampling of the minority class, then unweighted Adam",
    "convexnn-balanced": "Convex-NN with the balanced bounds: mean hinge of every class <= t = --balanced-bound (0.5) "
                         "(training error <= t in each class; opt-in)",
}
#: methods run only when asked for (``--methods``): not part of the paper's Figure 2
OPTIONAL_METHODS = ("convexnn-balanced",)
METHODS = [m for m in METHOD_DESCRIPTIONS if m not in OPTIONAL_METHODS]
ALL_METHODS = list(METHOD_DESCRIPTIONS)
RUN_COLUMNS = [
    "dataset", "rho", "run", "seed", "method", "test_error", "balanced_error", "minority_recall",
    "train_loss", "constraint_violation", "seconds", "n_train", "n_minority", "status", "hard_violation",
]
#: Metrics summarised per (rho, method); the rates lie in [0, 1], the others in [0, inf).
METRICS = ["test_error", "balanced_error", "minority_recall", "train_loss", "constraint_violation", "seconds"]
RATES = ("test_error", "balanced_error", "minority_recall")
_ADAM_METHODS = ("proportion", "random", "adam", "smote-adam")
#: Convex-NN's round solvers a study takes (:attr:`ImbalanceConfig.round_solver`)
ROUND_SOLVER_NAMES = ("auto", "schur", "pyomo")


def describe_method(name: str) -> str:
    """The one-line meaning of a method name (``convexnn-constrained-k<f>`` included)."""
    if name.startswith("convexnn-constrained-k"):
        return f"Convex-NN with the hard bounds (19), kappa_j = {name.rsplit('-k', 1)[1]} * |C_j|"
    return METHOD_DESCRIPTIONS.get(name, name)


@dataclass
class ImbalanceConfig:
    """Every knob of the sweep; written to ``config.json`` next to ``runs.csv``."""

    dataset: str = "breast_cancer"
    data_path: str | None = None
    ratios: Sequence[float] = (0.5, 0.8, 0.9, 0.95, 0.98)
    runs: int = 10
    methods: Sequence[str] = tuple(METHODS)
    hidden: Sequence[int] = (6, 6)
    activation: str = "sigmoid"
    train_majority: int = 100
    test_per_class: int = 50
    kappa_factor: float = 0.5
    balanced_bound: float = 0.5
    extra_kappa_factors: Sequence[float] = ()
    rounds: int = 10
    adam_steps: int = 2000
    adam_lr: float = 0.005
    seed: int = 0
    #: Convex-NN's rounds (:func:`~convexnn_pyomo.algorithms.get_round_solver`): ``"auto"`` (the
    #: structured round by the Schur interior point), ``"schur"`` or ``"pyomo"`` (the Pyomo model on
    #: every sample, solved by ``solver`` or the default NLP solver); a ``solver`` name implies ``"pyomo"``
    round_solver: str = "auto"
    solver: str | None = None
    #: Convex-NN: refit the output layer exactly under its hard constraint after an infeasible step
    refit_output_layer: bool = True
    extra: dict = field(default_factory=dict)

    def round_solver_spec(self) -> str:
        """``round_solver`` for :func:`~convexnn_pyomo.training.train`: the ``solver`` name when given."""
        return _round_solver_spec(self.round_solver, self.solver)

    def method_names(self) -> list[str]:
        names = list(self.methods)
        if "convexnn-constrained" in names:
            names += [f"convexnn-constrained-k{k:g}" for k in self.extra_kappa_factors]
        return names

    def kappa_factor_of(self, method: str) -> float:
        """The kappa factor of (19) a method is held to (its own for ``-k<f>``, else ``kappa_factor``)."""
        return float(method.rsplit("-k", 1)[1]) if method.startswith("convexnn-constrained-k") else self.kappa_factor

    def validate(self) -> None:
        unknown = set(self.methods) - set(ALL_METHODS)
        if unknown:
            raise ValueError(f"unknown method(s) {sorted(unknown)}; choose from {', '.join(ALL_METHODS)}")
        for r in self.ratios:
            if not 0.5 <= r < 1:
                raise ValueError(f"majority proportions must be in [0.5, 1), got {r}")
        if self.runs < 1 or self.train_majority < 2 or self.test_per_class < 1 or self.rounds < 1:
            raise ValueError("runs, rounds, train_majority (>= 2) and test_per_class must be positive")
        for k in (self.kappa_factor, *self.extra_kappa_factors):
            if not k > 0:
                raise ValueError(f"kappa factors must be positive, got {k}")
        if not self.balanced_bound > 0:
            raise ValueError(f"the balanced bound must be positive, got {self.balanced_bound}")
        self.round_solver_spec()


def _round_solver_spec(round_solver: str, solver: str | None) -> str:
    """A study's ``round_solver`` (``auto``, ``schur``, ``pyomo``) and ``solver`` (a Pyomo solver
    name, which implies the Pyomo rounds) as one ``round_solver`` of ``train``."""
    if round_solver not in ROUND_SOLVER_NAMES:
        raise ValueError(f"round_solver must be one of {', '.join(ROUND_SOLVER_NAMES)}, got {round_solver!r}")
    if solver and round_solver == "schur":
        raise ValueError(f"solver {solver!r} is a Pyomo solver, but round_solver 'schur' is solved by the Schur "
                         "interior point: drop the solver or use round_solver 'pyomo'")
    return solver or round_solver


def preflight(cfg: ImbalanceConfig) -> None:
    """Everything a sweep needs, checked before anything is written: the configuration, the data
    (binary, enough samples for every ``rho``), the solver and the optional packages.

    Raises ``ValueError`` (incl. :class:`~convexnn_pyomo.data.DataError`), ``ImportError`` or the
    solver layer's not-available error, each naming the fix."""
    cfg.validate()
    X, y = _binary_minority_is_one(load_dataset(cfg.dataset, cfg.data_path))
    for rho in cfg.ratios:
        imbalanced_split(X, y, rho, cfg.train_majority, cfg.test_per_class, np.random.default_rng(0))
    names = cfg.method_names()
    if any(m.startswith("convexnn") for m in names):
        from ..algorithms import get_round_solver

        get_round_solver(cfg.round_solver_spec())  # a Pyomo solver must be available
    needs = {"torch": [m for m in names if m in _ADAM_METHODS], "imblearn": [m for m in names if m == "smote-adam"]}
    for module, users in needs.items():
        if users and importlib.util.find_spec(module) is None:
            raise ImportError(f"method(s) {', '.join(users)} need the {module!r} package: pip install -e '.[baselines]' "
                              "(or leave them out with --methods)")


def _binary_minority_is_one(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    y = ds.y
    labels = np.unique(y)
    if len(labels) != 2 or not set(labels) <= {0.0, 1.0}:
        raise ValueError(f"the imbalance experiment needs binary labels in {{0, 1}}, got {labels[:10]}")
    counts = {c: int((y == c).sum()) for c in labels}
    minority = min(counts, key=counts.get)
    return ds.X, (y == minority).astype(float)


def imbalanced_split(X, y, rho: float, train_majority: int, test_per_class: int, rng: np.random.Generator):
    """Balanced disjoint test set; training majority of fixed size, minority subsampled to ``rho``."""
    maj, mino = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
    rng.shuffle(maj)
    rng.shuffle(mino)
    if len(mino) < test_per_class + 2 or len(maj) < test_per_class + train_majority:
        raise ValueError(
            f"not enough samples: {len(maj)} majority / {len(mino)} minority for {test_per_class} test per class "
            f"and {train_majority} training majority"
        )
    test = np.r_[maj[:test_per_class], mino[:test_per_class]]
    n_min = max(2, int(round(train_majority * (1 - rho) / rho)))
    n_min = min(n_min, len(mino) - test_per_class)
    train = np.r_[maj[test_per_class : test_per_class + train_majority], mino[test_per_class : test_per_class + n_min]]
    return X[train], y[train], X[test], y[test]


def _metrics(scores: np.ndarray, y: np.ndarray) -> dict:
    from sklearn.metrics import balanced_accuracy_score, recall_score

    pred = (scores >= 0.5).astype(float)
    return {
        "test_error": float(np.mean(pred != y)),
        "balanced_error": float(1 - balanced_accuracy_score(y, pred)),
        "minority_recall": float(recall_score(y, pred, pos_label=1, zero_division=0)),
    }


# -- one (rho, run): the methods -------------------------------------------------------------------


def run_setup(cfg: ImbalanceConfig, rho: float, run: int) -> tuple[int, tuple, Network]:
    """``(seed, (Xtr, ytr, Xte, yte), initial network)`` of one (rho, run), shared by its methods:
    ``seed = 1000003 seed_0 + 1000 round(1000 rho) + run`` draws the split, then the He weights."""
    X, y = _binary_minority_is_one(load_dataset(cfg.dataset, cfg.data_path))
    seed = int(cfg.seed * 1_000_003 + round(rho * 1000) * 1000 + run)
    rng = np.random.default_rng(seed)
    split = imbalanced_split(X, y, rho, cfg.train_majority, cfg.test_per_class, rng)
    sizes = [X.shape[1], *cfg.hidden, 1]
    return seed, split, Network(sizes, [cfg.activation] * len(cfg.hidden) + ["identity"]).init_he(rng)


def run_one(cfg: ImbalanceConfig, rho: float, run: int, methods: Sequence[str] | None = None,
            progress: Callable[[dict], None] | None = None) -> list[dict]:
    """All (remaining) methods for one (rho, run): same split and same initial weights.

    ``progress``, when given, receives ``{"rho", "run", "method", "round"}`` as a method starts
    (round 0) and after each of its Convex-NN rounds."""
    seed, (Xtr, ytr, Xte, yte), net0 = run_setup(cfg, rho, run)
    rows = []
    for method in methods or cfg.method_names():
        report = partial(_emit, progress, {"rho": rho, "run": run, "method": method}) if progress else None
        if report:
            report(0)
        t0 = time.perf_counter()
        scores_te, scores_tr, status, hard = _fit(cfg, method, net0, Xtr, ytr, seed, report)
        check = ClasswiseMisfitBounds(cfg.kappa_factor_of(method))
        rows.append({
            "dataset": cfg.dataset, "rho": rho, "run": run, "seed": seed, "method": method,
            **_metrics(scores_te(Xte), yte),
            "train_loss": float(np.sum((scores_tr - ytr) ** 2)),
            "constraint_violation": _violation_of_scores(check, scores_tr, ytr),
            "seconds": round(time.perf_counter() - t0, 3),
            "n_train": len(ytr), "n_minority": int(ytr.sum()), "status": status, "hard_violation": hard,
        })
    return rows


def _emit(progress: Callable[[dict], None], unit: dict, round_: int) -> None:
    progress({**unit, "round": int(round_)})


def _fit(cfg: ImbalanceConfig, method: str, net0: Network, Xtr, ytr, seed: int, report) -> tuple:
    """Train one method; returns ``(score function, training scores, status, hard violation)``: the
    last is the training violation of the method's own hard constraint (NaN without one)."""
    if method == "logreg-balanced":
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(class_weight="balanced", max_iter=1000).fit(Xtr, ytr)
        return (lambda X: clf.predict_proba(X)[:, 1]), clf.predict_proba(Xtr)[:, 1], "ok", float("nan")
    if method.startswith("convexnn"):
        from ..training import train

        cons = ClasswiseMisfitBounds(cfg.kappa_factor_of(method)) if method.startswith("convexnn-constrained") else None
        cons = BalancedMisfitBounds(cfg.balanced_bound) if method == "convexnn-balanced" else cons
        on_round = (lambda row, best: report(row["round"])) if report else None
        res = train(net0, Xtr, ytr, rounds=cfg.rounds, hard_constraints=cons, round_solver=cfg.round_solver_spec(),
                    progress=on_round, refit_output_layer=cfg.refit_output_layer)
        net, status = res.network, str(res.summary()["status"])
        hard = float("nan") if cons is None else cons.violation(net, Xtr, ytr[:, None])
    else:
        net, status, hard = _fit_adam(cfg, method, net0, Xtr, ytr, seed), "ok", float("nan")
    return (lambda X: net.predict(X)[:, 0]), net.predict(Xtr)[:, 0], status, hard


def _fit_adam(cfg: ImbalanceConfig, method: str, net0: Network, Xtr, ytr, seed: int) -> Network:
    """The Adam family: ``proportion`` (inverse-frequency weights), ``random`` (random weights),
    ``smote-adam`` (SMOTE first), ``adam``."""
    from ..baselines import train_adam

    Xfit, yfit, weight, resample = Xtr, ytr, None, None
    if method == "proportion":
        counts = {c: (ytr == c).sum() for c in (0.0, 1.0)}
        weight = np.array([len(ytr) / (2 * counts[c]) for c in ytr])
    elif method == "random":
        resample = "rectified_gaussian"
    elif method == "smote-adam":
        from imblearn.over_sampling import SMOTE

        k = int(min(5, (ytr == 1).sum() - 1))
        Xfit, yfit = SMOTE(k_neighbors=max(k, 1), random_state=seed).fit_resample(Xtr, ytr)
    res = train_adam(net0, Xfit, yfit, steps=cfg.adam_steps, lr=cfg.adam_lr, sample_weight=weight,
                     random_weights=resample, seed=seed)
    return res.network


def _violation_of_scores(check: ClasswiseMisfitBounds, scores, y) -> float:
    """How much the scores violate (19): :math:`\\max_j (\\sum_{C_j} |s_i - y_i| - \\kappa_j)^+`."""
    kappas = check.kappas(y[:, None])
    return max(0.0, *(float(np.abs(scores[y == c] - c).sum()) - kappas[c] for c in kappas))


# -- files ---------------------------------------------------------------------------------------


def read_runs(path: Path) -> pd.DataFrame:
    """``runs.csv`` without a possibly torn last line (:func:`.sweep.read_rows`)."""
    return read_rows(path, RUN_COLUMNS)


# -- the sweep -----------------------------------------------------------------------------------

Unit = tuple[float, int, str]  # (rho, run, method)


def imbalance_study(cfg: ImbalanceConfig) -> Study:
    """The sweep as a :class:`.sweep.Study`: (rho, run, method) units, run-major (an interrupted
    sweep has every ratio equally covered), rows in ``runs.csv``, the figure ``figure2.png``; a
    unit's time is predicted by the finished units of the same method and rho, else method."""
    names = cfg.method_names()
    units = [(float(rho), run, m) for run in range(cfg.runs) for rho in cfg.ratios for m in names]
    return Study(name=f"imbalance {cfg.dataset}", config=cfg, units=units, run_unit=partial(_unit_rows, cfg),
                 columns=RUN_COLUMNS, key=("rho", "run", "method"), summarize=summarize, figure=_figure,
                 table=format_summary, rows_file="runs.csv", figure_file="figure2.png",
                 preflight=partial(preflight, cfg), warm_up=partial(_warm_up, names), label=partial(_label, cfg),
                 eta_keys=lambda unit: [(unit[2], unit[0]), (unit[2],)])


def run_sweep(cfg: ImbalanceConfig, out: str | Path, jobs: int = 1, progress: bool = True) -> pd.DataFrame:
    """Run (or resume) the sweep into ``out``; returns the summary table (:func:`.sweep.run` of
    :func:`imbalance_study`).

    Nothing is written before :func:`preflight` passes.  ``jobs`` worker processes run the
    (rho, run, method) units; ``progress`` shows a bar over the units that names the running ones
    (method, rho, run, Convex-NN round) with an ETA from the measured time of finished units."""
    return sweep.run(imbalance_study(cfg), out, jobs, progress)


def _warm_up(names: Sequence[str]) -> None:
    """Import what the methods need once per process, so that a unit's measured seconds (and the
    ETA drawn from them) do not include PyTorch's or Pyomo's import."""
    from .. import training  # noqa: F401

    if any(m in _ADAM_METHODS for m in names):
        importlib.import_module("torch")
    if "smote-adam" in names:
        importlib.import_module("imblearn.over_sampling")


def _unit_rows(cfg: ImbalanceConfig, unit: Unit, progress: Callable[[dict], None] | None) -> list[dict]:
    return run_one(cfg, unit[0], unit[1], [unit[2]], progress=progress)


def _label(cfg: ImbalanceConfig, unit: Unit, round_: int) -> str:
    """A running unit on the bar: its method, rho, run and Convex-NN round."""
    rho, run, method = unit
    text = f"{method} rho={rho:g} run {run + 1}/{cfg.runs}"
    return text + (f" round {round_}/{cfg.rounds}" if method.startswith("convexnn") else "")


def _figure(runs: pd.DataFrame, summary: pd.DataFrame, path: Path) -> None:
    plot_figure2(summary, path, runs=runs)


# -- summary, table, figure ----------------------------------------------------------------------


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, rho, method) and metric: ``_mean``, ``_std``, ``_min``, ``_max``, the 95%
    t-interval's half-width ``_ci95`` and its bounds ``_ci_low``, ``_ci_high`` clipped to the
    metric's range ([0, 1] for the rates, [0, inf) otherwise).  With fewer than
    :data:`MIN_RUNS_FOR_INTERVAL` runs the interval columns are NaN (with 2 runs the t-quantile is
    12.7: the interval would span far beyond [0, 1]); ``_min``/``_max`` then give the runs."""
    rows = []
    for (ds, rho, method), g in runs.groupby(["dataset", "rho", "method"], sort=True):
        row = {"dataset": ds, "rho": rho, "method": method, "runs": len(g)}
        for mname in METRICS:
            st = interval_stats(g[mname].astype(float).to_numpy(), 0.0, 1.0 if mname in RATES else math.inf)
            row.update({f"{mname}_{k}": v for k, v in st.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def _method_order(names) -> list[str]:
    base = {m: i for i, m in enumerate(ALL_METHODS)}
    return sorted(set(names), key=lambda n: (base.get(n.split("-k")[0] if n.startswith("convexnn-constrained") else n, 99), n))


def format_summary(summary: pd.DataFrame) -> str:
    """The printed table: means per (rho, method), the test error's clipped 95% interval (or the
    range of the runs when there are too few for an interval), and a note saying which."""
    table = []
    for rho, g in summary.groupby("rho", sort=True):
        for method in _method_order(g["method"]):
            r = g[g["method"] == method].iloc[0]
            if r["runs"] >= MIN_RUNS_FOR_INTERVAL:
                spread = f"[{r['test_error_ci_low']:.3f}, {r['test_error_ci_high']:.3f}]"
            else:
                spread = f"{r['test_error_min']:.3f}..{r['test_error_max']:.3f} (runs)"
            table.append({"rho": f"{rho:g}", "method": method, "runs": int(r["runs"]),
                          "test err": f"{r['test_error_mean']:.3f}", "95% CI / range": spread,
                          "bal. err": f"{r['balanced_error_mean']:.3f}", "min. recall": f"{r['minority_recall_mean']:.3f}",
                          "viol. (19)": f"{r['constraint_violation_mean']:.3g}"})
    note = (f"means over runs; test error: 95% t-interval of the mean clipped to [0, 1] with >= {MIN_RUNS_FOR_INTERVAL} "
            "runs, else the range of the runs (an interval from fewer runs is not informative)")
    return pd.DataFrame(table).to_string(index=False) + "\n" + textwrap.fill(note, 100)


def _caption(summary: pd.DataFrame) -> str:
    lo, hi = int(summary["runs"].min()), int(summary["runs"].max())
    n = f"{lo}" if lo == hi else f"{lo}-{hi}"
    text = f"points: mean test error over {n} runs; error rates lie in [0, 1], axis and bars clipped to it"
    if lo < MIN_RUNS_FOR_INTERVAL:
        text += (f"\nwith < {MIN_RUNS_FOR_INTERVAL} runs no interval is drawn (not informative): "
                 "small dots are the individual runs")
    if hi >= MIN_RUNS_FOR_INTERVAL:
        text += "\nbars: 95% t-interval of the mean"
    return text


def plot_figure2(summary: pd.DataFrame, path: str | Path | None = None, runs: pd.DataFrame | None = None):
    """Test error vs majority proportion, one line per method (small horizontal offsets so that
    methods do not hide each other), 95% intervals clipped to [0, 1] where there are at least
    :data:`MIN_RUNS_FOR_INTERVAL` runs, else the individual runs from ``runs``.  The legend names
    what each method is.  Saved to ``path`` when given; returns the matplotlib Figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    rhos = sorted(summary["rho"].unique())
    methods = _method_order(summary["method"])
    offsets = (np.arange(len(methods)) - (len(methods) - 1) / 2) * min(0.08, 0.6 / max(len(methods), 1))
    top = 0.0
    for method, dx in zip(methods, offsets):
        g = summary[summary["method"] == method].sort_values("rho")
        x = np.array([rhos.index(r) for r in g["rho"]]) + dx
        mean = g["test_error_mean"].to_numpy(float)
        style = {"ls": "-", "marker": "o"} if method.startswith("convexnn") else {"ls": "--", "marker": "s"}
        (line,) = ax.plot(x, mean, ms=5, clip_on=False, label=f"{method}: {describe_method(method)}", **style)
        top = max(top, float(np.max(mean)))
        ok = (g["runs"] >= MIN_RUNS_FOR_INTERVAL).to_numpy()
        if ok.any():
            lo, hi = g["test_error_ci_low"].to_numpy(float)[ok], g["test_error_ci_high"].to_numpy(float)[ok]
            ax.errorbar(x[ok], mean[ok], yerr=[mean[ok] - lo, hi - mean[ok]], fmt="none", ecolor=line.get_color(), capsize=3)
            top = max(top, float(np.max(hi)))
        if runs is not None and (~ok).any():
            for (rho, xi) in zip(g["rho"].to_numpy()[~ok], x[~ok]):
                v = runs.loc[(runs["method"] == method) & np.isclose(runs["rho"].astype(float), rho), "test_error"]
                ax.plot(np.full(len(v), xi), v.to_numpy(float), ".", ms=4, alpha=0.6, color=line.get_color(), clip_on=False)
                top = max(top, float(v.max()))
    ax.set_xticks(range(len(rhos)), [f"{r:g}" for r in rhos])
    ax.set_xlim(-0.5, len(rhos) - 0.5)
    ax.set_ylim(0.0, min(1.0, math.ceil((top + 0.02) * 10) / 10))
    ax.set_xlabel("majority-class proportion of the training set (rho)")
    ax.set_ylabel("test error (balanced test set)")
    ds = ", ".join(sorted(map(str, summary["dataset"].unique())))
    ax.set_title(f"Imbalanced classification ({ds})\n{_caption(summary)}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=1, frameon=False)
    if path is not None:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return fig
