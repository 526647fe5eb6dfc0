"""Data sets: scikit-learn's breast_cancer (embedded, offline), UCI Yeast, UCI Adult, and user CSV files."""

from __future__ import annotations

import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "ADULT_URL",
    "YEAST_CLASS_COUNTS",
    "YEAST_URL",
    "DataError",
    "Dataset",
    "FairnessDataset",
    "class_labels",
    "load_adult",
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


ADULT_URL = "https://archive.ics.uci.edu/ml/machine-learning-databases/adult/"
ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation", "relationship",
    "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country", "income",
]
ADULT_NUMERIC = ["age", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
ADULT_SHA256 = {
    "adult.data": "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d",
    "adult.test": "a2a9044bc167a35b2361efbabec64e89d69ce82d9790d2980119aac5fd7e9c05",
}
#: binary sensitive attributes: the value that is group 1 (every other value is group 0)
ADULT_SENSITIVE = {"sex": "Male", "race": "White"}


@dataclass
class FairnessDataset:
    """A binary task with a binary sensitive attribute: features ``X`` in [0, 1], labels ``y`` and group
    labels ``group`` (both 0/1 ints) for the training and test rows.  The sensitive attribute is also the
    feature column ``X[:, sensitive_index]`` (named ``feature_names[sensitive_index]``), equal to ``group``."""

    X_train: np.ndarray
    y_train: np.ndarray
    group_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    group_test: np.ndarray
    feature_names: list[str]
    sensitive: str
    sensitive_index: int


def _default_adult_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("CONVEXNN_DATA"):
        dirs.append(Path(os.environ["CONVEXNN_DATA"]) / "adult")
    here = Path(__file__).resolve().parent.parent
    dirs += [here.parent / "shared" / "data" / "adult", Path.cwd().parent / "shared" / "data" / "adult"]
    return dirs + [_cache_dir() / "adult"]


def _has_adult(folder: Path) -> bool:
    return all((folder / name).is_file() for name in ADULT_SHA256)


def _check_sha256(path: Path, name: str) -> None:
    """Raise :class:`DataError` unless ``path`` has the sha256 of the UCI file ``name``."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != ADULT_SHA256[name]:
        raise DataError(f"{path}: sha256 {digest} differs from that of the UCI file {name} ({ADULT_SHA256[name]})")


def _download_adult(folder: Path) -> None:
    """adult.data and adult.test from :data:`ADULT_URL` into ``folder``, each checked before it is kept."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ADULT_SHA256:
        tmp = folder / f"{name}.part"
        with urllib.request.urlopen(ADULT_URL + name, timeout=30) as resp:
            tmp.write_bytes(resp.read())
        _check_sha256(tmp, name)
        tmp.replace(folder / name)


def _adult_folder(path: str | Path | None, download: bool) -> Path:
    """The folder holding adult.data and adult.test: ``path`` (the folder or one of its files), else the
    first default folder that has both, else the user cache after a download."""
    if path is not None:
        folder = Path(path).parent if Path(path).is_file() else Path(path)
        if not _has_adult(folder):
            raise DataError(f"{folder} does not hold the UCI Adult files adult.data and adult.test")
        return folder
    folders = _default_adult_dirs()
    for folder in folders:
        if _has_adult(folder):
            return folder
    reason = "download disabled"
    if download:
        try:
            _download_adult(folders[-1])
            return folders[-1]
        except DataError:
            raise
        except Exception as exc:
            reason = f"download from {ADULT_URL} failed: {exc}"
    raise DataError(
        f"the UCI Adult data set (adult.data, adult.test) was not found in {', '.join(map(str, folders))}; "
        f"pass its folder (load_adult(path)), set $CONVEXNN_DATA to a folder with adult/ in it, "
        f"or go online to download it into {folders[-1]} ({reason})"
    )


def _read_adult(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training and test tables (sha256 checked) without their rows with a missing value (``?``);
    ``income`` becomes 1 for ``>50K`` (the test labels' trailing period removed), else 0."""
    tables = []
    for name, skip in (("adult.data", 0), ("adult.test", 1)):  # adult.test opens with a comment line
        _check_sha256(folder / name, name)
        df = pd.read_csv(folder / name, header=None, names=ADULT_COLUMNS, skipinitialspace=True,
                         na_values="?", skiprows=skip).dropna().reset_index(drop=True)
        df["income"] = (df["income"].str.rstrip(".") == ">50K").astype(int)
        tables.append(df)
    return tables[0], tables[1]


def _encode_adult(train: pd.DataFrame, test: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Feature matrices in [0, 1], fitted on the training rows, columns in the file's order: a numeric
    column min-max scaled (test values clipped into [0, 1]); a categorical column one-hot over its training
    categories (an unknown test category: all zeros), a two-valued one as the single indicator of its
    second value (``sex=Male``).  ``fnlwgt`` and ``income`` are left out."""
    train_cols, test_cols, names = [], [], []
    for col in ADULT_COLUMNS:
        if col in ("fnlwgt", "income"):
            continue
        if col in ADULT_NUMERIC:
            lo, hi = float(train[col].min()), float(train[col].max())
            span = hi - lo if hi > lo else 1.0
            train_cols.append((train[col].to_numpy(float) - lo) / span)
            test_cols.append(np.clip((test[col].to_numpy(float) - lo) / span, 0.0, 1.0))
            names.append(col)
            continue
        values = sorted(train[col].unique())
        for value in values[1:] if len(values) == 2 else values:
            train_cols.append((train[col] == value).to_numpy(float))
            test_cols.append((test[col] == value).to_numpy(float))
            names.append(f"{col}={value}")
    return np.column_stack(train_cols), np.column_stack(test_cols), names


def _stratified_subsample(y: np.ndarray, group: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` sorted row indices drawn without replacement, stratified by (label, group) so that each group's
    size and base rate are kept (all rows when ``n`` is at least their number)."""
    from sklearn.model_selection import train_test_split

    if n >= len(y):
        return np.arange(len(y))
    idx, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=2 * group + y, random_state=seed)
    return np.sort(idx)


def load_adult(path: str | Path | None = None, sensitive: str = "sex", subsample: int | None = None,
               seed: int = 0, download: bool = True) -> FairnessDataset:
    """The UCI Adult (census income) data, encoded for fairness-constrained classification.

    Found in order: ``path`` (the folder of adult.data and adult.test, or one of the two files);
    ``$CONVEXNN_DATA/adult/``; ``../shared/data/adult/``; the user cache; else downloaded from
    :data:`ADULT_URL` into the cache when a network is available.  Both files are sha256 checked.

    Rows with a missing value are dropped: 30,162 training and 15,060 test rows.  Label: income > 50K
    -> 1.  Features (102 columns, all in [0, 1], fitted on every training row, see
    :func:`_encode_adult`): the five numerics min-max scaled, the categoricals one-hot.  ``fnlwgt`` is
    dropped: it is the census sampling weight (how many people the row stands for), not a feature.

    ``sensitive`` is ``"sex"`` (group 1 = Male, 0 = Female) or ``"race"`` (as a binary attribute:
    1 = White, 0 = any other race).  It stays a feature, as in fairlearn's examples (column
    ``sensitive_index``: ``sex=Male`` or ``race=White``; the features do not depend on ``sensitive``),
    and is returned as the group labels.  ``subsample``: keep that many training rows, drawn with
    ``seed`` and stratified by (label, group); the test rows are all kept.
    """
    if sensitive not in ADULT_SENSITIVE:
        raise DataError(f"unknown sensitive attribute {sensitive!r}; use one of {', '.join(ADULT_SENSITIVE)}")
    if subsample is not None and subsample < 1:
        raise DataError(f"subsample must be a positive number of rows, got {subsample}")
    train, test = _read_adult(_adult_folder(path, download))
    X_train, X_test, names = _encode_adult(train, test)
    group_train, group_test = ((df[sensitive] == ADULT_SENSITIVE[sensitive]).to_numpy(int) for df in (train, test))
    y_train, y_test = train["income"].to_numpy(int), test["income"].to_numpy(int)
    if subsample is not None:
        idx = _stratified_subsample(y_train, group_train, subsample, seed)
        X_train, y_train, group_train = X_train[idx], y_train[idx], group_train[idx]
    return FairnessDataset(X_train, y_train, group_train, X_test, y_test, group_test, names, sensitive,
                           names.index(f"{sensitive}={ADULT_SENSITIVE[sensitive]}"))


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

