"""Command line: ``convexnn train``, ``convexnn solvers`` (and the studies of later modules)."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["main"]


def _int_list(text: str) -> list[int]:
    try:
        vals = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return vals


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not np.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _cmd_train(args) -> int:
    from .data import DataError, load_dataset
    from .network import Network
    from .training import HISTORY_COLUMNS, train

    try:
        if args.data:
            if not args.target:
                raise DataError("--data needs --target COLUMN")
            ds = load_dataset("csv", args.data, args.target)
        else:
            ds = load_dataset(args.dataset, args.data_path)
    except (DataError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    X, y = ds.X, ds.y
    if args.samples is not None:
        rng = np.random.default_rng(args.seed)
        idx = rng.permutation(len(y))[: args.samples]
        X, y = X[idx], y[idx]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = [X.shape[1], *args.hidden, 1]
    try:
        net = Network(sizes, [args.activation] * len(args.hidden) + ["identity"]).init_he(args.seed)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    hist_path = out / "history.csv"
    with open(hist_path, "w", newline="") as fh:
        csv.writer(fh).writerow(HISTORY_COLUMNS)
    print(
        f"convexnn train: {ds.name}, m = {len(y)}, network {'-'.join(map(str, sizes))} ({args.activation}), "
        f"schedule {args.schedule}, initial loss {net.loss(X, y):.6g}",
        flush=True,
    )

    def on_round(row: dict, best: Network) -> None:
        from .training import _print_row

        _print_row(row)
        with open(hist_path, "a", newline="") as fh:  # whole lines, flushed: a killed run keeps its rounds
            csv.writer(fh).writerow([row.get(c, "") for c in HISTORY_COLUMNS])
            fh.flush()
            os.fsync(fh.fileno())
        if row["status"] == "accepted":
            tmp = out / "weights.tmp.npz"
            best.save(tmp)
            os.replace(tmp, out / "weights.npz")

    t0 = time.perf_counter()
    try:
        result = train(
            net, X, y, schedule=args.schedule, rounds=args.rounds, eta=args.eta, solver=args.solver,
            time_limit=args.time_limit, target_loss=args.target_loss, progress=on_round, warm_start=args.warm_start,
        )
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result.network.save(out / "weights.npz")
    summary = result.summary()
    summary.update(dataset=ds.name, m=int(len(y)), sizes=sizes, activation=args.activation, seed=args.seed,
                   wall_seconds=time.perf_counter() - t0)
    _atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    print(
        f"done: {summary['status']}; loss {summary['initial_loss']:.6g} -> {summary['final_loss']:.6g} in "
        f"{summary['rounds']} rounds, {summary['seconds']:.1f} s; wrote {out}/weights.npz, history.csv, summary.json"
    )
    return 0


def _cmd_solvers(args) -> int:
    from .solvers import available_solvers

    df = available_solvers()
    with_pandas_options = df.to_string(index=False)
    print(with_pandas_options)
    return 0


def _float_list(text: str) -> list[float]:
    try:
        return [float(t) for t in text.replace(" ", ",").split(",") if t]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _cmd_experiment_imbalance(args) -> int:
    from .data import DataError
    from .experiments.imbalance import METHODS, ImbalanceConfig, run_sweep

    methods = args.methods if args.methods else list(METHODS)
    cfg = ImbalanceConfig(
        dataset=args.dataset, data_path=args.data_path, ratios=args.ratios, runs=args.runs, methods=methods,
        kappa_factor=args.kappa_factor, extra_kappa_factors=args.extra_kappa_factors, rounds=args.rounds,
        adam_steps=args.adam_steps, train_majority=args.train_majority, test_per_class=args.test_per_class,
        seed=args.seed, solver=args.solver,
    )
    try:
        cfg.validate()
        if args.dataset == "yeast":
            from .data import load_yeast

            load_yeast(args.data_path)  # fail fast with the three ways to provide it
        summary = run_sweep(cfg, args.out, jobs=args.jobs)
    except (DataError, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cols = ["rho", "method", "runs", "test_error_mean", "test_error_ci95", "balanced_error_mean", "minority_recall_mean", "constraint_violation_mean"]
    print(summary[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


def _cmd_tightness(args) -> int:
    from .experiments.tightness import default_instances, plot_tightness, tightness_study

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
    from .experiments.tightness import compare_solvers

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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="convexnn", description="Train neural networks by convex relaxation (Pyomo)")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a network by Algorithm 1 (sequential regularized relaxation)")
    t.add_argument("--dataset", default="breast_cancer", choices=["breast_cancer", "yeast"], help="bundled data set")
    t.add_argument("--data-path", default=None, help="path of yeast.data (else $CONVEXNN_DATA, ../shared/data, cache)")
    t.add_argument("--data", default=None, help="a CSV file with a header (instead of --dataset)")
    t.add_argument("--target", default=None, help="label column of --data")
    t.add_argument("--samples", type=int, default=100, help="use a random subset of this many samples (default 100)")
    t.add_argument("--hidden", type=_int_list, default=[6, 6], help="hidden layer sizes, e.g. 6,6")
    t.add_argument("--activation", default="sigmoid", help="hidden activation: sigmoid, tanh, softplus")
    t.add_argument("--rounds", type=int, default=300, help="maximum convex solves")
    t.add_argument("--eta", type=_positive_float, default=None, help="eta (paper, default 100) or the initial safety factor on the exactness weights (default schedule, default 2)")
    t.add_argument("--schedule", choices=["paper", "default"], default="default")
    t.add_argument("--solver", default=None, help="Pyomo solver name (default: ipopt on PATH, else ipopt_casadi)")
    t.add_argument("--time-limit", type=_positive_float, default=None, help="wall-clock seconds")
    t.add_argument("--target-loss", type=float, default=None, help="stop when the training loss reaches this")
    t.add_argument("--warm-start", type=int, default=0, help="full-batch Adam steps before the first round")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", required=True, help="output directory")
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("experiment", help="experiments of the paper")
    esub = e.add_subparsers(dest="experiment", required=True)
    im = esub.add_parser("imbalance", help="section V / Figure 2: imbalanced classification with hard constraints")
    im.add_argument("--dataset", default="breast_cancer", choices=["breast_cancer", "yeast", "synthetic"])
    im.add_argument("--data-path", default=None, help="path of yeast.data")
    im.add_argument("--ratios", type=_float_list, default=[0.5, 0.8, 0.9, 0.95, 0.98], help="majority proportions")
    im.add_argument("--runs", type=int, default=10)
    im.add_argument("--methods", nargs="+", default=None, help="subset of the methods (default: all)")
    im.add_argument("--kappa-factor", type=_positive_float, default=0.5, help="kappa_j = factor * |C_j| (paper: 0.5)")
    im.add_argument("--extra-kappa-factors", type=_float_list, default=[], help="also run convexnn-constrained-k<f> for these")
    im.add_argument("--rounds", type=int, default=10, help="convex rounds per Convex-NN training")
    im.add_argument("--adam-steps", type=int, default=2000, help="full-batch Adam steps (lr 0.005)")
    im.add_argument("--train-majority", type=int, default=100, help="training samples of the majority class")
    im.add_argument("--test-per-class", type=int, default=50, help="balanced test set: samples per class")
    im.add_argument("--seed", type=int, default=0)
    im.add_argument("--solver", default=None)
    im.add_argument("--jobs", type=int, default=1, help="parallel processes (runs)")
    im.add_argument("--out", default="runs/imbalance", help="output directory (resumes when it holds runs.csv)")
    im.set_defaults(func=_cmd_experiment_imbalance)

    ti = sub.add_parser("tightness", help="relaxation-tightness study (parabolic, SDP, McCormick vs global optimum)")
    ti.add_argument("--out", default="runs/tightness")
    ti.add_argument("--max-m", type=int, default=48, help="largest instance size")
    ti.add_argument("--time-limit", type=_positive_float, default=60.0, help="seconds per global solve")
    ti.add_argument("--starts", type=int, default=5, help="Ipopt multistart count")
    ti.set_defaults(func=_cmd_tightness)

    cs = sub.add_parser("compare-solvers", help="every available solver on every model file in models/")
    cs.add_argument("--models", default="models", help="folder of model files")
    cs.add_argument("--out", default="runs/solvers")
    cs.add_argument("--time-limit", type=_positive_float, default=60.0)
    cs.set_defaults(func=_cmd_compare_solvers)

    s = sub.add_parser("solvers", help="list the solvers available here and why the others are not")
    s.set_defaults(func=_cmd_solvers)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
