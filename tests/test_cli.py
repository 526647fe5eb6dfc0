"""The command line as a user meets it: mistakes end in one ``error:`` line and status 2, no
traceback and no output folder; ``--help`` shows every default; ``convexnn solvers`` fits 100
columns; CSV data are scaled (or say they are not) and a multi-class target is refused."""

import argparse
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import convexnn_pyomo as cnn

from convexnn_pyomo.cli import CliError, _HelpFormatter, _output_folder, _solver_table, build_parser, main
from convexnn_pyomo.data import class_labels, load_csv
from convexnn_pyomo.experiments.imbalance import METHODS, describe_method


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "convexnn_pyomo.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, check=False)


def _make_inputs(folder: Path) -> Path:
    (folder / "afile").write_text("not a folder\n")
    (folder / "three.csv").write_text("a,b,y\n1,20,0\n3,40,1\n5,60,2\n7,80,1\n")
    (folder / "two.csv").write_text("a,b,y\n" + "".join(f"{i},{100 * i % 7},{i % 2}\n" for i in range(12)))
    return folder


@pytest.fixture
def workdir(tmp_path):
    return _make_inputs(tmp_path)


MISTAKES = [
    (["train", "--out", "afile"], "afile is a file, not a folder"),
    (["train", "--out", "afile/run"], "afile is a file, not a folder"),
    (["experiment", "imbalance", "--out", "afile"], "afile is a file, not a folder"),
    (["train", "--samples", "0", "--out", "out"], "--samples: expected a positive integer"),
    (["train", "--rounds", "0", "--out", "out"], "--rounds: expected a positive integer"),
    (["train", "--activation", "swish", "--out", "out"], "invalid choice: 'swish'"),
    (["train", "--solver", "no_such_solver", "--out", "out"], "'no_such_solver' is not available"),
    (["train", "--hidden", "6,,6", "--out", "out"], "empty field in '6,,6'"),
    (["train", "--round-solver", "ipopt", "--out", "out"],
     r"'ipopt' \(the direct CasADi rounds\) was removed.*--round-solver pyomo"),
    (["train", "--solver", "ipopt_casadi", "--round-solver", "schur", "--out", "out"],
     "--round-solver schur is solved by the package's Schur interior point"),
    (["train", "--ph-tol", "1e-5", "--out", "out"], "--ph-tol applies to PH rounds only: give --shards > 1 with --round-solver pyomo"),
    (["train", "--data", "three.csv", "--target", "y", "--out", "out"], "3 classes .* multi-class .* --regression"),
    (["train", "--data", "two.csv", "--out", "out"], "--data needs --target"),
    (["train", "--data", "missing.csv", "--target", "y", "--out", "out"], "does not exist"),
    (["experiment", "imbalance", "--solver", "no_such_solver", "--out", "out"], "'no_such_solver' is not available"),
    (["experiment", "imbalance", "--methods", "sgd", "--out", "out"], "invalid choice: 'sgd'"),
    (["experiment", "constraints", "--solver", "ipopt_casadi", "--round-solver", "schur", "--out", "out"],
     "round_solver 'schur' is solved by the Schur interior point"),
    (["experiment", "imbalance", "--ratios", "0.5,1.2", "--out", "out"], r"majority proportions must be in \[0.5, 1\)"),
    (["experiment", "imbalance", "--runs", "0", "--out", "out"], "--runs: expected a positive integer"),
    (["experiment", "imbalance", "--dataset", "yeast", "--data-path", "missing.data", "--out", "out"], "does not exist"),
]


@pytest.fixture(scope="module")
def mistakes_run(tmp_path_factory):
    """Every command of ``MISTAKES`` as a subprocess, 4 at a time (each new interpreter spends ~2 s
    importing): ``{args: (process, files before, files after)}``."""
    from concurrent.futures import ThreadPoolExecutor

    def one(args, folder):
        before = sorted(p.name for p in folder.iterdir())
        proc = _cli(*args, cwd=folder)
        return tuple(args), (proc, before, sorted(p.name for p in folder.iterdir()))

    # folders first, in this thread: tmp_path_factory is not thread-safe (with --basetemp, threads
    # racing to create the base folder delete each other's)
    folders = [_make_inputs(tmp_path_factory.mktemp("cli")) for _ in MISTAKES]
    with ThreadPoolExecutor(4) as pool:
        return dict(pool.map(one, [a for a, _ in MISTAKES], folders))


@pytest.mark.parametrize("args,match", MISTAKES, ids=[" ".join(a) for a, _ in MISTAKES])
def test_mistake_ends_in_one_error_line_and_leaves_no_folder(mistakes_run, args, match):
    proc, before, after = mistakes_run[tuple(args)]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert re.search(match, lines[0]), lines[0]
    assert proc.stdout == ""
    assert after == before  # no output folder was made


def test_output_folder_is_removed_only_if_this_run_made_it_and_produced_nothing(tmp_path):
    new = tmp_path / "a" / "b"
    with pytest.raises(RuntimeError), _output_folder(new, produced=lambda: False):
        (new / "history.csv").write_text("round\n")
        raise RuntimeError("solver failed")
    assert not (tmp_path / "a").exists()  # the parent it created went too
    with pytest.raises(RuntimeError), _output_folder(new, produced=lambda: True):
        raise RuntimeError("failed after round 3")
    assert new.is_dir()  # it holds results
    with pytest.raises(RuntimeError), _output_folder(new, produced=lambda: False):
        raise RuntimeError("failed at once")
    assert new.is_dir()  # it existed before this run
    (tmp_path / "f").write_text("")
    with pytest.raises(CliError, match="is a file"), _output_folder(tmp_path / "f", produced=lambda: False):
        pass


def _subcommands(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _subcommands(sub)


def test_help_shows_every_default():
    formatter = _HelpFormatter("convexnn")
    parsers = list(_subcommands(build_parser()))
    assert {p.prog for p in parsers} >= {"convexnn train", "convexnn experiment imbalance", "convexnn solvers"}
    for parser in parsers:
        for action in parser._actions:
            if not action.option_strings or action.default == argparse.SUPPRESS or action.required:
                continue  # positionals (subcommands), -h, required --out
            text = formatter._get_help_string(action)
            assert "default" in text, f"{parser.prog} {action.option_strings[0]}: {text!r}"
            if action.default not in (None, False):
                shown = action.default if not isinstance(action.default, list) else ",".join(
                    f"{v:g}" if isinstance(v, float) else str(v) for v in action.default) or "none"
                assert f"(default: {shown})" in text, (parser.prog, action.option_strings, text)


def test_train_help_explains_the_round_columns_and_rounds_default(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "(default: 300)" in out and "(default: 6,6)" in out
    for column in ("relaxed", "gaps a/b", "step", "eta", "loss"):
        assert f"\n  {column}" in out, column
    assert "--no-scale" in out and "multi-class" in out
    words = " ".join(out.split())
    assert "{auto,schur,pyomo}" in words and "so the default is the structured Schur round (default: auto)" in words
    assert "'schur' = the structured round" in words and "'pyomo' = the Pyomo model on every sample" in words


def test_train_flags_build_the_schedule_and_the_round_solver():
    """--schedule/--eta become the schedule object, --round-solver/--solver/--shards/--ph-tol the
    round solver object, as convexnn train passes them to SequentialRelaxation."""
    from convexnn_pyomo.algorithms import AdaptiveSchedule, PaperSchedule, PyomoRounds, SchurRounds
    from convexnn_pyomo.cli import _train_algorithm

    def built(*flags):
        return _train_algorithm(build_parser().parse_args(["train", *flags, "--out", "x"]))

    schedule, rounds = built()
    assert type(schedule) is AdaptiveSchedule and schedule.eta == 2.0 and type(rounds) is SchurRounds
    schedule, rounds = built("--schedule", "paper", "--eta", "50", "--round-solver", "schur")
    assert type(schedule) is PaperSchedule and schedule.eta == 50.0 and type(rounds) is SchurRounds
    assert built("--eta", "3")[0].eta == 3.0
    _, rounds = built("--round-solver", "pyomo")
    assert type(rounds) is PyomoRounds
    for flags in (["--solver", "ipopt_casadi"], ["--solver", "ipopt_casadi", "--round-solver", "pyomo"]):
        _, rounds = built(*flags)
        assert type(rounds) is PyomoRounds and rounds.solver_name == "ipopt_casadi"
    assert type(built("--shards", "2")[1]) is SchurRounds  # one MPI rank per shard
    _, rounds = built("--shards", "2", "--round-solver", "pyomo", "--ph-tol", "1e-5")
    assert rounds.name == "sharded" and rounds.config.shards == 2 and rounds.config.ph_options == {"tol": 1e-5}


def test_imbalance_help_lists_every_method_with_its_meaning(capsys):
    with pytest.raises(SystemExit):
        main(["experiment", "imbalance", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for method in METHODS:
        assert f"{method} {' '.join(describe_method(method).split())}" in out, method
    assert "(default: 0.5,0.8,0.9,0.95,0.98)" in out and "(default: 10)" in out


def test_solvers_table_fits_100_columns(capsys):
    assert main(["solvers"]) == 0
    out = capsys.readouterr().out
    assert max(map(len, out.splitlines())) <= 100
    from convexnn_pyomo.solvers import available_solvers

    df = available_solvers()
    words = " ".join(out.split())
    for r in df.to_dict("records"):
        assert r["solver"] in out
        if not r["available"]:
            assert " ".join(f"install: {r['install']}".split()) in words  # the whole hint, wrapped
    long = pd.DataFrame([{"solver": "some_solver_with_a_long_name", "kind": "k " * 80, "available": False,
                          "reason": "r " * 90, "install": "pip install " + "x" * 150}])
    assert max(map(len, _solver_table(long).splitlines())) <= 100


def test_csv_features_are_min_max_scaled_unless_asked_not_to(workdir):
    raw = pd.read_csv(workdir / "two.csv")[["a", "b"]].to_numpy(float)
    ds = load_csv(workdir / "two.csv", "y")
    np.testing.assert_allclose(ds.X, (raw - raw.min(0)) / (raw.max(0) - raw.min(0)))
    assert "scaled to [0, 1]" in ds.scaling
    kept = load_csv(workdir / "two.csv", "y", scale=False)
    np.testing.assert_array_equal(kept.X, raw)
    assert "not scaled" in kept.scaling


def test_class_labels_tell_classes_from_real_targets():
    assert list(class_labels([0, 1, 2, 1.0])) == [0, 1, 2]
    assert list(class_labels([1.0, -1.0])) == [-1, 1]
    assert class_labels([0.5, 1.0, 2.0]) is None  # not integers: a real-valued target
    assert class_labels(np.arange(50)) is None  # too many values for classes


def test_train_on_a_csv_says_how_it_scaled_and_writes_its_files(workdir):
    proc = _cli("train", "--data", "two.csv", "--target", "y", "--hidden", "2", "--rounds", "1", "--out", "run",
                cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert "features min-max scaled to [0, 1]" in proc.stdout and "2 classes (0, 1)" in proc.stdout
    assert "relaxed" in proc.stdout.split("round    1")[0]  # the column header comes before the first round
    hist = pd.read_csv(workdir / "run" / "history.csv")
    assert list(hist["round"]) == [1]
    assert {"weights.npz", "summary.json"} <= {p.name for p in (workdir / "run").iterdir()}
    unscaled = _cli("train", "--data", "three.csv", "--target", "y", "--regression", "--no-scale", "--hidden", "2",
                    "--rounds", "1", "--out", "run3", cwd=workdir)
    assert unscaled.returncode == 0, unscaled.stderr
    assert "features as given (not scaled)" in unscaled.stdout and "real-valued" in unscaled.stdout


def test_train_a_multiclass_column_with_softmax_and_several_target_columns(workdir):
    """A 3-class column trains with --loss softmax as 3 one-hot outputs; two target columns train a
    2-output network (issue 11: multi-output networks through the CLI)."""
    proc = _cli("train", "--data", "three.csv", "--target", "y", "--loss", "softmax", "--hidden", "2", "--rounds", "1",
                "--out", "soft", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert "one-hot encoded: 3 outputs" in proc.stdout
    assert cnn.Network.load(workdir / "soft" / "weights.npz").sizes[-1] == 3
    (workdir / "multi.csv").write_text("a,b,y1,y2\n" + "".join(f"{i},{i % 3},{0.1 * i},{1 - 0.05 * i}\n" for i in range(10)))
    proc = _cli("train", "--data", "multi.csv", "--target", "y1,y2", "--hidden", "3", "--rounds", "1", "--out", "multi",
                cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert "2 real-valued columns" in proc.stdout
    net = cnn.Network.load(workdir / "multi" / "weights.npz")
    assert net.sizes == [2, 3, 2]
    wrong = _cli("train", "--data", "multi.csv", "--target", "y1,y2", "--loss", "softmax", "--out", "x", cwd=workdir)
    assert wrong.returncode == 2 and wrong.stderr.startswith("error: --loss softmax takes one class column")
