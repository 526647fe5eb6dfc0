"""The Adult fairness study (``convexnn experiment fairness``) on a tiny synthetic FairnessDataset:
rows and columns, the metrics recomputed from the networks, the feasible flag against the package
constraints' violation, resume, summary and the CLI's errors."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from convexnn_pyomo.data import FairnessDataset
from convexnn_pyomo.experiments import fairness as fx
from convexnn_pyomo.fairness import parity_difference

pytest.importorskip("torch")
pytest.importorskip("fairlearn")


def _synthetic(seed: int = 0, m: int = 240, m_test: int = 200, d: int = 6) -> FairnessDataset:
    """Features in [0, 1], column 0 the binary group; the label depends on the features and the group."""
    rng = np.random.default_rng(seed)

    def draw(n):
        X = rng.random((n, d))
        X[:, 0] = (rng.random(n) < 0.6).astype(float)
        logit = 3.0 * (X[:, 1] - 0.5) + 2.0 * (X[:, 2] - 0.5) + 1.2 * X[:, 0] - 0.8
        y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
        return X, y, X[:, 0].astype(int)

    X, y, g = draw(m)
    Xt, yt, gt = draw(m_test)
    return FairnessDataset(X, y, g, Xt, yt, gt, [f"x{i}" for i in range(d)], "sex", 0)


@pytest.fixture
def tiny(monkeypatch):
    """The study reads the synthetic data set instead of Adult; a small, fast configuration."""
    monkeypatch.setattr(fx, "_load", lambda path, sensitive, size, seed: _synthetic(seed))
    return fx.FairnessConfig(methods=("convexnn", "penalty", "eg-logistic", "threshold-logistic", "adam", "logistic"),
                             bounds=(0.05,), group_loss_bounds=(0.22,), seeds=1, hidden=2, rounds=2, adam_steps=60,
                             penalty_weights=(10.0,), eg_max_iter=5)


def test_units_cover_the_settings(tiny):
    units = fx._units(tiny)
    assert ("none", 0, "logistic") in units and ("probability@0.05", 0, "eg-logistic") in units
    assert ("score@0.05", 0, "eg-logistic") not in units  # EG takes the decision-parity setting only
    assert {u[0] for u in units if u[2] == "convexnn"} == {"score@0.05", "probability@0.05", "decision@0.05",
                                                           "group_loss@0.22"}
    assert fx.parse_setting("group_loss@0.22") == ("group_loss", 0.22) and math.isnan(fx.parse_setting("none")[1])


def test_measured_violation_equals_the_package_constraints():
    data = _synthetic(1)
    net = fx.initial_network(fx.FairnessConfig(hidden=3), 0, data.X_train.shape[1])
    score = net.predict(data.X_train)[:, 0]
    for kind, bound in (("score", 0.01), ("probability", 0.01), ("decision", 0.01), ("group_loss", 0.05),
                        ("group_loss", 5.0)):
        package = max(c.violation(net, data.X_train, data.y_train) for c in fx.make_constraints(kind, bound, 0))
        measured = fx.measured_violation(kind, bound, score, data.y_train, data.group_train)
        assert measured == pytest.approx(package, abs=1e-12)


def test_study_rows_metrics_feasibility_and_resume(tiny, tmp_path, monkeypatch):
    nets = {}
    fit = fx._fit_network

    def keep(cfg, method, kind, bound, data, seed, report):
        out = fit(cfg, method, kind, bound, data, seed, report)
        nets[(fx.setting_name(kind, bound), method)] = out[0]
        return out

    monkeypatch.setattr(fx, "_fit_network", keep)
    summary = fx.run_study(tiny, tmp_path, progress=False)
    rows = pd.read_csv(tmp_path / "results.csv")
    assert list(rows.columns) == fx.RESULT_COLUMNS
    assert len(rows) == len(fx._units(tiny)) and (tmp_path / "figure.png").exists()
    data = _synthetic(0)
    for r in rows.itertuples():
        if (r.setting, r.method) not in nets:
            assert r.status == "ok" and 0.0 <= r.test_accuracy <= 1.0
            continue
        net = nets[(r.setting, r.method)]
        s_tr, s_te = net.predict(data.X_train)[:, 0], net.predict(data.X_test)[:, 0]
        assert r.test_parity_pred == pytest.approx(parity_difference(s_te >= 0.5, data.group_test), abs=1e-12)
        assert r.train_parity_score == pytest.approx(parity_difference(s_tr, data.group_train), abs=1e-12)
        assert r.test_accuracy == pytest.approx(np.mean((s_te >= 0.5) == data.y_test), abs=1e-12)
        if r.constraint != "none":
            package = max(c.violation(net, data.X_train, data.y_train)
                          for c in fx.make_constraints(r.constraint, r.bound, 0))
            assert r.train_violation == pytest.approx(package, abs=1e-9)
            assert str(r.feasible) == str(package <= fx.FEASIBILITY_TOL)
        if r.method == "convexnn":
            assert r.status in {"converged", "round_limit", "time_limit", "stalled", "infeasible", "solver_failed"}
    assert set(summary["setting"]) == set(rows["setting"])
    cnn = summary[(summary["method"] == "convexnn") & (summary["setting"] == "score@0.05")].iloc[0]
    flags = fx._feasible_flags(rows[(rows["method"] == "convexnn") & (rows["setting"] == "score@0.05")]["feasible"])
    assert cnn["feasible"] == flags.sum()
    assert "beside" in fx.format_summary(summary)

    # resume: a finished study runs nothing; a lost row is rerun, alone
    calls = []
    monkeypatch.setattr(fx, "run_unit", lambda cfg, *unit, progress=None: calls.append(unit) or
                        rows[(rows.setting == unit[0]) & (rows.method == unit[2])].iloc[0].to_dict())
    fx.run_study(tiny, tmp_path, progress=False)
    assert calls == []
    lines = (tmp_path / "results.csv").read_text().splitlines(keepends=True)
    (tmp_path / "results.csv").write_text("".join(lines[:-1]))
    fx.run_study(tiny, tmp_path, progress=False)
    last = rows.iloc[-1]
    assert calls == [(last.setting, 0, last.method)]
    assert len(pd.read_csv(tmp_path / "results.csv")) == len(rows)


def test_comparison_picks_the_most_accurate_method_meeting_the_bound():
    summary = pd.DataFrame({
        "setting": ["probability@0.02", "probability@0.02", "none", "none"],
        "method": ["convexnn", "eg-logistic", "logistic", "threshold-logistic"],
        "constraint": ["probability", "probability", "none", "none"], "bound": [0.02, 0.02, math.nan, math.nan],
        "runs": [2, 2, 2, 2], "feasible": [2.0, 1.0, math.nan, math.nan],
        "test_accuracy_mean": [0.81, 0.80, 0.85, 0.79], "test_parity_pred_mean": [0.015, 0.019, 0.18, 0.01],
        "test_parity_score_mean": [0.01, 0.02, 0.2, 0.01], "test_group_loss_mean": [0.1] * 4})
    comp = fx.comparison(summary).iloc[0]
    assert comp["best other meeting it (test)"] == "eg-logistic probability@0.02" and comp["its acc"] == 0.80
    assert comp["convexnn acc"] == 0.81 and comp["convexnn met (train)"] == "2/2"


def test_cli_missing_data_is_one_error_line(tmp_path, capsys):
    from convexnn_pyomo.cli import main

    out = tmp_path / "out"
    code = main(["experiment", "fairness", "--quick", "--data-path", str(tmp_path / "nowhere"), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error:") and "Traceback" not in err
    assert not out.exists()


def _folder(path, method: str, settings: list[str], seeds: int, sensitive: str = "sex", offset: float = 0.0,
            **options):
    """A study folder: results.csv with made-up metrics (the merge reads rows, it does not refit) and
    the config.json of a full-size study with ``options``."""
    import json
    from dataclasses import asdict

    rows = []
    for setting in settings:
        kind, bound = fx.parse_setting(setting)
        for seed in range(seeds):
            row = dict.fromkeys(fx.RESULT_COLUMNS, 0.1 + offset + 0.01 * seed)
            row.update(setting=setting, method=method, constraint=kind, bound=bound, seed=seed, feasible=seed % 2 == 0,
                       status="ok", sensitive=sensitive, train_size=30162, detail="")
            rows.append(row)
    path.mkdir()
    pd.DataFrame(rows, columns=fx.RESULT_COLUMNS).to_csv(path / "results.csv", index=False)
    config = {"dataset": "adult", **asdict(fx.FairnessConfig(sensitive=sensitive, methods=(method,))), **options}
    (path / "config.json").write_text(json.dumps(config, default=list))
    return path


def test_merged_folders_are_one_study_with_their_sources(tmp_path):
    a = _folder(tmp_path / "a", "convexnn", ["decision@0.02"], 2, warm_start=2000)
    b = _folder(tmp_path / "b", "penalty", ["decision@0.01", "decision@0.02"], 3, offset=0.5)
    summary = fx.merge_study([a, b], tmp_path / "merged")
    rows = pd.read_csv(tmp_path / "merged" / "results.csv")
    assert len(rows) == 2 + 6 and set(rows["source"]) == {str(a), str(b)}
    expected = fx.summarize(pd.concat([pd.read_csv(a / "results.csv"), pd.read_csv(b / "results.csv")]))
    pd.testing.assert_frame_equal(summary.drop(columns="sources"), expected)
    assert dict(zip(summary["method"] + " " + summary["setting"], summary["sources"])) == {
        "convexnn decision@0.02": str(a), "penalty decision@0.01": str(b), "penalty decision@0.02": str(b)}
    assert (tmp_path / "merged" / "figure.png").stat().st_size > 0
    # one (setting, method) over two folders fitted alike: its seeds are averaged together
    c = _folder(tmp_path / "c", "convexnn", ["decision@0.02"], 1, warm_start=2000)
    c_rows = pd.read_csv(c / "results.csv").assign(seed=7)
    c_rows.to_csv(c / "results.csv", index=False)
    both = fx.merge_study([a, c], tmp_path / "merged2")
    assert both["runs"].tolist() == [3] and both["sources"].iloc[0] == f"{a}, {c}"


def test_a_merge_refuses_what_would_mix_fits_or_lose_a_study(tmp_path, capsys):
    from convexnn_pyomo.cli import main

    a = _folder(tmp_path / "a", "convexnn", ["decision@0.02"], 2, warm_start=2000)
    again = _folder(tmp_path / "again", "convexnn", ["decision@0.02"], 1, warm_start=2000)
    cold = _folder(tmp_path / "cold", "convexnn", ["decision@0.01"], 1, warm_start=0)
    other = _folder(tmp_path / "other", "convexnn", ["decision@0.02"], 1, warm_start=0)
    other_rows = pd.read_csv(other / "results.csv").assign(seed=5)
    other_rows.to_csv(other / "results.csv", index=False)
    race = _folder(tmp_path / "race", "penalty", ["decision@0.02"], 1, sensitive="race")
    shifted = _folder(tmp_path / "shifted", "penalty", ["decision@0.05"], 1, base_seed=3)
    blank = tmp_path / "blank"
    blank.mkdir()
    (blank / "results.csv").write_text(",".join(fx.RESULT_COLUMNS) + "\n")
    (blank / "config.json").write_text("{}")
    cases = [([a, again], "seed 0 is in"), ([a, other], "under different options (warm_start)"),
             ([a, race], "differ in sensitive"), ([a, shifted], "differ in base_seed"),
             ([a, a], "given twice"), ([a, tmp_path / "none"], "holds no results.csv"),
             ([a, blank], "holds no row")]
    for n, (folders, message) in enumerate(cases):
        code = main(["experiment", "fairness-merge", *map(str, folders), "--out", str(tmp_path / f"m{n}")])
        err = capsys.readouterr().err
        assert code == 2 and message in err and "Traceback" not in err, (message, err)
        assert not (tmp_path / f"m{n}").exists()
    assert fx.merge_study([a, cold], tmp_path / "fine")["runs"].tolist() == [1, 2]  # other settings: no clash
    for out in (a, tmp_path / "fine"):  # a study folder, or a merge, is never written over
        code = main(["experiment", "fairness-merge", str(again), "--out", str(out)])
        assert code == 2 and "already holds results.csv" in capsys.readouterr().err
    assert len(pd.read_csv(a / "results.csv")) == 2  # untouched


def test_missing_values_in_a_merge_are_named_not_a_traceback(tmp_path):
    a = _folder(tmp_path / "a", "convexnn", ["decision@0.02"], 1)
    b = _folder(tmp_path / "b", "penalty", ["decision@0.02"], 1)
    rows = pd.read_csv(b / "results.csv")
    rows["train_size"] = math.nan
    rows.to_csv(b / "results.csv", index=False)
    with pytest.raises(ValueError, match="mix train_size values .*missing"):
        fx.merge_results([a, b])
