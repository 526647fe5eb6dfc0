"""Data sets: scikit-learn's breast_cancer (embedded, offline), UCI Yeast, and user CSV files."""

from __future__ import annotations

import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "YEAST_CLASS_COUNTS",
    "YEAST_URL",
    "DataError",
    "Dataset",
    "class_labels",
    "load_breast_cancer",
    "load_diabetes",
    "load_wine",
    "load_csv",
    "load_dataset",
    "load_synthetic",
    "load_yeast",
]

YEAST_URL = "https://archive.ics.uci.edu/ml/machine-learning-databases/yeast/yeast.data"
YEAST_FEATURES = ["mcg", "gvh", "alm", "mit", "erl", "pox", "vac", "nuc"]
YEAST_CLASS_COUNTS = {
    "CYT": 463, "NUC": 429, "MIT": 244, "ME3": 163, "ME2": 51,
    "ME1": 44, "EXC": 35, "VAC": 30, "POX": 20, "ERL": 5,
}


class DataError(ValueError):
    """A data set is missing, malformed or fails its content check."""


@dataclass
class Dataset:
    """Features ``X (m, n)``, targets ``y (m,)``, names, and ``scaling``: how the features were
    preprocessed, in words (printed by ``convexnn train``)."""

    name: str
    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    target_name: str = "target"
    scaling: str = "as given"

    @property
    def m(self) -> int:
        return self.X.shape[0]


MIN_MAX = "min-max scaled to [0, 1] per feature"


def _min_max_scale(X: np.ndarray) -> np.ndarray:
    r"""Each column mapped affinely onto [0, 1]: :math:`(x - \min x) / (\max x - \min x)` (a constant
    column becomes 0)."""
    from sklearn.preprocessing import MinMaxScaler

    return MinMaxScaler().fit_transform(X)


def load_breast_cancer(n_features: int = 8) -> Dataset:
    """scikit-learn's bundled Wisconsin breast cancer data: the first ``n_features`` features,
    min-max scaled to [0, 1], binary labels (1 = benign).  Needs no network."""
    from sklearn.datasets import load_breast_cancer as _load

    d = _load()
    return Dataset("breast_cancer", _min_max_scale(d.data[:, :n_features]), d.target.astype(float),
                   list(d.feature_names[:n_features]), "benign", scaling=MIN_MAX)


def load_diabetes() -> Dataset:
    """scikit-learn's bundled diabetes regression data: 442 patients, 10 features min-max scaled to
    [0, 1] (``sex`` becomes 0/1), target (disease progression after one year) standardised."""
    from sklearn.datasets import load_diabetes as _load

    d = _load(scaled=False)
    y = (d.target - d.target.mean()) / d.target.std()
    return Dataset("diabetes", _min_max_scale(d.data), y, list(d.feature_names), "progression",
                   scaling="min-max scaled to [0, 1]; target standardised")


def load_wine() -> Dataset:
    """scikit-learn's bundled wine data: 178 wines of 3 cultivars (59, 71, 48), 13 chemical features
    min-max scaled to [0, 1]; target the cultivar 0, 1, 2."""
    from sklearn.datasets import load_wine as _load

    d = _load()
    return Dataset("wine", _min_max_scale(d.data), d.target.astype(float), list(d.feature_names), "cultivar",
                   scaling="min-max scaled to [0, 1]")


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "convexnn_pyomo"


def _default_yeast_paths() -> list[Path]:
    paths = []
    if os.environ.get("CONVEXNN_DATA"):
        paths.append(Path(os.environ["CONVEXNN_DATA"]) / "yeast.data")
    here = Path(__file__).resolve().parent.parent
    paths += [here.parent / "shared" / "data" / "yeast.data", Path.cwd().parent / "shared" / "data" / "yeast.data"]
    paths.append(_cache_dir() / "yeast.data")
    return paths


def _parse_yeast(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, sep=r"\s+", header=None, names=["name", *YEAST_FEATURES, "cls"], engine="python")
    except Exception as exc:
        raise DataError(f"{path}: cannot parse as the UCI Yeast file ({exc})") from exc
    if len(df) != 1484:
        raise DataError(f"{path}: expected 1484 rows of the UCI Yeast data, found {len(df)}")
    counts = df["cls"].value_counts().to_dict()
    if counts != YEAST_CLASS_COUNTS:
        raise DataError(f"{path}: class counts {counts} differ from the UCI Yeast data {YEAST_CLASS_COUNTS}")
    try:
        df[YEAST_FEATURES] = df[YEAST_FEATURES].astype(float)
    except ValueError as exc:
        raise DataError(f"{path}: non-numeric feature values ({exc})") from exc
    return df


def load_yeast(path: str | Path | None = None, download: bool = True) -> pd.DataFrame:
    """The UCI Yeast table (``name``, 8 features, ``cls``), validated by content.

    Looked up in order: ``path``; ``$CONVEXNN_DATA/yeast.data``; ``../shared/data/yeast.data``;
    the user cache; else downloaded from UCI into the cache when a network is available.
    """
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise DataError(f"Yeast file {p} does not exist")
        return _parse_yeast(p)
    for p in _default_yeast_paths():
        if p.is_file():
            return _parse_yeast(p)
    if download:
        target = _cache_dir() / "yeast.data"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".part")
            with urllib.request.urlopen(YEAST_URL, timeout=20) as resp:
                tmp.write_bytes(resp.read())
            df = _parse_yeast(tmp)
            tmp.replace(target)
            return df
        except DataError:
            raise
        except Exception as exc:
            reason = f"download from {YEAST_URL} failed: {exc}"
    else:
        reason = "download disabled"
    raise DataError(
        "the UCI Yeast data set was not found. Provide it in one of three ways: "
        "(1) pass its path (--data-path / load_yeast(path)); "
        "(2) put yeast.data in $CONVEXNN_DATA or ../shared/data/; "
        f"(3) go online so it downloads into {_cache_dir()}. ({reason})"
    )


def load_csv(path: str | Path, target: str, scale: bool = True) -> Dataset:
    """A CSV file with a header; ``target`` names the label column (or several, comma-separated:
    ``y`` then has one column each, for a multi-output network), every other column is a numeric
    feature.  With ``scale`` (default) the features are min-max scaled to [0, 1] per column, as
    the bundled data sets are; ``scale=False`` keeps them as given."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"CSV file {p} does not exist")
    try:
        df = pd.read_csv(p)
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{p} is empty") from exc
    except Exception as exc:
        raise DataError(f"{p}: cannot read as CSV ({exc})") from exc
    if df.empty:
        raise DataError(f"{p} has a header but no rows")
    targets = [t.strip() for t in str(target).split(",")]
    missing = [t for t in targets if t not in df.columns]
    if missing or "" in targets:
        raise DataError(f"{p} has no target column {', '.join(map(repr, missing or ['']))}; "
                        f"columns: {', '.join(map(str, df.columns))}")
    feats = [c for c in df.columns if c not in targets]
    if not feats:
        raise DataError(f"{p} has no feature columns besides {target!r}")
    bad = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    if bad:
        raise DataError(f"{p}: column(s) {', '.join(map(str, bad))} are not numeric")
    X = df[feats].to_numpy(float)
    y = df[targets].to_numpy(float) if len(targets) > 1 else df[targets[0]].to_numpy(float)
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
        raise DataError(f"{p} contains missing, NaN or inf values")
    if scale:
        X = _min_max_scale(X)
    return Dataset(p.stem, X, y, [str(c) for c in feats], target, scaling=MIN_MAX if scale else "as given (not scaled)")


def class_labels(y, max_classes: int = 20) -> np.ndarray | None:
    """The sorted distinct values of ``y`` when it looks like class labels (every value an integer,
    at most ``max_classes`` distinct values), else ``None`` (a real-valued target)."""
    y = np.asarray(y, dtype=float).ravel()
    labels = np.unique(y)
    if len(labels) > max_classes or not np.all(labels == np.round(labels)):
        return None
    return labels


def yeast_binary(df: pd.DataFrame, majority: str = "NUC", minority: str = "MIT") -> Dataset:
    """Binary Yeast problem of the paper: ``majority`` -> 0, ``minority`` -> 1 (8 features as given)."""
    sub = df[df["cls"].isin([majority, minority])]
    return Dataset(
        "yeast", sub[YEAST_FEATURES].to_numpy(float), (sub["cls"] == minority).to_numpy(float), list(YEAST_FEATURES), "MIT",
        scaling="as given (the UCI values lie in [0, 1])",
    )


def load_synthetic(m: int = 300, n_features: int = 8, minority_fraction: float = 0.4, seed: int = 0) -> Dataset:
    """Two overlapping Gaussian classes in [0, 1]^n (label 1 is the smaller class); for tests."""
    rng = np.random.default_rng(seed)
    n1 = int(round(m * minority_fraction))
    centers = rng.uniform(0.3, 0.7, size=(2, n_features))
    X = np.vstack([rng.normal(centers[0], 0.12, size=(m - n1, n_features)), rng.normal(centers[1], 0.12, size=(n1, n_features))])
    y = np.r_[np.zeros(m - n1), np.ones(n1)]
    return Dataset("synthetic", np.clip(X, 0, 1), y, [f"f{k}" for k in range(n_features)], "class",
                   scaling="in [0, 1] by construction")


def load_dataset(name: str, path: str | Path | None = None, target: str | None = None, scale: bool = True) -> Dataset:
    """``breast_cancer``, ``yeast``, ``synthetic`` or ``csv`` (with ``path``, ``target`` and
    ``scale``, see :func:`load_csv`)."""
    if name == "breast_cancer":
        return load_breast_cancer()
    if name == "synthetic":
        return load_synthetic()
    if name == "yeast":
        return yeast_binary(load_yeast(path))
    if name == "csv":
        if path is None or target is None:
            raise DataError("a CSV data set needs a path and a target column")
        return load_csv(path, target, scale)
    raise DataError(f"unknown data set {name!r}; use breast_cancer, yeast or a CSV file")

