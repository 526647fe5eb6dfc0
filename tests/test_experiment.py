"""The imbalance experiment (section V): split protocol, files, resume; Yeast loader."""

import numpy as np
import pandas as pd
import pytest
from conftest import requires_module

from convexnn_pyomo.constraints import ClasswiseMisfitBounds
from convexnn_pyomo.data import DataError, load_yeast
from convexnn_pyomo.experiments.imbalance import (
    METHODS,
    MIN_RUNS_FOR_INTERVAL,
    RUN_COLUMNS,
    ImbalanceConfig,
    describe_method,
    format_summary,
    imbalance_study,
    imbalanced_split,
    plot_figure2,
    read_runs,
    run_one,
    run_setup,
    run_sweep,
    summarize,
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


def test_the_studies_take_convexnns_round_solver():
    """``round_solver`` (default ``auto``: the Schur rounds) and ``solver`` (a Pyomo solver name: the
    Pyomo rounds by it) of both studies become train's ``round_solver``; contradictions are refused."""
    from convexnn_pyomo.experiments.constraints import ConstraintsConfig

    for Config in (ImbalanceConfig, ConstraintsConfig):
        assert Config().round_solver_spec() == "auto"
        assert Config(round_solver="pyomo").round_solver_spec() == "pyomo"
        assert Config(solver="ipopt_casadi").round_solver_spec() == "ipopt_casadi"
        with pytest.raises(ValueError, match="round_solver must be one of auto, schur, pyomo"):
            Config(round_solver="ipopt").validate()
        with pytest.raises(ValueError, match="round_solver 'schur' is solved by the Schur interior point"):
            Config(round_solver="schur", solver="ipopt_casadi").validate()


def _tiny(tmp_path, **kw):
    cfg = ImbalanceConfig(dataset="synthetic", ratios=(0.5, 0.9), runs=1, rounds=2, adam_steps=30,
                          train_majority=20, test_per_class=10, **kw)
    return cfg, tmp_path / "sweep"


@requires_module("torch", "imblearn")
def test_tiny_sweep_writes_runs_summary_and_figure_and_resumes(tmp_path):
    cfg, out = _tiny(tmp_path)
    summary = run_sweep(cfg, out, progress=False)
    runs = pd.read_csv(out / "runs.csv")
    assert list(runs.columns) == RUN_COLUMNS
    assert set(runs.method) == set(METHODS) and len(runs) == 2 * len(METHODS)
    assert runs.test_error.between(0, 1).all() and runs.minority_recall.between(0, 1).all()
    # (19) on the training set, measured by numpy on the returned network: Algorithm 1 accepts a
    # round only if it does not increase the violation, so it never exceeds the initial network's;
    # on the balanced split (rho = 0.5) 2 rounds reach feasibility, at rho = 0.9 they reduce it
    cons = runs[runs.method == "convexnn-constrained"]
    assert len(cons) == 2
    for r in cons.itertuples():
        _, (Xtr, ytr, _, _), net0 = run_setup(cfg, r.rho, r.run)
        initial = ClasswiseMisfitBounds(cfg.kappa_factor).violation(net0, Xtr, ytr)
        assert initial > 0.1  # the He initial network violates (19): the check below is not vacuous
        assert r.constraint_violation <= 1e-6 if r.rho == 0.5 else r.constraint_violation < 0.5 * initial, r
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


def _runs_by_hand(errors: dict) -> pd.DataFrame:
    """A runs table: ``errors[(rho, method)]`` lists one test error per run."""
    rows = []
    for (rho, method), values in errors.items():
        for run, e in enumerate(values):
            rows.append({"dataset": "synthetic", "rho": rho, "run": run, "seed": run, "method": method, "test_error": e,
                         "balanced_error": e, "minority_recall": 1 - e, "train_loss": 1.0, "constraint_violation": 0.0,
                         "seconds": 1.0, "n_train": 40, "n_minority": 4, "status": "ok"})
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def _errorbar_segments(ax) -> list[np.ndarray]:
    from matplotlib.container import ErrorbarContainer

    return [seg for c in ax.containers if isinstance(c, ErrorbarContainer) for lc in c.lines[2] for seg in lc.get_segments()]


def test_two_run_figure_shows_the_runs_inside_unit_interval():
    """2 runs of 0.05 and 0.95: a 95% t-interval would be 0.5 +- 5.7; none is given or drawn, the
    runs themselves are, and the axis stays in [0, 1]."""
    runs = _runs_by_hand({(0.5, "convexnn-constrained"): [0.05, 0.95], (0.5, "adam"): [0.05, 0.95],
                          (0.9, "convexnn-constrained"): [0.1, 0.3], (0.9, "adam"): [0.4, 0.5]})
    summary = summarize(runs)
    assert summary.test_error_ci95.isna().all() and summary.test_error_ci_low.isna().all()
    first = summary[(summary.rho == 0.5) & (summary.method == "adam")].iloc[0]
    assert (first.test_error_min, first.test_error_mean, first.test_error_max) == pytest.approx((0.05, 0.5, 0.95))
    fig = plot_figure2(summary, runs=runs)
    ax = fig.axes[0]
    lo, hi = ax.get_ylim()
    assert 0.0 <= lo < hi <= 1.0
    assert _errorbar_segments(ax) == []
    drawn = [(x, y) for line in ax.get_lines() for x, y in zip(line.get_xdata(), line.get_ydata())]
    assert sum(abs(y - 0.95) < 1e-12 for _, y in drawn) == 2  # each method's run at 0.95 is shown
    x_of = {line.get_label().split(":")[0]: line.get_xdata()[0] for line in ax.get_lines() if ":" in line.get_label()}
    assert x_of["adam"] != x_of["convexnn-constrained"]  # offset: the two methods do not hide each other
    assert "not informative" in ax.get_title() and "clipped" in ax.get_title()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [f"{m}: {describe_method(m)}" for m in ("convexnn-constrained", "adam")]
    table = format_summary(summary)
    assert "0.050..0.950 (runs)" in table and "not informative" in table


def test_three_run_interval_is_the_t_interval_clipped_to_unit_interval():
    from scipy import stats

    values = [0.0, 0.0, 0.6]
    runs = _runs_by_hand({(0.5, "convexnn"): values, (0.5, "logreg-balanced"): [0.2, 0.25, 0.3]})
    summary = summarize(runs).set_index("method")
    half = stats.t.ppf(0.975, 2) * np.std(values, ddof=1) / np.sqrt(3)
    assert half > 0.8  # unclipped: [0.2 - 0.86, 0.2 + 0.86] leaves [0, 1] on both sides
    assert summary.loc["convexnn", "test_error_ci95"] == pytest.approx(half)
    assert (summary.loc["convexnn", "test_error_ci_low"], summary.loc["convexnn", "test_error_ci_high"]) == (0.0, 1.0)
    half2 = stats.t.ppf(0.975, 2) * 0.05 / np.sqrt(3)  # inside [0, 1]: not clipped
    assert summary.loc["logreg-balanced", "test_error_ci_low"] == pytest.approx(0.25 - half2)
    fig = plot_figure2(summary.reset_index(), runs=runs)
    ax = fig.axes[0]
    assert 0.0 <= ax.get_ylim()[0] < ax.get_ylim()[1] <= 1.0
    spans = sorted((float(s[:, 1].min()), float(s[:, 1].max())) for s in _errorbar_segments(ax))
    assert np.allclose(spans, [(0.0, 1.0), (0.25 - half2, 0.25 + half2)])
    assert "95% t-interval" in ax.get_title() and "not informative" not in ax.get_title()
    assert MIN_RUNS_FOR_INTERVAL == 3 and "[0.000, 1.000]" in format_summary(summary.reset_index())


def test_progress_events_name_method_and_round():
    cfg = ImbalanceConfig(dataset="synthetic", rounds=2, adam_steps=30, train_majority=20, test_per_class=10)
    events = []
    run_one(cfg, 0.9, 1, ["convexnn", "logreg-balanced"], progress=events.append)
    assert [(e["method"], e["round"]) for e in events] == [("convexnn", 0), ("convexnn", 1), ("convexnn", 2),
                                                          ("logreg-balanced", 0)]
    assert all(e["rho"] == 0.9 and e["run"] == 1 for e in events)


def test_eta_is_the_measured_time_of_the_remaining_units_over_the_workers():
    cfg = ImbalanceConfig(dataset="synthetic", ratios=(0.5, 0.9), runs=2, methods=["convexnn", "adam"])
    todo = [(rho, run, m) for run in range(2) for rho in (0.5, 0.9) for m in ("convexnn", "adam")]
    bar = imbalance_study(cfg).progress_bar(todo, jobs=2)
    try:
        assert bar.eta() is None
        seconds = {(0.5, "convexnn"): 30.0, (0.9, "convexnn"): 10.0, (0.5, "adam"): 2.0, (0.9, "adam"): 4.0}
        for rho, run, m in todo[:4]:  # run 0 done
            bar.finished((rho, run, m), [{"seconds": seconds[(rho, m)]}])
        assert bar.eta() == pytest.approx(sum(seconds.values()) / 2)  # run 1 costs what run 0 did, on 2 workers
        bar.event({"rho": 0.5, "run": 1, "method": "convexnn", "round": 3})
        assert "convexnn rho=0.5 run 2/2 round 3/10" in bar.bar.postfix
    finally:
        bar.close()


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
