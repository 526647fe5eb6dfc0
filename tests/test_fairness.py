"""Issue 25: the UCI Adult loader, the demographic-parity metrics and the fairlearn baselines."""

import sys

import numpy as np
import pytest

from convexnn_pyomo import data as data_mod
from convexnn_pyomo import fair_baselines as fb
from convexnn_pyomo.data import ADULT_SHA256, DataError, load_adult
from convexnn_pyomo.fairness import parity_difference, parity_report

try:
    import fairlearn.metrics as flm
except ImportError:
    flm = None

# fairlearn 0.15's ExponentiatedGradient under pandas 3 (not ours)
pytestmark = [pytest.mark.filterwarnings("ignore:Setting a value on a Series via .at"),
              pytest.mark.filterwarnings("ignore:Setting an item of incompatible dtype")]
needs_fairlearn = pytest.mark.skipif(flm is None, reason='needs fairlearn: pip install "convexnn-pyomo[baselines]"')
BOUND = 0.05


def _adult_or_skip(**kwargs):
    try:
        return load_adult(download=False, **kwargs)
    except DataError as exc:
        pytest.skip(f"UCI Adult not available here: {exc}")


@pytest.fixture(scope="module")
def adult():
    return _adult_or_skip()


@pytest.fixture(scope="module")
def adult_2000():
    return _adult_or_skip(subsample=2000, seed=0)


def _to_overall(values, groups) -> float:
    """fairlearn's DemographicParity constraint: the largest |group mean - overall mean|."""
    values = np.asarray(values, float)
    return max(abs(values[groups == g].mean() - values.mean()) for g in np.unique(groups))


# --- metrics -------------------------------------------------------------------------------------


def test_parity_difference_of_scores_and_labels():
    groups = np.array(["a", "a", "b", "b", "c", "c"])
    assert parity_difference([0.2, 0.4, 0.9, 0.7, 0.5, 0.5], groups) == pytest.approx(0.8 - 0.3)
    assert parity_difference([1, 1, 0, 0, 1, 0], groups) == 1.0
    assert parity_difference([0.3] * 6, groups) == 0.0
    with pytest.raises(ValueError, match="same non-zero length"):
        parity_difference([0.1, 0.2], [0])


def test_parity_report_thresholds_the_scores():
    rep = parity_report([0.1, 0.6, 0.5, 0.4], [0, 1, 0, 0], [0, 0, 1, 1])
    assert rep == pytest.approx({"accuracy": 0.75, "score_parity": 0.1, "prediction_parity": 0.0})
    assert parity_report([0.1, 0.6, 0.5, 0.4], [0, 1, 0, 0], [0, 0, 1, 1], threshold=0.55)["accuracy"] == 1.0


@needs_fairlearn
@pytest.mark.parametrize("n_groups", [2, 3])
def test_prediction_parity_matches_fairlearn(n_groups):
    rng = np.random.default_rng(n_groups)
    groups = rng.integers(0, n_groups, 500)
    y = rng.integers(0, 2, 500)
    scores = np.clip(rng.uniform(size=500) + 0.1 * groups, 0, 1)
    rep = parity_report(scores, y, groups)
    pred = (scores >= 0.5).astype(int)
    expected = flm.demographic_parity_difference(y, pred, sensitive_features=groups)
    assert rep["prediction_parity"] == pytest.approx(expected)
    assert rep["accuracy"] == pytest.approx(np.mean(pred == y))


# --- loader errors (no data needed) --------------------------------------------------------------


def test_load_adult_reports_where_it_looked(tmp_path, monkeypatch):
    folders = [tmp_path / "env" / "adult", tmp_path / "cache" / "adult"]
    monkeypatch.setattr(data_mod, "_default_adult_dirs", lambda: folders)
    with pytest.raises(DataError, match="was not found in .*env/adult, .*cache/adult.*download disabled") as err:
        load_adult(download=False)
    assert "\n" not in str(err.value)

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(data_mod.urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match="download from https://archive.ics.uci.edu/.*failed: no network"):
        load_adult()
    with pytest.raises(DataError, match="does not hold the UCI Adult files"):
        load_adult(tmp_path)
    with pytest.raises(DataError, match="unknown sensitive attribute 'age'"):
        load_adult(tmp_path, sensitive="age")


def test_load_adult_checks_sha256(tmp_path):
    for name in ADULT_SHA256:
        (tmp_path / name).write_text("39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, "
                                     "Not-in-family, White, Male, 2174, 0, 40, United-States, <=50K\n")
    with pytest.raises(DataError, match="sha256 .* differs from that of the UCI file adult.data"):
        load_adult(tmp_path / "adult.data")


def test_fairlearn_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "fairlearn.reductions", None)
    with pytest.raises(ImportError, match=r"convexnn-pyomo\[baselines\]"):
        fb._fairlearn()


def test_eg_needs_sample_weight(monkeypatch):
    from sklearn.neighbors import KNeighborsClassifier

    assert fb.eg_skip_reason("logistic") is None
    monkeypatch.setattr(fb, "make_estimator", lambda base="logistic", seed=0: KNeighborsClassifier())
    assert "KNeighborsClassifier.fit takes no sample_weight" in fb.eg_skip_reason("knn")
    with pytest.raises(ValueError, match="no sample_weight"):
        fb.exponentiated_gradient(None, base="knn")


# --- the data ------------------------------------------------------------------------------------


@pytest.mark.adult
def test_adult_rows_and_features(adult):
    assert adult.X_train.shape == (30162, 102) and adult.X_test.shape == (15060, 102)
    assert len(adult.y_train) == len(adult.group_train) == 30162 and len(adult.y_test) == len(adult.group_test) == 15060
    names = adult.feature_names
    assert len(names) == 102 and "fnlwgt" not in names and not any(n.startswith("income") for n in names)
    assert names[adult.sensitive_index] == "sex=Male" and "sex=Female" not in names
    assert np.array_equal(adult.X_train[:, adult.sensitive_index], adult.group_train)
    assert np.array_equal(adult.X_test[:, adult.sensitive_index], adult.group_test)
    assert round(adult.y_test.mean(), 3) == 0.246


@pytest.mark.adult
def test_adult_base_rates(adult):
    y, g = adult.y_train, adult.group_train
    assert round(y[g == 0].mean(), 3) == 0.114  # Female
    assert round(y[g == 1].mean(), 3) == 0.314  # Male
    assert round(parity_difference(y, g), 2) == 0.20


@pytest.mark.adult
def test_adult_encoding(adult):
    names = adult.feature_names
    for X in (adult.X_train, adult.X_test):
        assert X.min() >= 0.0 and X.max() <= 1.0 and np.all(np.isfinite(X))
    numeric = [names.index(c) for c in data_mod.ADULT_NUMERIC]
    assert np.allclose(adult.X_train[:, numeric].min(axis=0), 0)
    assert np.allclose(adult.X_train[:, numeric].max(axis=0), 1)
    for col in ("workclass", "education", "marital-status", "occupation", "relationship", "race"):
        block = [i for i, n in enumerate(names) if n.startswith(col + "=")]
        assert np.all(adult.X_train[:, block].sum(axis=1) == 1)  # one-hot: exactly one category per row
        assert np.all(adult.X_test[:, block].sum(axis=1) == 1)  # no unknown category among these test rows
    country = [i for i, n in enumerate(names) if n.startswith("native-country=")]
    assert len(country) == 41 and np.all(adult.X_train[:, country].sum(axis=1) == 1)


@pytest.mark.adult
def test_adult_race_is_binary_white_vs_other(adult):
    race = _adult_or_skip(sensitive="race")
    assert np.array_equal(race.X_train, adult.X_train) and race.sensitive == "race"
    assert race.feature_names[race.sensitive_index] == "race=White"
    assert np.array_equal(race.group_train, race.X_train[:, race.sensitive_index])
    assert race.group_train.sum() == 25933


@pytest.mark.adult
def test_adult_subsample_is_stratified(adult, adult_2000):
    sub = adult_2000
    assert sub.X_train.shape == (2000, 102) and sub.X_test.shape == adult.X_test.shape
    for g in (0, 1):
        assert abs(sub.y_train[sub.group_train == g].mean() - adult.y_train[adult.group_train == g].mean()) < 0.003
    assert abs(sub.group_train.mean() - adult.group_train.mean()) < 0.001
    again, other = _adult_or_skip(subsample=2000, seed=0), _adult_or_skip(subsample=2000, seed=1)
    assert np.array_equal(again.X_train, sub.X_train) and not np.array_equal(other.X_train, sub.X_train)


@pytest.mark.adult
def test_adult_download_into_the_cache(tmp_path, monkeypatch, adult):
    shared = next(d for d in data_mod._default_adult_dirs() if data_mod._has_adult(d))
    cache = tmp_path / "cache" / "adult"
    monkeypatch.setattr(data_mod, "_default_adult_dirs", lambda: [cache])
    urls = []

    def serve(url, timeout):
        urls.append(url)
        return open(shared / url.rsplit("/", 1)[1], "rb")

    monkeypatch.setattr(data_mod.urllib.request, "urlopen", serve)
    got = load_adult(subsample=500)
    assert urls == [data_mod.ADULT_URL + "adult.data", data_mod.ADULT_URL + "adult.test"]
    assert sorted(p.name for p in cache.iterdir()) == ["adult.data", "adult.test"]
    assert got.X_test.shape == (15060, 102)


# --- the baselines (2,000 training rows, bound 0.05) ----------------------------------------------


@pytest.mark.adult
@needs_fairlearn
def test_logistic_regression_baseline(adult_2000):
    d = adult_2000
    r = fb.unconstrained(d)
    assert r.fit_seconds > 0 and r.test_score.shape == (15060,) and np.all((0 <= r.test_score) & (r.test_score <= 1))
    assert parity_report(r.test_score, d.y_test, d.group_test)["accuracy"] > 0.82
    parity = parity_difference(r.train_pred, d.group_train)
    assert parity > 0.15  # the unconstrained model keeps most of the labels' 0.20
    expected = flm.demographic_parity_difference(d.y_train, r.train_pred, sensitive_features=d.group_train)
    assert parity == pytest.approx(expected)


@pytest.mark.adult
@needs_fairlearn
def test_exponentiated_gradient_meets_the_bound(adult_2000):
    d = adult_2000
    r = fb.exponentiated_gradient(d, bound=BOUND)
    tol = r.extra["tolerance"]
    assert _to_overall(r.train_score, d.group_train) <= BOUND + tol
    share = min(d.group_train.mean(), 1 - d.group_train.mean())
    assert parity_difference(r.train_score, d.group_train) <= (BOUND + tol) / (1 - share)
    assert set(np.unique(r.extra["train_pred_random"])) <= {0, 1} and r.extra["test_pred_random"].shape == (15060,)
    assert parity_report(r.test_score, d.y_test, d.group_test)["accuracy"] > 0.8


@pytest.mark.adult
@needs_fairlearn
def test_threshold_optimizer_equalizes_predictions(adult_2000):
    d = adult_2000
    r = fb.threshold_optimizer(d)
    assert parity_difference(r.train_pred, d.group_train) < 0.02
    assert parity_difference(r.extra["train_pred_random"], d.group_train) < 0.02
    assert parity_report(r.test_score, d.y_test, d.group_test)["accuracy"] > 0.8


@pytest.mark.adult
@needs_fairlearn
def test_mlp_baselines(adult_2000):
    d = adult_2000
    assert fb.eg_skip_reason("mlp") is None  # scikit-learn >= 1.7: MLPClassifier.fit takes sample_weight
    eg = fb.exponentiated_gradient(d, bound=BOUND, base="mlp", max_iter=3)  # 3 iterations: ~5 s, not ~20 s
    assert _to_overall(eg.train_score, d.group_train) <= BOUND + eg.extra["tolerance"]
    assert parity_difference(eg.train_score, d.group_train) < 0.1
    to = fb.threshold_optimizer(d, base="mlp")
    assert parity_difference(to.train_pred, d.group_train) < 0.02
