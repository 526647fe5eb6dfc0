"""The study driver (:func:`convexnn_pyomo.experiments.sweep.run`) on a toy study: files, resume, workers."""

import json

import pandas as pd
import pytest

import convexnn_pyomo
from convexnn_pyomo.experiments.sweep import Study, run

COLUMNS = ["group", "seed", "error", "seconds"]
UNITS = [(g, s) for s in range(2) for g in ("a", "b")]  # 4 units, seed-major


def toy_unit(unit, progress):
    """One unit's rows (module level: picklable for the worker processes)."""
    group, seed = unit
    if progress:
        progress({"group": group, "seed": seed, "round": 1})
    return [{"group": group, "seed": seed, "error": 0.1 * seed + (group == "b")}]


def _figure(rows, summary, path):
    path.write_text(f"{len(rows)} rows\n")


def toy_study(run_unit=toy_unit) -> Study:
    return Study(name="toy", config={"seeds": 2, "groups": ["a", "b"]}, units=UNITS, run_unit=run_unit,
                 columns=COLUMNS, key=["group", "seed"],
                 summarize=lambda rows: rows.groupby("group", as_index=False)["error"].mean(), figure=_figure,
                 table=lambda summary: summary.to_string(index=False))


def interrupted_at(n: int, calls: list):
    """A unit runner that records its units in ``calls`` and raises at the ``n``-th."""
    def failing(unit, progress):
        calls.append(unit)
        if len(calls) == n:
            raise RuntimeError("interrupted")
        return toy_unit(unit, progress)

    return failing


def test_toy_study_resumes_after_an_interruption_without_rerunning_finished_units(tmp_path, capsys):
    calls = []
    failing = interrupted_at(3, calls)
    out = tmp_path / "toy"
    with pytest.raises(RuntimeError, match="interrupted"):
        run(toy_study(failing), out, progress=False)
    first = pd.read_csv(out / "results.csv")
    assert list(first.columns) == COLUMNS and len(first) == 2
    assert json.loads((out / "config.json").read_text()) == {"seeds": 2, "groups": ["a", "b"]}
    assert not (out / "summary.csv").exists()

    calls.clear()
    summary = run(toy_study(lambda unit, progress: calls.append(unit) or toy_unit(unit, progress)), out,
                  show_table=True)
    assert calls == UNITS[2:]  # the first two units are not rerun
    rows = pd.read_csv(out / "results.csv")
    assert len(rows) == 4 and list(zip(rows.group, rows.seed)) == UNITS
    pd.testing.assert_frame_equal(rows.iloc[:2], first)  # the rows kept are not rewritten
    assert (rows.seconds >= 0).all()  # the driver's wall time: the runner gives none
    assert summary.error.round(6).tolist() == [0.05, 1.05]
    pd.testing.assert_frame_equal(pd.read_csv(out / "summary.csv"), summary)
    assert (out / "figure.png").read_text() == "4 rows\n"
    printed = capsys.readouterr()
    assert "toy finished in" in printed.out and "1.05" in printed.out
    assert "toy: 4/4 fits" in printed.err  # the bar starts at the units already done

    calls.clear()
    run(toy_study(lambda unit, progress: calls.append(unit) or toy_unit(unit, progress)), out, progress=False)
    assert calls == [] and len(pd.read_csv(out / "results.csv")) == 4  # nothing left to do


def test_toy_study_in_worker_processes(tmp_path, capsys):
    run(toy_study(), tmp_path / "jobs", jobs=2)
    rows = pd.read_csv(tmp_path / "jobs" / "results.csv")
    assert sorted(zip(rows.group, rows.seed)) == sorted(UNITS) and len(rows) == 4
    assert "toy: 4/4 fits" in capsys.readouterr().err


def test_events_name_their_unit_by_the_key_columns_and_the_default_label_shows_them():
    bar = toy_study().progress_bar(UNITS, jobs=1)
    try:
        bar.event({"group": "b", "seed": 1, "round": 2})
        assert bar.unit_of({"group": "b", "seed": "1"}) == ("b", 1)
        assert "group=b seed=1 round 2" in bar.bar.postfix and bar.eta() is None
        bar.finished(("a", 0), [{"seconds": 4.0}])
        assert bar.eta() == pytest.approx(3 * 4.0, abs=0.5)  # three units left (one running), one worker
    finally:
        bar.close()


def test_a_folder_written_with_fewer_columns_resumes_with_the_new_column_empty(tmp_path):
    """A results file of an older version (a column added since): its rows are kept, the new column
    is added (empty for them), and the new rows line up with the header."""
    out = tmp_path / "toy"
    out.mkdir()
    pd.DataFrame([{"group": "a", "seed": 0, "error": 0.0}]).to_csv(out / "results.csv", index=False)
    calls = []
    run(toy_study(lambda unit, progress: calls.append(unit) or toy_unit(unit, progress)), out, progress=False)
    rows = pd.read_csv(out / "results.csv")
    assert calls == UNITS[1:] and list(rows.columns) == COLUMNS and len(rows) == 4
    assert pd.isna(rows.seconds.iloc[0]) and (rows.seconds.iloc[1:] >= 0).all()


def test_each_run_appends_the_code_that_ran_and_its_units_to_provenance(tmp_path):
    out = tmp_path / "toy"
    with pytest.raises(RuntimeError, match="interrupted"):
        run(toy_study(interrupted_at(2, [])), out, progress=False)
    run(toy_study(), out, progress=False)
    lines = [json.loads(line) for line in (out / "provenance.jsonl").read_text().splitlines()]
    assert [line["units"] for line in lines] == [[list(u) for u in UNITS], [list(u) for u in UNITS[1:]]]
    for line in lines:
        assert line["convexnn_pyomo"] == convexnn_pyomo.__version__ and line["numpy"] and line["python"]
        if line["commit"] is not None:  # a git checkout: the commit of the code that ran
            assert len(line["commit"]) == 40 and isinstance(line["modified"], bool)
