"""Multi-class benchmark (issue 11): ConvexNNClassifier (softmax) against scikit-learn's MLPClassifier
and Adam on the same architecture.

Data: UCI Yeast with all ten classes (``../shared/data/yeast.data``, 1,484 samples, 8 features),
and scikit-learn's bundled iris (3 classes) and wine (3 classes, 13 features); features min-max
scaled to [0, 1] on the training split; a stratified 70/30 split per seed.  Every method trains a
network ``n_features - hidden - n_classes`` with the same hidden activation:

* ``convexnn``: :class:`~convexnn_pyomo.sklearn.ConvexNNClassifier`, softmax cross-entropy on the
  logits, Algorithm 1 (adaptive schedule) for ``--rounds`` rounds at most, each round solved by
  ``--round-solver`` (default: the structured round by the Schur interior point, the default of
  ``train``; ``pyomo``: the Pyomo model by Ipopt) within ``--round-time-limit`` seconds;
* ``mlp``: ``sklearn.neural_network.MLPClassifier`` (its own init, Adam, early stopping off,
  ``max_iter`` 2,000);
* ``adam``: full-batch Adam (PyTorch, lr 0.01, ``--adam-steps`` steps) on the same softmax loss
  from the same He initial network as ``convexnn``.

Each (dataset, method, seed) is appended to ``OUT/multiclass.csv`` as it finishes (a rerun skips
what is there); the summary (mean +- std over seeds) is printed and written to
``OUT/multiclass_summary.csv``.  Nothing is asserted: these are measurements.

    python benchmarks/multiclass.py [--datasets yeast,iris,wine] [--seeds 0,1,2,3,4] [--rounds 20]
        [--round-solver schur|pyomo] [--round-time-limit 120] [--out benchmarks/results]

(The rows of ``multiclass.csv`` measured before the structured round became the default used the
rounds of that time: Ipopt, on the direct CasADi round where it applied; reproducible at commit
ec0d73c.)
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_iris, load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import MinMaxScaler

import convexnn_pyomo as cnn
from convexnn_pyomo.baselines import train_adam
from convexnn_pyomo.data import load_yeast
from convexnn_pyomo.losses import get_loss
from convexnn_pyomo.sklearn import ConvexNNClassifier

COLUMNS = ["dataset", "method", "seed", "n_train", "n_classes", "accuracy", "balanced_accuracy", "train_seconds",
           "rounds_or_steps", "status"]
SKLEARN_ACTIVATION = {"sigmoid": "logistic", "tanh": "tanh", "relu": "relu"}


def dataset(name: str) -> tuple[np.ndarray, np.ndarray]:
    if name == "yeast":
        df = load_yeast()
        return df.iloc[:, 1:9].to_numpy(float), df["cls"].to_numpy()
    loader = {"iris": load_iris, "wine": load_wine}[name]
    return loader(return_X_y=True)


def split(X, y, seed: int):
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)
    scaler = MinMaxScaler().fit(Xtr)
    return np.clip(scaler.transform(Xtr), 0, 1), np.clip(scaler.transform(Xte), 0, 1), ytr, yte


def fit_convexnn(Xtr, ytr, Xte, seed: int, args) -> tuple[np.ndarray, float, int, str]:
    from convexnn_pyomo.algorithms import PyomoRounds, SchurRounds

    rounds = (SchurRounds if args.round_solver == "schur" else PyomoRounds)(time_limit=args.round_time_limit)
    clf = ConvexNNClassifier(hidden_layer_sizes=tuple(args.hidden), activation=args.activation, loss="softmax",
                             rounds=args.rounds, random_state=seed, scale=False, round_solver=rounds)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(Xtr, ytr)
    res = clf.train_result_
    status = str(res.status) + (f" ({res.termination})" if res.termination else "")
    return clf.predict(Xte), time.perf_counter() - t0, clf.n_iter_, status


def fit_mlp(Xtr, ytr, Xte, seed: int, args) -> tuple[np.ndarray, float, int, str]:
    mlp = MLPClassifier(hidden_layer_sizes=tuple(args.hidden), activation=SKLEARN_ACTIVATION[args.activation],
                        max_iter=2000, random_state=seed)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(Xtr, ytr)
    return mlp.predict(Xte), time.perf_counter() - t0, mlp.n_iter_, "ok"


def fit_adam(Xtr, ytr, Xte, seed: int, args) -> tuple[np.ndarray, float, int, str]:
    classes = np.unique(ytr)
    Y = (ytr[:, None] == classes[None, :]).astype(float)
    sizes = [Xtr.shape[1], *args.hidden, len(classes)]
    # the same He initial network as ConvexNNClassifier(random_state=seed) draws
    net = cnn.Network(sizes, [args.activation] * len(args.hidden) + ["identity"]).init_he(_he_seed(seed))
    t0 = time.perf_counter()
    res = train_adam(net, Xtr, Y, steps=args.adam_steps, lr=0.01, loss="softmax", seed=seed)
    seconds = time.perf_counter() - t0
    z = res.network.predict(Xte)
    return classes[np.argmax(get_loss("softmax").predict(z, axis=1), axis=1)], seconds, args.adam_steps, "ok"


def _he_seed(seed: int) -> int:
    from convexnn_pyomo.sklearn import _seed

    return _seed(seed)


METHODS = {"convexnn": fit_convexnn, "mlp": fit_mlp, "adam": fit_adam}


def run(args) -> pd.DataFrame:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "multiclass.csv"
    done = pd.read_csv(path) if path.exists() else pd.DataFrame(columns=COLUMNS)
    seen = set(zip(done.dataset, done.method, done.seed.astype(int)))
    for name in args.datasets:
        X, y = dataset(name)
        for seed in args.seeds:
            Xtr, Xte, ytr, yte = split(X, y, seed)
            for method in args.methods:
                if (name, method, seed) in seen:
                    continue
                pred, seconds, iters, status = METHODS[method](Xtr, ytr, Xte, seed, args)
                row = {"dataset": name, "method": method, "seed": seed, "n_train": len(ytr),
                       "n_classes": len(np.unique(y)), "accuracy": accuracy_score(yte, pred),
                       "balanced_accuracy": balanced_accuracy_score(yte, pred), "train_seconds": round(seconds, 2),
                       "rounds_or_steps": iters, "status": status}
                pd.DataFrame([row], columns=COLUMNS).to_csv(path, mode="a", header=not path.exists(), index=False)
                print(f"{name:6s} {method:9s} seed {seed}: accuracy {row['accuracy']:.3f}, balanced "
                      f"{row['balanced_accuracy']:.3f}, {seconds:.1f} s ({status})", flush=True)
    return pd.read_csv(path)


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    g = runs.groupby(["dataset", "method"])
    table = g[["accuracy", "balanced_accuracy", "train_seconds"]].agg(["mean", "std"]).round(3)
    table.columns = [f"{a}_{b}" for a, b in table.columns]
    table["seeds"] = g.size()
    return table.reset_index()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="yeast,iris,wine", type=lambda s: s.split(","))
    ap.add_argument("--methods", default="convexnn,mlp,adam", type=lambda s: s.split(","))
    ap.add_argument("--seeds", default="0,1,2,3,4", type=lambda s: [int(t) for t in s.split(",")])
    ap.add_argument("--hidden", default="8", type=lambda s: [int(t) for t in s.split(",")])
    ap.add_argument("--activation", default="sigmoid", choices=sorted(SKLEARN_ACTIVATION))
    ap.add_argument("--rounds", type=int, default=20, help="Convex-NN rounds at most")
    ap.add_argument("--round-solver", choices=["schur", "pyomo"], default="schur",
                    help="Convex-NN's rounds: the structured round (schur, train's default) or the Pyomo model by "
                         "Ipopt")
    ap.add_argument("--round-time-limit", type=float, default=120.0, help="seconds per convex solve (the round "
                    "solver's time_limit)")
    ap.add_argument("--adam-steps", type=int, default=2000)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = ap.parse_args()
    table = summarize(run(args))
    table.to_csv(Path(args.out) / "multiclass_summary.csv", index=False)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
