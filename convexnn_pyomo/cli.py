"""Command line: ``convexnn train``, ``convexnn experiment imbalance``, ``convexnn experiment
constraints``, ``convexnn experiment fairness``, ``convexnn solvers``,
``convexnn tightness`` and ``convexnn compare-solvers``.

A mistake on the command line (a bad value, a missing file, an unavailable solver or package, an
output path that is a file) ends in one line ``error: <what, and the fix>`` on stderr and exit
status 2: no traceback, and no output folder left behind by a run that failed before producing
anything.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .algorithms.progress import COLUMN_HELP, RoundPrinter
from .distributed import mpi_rank

__all__ = ["CliError", "build_parser", "main"]


class CliError(Exception):
    """A user mistake: :func:`main` prints ``error: <message>`` and returns 2."""


class _Parser(argparse.ArgumentParser):
    """argparse's own mistakes (bad values, unknown options) as :class:`CliError`."""

    def error(self, message: str):
        raise CliError(f"{message} (see '{self.prog} --help')")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Appends ``(default: ...)`` to every option with a default; an option whose default is
    ``None`` or a flag says in its own help what happens without it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        d = action.default
        if d is None or d is False or d == argparse.SUPPRESS or action.required or "default" in text:
            return text
        if isinstance(d, (list, tuple)):
            d = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in d) or "none"
        return f"{text} (default: {str(d).replace('%', '%%')})"


# -- argument types ------------------------------------------------------------------------------


def _number(convert: Callable, ok: Callable, what: str) -> Callable[[str], float]:
    """An argparse type: one value of ``convert`` passing ``ok``; else a message naming ``what``."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


def _list_of(item: Callable[[str], float], example: str) -> Callable[[str], list]:
    """An argparse type: comma-separated values of ``item``, no empty field."""

    def parse(text: str) -> list:
        fields = [f.strip() for f in text.split(",")]
        if any(not f for f in fields):
            raise argparse.ArgumentTypeError(f"empty field in {text!r}: separate the values by single commas, e.g. {example}")
        return [item(f) for f in fields]

    return parse


_positive_int = _number(int, lambda v: v >= 1, "a positive integer")
_nonnegative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
_positive_float = _number(float, lambda v: math.isfinite(v) and v > 0, "a positive number")
_finite_float = _number(float, math.isfinite, "a number")
_int_list = _list_of(_positive_int, "6,6")
_float_list = _list_of(_finite_float, "0.5,0.9")


# -- output folders ------------------------------------------------------------------------------


def _refit_argument(parser) -> None:
    """``--no-output-layer-refit``: the studies' Convex-NN without the exact output-layer refit."""
    parser.add_argument("--no-output-layer-refit", dest="refit_output_layer", action="store_const", const=False,
                        default=None, help="Convex-NN: do not refit the output layer exactly under constraints on it "
                                           "(after a round whose step breaks them), as "
                                           "earlier versions did (default: refit; docs/algorithm.md)")


def _check_out(path: Path) -> None:
    """``--out`` must be a folder or creatable as one, in a writable place."""
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise CliError(f"--out {path}: {p} is a file, not a folder; give a folder path (created if missing)")
            if not os.access(p, os.W_OK):
                raise CliError(f"--out {path}: {p} is not writable; give a folder you can write to")
            return


@contextmanager
def _output_folder(path: Path, produced: Callable[[], bool]) -> Iterator[Path]:
    """Create ``path`` for a run.  If the run fails while the folder (or a parent) is new and
    ``produced()`` says it holds nothing of value yet, what this run created is removed."""
    _check_out(path)
    new = None
    for p in (path, *path.parents):
        if p.exists():
            break
        new = p
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException:
        if new is not None and not produced():
            shutil.rmtree(new, ignore_errors=True)
        raise


def _data_lines(path: Path) -> int:
    """Lines after the header of a CSV file (0 when it does not exist)."""
    if not path.exists():
        return 0
    with open(path) as fh:
        return max(sum(1 for _ in fh) - 1, 0)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


# -- convexnn train ------------------------------------------------------------------------------

TRAIN_EPILOG = COLUMN_HELP + """
The run stops at --rounds, --time-limit, --target-loss or the schedule's stop rule
(docs/algorithm.md). It writes OUT/history.csv as it goes, OUT/weights.npz (the best weights,
after every accepted round) and OUT/summary.json at the end.
A --data CSV needs --target; its features are min-max scaled to [0, 1] per column, as the bundled
data sets are, unless --no-scale. A multi-class column (more than two classes) needs --loss softmax
(one-hot encoded, one output per class) or --regression; several comma-separated target columns
train one output per column."""


def _train_data(args) -> tuple:
    """The data set of ``convexnn train`` (loaded, target checked, subsampled) and a description."""
    from .data import DataError, load_dataset

    if args.data is None and (args.target or args.no_scale):
        raise CliError("--target and --no-scale apply to a CSV file: give it with --data FILE.csv")
    if args.data is not None and args.dataset is not None:
        raise CliError("give either --data FILE.csv or --dataset NAME, not both")
    if args.data is not None and not args.target:
        raise CliError("--data needs --target COLUMN, the name of the label column")
    try:
        if args.data is not None:
            ds = load_dataset("csv", args.data, args.target, scale=not args.no_scale)
        else:
            ds = load_dataset(args.dataset or "breast_cancer", args.data_path)
    except (DataError, ImportError) as exc:
        raise CliError(str(exc)) from None
    ds.y, target = _prepare_target(ds, args)
    m_all = len(ds.y)
    if args.samples < m_all:
        idx = np.random.default_rng(args.seed).permutation(m_all)[: args.samples]
        ds.X, ds.y = ds.X[idx], ds.y[idx]
    scaled = ds.scaling + (" (--no-scale keeps them as given)" if args.data is not None and not args.no_scale else "")
    return ds, f"m = {len(ds.y)} of {m_all} samples; features {scaled}; target {ds.target_name!r}: {target}"


def _prepare_target(ds, args) -> tuple[np.ndarray, str]:
    """The training target for ``--loss`` (a class column one-hot encoded for ``softmax``) and its
    description; a class column with more than two classes is never silently regressed."""
    from .data import class_labels

    if ds.y.ndim == 2:
        if args.loss == "softmax":
            raise CliError("--loss softmax takes one class column as --target, not several columns")
        return ds.y, f"{ds.y.shape[1]} real-valued columns ({args.loss} loss, one output each)"
    labels = class_labels(ds.y)
    shown = "" if labels is None else f"{len(labels)} classes ({', '.join(f'{v:g}' for v in labels[:6])}" + (
        ", ...)" if len(labels) > 6 else ")")
    if args.loss == "softmax":
        if labels is None:
            raise CliError(f"--loss softmax needs class labels, but target {ds.target_name!r} is real-valued")
        onehot = (ds.y[:, None] == labels[None, :]).astype(float)
        return onehot, f"{shown}, one-hot encoded: {len(labels)} outputs, softmax cross-entropy on the logits"
    if labels is not None and len(labels) > 2 and not args.regression:
        raise CliError(
            f"target {ds.target_name!r} has {shown}; a squared or logistic loss fits one output, i.e. two "
            "classes: pass --loss softmax to train a multi-class classifier (one output per class), or "
            "--regression to fit the labels as numbers"
        )
    if labels is not None and len(labels) <= 2:
        return ds.y, f"{shown}, {args.loss} loss"
    return ds.y, f"real-valued (regression), {args.loss} loss"


#: ``--round-solver`` choices of ``convexnn train`` and the experiments
ROUND_SOLVER_CHOICES = ("auto", "schur", "pyomo")
ROUND_SOLVER_HELP = (
    "how each convex round is solved: 'schur' = the structured round (the round's Pyomo model written on two "
    "template samples and derived per sample) solved by the package's Schur interior point, time and memory linear "
    "in the samples; 'pyomo' = the Pyomo model on every sample solved by a Pyomo NLP solver (--solver); 'auto' = "
    "'schur'{shards}, so the default is the structured Schur round (default: auto)"
)


def _round_solver_choice(text: str) -> str:
    """An argparse type for ``--round-solver``: the old ``ipopt`` choice (direct CasADi rounds) is gone."""
    if text == "ipopt":
        raise argparse.ArgumentTypeError(
            "'ipopt' (the direct CasADi rounds) was removed: the default 'auto' solves the structured round by the "
            "Schur interior point; for Ipopt give --round-solver pyomo (the Pyomo model, solved by ipopt on PATH, "
            "else ipopt_casadi) or --solver ipopt"
        )
    return text


def _round_solver_spec(round_solver: str, solver: str | None) -> str:
    """``--round-solver`` and ``--solver`` as one ``round_solver`` spec: a solver name implies the Pyomo
    rounds solved by it; ``schur`` takes no Pyomo solver."""
    if solver and round_solver == "schur":
        raise CliError(f"--solver {solver} names a Pyomo solver, but --round-solver schur is solved by the package's "
                       "Schur interior point: drop --solver, or give --round-solver pyomo")
    return solver or round_solver


def _train_algorithm(args) -> tuple:
    """The schedule and the round solver of ``convexnn train`` from its flags, built (and the solver
    checked) before anything is written."""
    from .algorithms import ShardedRounds, get_round_solver, get_schedule

    spec = _round_solver_spec(args.round_solver, args.solver)
    ph = args.shards > 1 and spec not in ("auto", "schur")  # the Pyomo model split over mpi-sppy PH
    try:
        schedule = get_schedule(args.schedule, eta=args.eta)
        if ph:
            ph_options = None if args.ph_tol is None else {"tol": args.ph_tol}
            rounds = ShardedRounds(shards=args.shards, solver=args.solver, ph_options=ph_options)
        else:
            if args.ph_tol is not None:
                raise CliError("--ph-tol applies to PH rounds only: give --shards > 1 with --round-solver pyomo "
                               "(or drop --ph-tol)")
            rounds = get_round_solver(spec)  # with --shards > 1: one MPI rank per shard
    except (ValueError, RuntimeError, ImportError) as exc:  # the solver layer's "not available" names the fix
        raise CliError(str(exc)) from None
    return schedule, rounds


def _describe_rounds(rounds, shards: int = 1) -> str:
    """How the rounds are solved, for the header line."""
    if rounds.name == "schur" and shards > 1:
        return f"structured rounds by the Schur interior point over {shards} MPI ranks"
    if rounds.name == "schur":
        return "structured rounds by the Schur interior point"
    if rounds.name == "sharded":
        return f"rounds in {rounds.config.shards} shards by PH over {rounds.solver_name}"
    return f"Pyomo rounds by {rounds.solver_name}"


def _cmd_train(args) -> int:
    from .algorithms import SequentialRelaxation
    from .network import Network
    from .training import HISTORY_COLUMNS

    ds, described = _train_data(args)
    sizes = [ds.X.shape[1], *args.hidden, ds.y.shape[1] if ds.y.ndim == 2 else 1]
    try:
        net = Network(sizes, [args.activation] * len(args.hidden) + ["identity"]).init_he(args.seed)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    schedule, rounds = _train_algorithm(args)
    out = Path(args.out)
    if args.shards > 1 and mpi_rank() > 0:  # under mpiexec: rank 0 prints and writes OUT, the others only solve
        out, sys.stdout = Path(tempfile.mkdtemp(prefix=f"convexnn-rank{mpi_rank()}-")), open(os.devnull, "w")  # noqa: SIM115
    hist_path = out / "history.csv"
    with _output_folder(out, produced=lambda: _data_lines(hist_path) > 0):
        with open(hist_path, "w", newline="") as fh:
            csv.writer(fh).writerow(HISTORY_COLUMNS)
        print(f"convexnn train: {ds.name}, network {'-'.join(map(str, sizes))} ({args.activation}), schedule "
              f"{args.schedule}, {_describe_rounds(rounds, args.shards)}, initial loss "
              f"{net.loss(ds.X, ds.y):.6g}\n{described}", flush=True)
        printer = RoundPrinter()

        def on_round(row: dict, best: Network) -> None:
            printer(row, best)
            with open(hist_path, "a", newline="") as fh:  # whole lines, flushed: a killed run keeps its rounds
                csv.writer(fh).writerow([row.get(c, "") for c in HISTORY_COLUMNS])
                fh.flush()
                os.fsync(fh.fileno())
            if row["status"] == "accepted":
                best.save(out / "weights.tmp.npz")
                os.replace(out / "weights.tmp.npz", out / "weights.npz")

        t0 = time.perf_counter()
        try:
            result = SequentialRelaxation(
                schedule=schedule, round_solver=rounds, rounds=args.rounds, time_limit=args.time_limit,
                target_loss=args.target_loss, progress=on_round, warm_start=args.warm_start, loss=args.loss,
                shards=args.shards,
            ).solve(net, ds.X, ds.y)
        except (ValueError, RuntimeError, ImportError) as exc:
            raise CliError(str(exc)) from None
        except MemoryError:  # one rank's death ends every rank (mpiexec); the message says which and what is kept
            rank = f"rank {mpi_rank()} " if args.shards > 1 else ""
            raise CliError(f"{rank}ran out of memory; the weights of the last accepted round are in "
                           f"{args.out}/weights.npz (more shards, or fewer samples per rank)") from None
    result.network.save(out / "weights.npz")
    summary = result.summary()
    summary.update(dataset=ds.name, m=len(ds.y), sizes=sizes, activation=args.activation, seed=args.seed,
                   features=ds.scaling, wall_seconds=time.perf_counter() - t0)
    _atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    message = summary.get("message")
    print(
        f"done: {summary['status']}{f' ({message})' if message else ''}; loss {summary['initial_loss']:.6g} -> "
        f"{summary['final_loss']:.6g} in {summary['rounds']} rounds, {summary['seconds']:.1f} s; "
        f"wrote {out}/weights.npz, history.csv, summary.json"
    )
    return 0


# -- convexnn solvers ----------------------------------------------------------------------------


def _solver_table(df, width: int = 100) -> str:
    """``available_solvers()`` in at most ``width`` columns: one line per solver (name, available,
    kind), and for a missing one why and what to install on their own wrapped lines."""
    name_w = max(len("solver"), *(len(str(s)) for s in df["solver"])) + 2
    lead = name_w + len("available  ")
    lines = [f"{'solver':<{name_w}}available  kind"]
    for r in df.to_dict("records"):
        head = f"{r['solver']:<{name_w}}{'yes' if r['available'] else 'no':<11}"
        lines.append(textwrap.fill(str(r.get("kind", "")), width, initial_indent=head, subsequent_indent=" " * lead))
        for label in ("reason", "install"):
            if not r["available"] and r.get(label):
                lines.append(textwrap.fill(f"{label}: {r[label]}", width, initial_indent=" " * (lead + 2),
                                           subsequent_indent=" " * (lead + 4), break_on_hyphens=False))
    return "\n".join(lines)


def _cmd_solvers(args) -> int:
    from .solvers import available_solvers

    print(_solver_table(available_solvers()))
    return 0


# -- convexnn experiment imbalance ---------------------------------------------------------------


def _imbalance_epilog() -> str:
    from .experiments.imbalance import METHOD_DESCRIPTIONS

    width = max(map(len, METHOD_DESCRIPTIONS)) + 2
    lines = [f"  {name:<{width}}{text}" for name, text in METHOD_DESCRIPTIONS.items()]
    return (
        "methods (--methods; all but the opt-in convexnn-balanced by default):\n" + "\n".join(lines) + "\n"
        f"  {'convexnn-constrained-k<f>':<{width}}convexnn-constrained with kappa_j = f * |C_j| (--extra-kappa-factors)\n"
        "Writes OUT/runs.csv (one row per method, rho and run, as they finish; a rerun resumes),\n"
        "OUT/summary.csv, OUT/figure2.png and OUT/config.json. Protocol: docs/experiments.md."
    )


def _cmd_experiment_imbalance(args) -> int:
    from .experiments.imbalance import METHODS, ImbalanceConfig, format_summary, preflight, run_sweep

    cfg = ImbalanceConfig(
        dataset=args.dataset, data_path=args.data_path, ratios=args.ratios, runs=args.runs,
        methods=args.methods or METHODS,
        kappa_factor=args.kappa_factor, extra_kappa_factors=args.extra_kappa_factors, rounds=args.rounds,
        balanced_bound=args.balanced_bound,
        adam_steps=args.adam_steps, train_majority=args.train_majority, test_per_class=args.test_per_class,
        seed=args.seed, solver=args.solver, round_solver=args.round_solver,
        refit_output_layer=args.refit_output_layer is not False,
    )
    return _run_study(cfg, args, preflight, run_sweep, format_summary, "runs.csv")


# -- convexnn experiment constraints -------------------------------------------------------------


def _constraints_epilog() -> str:
    from .experiments.constraints import METHOD_DESCRIPTIONS, TASKS

    width = max(map(len, [*TASKS, *METHOD_DESCRIPTIONS])) + 2
    tasks = [textwrap.fill(f"{t.constraint} ({t.metric}): {t.why}", 100, initial_indent=f"  {t.name:<{width}}",
                           subsequent_indent=" " * (width + 2)) for t in TASKS.values()]
    methods = [f"  {name:<{width}}{text}" for name, text in METHOD_DESCRIPTIONS.items()]
    return (
        "tasks (--tasks; all by default):\n" + "\n".join(tasks) + "\nmethods (--methods; all by default):\n"
        + "\n".join(methods) + "\n"
        "Writes OUT/results.csv (one row per task, seed and method, as they finish; a rerun resumes),\n"
        "OUT/summary.csv, OUT/figure.png and OUT/config.json. --quick: 1 seed, 40 training samples, 3 rounds,\n"
        "200 Adam steps, penalty weights 1,100, dual lr 0.1 (each overridden by its option). docs/constraints.md."
    )


def _cmd_experiment_constraints(args) -> int:
    from dataclasses import replace

    from .experiments.constraints import ConstraintsConfig, format_summary, preflight, run_study

    given = {"tasks": args.tasks, "methods": args.methods, "seeds": args.seeds, "rounds": args.rounds,
             "feasibility_rounds": args.feasibility_rounds, "feasibility_rho": args.feasibility_rho,
             "refit_output_layer": args.refit_output_layer,
             "adam_steps": args.adam_steps, "penalty_weights": args.penalty_weights, "dual_lrs": args.dual_lrs,
             "train_size": args.train_size, "base_seed": args.seed, "solver": args.solver, "data_path": args.data_path,
             "round_solver": args.round_solver}
    base = ConstraintsConfig.quick() if args.quick else ConstraintsConfig()
    cfg = replace(base, **{k: v for k, v in given.items() if v is not None})
    return _run_study(cfg, args, preflight, run_study, format_summary, "results.csv")


# -- convexnn experiment fairness ----------------------------------------------------------------


def _fairness_epilog() -> str:
    from .experiments.fairness import METHOD_DESCRIPTIONS

    width = max(map(len, METHOD_DESCRIPTIONS)) + 2
    methods = [f"  {name:<{width}}{text}" for name, text in METHOD_DESCRIPTIONS.items()]
    return (
        "constraints (--constraints; all by default): score = parity of the mean network score <= bound;\n"
        "probability = outputs in [0, 1] and parity of the mean predicted probability <= bound (controls the\n"
        "decisions); group_loss = every group's mean squared loss <= a --group-loss-bounds value.\n"
        "methods (--methods; all by default):\n"
        + "\n".join(methods) + "\n"
        "Writes OUT/results.csv (one row per setting, seed and method, as they finish; a rerun resumes),\n"
        "OUT/summary.csv, OUT/figure.png and OUT/config.json. --quick: 2,000 training rows, 1 seed, bounds 0.02,0.05,\n"
        "group loss 0.15, 3 rounds, 300 Adam steps, penalty weights 1,100, dual lr 0.1, EG 20 iterations (each\n"
        "overridden by its option). docs/fairness.md."
    )


def _cmd_experiment_fairness(args) -> int:
    from dataclasses import replace

    from .experiments.fairness import FairnessConfig, format_summary, preflight, run_study

    given = {"sensitive": args.sensitive, "methods": args.methods, "constraints": args.constraints,
             "bounds": args.bounds, "group_loss_bounds": args.group_loss_bounds, "seeds": args.seeds,
             "train_size": args.train_size, "hidden": args.hidden, "rounds": args.rounds,
             "time_limit": args.time_limit, "warm_start": args.warm_start, "adam_steps": args.adam_steps,
             "feasibility_rho": args.feasibility_rho, "refit_output_layer": args.refit_output_layer,
             "base_seed": args.seed,
             "data_path": args.data_path, "round_solver": _round_solver_spec(args.round_solver, args.solver)}
    base = FairnessConfig.quick() if args.quick else FairnessConfig()
    cfg = replace(base, **{k: v for k, v in given.items() if v is not None})
    return _run_study(cfg, args, preflight, run_study, format_summary, "results.csv")


def _cmd_experiment_fairness_merge(args) -> int:
    from .experiments.fairness import format_summary, merge_study

    try:
        summary = merge_study(args.folders, args.out)
    except (ValueError, OSError) as exc:
        raise CliError(str(exc)) from None
    print(format_summary(summary))
    print(f"wrote {args.out}/results.csv, summary.csv and figure.png from {len(args.folders)} folders")
    return 0


def _run_study(cfg, args, preflight: Callable, run: Callable, format_summary: Callable, rows_file: str) -> int:
    """An experiment's common path: checks before anything is written, the run in ``--out`` (removed
    if it produced no row), the printed summary; data and setup errors as one ``error:`` line."""
    from .data import DataError

    try:
        preflight(cfg)  # data, solver, packages: before anything is written
    except (DataError, ValueError, ImportError, RuntimeError) as exc:
        raise CliError(str(exc)) from None
    out = Path(args.out)
    with _output_folder(out, produced=lambda: _data_lines(out / rows_file) > 0):
        try:
            summary = run(cfg, out, jobs=args.jobs)
        except (DataError, ValueError, ImportError) as exc:
            raise CliError(str(exc)) from None
    print(format_summary(summary))
    return 0


def _require_study(check: Callable) -> None:
    """The solvers a study needs (the ``solvers`` extra), checked before anything is written."""
    from .solvers import SolverNotAvailableError

    try:
        check()
    except SolverNotAvailableError as exc:
        raise CliError(str(exc)) from None


def _cmd_tightness(args) -> int:
    from .experiments.tightness import default_instances, plot_tightness, require_study_solvers, tightness_study

    _require_study(require_study_solvers)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    insts = [i for i in default_instances(args.max_m) if i.m <= args.max_m]
    df = tightness_study(insts, time_limit=args.time_limit, starts=args.starts, progress=True)
    tmp = out / "tightness.csv.tmp"
    df.to_csv(tmp, index=False)
    os.replace(tmp, out / "tightness.csv")
    plot_tightness(df, out / "tightness.png")
    print(df[["instance", "m", "relaxation", "bound", "global_optimum", "gap", "seconds", "status"]].to_string(index=False))
    print(f"wrote {out}/tightness.csv and tightness.png")
    return 0


def _cmd_compare_solvers(args) -> int:
    from .experiments.tightness import compare_solvers, comparison_solvers

    _require_study(comparison_solvers)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df, missing = compare_solvers(args.models, time_limit=args.time_limit)
    df.to_csv(out / "solvers.csv", index=False)
    print(df.to_string(index=False))
    if len(missing):
        print("\nunavailable solvers:")
        print(missing.to_string(index=False))
        missing.to_csv(out / "unavailable_solvers.csv", index=False)
    print(f"wrote {out}/solvers.csv")
    return 0


# -- the parser ----------------------------------------------------------------------------------


def _command(sub, name: str, text: str, func: Callable, epilog: str | None = None) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=text, description=text, epilog=epilog, formatter_class=_HelpFormatter)
    p.set_defaults(func=func)
    return p


def _train_parser(sub) -> None:
    from .activations import available_activations
    from .losses import available_losses

    t = _command(sub, "train", "train a network by Algorithm 1 (sequential regularized relaxation)", _cmd_train, TRAIN_EPILOG)
    t.add_argument("--dataset", default=None, choices=["breast_cancer", "yeast"], help="bundled data set (default: breast_cancer)")
    t.add_argument("--data-path", default=None, help="path of yeast.data (default: $CONVEXNN_DATA, ../shared/data, cache)")
    t.add_argument("--data", default=None, help="a CSV file with a header, instead of --dataset (default: none)")
    t.add_argument("--target", default=None, help="label column of --data, or several comma-separated columns for a "
                   "network with one output each (default: none; required with --data)")
    t.add_argument("--loss", default="squared", choices=available_losses(),
                   help="training loss: squared; logistic (0/1 labels, on the logit); softmax (a class column, one-hot "
                   "encoded: one output per class) (default: squared)")
    t.add_argument("--no-scale", action="store_true", help="keep --data features as given (default: min-max scale to [0, 1])")
    t.add_argument("--regression", action="store_true", help="fit a --data target with more than two integer values as numbers "
                   "(default: refuse it as multi-class)")
    t.add_argument("--samples", type=_positive_int, default=100, help="random subset of this many samples (all if fewer)")
    t.add_argument("--hidden", type=_int_list, default=[6, 6], help="hidden layer sizes, comma-separated")
    t.add_argument("--activation", default="sigmoid", choices=available_activations(), help="hidden activation")
    t.add_argument("--rounds", type=_positive_int, default=300, help="maximum number of convex solves")
    t.add_argument("--eta", type=_positive_float, default=None, help="paper schedule: eta (default 100); default schedule: "
                   "the initial safety factor on the exactness weights (default 2)")
    t.add_argument("--schedule", choices=["adaptive", "paper", "default"], default="adaptive",
                   help="Algorithm 1's schedule, docs/algorithm.md; 'default' is an alias of 'adaptive' (default: adaptive)")
    t.add_argument("--solver", default=None, help="Pyomo NLP solver of the rounds; implies --round-solver pyomo "
                   "(default: none, the Schur round; with --round-solver pyomo: ipopt on PATH, else ipopt_casadi)")
    t.add_argument("--time-limit", type=_positive_float, default=None, help="wall-clock seconds for the run (default: none)")
    t.add_argument("--target-loss", type=_finite_float, default=None, help="stop when the training loss reaches this (default: none)")
    t.add_argument("--warm-start", type=_nonnegative_int, default=0, help="full-batch Adam steps before the first round")
    t.add_argument("--seed", type=int, default=0, help="seed of the sample subset and the He initial weights")
    t.add_argument("--shards", type=_positive_int, default=1, help="data shards (pip install 'convexnn-pyomo[mpi]'): "
                   "the structured round with one MPI rank per shard, run as mpiexec -n K convexnn train --shards K "
                   "(every rank keeps only its rows; rank 0 prints and writes --out); with --round-solver pyomo the "
                   "Pyomo model split over mpi-sppy PH instead (default: 1)")
    t.add_argument("--ph-tol", type=_positive_float, default=None,
                   help="PH rounds (--shards > 1 with --round-solver pyomo): PH stops when both residuals are at most "
                        "this (default: 1e-6)")
    t.add_argument("--round-solver", type=_round_solver_choice, choices=ROUND_SOLVER_CHOICES, default="auto",
                   help=ROUND_SOLVER_HELP.format(shards=" (with --shards > 1: one MPI rank per shard)"))
    t.add_argument("--out", required=True, help="output folder (created if missing)")


def _study_round_solver_arguments(p: argparse.ArgumentParser) -> None:
    """``--round-solver`` and ``--solver`` of Convex-NN in a study."""
    p.add_argument("--round-solver", type=_round_solver_choice, choices=ROUND_SOLVER_CHOICES, default="auto",
                   help="Convex-NN: " + ROUND_SOLVER_HELP.format(shards=""))
    p.add_argument("--solver", default=None, help="Pyomo NLP solver of Convex-NN's rounds; implies --round-solver "
                   "pyomo (default: none, the Schur round; with --round-solver pyomo: ipopt on PATH, else ipopt_casadi)")


def _imbalance_parser(sub) -> None:
    from .experiments.imbalance import ALL_METHODS

    e = sub.add_parser("experiment", help="experiments of the paper", formatter_class=_HelpFormatter)
    experiments = e.add_subparsers(dest="experiment", required=True)
    _constraints_parser(experiments)
    _fairness_parser(experiments)
    im = _command(experiments, "imbalance",
                  "section V / Figure 2: imbalanced classification with hard constraints", _cmd_experiment_imbalance,
                  _imbalance_epilog())
    im.add_argument("--dataset", default="breast_cancer", choices=["breast_cancer", "yeast", "synthetic"], help="data set")
    im.add_argument("--data-path", default=None, help="path of yeast.data (default: $CONVEXNN_DATA, ../shared/data, cache)")
    im.add_argument("--ratios", type=_float_list, default=[0.5, 0.8, 0.9, 0.95, 0.98], help="majority proportions rho")
    im.add_argument("--runs", type=_positive_int, default=10, help="runs per rho (3 or more for a 95%% interval)")
    im.add_argument("--methods", nargs="+", default=None, choices=ALL_METHODS, metavar="METHOD",
                    help="subset of the methods listed below (default: all but convexnn-balanced)")
    im.add_argument("--kappa-factor", type=_positive_float, default=0.5, help="kappa_j = factor * |C_j| in (19)")
    im.add_argument("--extra-kappa-factors", type=_float_list, default=[], help="also run convexnn-constrained-k<f> for these")
    im.add_argument("--balanced-bound", type=_positive_float, default=0.5, help="t of convexnn-balanced: mean hinge per class <= t")
    im.add_argument("--rounds", type=_positive_int, default=10, help="convex rounds per Convex-NN training")
    im.add_argument("--adam-steps", type=_positive_int, default=2000, help="full-batch Adam steps (lr 0.005)")
    im.add_argument("--train-majority", type=_positive_int, default=100, help="training samples of the majority class")
    im.add_argument("--test-per-class", type=_positive_int, default=50, help="balanced test set: samples per class")
    im.add_argument("--seed", type=int, default=0, help="base seed of the splits and initial weights")
    _study_round_solver_arguments(im)
    _refit_argument(im)
    im.add_argument("--jobs", type=_positive_int, default=1, help="worker processes")
    im.add_argument("--out", default="runs/imbalance", help="output folder (a rerun resumes when it holds runs.csv)")


def _constraints_parser(experiments) -> None:
    from .experiments.constraints import METHODS, TASKS

    c = _command(experiments, "constraints", "hard constraints users want (fairness, output bounds, monotone, Lipschitz, "
                 "balanced, compositions) against penalty, Cooper and projected Adam", _cmd_experiment_constraints, _constraints_epilog())
    c.add_argument("--quick", action="store_true", help="a small run that checks the pipeline (default: the full study)")
    c.add_argument("--tasks", nargs="+", default=None, choices=list(TASKS), metavar="TASK",
                   help="subset of the tasks listed below (default: all)")
    c.add_argument("--methods", nargs="+", default=None, choices=METHODS, metavar="METHOD",
                   help="subset of the methods listed below (default: all)")
    c.add_argument("--seeds", type=_positive_int, default=None, help="seeds (splits and initial weights) per task "
                   "(default: 10; 1 with --quick)")
    c.add_argument("--rounds", type=_positive_int, default=None, help="Convex-NN rounds (default: 20; 3 with --quick)")
    c.add_argument("--feasibility-rounds", type=_positive_int, default=None,
                   help="rounds Convex-NN's feasibility phase may use on top of --rounds (default: 100; 10 with --quick)")
    c.add_argument("--feasibility-rho", type=_positive_float, default=None,
                   help="Convex-NN: the feasibility phase's first weight of the loss beside the violation "
                        "(default: 1e-3; docs/algorithm.md)")
    _refit_argument(c)
    c.add_argument("--adam-steps", type=_positive_int, default=None, help="full-batch Adam steps, lr 0.005, for every "
                   "gradient method (default: 2000; 200 with --quick)")
    c.add_argument("--penalty-weights", type=_list_of(_positive_float, "0.1,1,10,100"), default=None,
                   help="penalty weights tried on the validation split (default: 0.1,1,10,100; 1,100 with --quick)")
    c.add_argument("--dual-lrs", type=_list_of(_positive_float, "0.01,0.1,1"), default=None,
                   help="Cooper dual step sizes tried on the validation split (default: 0.01,0.1,1; 0.1 with --quick)")
    c.add_argument("--train-size", type=_positive_int, default=None, help="training samples (default: each task's own, "
                   "100 or 200, yeast 100 majority; 40 with --quick)")
    c.add_argument("--seed", type=int, default=None, help="base seed of the splits and initial weights (default: 0)")
    _study_round_solver_arguments(c)
    c.add_argument("--data-path", default=None, help="path of yeast.data (default: $CONVEXNN_DATA, ../shared/data, cache)")
    c.add_argument("--jobs", type=_positive_int, default=1, help="worker processes")
    c.add_argument("--out", default="runs/constraints", help="output folder (a rerun resumes when it holds results.csv)")


def _fairness_parser(experiments) -> None:
    from .experiments.fairness import KINDS, METHODS

    f = _command(experiments, "fairness", "fairness on UCI Adult: demographic parity and group-loss bounds, Convex-NN "
                 "against fairlearn, Cooper, Adam + penalty and unconstrained models", _cmd_experiment_fairness,
                 _fairness_epilog())
    f.add_argument("--dataset", default="adult", choices=["adult"], help="data set")
    f.add_argument("--data-path", default=None, help="folder of adult.data and adult.test (default: $CONVEXNN_DATA/adult, "
                   "../shared/data/adult, cache)")
    f.add_argument("--quick", action="store_true", help="a few-minute run on a subsample (default: the full study)")
    f.add_argument("--sensitive", default=None, choices=["sex", "race"], help="sensitive attribute (default: sex)")
    f.add_argument("--methods", nargs="+", default=None, choices=METHODS, metavar="METHOD",
                   help="subset of the methods listed below (default: all)")
    f.add_argument("--constraints", nargs="+", default=None, choices=list(KINDS), metavar="KIND",
                   help="subset of score, probability, decision, group_loss (default: all)")
    f.add_argument("--bounds", type=_list_of(_positive_float, "0.01,0.02,0.05"), default=None,
                   help="parity bounds of score, probability and decision (default: 0.01,0.02,0.05; 0.02,0.05 with --quick)")
    f.add_argument("--group-loss-bounds", type=_list_of(_positive_float, "0.13,0.15"), default=None,
                   help="bounds on every group's mean squared loss (default: 0.13,0.15; 0.15 with --quick)")
    f.add_argument("--seeds", type=_positive_int, default=None, help="seeds (default: 5; 1 with --quick)")
    f.add_argument("--train-size", type=_positive_int, default=None, help="training rows, a stratified subsample per "
                   "seed (default: all 30,162; 2,000 with --quick)")
    f.add_argument("--hidden", type=_positive_int, default=None, help="hidden sigmoid units of the 102-h-1 network (default: 4)")
    f.add_argument("--rounds", type=_positive_int, default=None, help="Convex-NN rounds (default: 10; 3 with --quick)")
    f.add_argument("--time-limit", type=_positive_float, default=None, help="seconds per Convex-NN fit (default: none)")
    f.add_argument("--feasibility-rho", type=_positive_float, default=None,
                   help="Convex-NN: the feasibility phase's first weight of the loss beside the violation "
                        "(default: 1e-3; 1 was better for race, worse for sex: docs/fairness.md)")
    _refit_argument(f)
    f.add_argument("--warm-start", type=_nonnegative_int, default=None, help="Convex-NN: unconstrained full-batch Adam "
                   "steps (lr 0.01) before round 1 (default: 0, the He start)")
    f.add_argument("--adam-steps", type=_positive_int, default=None, help="full-batch Adam steps, lr 0.01, for every "
                   "gradient method (default: 2000; 300 with --quick)")
    f.add_argument("--seed", type=int, default=None, help="base seed of the subsamples and initial weights (default: 0)")
    _study_round_solver_arguments(f)
    f.add_argument("--jobs", type=_positive_int, default=1, help="worker processes")
    f.add_argument("--out", default="runs/fairness", help="output folder (a rerun resumes when it holds results.csv)")
    g = _command(experiments, "fairness-merge", "several fairness study folders as one: results, summary, figure",
                 _cmd_experiment_fairness_merge,
                 "The folders' results.csv rows, each with its folder in a source column, then the summary table\n"
                 "and the figure over every bound the folders hold (the same data and seeds; each setting, seed\n"
                 "and method in one folder only; a setting and method in two folders fitted with the same\n"
                 "options). docs/fairness.md.")
    g.add_argument("folders", nargs="+", help="output folders of convexnn experiment fairness")
    g.add_argument("--out", required=True, help="output folder of the merge (not one of the folders)")


def build_parser() -> argparse.ArgumentParser:
    """The ``convexnn`` argument parser (every subcommand's ``--help`` shows its defaults)."""
    p = _Parser(prog="convexnn", description="Train neural networks by convex relaxation (Pyomo)",
                formatter_class=_HelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    _imbalance_parser(sub)

    ti = _command(sub, "tightness", "relaxation-tightness study (parabolic, SDP, McCormick vs global optimum)", _cmd_tightness)
    ti.add_argument("--out", default="runs/tightness", help="output folder")
    ti.add_argument("--max-m", type=_positive_int, default=48, help="largest instance size")
    ti.add_argument("--time-limit", type=_positive_float, default=60.0, help="seconds per global solve")
    ti.add_argument("--starts", type=_positive_int, default=5, help="Ipopt multistart count")

    cs = _command(sub, "compare-solvers", "every available solver on every model file in a folder", _cmd_compare_solvers)
    cs.add_argument("--models", default="models", help="folder of model files")
    cs.add_argument("--out", default="runs/solvers", help="output folder")
    cs.add_argument("--time-limit", type=_positive_float, default=60.0, help="seconds per solve")

    _command(sub, "solvers", "list the solvers available here and why the others are not", _cmd_solvers)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``convexnn``; a :class:`CliError` becomes one ``error:`` line on stderr and status 2.

    The command runs one BLAS thread per process unless ``OPENBLAS_NUM_THREADS`` or
    ``OMP_NUM_THREADS`` is set (:func:`convexnn_pyomo.threads.one_thread_unless_set`)."""
    from .threads import one_thread_unless_set

    with one_thread_unless_set():
        try:
            args = build_parser().parse_args(argv)
            if getattr(args, "out", None) is not None:
                _check_out(Path(args.out))
            return int(args.func(args) or 0)
        except CliError as exc:
            print("error: " + " ".join(str(exc).split()), file=sys.stderr)
            return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
