"""The imbalance experiment (section V): split protocol, files, resume; Yeast loader."""

import numpy as np
import pandas as pd
import pytest

from convexnn_pyomo.data import DataError, load_yeast
from convexnn_pyomo.experiments.imbalance import (
    METHODS,
    RUN_COLUMNS,
    ImbalanceConfig,
    imbalanced_split,
    read_runs,
    run_sweep,
)


def test_split_is_balanced_disjoint_and_has_the_requested_imbalance():
    rng = np.random.default_rng(0)
    X = np.arange(400, dtype=float)[:, None]
    y = np.r_[np.zeros(250), np.ones(150)]
    for rho in (0.5, 0.8, 0.9, 0.95, 0.98):
        Xtr, ytr, Xte, yte = imbalanced_split(X, y, rho, 100, 30, np.random.default_rng(1))
        assert (yte == 0).sum() == (yte == 1).sum() == 30
        assert not set(Xtr[:, 0]) & set(Xte[:, 0])
        assert (ytr == 0).sum() == 100
        assert (ytr == 0).mean() == pytest.approx(rho, abs=0.02 if rho < 0.98 else 0.01)
    with pytest.raises(ValueError, match="not enough samples"):
        imbalanced_split(X, y, 0.5, 300, 30, rng)


def _tiny(tmp_path, **kw):
    cfg = ImbalanceConfig(dataset="synthetic", ratios=(0.5, 0.9), runs=1, rounds=2, adam_steps=30,
                          train_majority=20, test_per_class=10, **kw)
    return cfg, tmp_path / "sweep"


def test_tiny_sweep_writes_runs_summary_and_figure_and_resumes(tmp_path):
    cfg, out = _tiny(tmp_path)
    summary = run_sweep(cfg, out, progress=False)
    runs = pd.read_csv(out / "runs.csv")
    assert list(runs.columns) == RUN_COLUMNS
    assert set(runs.method) == set(METHODS) and len(runs) == 2 * len(METHODS)
    assert runs.test_error.between(0, 1).all() and runs.minority_recall.between(0, 1).all()
    # every run's convexnn-constrained network satisfies (19) on the training set (checked by numpy)
    cons = runs[runs.method == "convexnn-constrained"]
    assert (cons.constraint_violation <= 1e-6).all() or cons.status.str.contains("violated").any()
    assert {"test_error_mean", "test_error_ci95", "runs"} <= set(summary.columns)
    assert (out / "figure2.png").stat().st_size > 1000
    # rerun: nothing left to do; drop the last run's rows and only those are redone
    run_sweep(cfg, out, progress=False)
    assert len(pd.read_csv(out / "runs.csv")) == len(runs)
    kept = runs[~((runs.rho == 0.9) & runs.method.isin(["adam", "random"]))]
    kept.to_csv(out / "runs.csv", index=False)
    run_sweep(cfg, out, progress=False)
    again = pd.read_csv(out / "runs.csv")
    assert len(again) == len(runs)
    first = runs.set_index(["rho", "method"]).sort_index()
    second = again.set_index(["rho", "method"]).sort_index()
    pd.testing.assert_series_equal(first.test_error, second.test_error)  # same seeds, same rows


def test_torn_last_line_is_dropped(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text(",".join(RUN_COLUMNS) + "\n" + "yeast,0.5,0,1,adam,0.1,0.1,0.9,1.0,0.0,1.0,10,5,ok\nyeast,0.5,1,2,ad")
    df = read_runs(path)
    assert len(df) == 1 and path.read_text().endswith("\n")


def test_bad_configuration_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown method"):
        run_sweep(ImbalanceConfig(methods=["sgd"]), tmp_path, progress=False)
    with pytest.raises(ValueError, match="proportions"):
        run_sweep(ImbalanceConfig(ratios=(1.2,)), tmp_path, progress=False)


def test_yeast_loader_validates_content(tmp_path):
    bad = tmp_path / "yeast.data"
    bad.write_text("ADT1_YEAST 0.58 0.61 0.47 0.13 0.50 0.00 0.48 0.22 MIT\n")
    with pytest.raises(DataError, match="expected 1484 rows"):
        load_yeast(bad)
    with pytest.raises(DataError, match="does not exist"):
        load_yeast(tmp_path / "missing.data")


def _yeast_or_skip():
    try:
        return load_yeast(download=False)
    except DataError as exc:
        pytest.skip(f"UCI Yeast not available here: {exc}")


def test_yeast_from_shared_folder_has_the_uci_content():
    df = _yeast_or_skip()
    assert len(df) == 1484 and df.cls.value_counts()["MIT"] == 244


@pytest.mark.slow
@pytest.mark.yeast
def test_reduced_yeast_sweep(tmp_path):
    _yeast_or_skip()
    cfg = ImbalanceConfig(dataset="yeast", ratios=(0.5, 0.95), runs=2, rounds=5, adam_steps=500)
    run_sweep(cfg, tmp_path / "yeast", progress=False)
    runs = pd.read_csv(tmp_path / "yeast" / "runs.csv")
    assert list(runs.columns) == RUN_COLUMNS and len(runs) == 4 * len(METHODS)
    summary = pd.read_csv(tmp_path / "yeast" / "summary.csv")
    assert set(summary.method) == set(METHODS) and (summary.runs == 2).all()
