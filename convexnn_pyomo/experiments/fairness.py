"""Fairness on UCI Adult (issue 25, part 3; protocol and results in ``docs/fairness.md``).

Every method sees the same encoded data (:func:`~convexnn_pyomo.data.load_adult`: 102 columns in
[0, 1], the sensitive attribute a feature) and, for the networks, the same 102-h-1 network (sigmoid
hidden layer, identity output, squared loss on the 0/1 labels) from the same He weights.  A
*setting* is one constraint at one bound:

``score@b``
    :class:`~convexnn_pyomo.constraints.DemographicParity` of the network's score at ``b``.
``probability@b``
    the score read as a probability: :class:`~convexnn_pyomo.constraints.OutputBounds` ``[0, 1]``
    (the Brier score is then the squared loss) and the parity of the mean predicted probabilities
    at ``b``; the convex surrogate of the parity of the decisions ``score >= 0.5``.
``decision@b``
    :class:`~convexnn_pyomo.constraints.DecisionParity`: the parity of the groups' rates of
    decisions ``score >= 0.5``, smoothed (logistic of width 0.05), at ``b``; linearised at every
    round's reference network (not convex: no certificate).
``group_loss@b``
    :class:`~convexnn_pyomo.constraints.GroupLossBounds`: every group's mean squared loss <= ``b``.
``none``
    no constraint (``adam``, ``logistic``) or a constraint without a bound (``threshold-*``).

The unit of work is one method in one (setting, seed); :func:`fairness_study` describes the study to
the one driver, :func:`.sweep.run` (resume, progress, crash-safe rows, summary, figure).
"""

from __future__ import annotations

import importlib.util
import json
import math
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path

import numpy as np
import pandas as pd

from ..constraints import DecisionParity, DemographicParity, GroupLossBounds, OutputBounds
from ..fairness import parity_difference
from ..network import Network
from . import sweep
from .sweep import Study

__all__ = ["FEASIBILITY_TOL", "METHOD_DESCRIPTIONS", "RESULT_COLUMNS", "FairnessConfig", "comparison",
           "fairness_study", "format_summary", "measured_violation", "merge_results", "merge_study", "plot_fairness",
           "preflight", "run_study", "run_unit", "summarize"]

#: a run meets its constraint when the violation on the training data is at most this (train's default)
FEASIBILITY_TOL = 1e-6
KINDS = ("score", "probability", "decision", "group_loss")

METHOD_DESCRIPTIONS = {
    "convexnn": "Convex-NN (Algorithm 1) with the setting's hard constraint, --rounds convex rounds",
    "penalty": "Adam + exact penalty of the same constraint, weight chosen on a validation split",
    "cooper": "Cooper's Lagrangian on the same constraint, dual step chosen on a validation split",
    "eg-logistic": "fairlearn ExponentiatedGradient(DemographicParity(bound)) around LogisticRegression "
                   "(probability settings)",
    "eg-mlp": "fairlearn ExponentiatedGradient(DemographicParity(bound)) around MLPClassifier(16) "
              "(probability settings)",
    "threshold-logistic": "fairlearn ThresholdOptimizer(demographic_parity) on LogisticRegression (no bound)",
    "threshold-mlp": "fairlearn ThresholdOptimizer(demographic_parity) on MLPClassifier(16) (no bound)",
    "adam": "Adam on the same network without a constraint",
    "logistic": "scikit-learn LogisticRegression without a constraint",
}
METHODS = list(METHOD_DESCRIPTIONS)
NETWORK_METHODS = ("convexnn", "penalty", "cooper", "adam")
BOUNDED = {"convexnn": KINDS, "penalty": KINDS, "cooper": KINDS, "eg-logistic": ("probability",),
           "eg-mlp": ("probability",)}

RESULT_COLUMNS = ["setting", "method", "constraint", "bound", "seed", "train_accuracy", "test_accuracy",
                  "train_parity_score", "test_parity_score", "train_parity_pred", "test_parity_pred",
                  "train_group_loss", "test_group_loss", "train_violation", "test_violation", "feasible", "status",
                  "seconds", "sensitive", "train_size", "detail"]


@dataclass
class FairnessConfig:
    """Every knob of the study; written to ``config.json`` next to ``results.csv``."""

    dataset: str = "adult"
    sensitive: str = "sex"
    methods: Sequence[str] = tuple(METHODS)
    constraints: Sequence[str] = KINDS
    bounds: Sequence[float] = (0.01, 0.02, 0.05)  # parity bounds (score, probability)
    group_loss_bounds: Sequence[float] = (0.13, 0.15)  # largest mean squared loss of a group
    seeds: int = 5
    train_size: int | None = None  # None: all 30,162 training rows; else a stratified subsample per seed
    hidden: int = 4
    rounds: int = 10
    #: rounds Convex-NN's feasibility phase may use on top of ``rounds`` (from an infeasible start)
    feasibility_rounds: int = 20
    feasibility_rho: float = 1e-3  # Convex-NN: phase 1's first rho (SequentialRelaxation's feasibility_rho; docs/fairness.md)
    #: Convex-NN: refit the output layer exactly under constraints on it (SequentialRelaxation's refit_output_layer)
    refit_output_layer: bool = True
    time_limit: float | None = None  # seconds per Convex-NN fit
    warm_start: int = 0  # Convex-NN: unconstrained Adam steps (lr 0.01) before round 1; 0 = the He start
    adam_steps: int = 2000
    adam_lr: float = 0.01
    penalty_weights: Sequence[float] = (0.1, 1.0, 10.0, 100.0)
    dual_lrs: Sequence[float] = (0.01, 0.1, 1.0)
    validation_fraction: float = 0.2
    eg_max_iter: int = 50
    round_solver: str = "auto"
    data_path: str | None = None
    base_seed: int = 0

    @classmethod
    def quick(cls, **kw) -> FairnessConfig:
        """A few minutes: 2,000 training rows, one seed, bounds 0.02 and 0.05, group loss 0.15, a
        102-4-1 network, 3 rounds (+5 feasibility rounds), 300 Adam steps, two penalty weights, one dual step, EG 20 iterations."""
        return cls(**{"seeds": 1, "train_size": 2000, "bounds": (0.02, 0.05), "group_loss_bounds": (0.15,),
                      "rounds": 3, "feasibility_rounds": 5, "adam_steps": 300, "penalty_weights": (1.0, 100.0), "dual_lrs": (0.1,),
                      "eg_max_iter": 20, **kw})

    def validate(self) -> None:
        if self.dataset != "adult":
            raise ValueError(f"unknown dataset {self.dataset!r}; the fairness study runs on 'adult'")
        for what, given, known in (("method", self.methods, METHODS), ("constraint", self.constraints, KINDS)):
            if unknown := set(given) - set(known):
                raise ValueError(f"unknown {what}(s) {sorted(unknown)}; choose from {', '.join(known)}")
        if self.seeds < 1 or self.rounds < 1 or self.adam_steps < 1 or self.hidden < 1 or self.eg_max_iter < 1:
            raise ValueError("seeds, rounds, adam_steps, hidden and eg_max_iter must be positive")
        if self.warm_start < 0:
            raise ValueError(f"warm_start must be >= 0 Adam steps, got {self.warm_start}")
        if any(not 0 < b < 1 for b in (*self.bounds, *self.group_loss_bounds)):
            raise ValueError("bounds must lie in (0, 1)")
        if not 0 < self.validation_fraction < 1 or not self.penalty_weights or not self.dual_lrs:
            raise ValueError("validation_fraction must be in (0, 1) and the penalty/dual grids non-empty")

    def settings(self) -> list[tuple[str, float]]:
        """``(constraint, bound)`` of every bounded setting, in order."""
        bounds = {"score": self.bounds, "probability": self.bounds, "decision": self.bounds,
                  "group_loss": self.group_loss_bounds}
        return [(k, float(b)) for k in self.constraints for b in bounds[k]]


def setting_name(constraint: str, bound: float | None) -> str:
    return "none" if constraint == "none" else f"{constraint}@{bound:g}"


def parse_setting(name: str) -> tuple[str, float]:
    """``(constraint, bound)`` of a setting name (``("none", nan)`` for ``none``)."""
    if name == "none":
        return "none", math.nan
    kind, bound = name.split("@")
    return kind, float(bound)


# -- data, constraints, measures -----------------------------------------------------------------


@lru_cache(maxsize=4)
def _load(data_path: str | None, sensitive: str, train_size: int | None, seed: int):
    from ..data import load_adult

    return load_adult(data_path, sensitive=sensitive, subsample=train_size, seed=seed)


def dataset(cfg: FairnessConfig, seed: int):
    """The encoded Adult data of ``seed`` (its own stratified subsample when ``train_size`` is set)."""
    return _load(cfg.data_path, cfg.sensitive, cfg.train_size, _seed_value(cfg, seed))


def _seed_value(cfg: FairnessConfig, seed: int) -> int:
    return int(cfg.base_seed * 1_000_003 + seed)


def make_constraints(kind: str, bound: float, column: int) -> list:
    """The package's hard constraints of a setting; ``column`` is the sensitive feature's index."""
    if kind == "score":
        return [DemographicParity(column, bound)]
    if kind == "probability":
        return [OutputBounds(0.0, 1.0), DemographicParity(column, bound)]
    if kind == "decision":
        return [DecisionParity(column, bound)]
    if kind == "group_loss":
        return [GroupLossBounds(column, bound)]
    raise ValueError(f"unknown constraint {kind!r}")


def group_loss(score: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    """The largest mean squared loss (Brier score) of a group."""
    r = (np.asarray(score, float) - y) ** 2
    return float(max(r[groups == g].mean() for g in np.unique(groups)))


def measured_violation(kind: str, bound: float, score: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    """The violation of a setting's constraint by any classifier's scores (the networks' outputs,
    the baselines' probabilities): for a network it equals the package constraints' ``violation``."""
    if kind == "none":
        return 0.0
    if kind == "group_loss":
        return max(0.0, group_loss(score, y, groups) - bound)
    if kind == "decision":
        score = DecisionParity(None, bound).values(np.asarray(score, float))
    v = max(0.0, parity_difference(score, groups) - bound)
    if kind == "probability":
        v = max(v, float(np.max(-score)), float(np.max(score - 1.0)))
    return v


def measures(score_tr, pred_tr, score_te, pred_te, data, kind: str, bound: float) -> dict:
    """The row's metrics from train and test scores and 0/1 decisions."""
    row = {}
    for part, score, pred, y, g in (("train", score_tr, pred_tr, data.y_train, data.group_train),
                                    ("test", score_te, pred_te, data.y_test, data.group_test)):
        score, pred = np.asarray(score, float).ravel(), np.asarray(pred, float).ravel()
        row.update({f"{part}_accuracy": float(np.mean(pred == y)),
                    f"{part}_parity_score": parity_difference(score, g),
                    f"{part}_parity_pred": parity_difference(pred, g),
                    f"{part}_group_loss": group_loss(score, y, g),
                    f"{part}_violation": measured_violation(kind, bound, score, y, g)})
    row["feasible"] = "" if kind == "none" else bool(row["train_violation"] <= FEASIBILITY_TOL)
    return row


# -- the methods ---------------------------------------------------------------------------------


def initial_network(cfg: FairnessConfig, seed: int, n_inputs: int) -> Network:
    """The 102-h-1 network (sigmoid hidden layer, identity output) every network method starts from."""
    rng = np.random.default_rng(_seed_value(cfg, seed) + 7919)
    return Network([n_inputs, cfg.hidden, 1], ["sigmoid", "identity"]).init_he(rng)


def _tuned(cfg: FairnessConfig, fit: Callable, grid: Sequence[float], make: Callable[[], list], net0: Network,
           data, seed: int) -> tuple[Network, str]:
    """Fit with every value of ``grid`` on the fit part of the training rows (a split stratified by
    label and group), keep the value with the best validation accuracy among those whose validation
    violation is <= FEASIBILITY_TOL (else the smallest violation), refit on all training rows."""
    from sklearn.model_selection import train_test_split

    X, y = data.X_train, data.y_train.astype(float)
    Xf, Xv, yf, yv = train_test_split(X, y, test_size=cfg.validation_fraction, random_state=seed % 2 ** 32,
                                      stratify=2 * data.y_train + data.group_train)
    scores = []
    for value in grid:
        net = fit(net0, Xf, yf, value)
        viol = max(c.violation(net, Xv, yv) for c in make())
        accuracy = float(np.mean((net.predict(Xv)[:, 0] >= 0.5) == yv))
        scores.append((viol > FEASIBILITY_TOL, viol if viol > FEASIBILITY_TOL else 0.0, -accuracy, value))
    best = min(scores)[3]
    return fit(net0, X, y, best), f"chosen {best:g} from {', '.join(f'{v:g}' for v in grid)}"


def convexnn_fit(cfg: FairnessConfig, kind: str, bound: float, data, seed: int,
                 on_round: Callable[[dict, Network], None] | None = None, schedule="adaptive"):
    """The study's Convex-NN fit of a (setting, seed) on ``data`` (:func:`dataset`): its
    :class:`~convexnn_pyomo.algorithms.results.TrainResult`; ``on_round(row, best)`` after each round;
    ``schedule``: the run's schedule (benchmarks comparing step searches pass another)."""
    from ..algorithms.sequential import SequentialRelaxation

    return SequentialRelaxation(schedule=schedule, hard_constraints=make_constraints(kind, bound, data.sensitive_index),
                                rounds=cfg.rounds, round_solver=cfg.round_solver,
                                feasibility_rounds=cfg.feasibility_rounds, feasibility_rho=cfg.feasibility_rho,
                                refit_output_layer=cfg.refit_output_layer, time_limit=cfg.time_limit,
                                progress=on_round, warm_start=cfg.warm_start,
                                ).solve(initial_network(cfg, seed, data.X_train.shape[1]), data.X_train,
                                        data.y_train.astype(float))


def _fit_network(cfg: FairnessConfig, method: str, kind: str, bound: float, data, seed: int,
                 report: Callable[[int], None] | None) -> tuple[Network, str, str]:
    """One network method: ``(network, status, detail)``; ``status`` is Convex-NN's RunStatus value."""
    from .. import baselines

    net0 = initial_network(cfg, seed, data.X_train.shape[1])
    make = partial(make_constraints, kind, bound, data.sensitive_index) if kind != "none" else list
    X, y = data.X_train, data.y_train.astype(float)
    adam = {"steps": cfg.adam_steps, "lr": cfg.adam_lr, "seed": _seed_value(cfg, seed) % 2 ** 31}
    if method == "convexnn":
        on_round = (lambda row, best: report(row["round"])) if report else None
        res = convexnn_fit(cfg, kind, bound, data, seed, on_round)
        return res.network, str(res.status), f"{res.rounds} rounds; {res.message}"
    if method == "adam":
        return baselines.train_adam(net0, X, y, **adam).network, "ok", ""
    if method == "penalty":
        fit = lambda n, Xs, ys, w: baselines.train_adam_penalty(n, Xs, ys, make(), weight=w, **adam).network
        net, detail = _tuned(cfg, fit, cfg.penalty_weights, make, net0, data, _seed_value(cfg, seed))
        return net, "ok", f"weight {detail}"
    fit = lambda n, Xs, ys, d: baselines.train_cooper(n, Xs, ys, make(), dual_lr=d, **adam).network
    net, detail = _tuned(cfg, fit, cfg.dual_lrs, make, net0, data, _seed_value(cfg, seed))
    return net, "ok", f"dual lr {detail}"


def _fit_sklearn(cfg: FairnessConfig, method: str, bound: float, data, seed: int) -> tuple[tuple, str]:
    """A scikit-learn / fairlearn method: ``((score_tr, pred_tr, score_te, pred_te), detail)``.  The
    fairlearn methods' decisions are their own randomized ``predict`` (the deployed classifier), their
    scores its probability of predicting 1."""
    from .. import fair_baselines as fb

    if method == "logistic":
        r = fb.unconstrained(data, "logistic", seed)
        return (r.train_score, r.train_pred, r.test_score, r.test_pred), ""
    kind, base = method.split("-")
    if kind == "eg":
        r = fb.exponentiated_gradient(data, bound, base, seed, max_iter=cfg.eg_max_iter)
        detail = f"best_gap {r.extra['best_gap']:.3g}, fairlearn tolerance {r.extra['tolerance']:.3g}"
    else:
        r = fb.threshold_optimizer(data, base, seed)
        detail = ""
    return (r.train_score, r.extra["train_pred_random"], r.test_score, r.extra["test_pred_random"]), detail


def run_unit(cfg: FairnessConfig, setting: str, seed: int, method: str,
             progress: Callable[[dict], None] | None = None) -> dict:
    """One method in one (setting, seed): the row of ``results.csv``.  ``progress`` receives
    ``{"setting", "seed", "method", "round"}`` as the method starts and after each Convex-NN round."""
    kind, bound = parse_setting(setting)
    data = dataset(cfg, seed)

    def report(r: int) -> None:
        if progress:
            progress({"setting": setting, "seed": seed, "method": method, "round": int(r)})

    report(0)
    t0 = time.perf_counter()
    if method in NETWORK_METHODS:
        net, status, detail = _fit_network(cfg, method, kind, bound, data, seed, report if progress else None)
        seconds = time.perf_counter() - t0
        s_tr, s_te = net.predict(data.X_train)[:, 0], net.predict(data.X_test)[:, 0]
        parts = (s_tr, s_tr >= 0.5, s_te, s_te >= 0.5)
    else:
        parts, detail = _fit_sklearn(cfg, method, bound, data, _seed_value(cfg, seed))
        seconds, status = time.perf_counter() - t0, "ok"
    row = {"setting": setting, "method": method, "constraint": kind, "bound": bound, "seed": seed,
           **measures(*parts, data, kind, bound), "status": status, "seconds": round(seconds, 3),
           "sensitive": cfg.sensitive, "train_size": len(data.y_train), "detail": detail}
    if method == "convexnn" and status != "infeasible" and not row["feasible"]:
        row["detail"] += f"; NOT feasible on the training data (violation {row['train_violation']:.3g})"
    return row


# -- the study -----------------------------------------------------------------------------------

Unit = tuple[str, int, str]  # (setting, seed, method)
UNBOUNDED = {"adam": "none", "logistic": "none", "threshold-logistic": "none", "threshold-mlp": "none"}


def skipped_methods(cfg: FairnessConfig) -> dict[str, str]:
    """``{method: reason}`` of the chosen methods that cannot run here (ExponentiatedGradient needs
    ``sample_weight`` in the base classifier's ``fit``)."""
    from ..fair_baselines import eg_skip_reason

    return {m: r for m in cfg.methods if m.startswith("eg-") and (r := eg_skip_reason(m.split("-")[1]))}


def _units(cfg: FairnessConfig, skip: Sequence[str] = ()) -> list[Unit]:
    """Seed-major (an interrupted study covers every setting equally); per seed the unconstrained
    methods first, then each setting's bounded methods."""
    methods = [m for m in cfg.methods if m not in skip]
    units = []
    for s in range(cfg.seeds):
        units += [("none", s, m) for m in methods if m in UNBOUNDED]
        units += [(setting_name(k, b), s, m) for k, b in cfg.settings() for m in methods if k in BOUNDED.get(m, ())]
    return units


def preflight(cfg: FairnessConfig) -> None:
    """Configuration, data, solver and optional packages, checked before anything is written."""
    from ..data import DataError

    cfg.validate()
    data = dataset(cfg, 0)
    if not np.array_equal(data.X_train[:, data.sensitive_index], data.group_train):
        raise DataError(f"the feature column {data.sensitive_index} is not the sensitive attribute {cfg.sensitive}")
    if "convexnn" in cfg.methods:
        from ..algorithms import get_round_solver

        get_round_solver(cfg.round_solver)
    needs = {"torch": [m for m in cfg.methods if m in NETWORK_METHODS and m != "convexnn"],
             "cooper": [m for m in cfg.methods if m == "cooper"],
             "fairlearn": [m for m in cfg.methods if m.startswith(("eg-", "threshold-"))]}
    package = {"torch": "torch==2.13.0", "cooper": "cooper-optim", "fairlearn": '"convexnn-pyomo[baselines]"'}
    for module, users in needs.items():
        if users and importlib.util.find_spec(module) is None:
            raise ImportError(f"method(s) {', '.join(users)} need the {module!r} package: "
                              f"pip install {package[module]} "
                              "(or leave them out with --methods)")
    if not _units(cfg, skipped_methods(cfg)):
        raise ValueError("no unit to run: the chosen methods take none of the chosen constraints")


def fairness_study(cfg: FairnessConfig) -> Study:
    """The study as a :class:`.sweep.Study`: (setting, seed, method) units, rows in ``results.csv``,
    ``summary.csv``, ``figure.png``; a unit's time is predicted by finished units of the same setting
    and method, else method.  Methods that cannot run here are left out with a printed reason."""
    cfg.validate()
    skip = skipped_methods(cfg)
    for method, reason in skip.items():
        print(f"{method} left out: {reason}")
    return Study(name="fairness", config=cfg, units=_units(cfg, skip), run_unit=partial(_unit_rows, cfg),
                 columns=RESULT_COLUMNS, key=("setting", "seed", "method"), summarize=summarize, figure=_figure,
                 table=format_summary, preflight=partial(preflight, cfg), warm_up=_warm_up, label=partial(_label, cfg),
                 eta_keys=lambda unit: [(unit[0], unit[2]), (unit[2],)])


def run_study(cfg: FairnessConfig, out: str | Path, jobs: int = 1, progress: bool = True) -> pd.DataFrame:
    """Run (or resume) the study into ``out`` (:func:`.sweep.run` of :func:`fairness_study`); returns
    the summary.  Nothing is written before :func:`preflight` passes."""
    return sweep.run(fairness_study(cfg), out, jobs, progress)


def _unit_rows(cfg: FairnessConfig, unit: Unit, progress) -> list[dict]:
    return [run_unit(cfg, *unit, progress=progress)]


def _warm_up() -> None:
    """Import Pyomo's model code, PyTorch and fairlearn once per process (not inside a unit's time)."""
    from .. import training  # noqa: F401

    for module in ("torch", "fairlearn"):
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)


def _label(cfg: FairnessConfig, unit: Unit, round_: int) -> str:
    setting, seed, method = unit
    text = f"{method} {setting} seed {seed + 1}/{cfg.seeds}"
    return text + (f" round {round_}/{cfg.rounds}" if method == "convexnn" else "")


# -- summary, table, figure ----------------------------------------------------------------------

#: the test measure a setting's bound is checked against (the decisions' parity for ``probability``)
TEST_MEASURE = {"score": "test_parity_score", "probability": "test_parity_pred", "decision": "test_parity_pred",
                "group_loss": "test_group_loss"}
_MEANS = ("train_accuracy", "test_accuracy", "train_parity_score", "test_parity_score", "train_parity_pred",
          "test_parity_pred", "train_group_loss", "test_group_loss", "train_violation", "seconds")


def _feasible_flags(values: pd.Series) -> pd.Series:
    """The ``feasible`` column read back (bools or their text; empty for unconstrained runs) as 1/0/NaN."""
    return values.astype(str).str.lower().map({"true": 1.0, "false": 0.0})


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, method): ``runs``, the mean of every metric (``<metric>_mean``), the test
    accuracy's std, ``feasible`` (runs meeting the constraint on the training data; NaN without a
    constraint), ``max_train_violation`` and the count of each status (``statuses``)."""
    rows = []
    for (setting, method), g in results.groupby(["setting", "method"], sort=False):
        flags = _feasible_flags(g["feasible"])
        row = {"setting": setting, "method": method, "constraint": g["constraint"].iloc[0],
               "bound": float(g["bound"].iloc[0]), "runs": len(g),
               "feasible": float(flags.sum()) if flags.notna().any() else math.nan,
               "max_train_violation": float(g["train_violation"].max()),
               "test_accuracy_std": float(g["test_accuracy"].std(ddof=1)) if len(g) > 1 else 0.0,
               "statuses": ", ".join(f"{k} {v}" for k, v in g["status"].astype(str).value_counts().items())}
        row.update({f"{m}_mean": float(g[m].mean()) for m in _MEANS})
        rows.append(row)
    out = pd.DataFrame(rows)
    if not len(out):
        return out
    kinds = {k: i for i, k in enumerate(("none", *KINDS))}
    order = {m: i for i, m in enumerate(METHODS)}
    return out.sort_values(["constraint", "bound", "method"], key=lambda c: c.map(kinds) if c.name == "constraint"
                           else c.map(order) if c.name == "method" else c).reset_index(drop=True)


def comparison(summary: pd.DataFrame) -> pd.DataFrame:
    """Per bounded setting: Convex-NN's mean test accuracy and test measure (the decisions' parity
    for ``probability``, the scores' for ``score``, the largest group loss for ``group_loss``) beside
    the most accurate other (method, setting) whose mean test measure meets the same bound."""
    rows = []
    for setting, g in summary[summary["constraint"] != "none"].groupby("setting", sort=False):
        kind, bound = parse_setting(setting)
        measure = TEST_MEASURE[kind] + "_mean"
        cnn = g[g["method"] == "convexnn"]
        others = summary[(summary["method"] != "convexnn") & (summary[measure] <= bound)]
        best = others.loc[others["test_accuracy_mean"].idxmax()] if len(others) else None
        rows.append({"setting": setting, "test measure": TEST_MEASURE[kind],
                     "convexnn acc": float(cnn["test_accuracy_mean"].iloc[0]) if len(cnn) else math.nan,
                     "convexnn measure": float(cnn[measure].iloc[0]) if len(cnn) else math.nan,
                     "convexnn met (train)": f"{cnn['feasible'].iloc[0]:.0f}/{cnn['runs'].iloc[0]}" if len(cnn) else "",
                     "best other meeting it (test)": "none" if best is None else f"{best['method']} {best['setting']}",
                     "its acc": float(best["test_accuracy_mean"]) if best is not None else math.nan,
                     "its measure": float(best[measure]) if best is not None else math.nan})
    return pd.DataFrame(rows)


def format_summary(summary: pd.DataFrame) -> str:
    """The printed tables: per (setting, method) the means of test accuracy, test parity of the
    decisions and of the scores, runs meeting the constraint on the training data and seconds; then
    :func:`comparison`."""
    table = pd.DataFrame({
        "setting": summary["setting"], "method": summary["method"], "runs": summary["runs"],
        "test acc": summary["test_accuracy_mean"].map("{:.4f}".format),
        "test parity pred": summary["test_parity_pred_mean"].map("{:.4f}".format),
        "test parity score": summary["test_parity_score_mean"].map("{:.4f}".format),
        "train parity pred": summary["train_parity_pred_mean"].map("{:.4f}".format),
        "met (train)": ["-" if math.isnan(f) else f"{f:.0f}/{n}" for f, n in zip(summary["feasible"], summary["runs"])],
        "status": summary["statuses"], "seconds": summary["seconds_mean"].map("{:.1f}".format)})
    note = (f"met (train): runs whose constraint holds on the training data up to {FEASIBILITY_TOL:g} (Convex-NN, "
            "penalty, cooper: the package constraint's violation; fairlearn: the same measure on their probability of "
            "predicting 1); parity: largest minus smallest group mean of the decisions (pred) or scores; means over "
            "seeds.")
    comp = comparison(summary)
    text = table.to_string(index=False) + "\n" + textwrap.fill(note, 100)
    if len(comp):
        shown = comp.copy()
        for c in ("convexnn acc", "convexnn measure", "its acc", "its measure"):
            shown[c] = shown[c].map("{:.4f}".format)
        text += "\n\nConvex-NN beside the most accurate other method whose mean test measure meets the same bound:\n"
        text += shown.to_string(index=False)
    return text


# -- several study folders as one ---------------------------------------------------------------

_SAME_IN_A_MERGE = ("sensitive", "train_size")
#: options that choose which units a folder runs, not how a unit is fitted
_UNIT_CHOICE = {"methods", "constraints", "bounds", "group_loss_bounds", "seeds"}
#: options every merged folder shares: the rows and what a seed number means
_SAME_DATA = ("dataset", "sensitive", "train_size", "data_path", "base_seed")


def _read_folder(folder: Path) -> tuple[pd.DataFrame, dict]:
    """A study folder's rows (``source``: the folder as given) and options."""
    path, options = folder / "results.csv", folder / "config.json"
    if not path.is_file():
        raise ValueError(f"{folder} holds no results.csv (the output folder of convexnn experiment fairness)")
    try:
        rows = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path} is empty") from None
    missing = sorted({"setting", "seed", "method", *_SAME_IN_A_MERGE} - set(rows.columns))
    if missing:
        raise ValueError(f"{path} is not a fairness study's results.csv (no column {', '.join(missing)})")
    if not len(rows):
        raise ValueError(f"{path} holds no row")
    if not options.is_file():
        raise ValueError(f"{folder} holds no config.json: without its options the merge cannot check that its "
                         "fits match the other folders'")
    return rows.assign(source=str(folder), _folder=str(folder.resolve())), json.loads(options.read_text())


def _check_options(rows: pd.DataFrame, options: dict[str, dict]) -> None:
    """The same data and seeds in every folder, and the same fitting options wherever two folders
    hold one (setting, method): its seeds are averaged over one set of options only."""
    for key in _SAME_DATA:
        values = sorted({json.dumps(o.get(key)) for o in options.values()})
        if len(values) > 1:
            raise ValueError(f"the folders differ in {key} ({', '.join(values)}): their rows or seeds are not the "
                             "same; merge them separately")
    for column in _SAME_IN_A_MERGE:
        values = sorted(rows[column].astype(object).where(rows[column].notna(), "missing").astype(str).unique())
        if len(values) > 1:
            raise ValueError(f"the folders' rows mix {column} values {', '.join(values)}: merge one at a time")
    for (setting, method), g in rows.groupby(["setting", "method"], sort=False):
        folders = list(dict.fromkeys(g["_folder"]))
        fits = [{k: v for k, v in options[f].items() if k not in _UNIT_CHOICE} for f in folders]
        differ = sorted(k for k in set().union(*fits) if len({json.dumps(f.get(k)) for f in fits}) > 1)
        if differ:
            names = " and ".join(dict.fromkeys(g["source"]))
            raise ValueError(f"{method} {setting} is in {names} under different options ({', '.join(differ)}): "
                             "leave one of the folders out")


def merge_results(folders: Sequence[str | Path]) -> pd.DataFrame:
    """The rows of several study folders as one table, each row's folder in ``source``, after the
    checks of :func:`_merged` (the same data and seeds, each unit once, one set of options per
    setting and method)."""
    return _merged(folders)[0]


def _merged(folders: Sequence[str | Path]) -> tuple[pd.DataFrame, dict[str, dict]]:
    """The rows of several study folders as one table, each row's folder in ``source``: a full-size
    study run in parts (other bounds or methods per run).  The folders must share the data and the
    seeds (:data:`_SAME_DATA`), hold each (setting, seed, method) once (the same unit in two folders
    is one unit fitted twice: a clear error names both), and fit a (setting, method) they share
    with the same options (``config.json``); and each folder's options by its name as given."""
    paths = [Path(f) for f in folders]
    if not paths:
        raise ValueError("no folder to merge")
    seen = [p.resolve() for p in paths]
    if len(set(seen)) < len(seen):
        raise ValueError(f"a folder is given twice: {', '.join(str(p) for p in paths)}")
    read = [_read_folder(p) for p in paths]
    rows = pd.concat([r for r, _ in read], ignore_index=True)
    _check_options(rows, {str(s): o for s, (_, o) in zip(seen, read)})
    clash = rows[rows.duplicated(["setting", "seed", "method"], keep=False)]
    if len(clash):
        first = clash.iloc[0]
        same = clash[(clash["setting"] == first["setting"]) & (clash["seed"] == first["seed"])
                     & (clash["method"] == first["method"])]
        raise ValueError(f"{first['method']} {first['setting']} seed {first['seed']} is in "
                         f"{' and '.join(same['source'])}; leave one of the folders out")
    return rows.drop(columns="_folder"), {str(p): o for p, (_, o) in zip(paths, read)}


def merge_study(folders: Sequence[str | Path], out: str | Path) -> pd.DataFrame:
    """:func:`merge_results` written to ``out`` as a study of its own (``results.csv`` with the
    ``source`` column, ``summary.csv`` with each (setting, method)'s folders in ``sources``,
    ``figure.png``, ``sources.json``: each folder's options); returns the summary.  ``out`` must not
    hold a study (``results.csv`` or ``config.json``): a later run there would resume from it."""
    out = Path(out)
    taken = [name for name in ("results.csv", "config.json") if (out / name).exists()]
    if taken:
        raise ValueError(f"--out {out} already holds {' and '.join(taken)}; write the merge to a new folder")
    rows, options = _merged(folders)
    summary = summarize(rows)
    sources = rows.groupby(["setting", "method"])["source"].agg(lambda s: ", ".join(dict.fromkeys(s)))
    summary["sources"] = [sources[(s, m)] for s, m in zip(summary["setting"], summary["method"])]
    out.mkdir(parents=True, exist_ok=True)
    rows.to_csv(out / "results.csv", index=False)
    summary.to_csv(out / "summary.csv", index=False)
    (out / "sources.json").write_text(json.dumps(options, indent=2) + "\n")
    _figure(rows, summary, out / "figure.png")
    return summary


def _figure(results: pd.DataFrame, summary: pd.DataFrame, path: Path) -> None:
    plot_fairness(summary, path)


_STYLES = {"score": "-", "probability": "--", "decision": "-.", "group_loss": ":"}


def plot_fairness(summary: pd.DataFrame, path: str | Path | None = None):
    """Mean test accuracy against mean test parity difference of the decisions: one curve per
    (method, constraint) over its bounds (solid: score parity, dashed: probability parity,
    dash-dotted: decision parity, dotted: group loss), one marker per unconstrained method; grey verticals at the parity bounds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    colors = {m: f"C{i}" for i, m in enumerate(METHODS)}
    for (method, kind), g in summary.groupby(["method", "constraint"], sort=False):
        g = g.sort_values("bound")
        x, y = g["test_parity_pred_mean"], g["test_accuracy_mean"]
        if kind == "none":
            ax.scatter(x, y, marker="*", s=120, color=colors[method], edgecolors="black", label=method, zorder=3)
            continue
        ax.plot(x, y, _STYLES[kind], marker="o", color=colors[method], label=f"{method} ({kind})")
        for xi, yi, b in zip(x, y, g["bound"]):
            ax.annotate(f"{b:g}", (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
    for b in sorted(set(summary.loc[summary["constraint"].isin(["score", "probability", "decision"]), "bound"])):
        ax.axvline(b, color="grey", lw=0.6, ls="--")
    ax.set_xlabel("test demographic-parity difference of the decisions (mean over seeds)")
    ax.set_ylabel("test accuracy (mean over seeds)")
    ax.set_title("Adult: accuracy vs parity of decisions (labels: the bound)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return fig
