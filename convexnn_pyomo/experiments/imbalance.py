"""Section V: imbalanced binary classification with hard constraints (the paper's Figure 2).

Protocol (``docs/experiments.md``): for each majority proportion ``rho`` and run, a balanced test
set is drawn (``test_per_class`` of each class), the training majority is ``train_majority``
samples of the rest and the training minority is subsampled to ``rho``.  All methods share the
network (8-6-6-1 sigmoid) and the He initial weights of the run.  Finished rows are appended to
``runs.csv`` at once (whole lines, flushed and fsynced) so an interrupted sweep resumes.
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..constraints import ClasswiseMisfitBounds
from ..data import Dataset, load_dataset
from ..network import Network

__all__ = [
    "ImbalanceConfig",
    "METHODS",
    "RUN_COLUMNS",
    "imbalanced_split",
    "run_one",
    "run_sweep",
    "summarize",
    "plot_figure2",
]

METHODS = ["convexnn-constrained", "convexnn", "proportion", "random", "adam", "logreg-balanced", "smote-adam"]
RUN_COLUMNS = [
    "dataset", "rho", "run", "seed", "method", "test_error", "balanced_error", "minority_recall",
    "train_loss", "constraint_violation", "seconds", "n_train", "n_minority", "status",
]


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
    extra_kappa_factors: Sequence[float] = ()
    rounds: int = 10
    adam_steps: int = 2000
    adam_lr: float = 0.005
    seed: int = 0
    solver: str | None = None
    extra: dict = field(default_factory=dict)

    def method_names(self) -> list[str]:
        names = list(self.methods)
        if "convexnn-constrained" in names:
            names += [f"convexnn-constrained-k{k:g}" for k in self.extra_kappa_factors]
        return names

    def validate(self) -> None:
        unknown = set(self.methods) - set(METHODS)
        if unknown:
            raise ValueError(f"unknown method(s) {sorted(unknown)}; choose from {', '.join(METHODS)}")
        for r in self.ratios:
            if not 0.5 <= r < 1:
                raise ValueError(f"majority proportions must be in [0.5, 1), got {r}")
        if self.runs < 1 or self.train_majority < 2 or self.test_per_class < 1 or self.rounds < 1:
            raise ValueError("runs, rounds, train_majority (>= 2) and test_per_class must be positive")
        for k in (self.kappa_factor, *self.extra_kappa_factors):
            if not k > 0:
                raise ValueError(f"kappa factors must be positive, got {k}")


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


def run_one(cfg: ImbalanceConfig, rho: float, run: int, methods: Sequence[str] | None = None) -> list[dict]:
    """All (remaining) methods for one (rho, run): same split and same initial weights."""
    from ..baselines import train_adam
    from ..training import train

    ds = load_dataset(cfg.dataset, cfg.data_path)
    X, y = _binary_minority_is_one(ds)
    seed = int(cfg.seed * 1_000_003 + round(rho * 1000) * 1000 + run)
    rng = np.random.default_rng(seed)
    Xtr, ytr, Xte, yte = imbalanced_split(X, y, rho, cfg.train_majority, cfg.test_per_class, rng)
    sizes = [X.shape[1], *cfg.hidden, 1]
    net0 = Network(sizes, [cfg.activation] * len(cfg.hidden) + ["identity"]).init_he(rng)
    check = ClasswiseMisfitBounds(cfg.kappa_factor)
    rows = []
    for method in methods or cfg.method_names():
        t0 = time.perf_counter()
        status = "ok"
        if method.startswith("convexnn"):
            cons = None
            if method.startswith("convexnn-constrained"):
                k = float(method.split("-k")[1]) if "-k" in method else cfg.kappa_factor
                cons = ClasswiseMisfitBounds(k)
            res = train(net0, Xtr, ytr, rounds=cfg.rounds, hard_constraints=cons, solver=cfg.solver)
            net, status = res.network, res.status
            scores_te, scores_tr = net.predict(Xte)[:, 0], net.predict(Xtr)[:, 0]
            viol = (cons or check).violation(net, Xtr, ytr)
        elif method == "logreg-balanced":
            from sklearn.linear_model import LogisticRegression

            clf = LogisticRegression(class_weight="balanced", max_iter=1000).fit(Xtr, ytr)
            scores_te, scores_tr = clf.predict_proba(Xte)[:, 1], clf.predict_proba(Xtr)[:, 1]
            viol = _violation_of_scores(check, scores_tr, ytr)
        else:
            Xfit, yfit, weight = Xtr, ytr, None
            resample = None
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
            net = res.network
            scores_te, scores_tr = net.predict(Xte)[:, 0], net.predict(Xtr)[:, 0]
            viol = check.violation(net, Xtr, ytr)
        row = {
            "dataset": cfg.dataset, "rho": rho, "run": run, "seed": seed, "method": method,
            **_metrics(scores_te, yte),
            "train_loss": float(np.sum((scores_tr - ytr) ** 2)),
            "constraint_violation": float(viol),
            "seconds": round(time.perf_counter() - t0, 3),
            "n_train": int(len(ytr)), "n_minority": int(ytr.sum()), "status": status,
        }
        rows.append(row)
    return rows


def _violation_of_scores(check: ClasswiseMisfitBounds, scores, y) -> float:
    kappas = check.kappas(y[:, None])
    return max(0.0, *(float(np.abs(scores[y == c] - c).sum()) - kappas[c] for c in kappas))


def _append_rows(path: Path, rows: list[dict]) -> None:
    """Append whole lines and fsync: a killed sweep never leaves a half-written row."""
    new = not path.exists() or path.stat().st_size == 0
    lines = []
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=RUN_COLUMNS, extrasaction="ignore", lineterminator="\n")
    if new:
        w.writeheader()
    for r in rows:
        w.writerow(r)
    lines = buf.getvalue()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, lines.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_runs(path: Path) -> pd.DataFrame:
    """``runs.csv`` without a possibly torn last line (a crash between write and fsync)."""
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame(columns=RUN_COLUMNS)
    text = path.read_text()
    if not text.endswith("\n"):  # torn tail: drop it (and rewrite the file without it)
        text = text[: text.rfind("\n") + 1]
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    from io import StringIO

    return pd.read_csv(StringIO(text))


def run_sweep(cfg: ImbalanceConfig, out: str | Path, jobs: int = 1, progress: bool = True) -> pd.DataFrame:
    """Run (or resume) the sweep into ``out``; returns the summary table."""
    import json

    cfg.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2, default=list) + "\n")
    runs_path = out / "runs.csv"
    done = read_runs(runs_path)
    done_keys = {(float(r.rho), int(r.run), r.method) for r in done.itertuples()} if len(done) else set()
    names = cfg.method_names()
    todo = []
    for run in range(cfg.runs):  # run-major: an interrupted sweep has every ratio equally covered
        for rho in cfg.ratios:
            missing = [m for m in names if (float(rho), run, m) not in done_keys]
            if missing:
                todo.append((float(rho), run, missing))
    total = len(cfg.ratios) * cfg.runs
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=total - len(todo), desc=f"imbalance {cfg.dataset}", unit="run")
    t0 = time.perf_counter()
    if jobs <= 1:
        for rho, run, missing in todo:
            _append_rows(runs_path, run_one(cfg, rho, run, missing))
            if bar:
                bar.update(1)
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            pending = {pool.submit(run_one, cfg, rho, run, missing) for rho, run, missing in todo}
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    _append_rows(runs_path, fut.result())  # one writer: the parent process
                    if bar:
                        bar.update(1)
    if bar:
        bar.close()
    runs = read_runs(runs_path)
    summary = summarize(runs)
    tmp = out / "summary.csv.tmp"
    summary.to_csv(tmp, index=False)
    os.replace(tmp, out / "summary.csv")
    plot_figure2(summary, out / "figure2.png")
    if progress:
        print(f"sweep finished in {time.perf_counter() - t0:.0f} s; wrote {out}/runs.csv, summary.csv, figure2.png")
    return summary


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and 95% t-interval per (dataset, rho, method) for every metric."""
    from scipy import stats

    metrics = ["test_error", "balanced_error", "minority_recall", "train_loss", "constraint_violation", "seconds"]
    rows = []
    for (ds, rho, method), g in runs.groupby(["dataset", "rho", "method"], sort=True):
        row = {"dataset": ds, "rho": rho, "method": method, "runs": len(g)}
        for mname in metrics:
            v = g[mname].astype(float).to_numpy()
            mean, std = float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
            half = float(stats.t.ppf(0.975, len(v) - 1) * std / math.sqrt(len(v))) if len(v) > 1 else float("nan")
            row.update({f"{mname}_mean": mean, f"{mname}_std": std, f"{mname}_ci95": half})
        rows.append(row)
    return pd.DataFrame(rows)


def plot_figure2(summary: pd.DataFrame, path: str | Path) -> None:
    """Test error vs majority proportion, one line per method, 95% intervals as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, g in summary.groupby("method", sort=False):
        g = g.sort_values("rho")
        err = g["test_error_ci95"].fillna(0.0)
        style = "-o" if method.startswith("convexnn") else "--s"
        ax.errorbar(g["rho"], g["test_error_mean"], yerr=err, fmt=style, capsize=3, label=method)
    ds = ", ".join(sorted(summary["dataset"].unique()))
    ax.set_xlabel("majority-class proportion of the training set (rho)")
    ax.set_ylabel("test error (balanced test set)")
    ax.set_title(f"Imbalanced classification ({ds}), mean of {int(summary['runs'].max())} runs, 95% CI")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
