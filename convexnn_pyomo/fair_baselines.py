"""Fairness baselines on a :class:`~convexnn_pyomo.data.FairnessDataset` (issue 25): an unconstrained
classifier, and fairlearn's two demographic-parity mitigations around it.

* :func:`unconstrained`: scikit-learn's ``LogisticRegression`` (or ``MLPClassifier``), no constraint.
* :func:`exponentiated_gradient`: ``ExponentiatedGradient(base, DemographicParity(difference_bound=bound))``,
  a randomized mixture of base classifiers fitted with sample weights.  Its ``score`` is the
  probability that the mixture predicts 1 (``_pmf_predict``), ``pred`` that score thresholded at 0.5;
  ``extra`` holds the randomized predictions of ``predict(X, random_state=seed)``.
* :func:`threshold_optimizer`: ``ThresholdOptimizer(base, constraints="demographic_parity",
  predict_method="predict_proba")``, group-specific thresholds on the base probabilities.  It needs the
  sensitive attribute at prediction time (the test groups are passed to it).  ``score``, ``pred`` and
  ``extra`` as for exponentiated gradient.

Every function returns a :class:`FairBaselineResult` with train and test scores, 0/1 predictions and the
fit time.  The sensitive attribute stays a feature column, as in the data set.  fairlearn is imported on
first use (the ``baselines`` extra).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from convexnn_pyomo.data import FairnessDataset

__all__ = [
    "FairBaselineResult",
    "exponentiated_gradient",
    "eg_skip_reason",
    "fair_baselines",
    "make_estimator",
    "threshold_optimizer",
    "unconstrained",
]

BASES = ("logistic", "mlp")


@dataclass
class FairBaselineResult:
    """Scores in [0, 1] (probabilities of class 1 where the method defines them), 0/1 predictions
    (``score >= 0.5``), fit seconds, and method specifics in ``extra``."""

    name: str
    train_score: np.ndarray
    test_score: np.ndarray
    train_pred: np.ndarray
    test_pred: np.ndarray
    fit_seconds: float
    extra: dict = field(default_factory=dict)


def _fairlearn():
    """The fairlearn package, or an ImportError that names the extra to install."""
    try:
        import fairlearn.postprocessing
        import fairlearn.reductions
    except ImportError as exc:
        raise ImportError('the fairness baselines need fairlearn: pip install "convexnn-pyomo[baselines]"') from exc
    return fairlearn


def make_estimator(base: str = "logistic", seed: int = 0):
    """An unfitted scikit-learn classifier: ``logistic`` (``LogisticRegression``, lbfgs, C = 1) or ``mlp``
    (``MLPClassifier``: one hidden layer of 16 ReLU units, Adam, a fixed budget of 200 epochs whose
    ConvergenceWarning the fits below silence)."""
    if base == "logistic":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(max_iter=1000)
    if base == "mlp":
        from sklearn.neural_network import MLPClassifier

        return MLPClassifier(hidden_layer_sizes=(16,), max_iter=200, random_state=seed)
    raise ValueError(f"unknown base classifier {base!r}; use one of {', '.join(BASES)}")


def eg_skip_reason(base: str) -> str | None:
    """Why ExponentiatedGradient cannot wrap ``base`` here (its ``fit`` takes no ``sample_weight``:
    scikit-learn's ``MLPClassifier`` before 1.7), or ``None``."""
    from sklearn.utils.validation import has_fit_parameter

    est = make_estimator(base)
    if has_fit_parameter(est, "sample_weight"):
        return None
    return f"{type(est).__name__}.fit takes no sample_weight, which ExponentiatedGradient needs"


def _timed_fit(fit, *args, **kwargs) -> float:
    """Seconds taken by ``fit(*args, **kwargs)``, run with ConvergenceWarning silenced."""
    from sklearn.exceptions import ConvergenceWarning

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit(*args, **kwargs)
    return time.perf_counter() - start


def _result(name: str, train_score, test_score, seconds: float, extra: dict | None = None) -> FairBaselineResult:
    train_score, test_score = np.asarray(train_score, float), np.asarray(test_score, float)
    return FairBaselineResult(name, train_score, test_score, (train_score >= 0.5).astype(int),
                              (test_score >= 0.5).astype(int), seconds, extra or {})


def unconstrained(data: FairnessDataset, base: str = "logistic", seed: int = 0) -> FairBaselineResult:
    """The base classifier without a fairness constraint; scores are ``predict_proba``'s class-1 column."""
    est = make_estimator(base, seed)
    seconds = _timed_fit(est.fit, data.X_train, data.y_train)
    return _result(base, est.predict_proba(data.X_train)[:, 1], est.predict_proba(data.X_test)[:, 1], seconds)


def exponentiated_gradient(data: FairnessDataset, bound: float = 0.05, base: str = "logistic", seed: int = 0,
                           eps: float = 0.01, max_iter: int = 50) -> FairBaselineResult:
    """fairlearn's ``ExponentiatedGradient`` under ``DemographicParity(difference_bound=bound)``: each
    group's positive rate within ``bound`` of the overall one on the training rows (so the difference
    between two groups may reach ``bound / (1 - smaller group's share)``, 1.48 ``bound`` for sex);
    ``eps`` and ``max_iter`` are fairlearn's.

    ``score`` = P(prediction = 1) of the randomized mixture (``_pmf_predict``), ``pred`` = score >= 0.5;
    ``extra``: ``train_pred_random`` / ``test_pred_random`` (``predict(X, random_state=seed)``), the fitted
    ``best_gap`` and fairlearn's ``tolerance`` on the training constraint, ``2 * (eps + best_gap)``.
    ``base`` must accept ``sample_weight`` in ``fit`` (ValueError otherwise).
    """
    fl = _fairlearn()
    est = make_estimator(base, seed)
    if reason := eg_skip_reason(base):
        raise ValueError(reason)
    eg = fl.reductions.ExponentiatedGradient(est, fl.reductions.DemographicParity(difference_bound=bound),
                                             eps=eps, max_iter=max_iter)
    seconds = _timed_fit(eg.fit, data.X_train, data.y_train, sensitive_features=data.group_train)
    extra = {"train_pred_random": eg.predict(data.X_train, random_state=seed),
             "test_pred_random": eg.predict(data.X_test, random_state=seed),
             "best_gap": float(eg.best_gap_), "tolerance": 2 * (eps + float(eg.best_gap_))}
    return _result(f"eg_{base}", eg._pmf_predict(data.X_train)[:, 1], eg._pmf_predict(data.X_test)[:, 1],
                   seconds, extra)


def threshold_optimizer(data: FairnessDataset, base: str = "logistic", seed: int = 0) -> FairBaselineResult:
    """fairlearn's ``ThresholdOptimizer`` for demographic parity on the base classifier's
    ``predict_proba``; it reads the group labels at prediction time (``group_train``, ``group_test``).

    ``score`` = P(prediction = 1) (``_pmf_predict``; randomized only at a group's threshold),
    ``pred`` = score >= 0.5; ``extra``: ``train_pred_random`` / ``test_pred_random``
    (``predict(X, sensitive_features=..., random_state=seed)``).
    """
    fl = _fairlearn()
    to = fl.postprocessing.ThresholdOptimizer(estimator=make_estimator(base, seed), constraints="demographic_parity",
                                              predict_method="predict_proba")
    seconds = _timed_fit(to.fit, data.X_train, data.y_train, sensitive_features=data.group_train)
    splits = {"train": (data.X_train, data.group_train), "test": (data.X_test, data.group_test)}
    scores = {k: to._pmf_predict(X, sensitive_features=g)[:, 1] for k, (X, g) in splits.items()}
    extra = {f"{k}_pred_random": to.predict(X, sensitive_features=g, random_state=seed) for k, (X, g) in splits.items()}
    return _result(f"to_{base}", scores["train"], scores["test"], seconds, extra)


def fair_baselines(data: FairnessDataset, bound: float = 0.05, bases: tuple[str, ...] = BASES,
                   seed: int = 0) -> tuple[dict[str, FairBaselineResult], dict[str, str]]:
    """Every baseline for each base classifier: ``{name: result}``, and ``{name: reason}`` for those skipped
    (see :func:`eg_skip_reason`)."""
    results, skipped = {}, {}
    for base in bases:
        results[base] = unconstrained(data, base, seed)
        if reason := eg_skip_reason(base):
            skipped[f"eg_{base}"] = reason
        else:
            results[f"eg_{base}"] = exponentiated_gradient(data, bound, base, seed)
        results[f"to_{base}"] = threshold_optimizer(data, base, seed)
    return results, skipped
